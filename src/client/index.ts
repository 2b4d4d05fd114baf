// The skv client library's public entry point (package.json "exports").
//
//   import { connect } from 'skv';
//   const kv = connect({ servers: ['127.0.0.1:7001'] });
//   const version = await kv.put('user:1', 'name', 'Ada');
//   await kv.put('user:1', 'name', 'Ada L.', { ifVersion: version });
//   const { value } = await kv.get('user:1', 'name');             // strong (leader)
//   await kv.get('user:1', 'name', { timeline: true });           // any replica
//   kv.close();
//
// Security (README "Security"): `tls: { ca }` for a TLS cluster, plus `cert` and `key` where the
// servers require client certificates; `token` where they require a bearer token.
//
//   connect({ servers, tls: { ca: readFileSync('ca.crt') }, token: process.env.SKV_TOKEN });

import { GrpcNodeTransport } from '../rpc/node-transport.js';
import { type ChannelSecurity, checkTlsMaterial, checkToken } from '../rpc/tls.js';
import { type ClientOptions, SkvClient } from './client.js';

export { SkvError } from '../core/errors.js';
export type {
  CallOptions,
  Cell,
  ClientOptions,
  GetResult,
  ReadOptions,
  WriteOptions,
} from './client.js';
export { SkvClient } from './client.js';

type Pem = string | Buffer;

export interface ConnectOptions extends Omit<ClientOptions, 'transport'> {
  /** PEM: the CA that signed the servers' certificates; `cert`+`key`: this client's identity. */
  readonly tls?: { readonly ca: Pem; readonly cert?: Pem; readonly key?: Pem };
  /** Sent as `authorization: Bearer <token>` on every call. */
  readonly token?: string;
}

const pem = (p: Pem): Buffer => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p);

/** Throws `invalid-argument` on malformed TLS material or token: never falls back to plaintext. */
export function connect(options: ConnectOptions): SkvClient {
  const { tls, token, ...rest } = options;
  let security: ChannelSecurity = {};
  if (tls !== undefined) {
    const material = {
      ca: pem(tls.ca),
      ...(tls.cert === undefined ? {} : { cert: pem(tls.cert) }),
      ...(tls.key === undefined ? {} : { key: pem(tls.key) }),
    };
    checkTlsMaterial(material, { ca: 'tls.ca', cert: 'tls.cert', key: 'tls.key' });
    security = { tls: material };
  }
  if (token !== undefined) security = { ...security, token: checkToken(token, 'token') };
  return new SkvClient({ ...rest, transport: new GrpcNodeTransport(security) });
}
