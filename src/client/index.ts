// The skv client library's public entry point (package.json "exports").
//
//   import { connect } from 'skv';
//   const kv = connect({ servers: ['127.0.0.1:7001'] });
//   const version = await kv.put('user:1', 'name', 'Ada');
//   await kv.put('user:1', 'name', 'Ada L.', { ifVersion: version });
//   const { value } = await kv.get('user:1', 'name');             // strong (leader)
//   await kv.get('user:1', 'name', { timeline: true });           // any replica
//   kv.close();

import { GrpcNodeTransport } from '../rpc/node-transport.js';
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

export function connect(options: Omit<ClientOptions, 'transport'>): SkvClient {
  return new SkvClient({ ...options, transport: new GrpcNodeTransport() });
}
