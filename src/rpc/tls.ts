// Transport security for the gRPC edge (issue #8): TLS credentials for the public+peer port and
// for channels, optional mutual TLS, the bearer token, and who a peer's certificate names.
//
// Invariants:
// - Files are read and checked once, at start; an unreadable or malformed file, a key that does
//   not match its certificate, or an expired certificate is a `CredentialError` — never a silent
//   fall-back to plaintext.
// - When TLS is configured the server always *requests* a client certificate verified against the
//   cluster CA; it *requires* one on the TLS handshake only with `requireClientCertificate`
//   (`--tls-client-auth`). The peer service requires a verified certificate either way
//   (peer-transport.ts), so the peer protocol is mutually authenticated whenever TLS is on.
// - The token check is one server interceptor installed only when a token is configured (no
//   per-request work otherwise). It runs on the call's metadata, before any handler, for every
//   service except grpc.health.v1 (probes stay unauthenticated). Compared in constant time.

import { createHash, createPrivateKey, timingSafeEqual, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { PeerCertificate } from 'node:tls';
import {
  type ChannelCredentials,
  credentials,
  experimental,
  Metadata,
  ServerCredentials,
  ServerInterceptingCall,
  type ServerInterceptor,
  status,
} from '@grpc/grpc-js';
import { SkvError } from '../core/errors.js';
import { REASON_METADATA_KEY } from './status.js';

/** A credential file or value that cannot be used: the process must not start. */
export class CredentialError extends SkvError {
  override readonly name = 'CredentialError';
  constructor(message: string) {
    super('invalid-argument', message);
  }
}

/** PEM material for a channel: the CA that signed the servers, and an optional client identity. */
export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
}

export interface ServerTls {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Refuse TLS handshakes from clients without a certificate signed by `ca`. */
  readonly requireClientCertificate: boolean;
}

export interface ServerSecurity {
  readonly tls?: ServerTls;
  readonly token?: string;
}

export interface ChannelSecurity {
  readonly tls?: TlsMaterial;
  readonly token?: string;
}

export const AUTHORIZATION_METADATA_KEY = 'authorization';
const HEALTH_SERVICE_PREFIX = '/grpc.health.v1.Health/';
/** Token bytes at most (a header value; grpc-js allows far more, nobody needs it). */
export const TOKEN_BYTES_MAX = 4096;

// ---- reading and checking ---------------------------------------------------------------------

async function readCredentialFile(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new CredentialError(
      `cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    );
  }
}

function parseCertificate(pem: Buffer, what: string): X509Certificate {
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new CredentialError(`${what} holds no PEM certificate`);
  }
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    throw new CredentialError(`${what} is not a valid certificate: ${(err as Error).message}`);
  }
  const now = Date.now();
  if (Date.parse(cert.validTo) < now) {
    throw new CredentialError(`${what} expired on ${cert.validTo}`);
  }
  if (Date.parse(cert.validFrom) > now) {
    throw new CredentialError(`${what} is not valid before ${cert.validFrom}`);
  }
  return cert;
}

/** Checks PEM contents: parseable, in date, and the key belongs to the certificate. */
export function checkTlsMaterial(m: TlsMaterial, names: { ca: string; cert: string; key: string }) {
  parseCertificate(m.ca, names.ca);
  if ((m.cert === undefined) !== (m.key === undefined)) {
    throw new CredentialError(`give both ${names.cert} and ${names.key}, or neither`);
  }
  if (m.cert === undefined || m.key === undefined) return;
  const cert = parseCertificate(m.cert, names.cert);
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(m.key);
  } catch (err) {
    throw new CredentialError(`${names.key} is not a valid private key: ${(err as Error).message}`);
  }
  if (!cert.checkPrivateKey(key)) {
    throw new CredentialError(`${names.key} does not belong to the certificate ${names.cert}`);
  }
}

/** Reads PEM files; `cert` and `key` together or not at all. */
export async function readTlsFiles(files: {
  caFile: string;
  certFile?: string | undefined;
  keyFile?: string | undefined;
}): Promise<TlsMaterial> {
  const ca = await readCredentialFile(files.caFile, 'CA certificate file');
  const cert =
    files.certFile === undefined
      ? undefined
      : await readCredentialFile(files.certFile, 'certificate file');
  const key =
    files.keyFile === undefined ? undefined : await readCredentialFile(files.keyFile, 'key file');
  const material: TlsMaterial = {
    ca,
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
  };
  checkTlsMaterial(material, {
    ca: files.caFile,
    cert: files.certFile ?? 'the certificate',
    key: files.keyFile ?? 'the key',
  });
  return material;
}

/** A token must be a valid header value: visible ASCII, no spaces, not empty. */
export function checkToken(token: string, what: string): string {
  if (token.length === 0) throw new CredentialError(`${what} is empty`);
  if (token.length > TOKEN_BYTES_MAX) {
    throw new CredentialError(`${what} is longer than ${TOKEN_BYTES_MAX} bytes`);
  }
  if (!/^[\x21-\x7e]+$/.test(token)) {
    throw new CredentialError(`${what} may hold only visible ASCII characters (no spaces)`);
  }
  return token;
}

/** The token in a file; surrounding whitespace (a trailing newline) is not part of it. */
export async function readTokenFile(file: string): Promise<string> {
  const text = (await readCredentialFile(file, 'token file')).toString('utf8').trim();
  return checkToken(text, `token file ${file}`);
}

// ---- credentials ------------------------------------------------------------------------------

/**
 * A certificate provider that hands out fixed material. grpc-js reads it through listeners; it
 * must answer asynchronously: the server registers its watcher only after adding the listeners.
 */
class StaticCertificateProvider implements experimental.CertificateProvider {
  constructor(
    private readonly ca: Buffer | null,
    private readonly identity: { certificate: Buffer; privateKey: Buffer } | null,
  ) {}
  addCaCertificateListener(listener: experimental.CaCertificateUpdateListener): void {
    const ca = this.ca;
    queueMicrotask(() => listener(ca === null ? null : { caCertificate: ca }));
  }
  removeCaCertificateListener(): void {}
  addIdentityCertificateListener(listener: experimental.IdentityCertificateUpdateListener): void {
    const identity = this.identity;
    queueMicrotask(() => listener(identity));
  }
  removeIdentityCertificateListener(): void {}
}

export function serverCredentials(security: ServerSecurity): ServerCredentials {
  const tls = security.tls;
  if (tls === undefined) return ServerCredentials.createInsecure();
  // createSsl either requires a client certificate or never asks for one; the peer service needs
  // "always ask, verify against the CA, require only if configured": requestCert with
  // rejectUnauthorized = requireClientCertificate, which is what this constructor sets.
  return experimental.createCertificateProviderServerCredentials(
    new StaticCertificateProvider(null, { certificate: tls.cert, privateKey: tls.key }),
    new StaticCertificateProvider(tls.ca, null),
    tls.requireClientCertificate,
  );
}

export function channelCredentials(security: ChannelSecurity): ChannelCredentials {
  const tls = security.tls;
  if (tls === undefined) return credentials.createInsecure();
  return credentials.createSsl(tls.ca, tls.key ?? null, tls.cert ?? null);
}

/** What a node uses for its own outgoing calls: its certificate doubles as its client identity. */
export function nodeChannelSecurity(security: ServerSecurity): ChannelSecurity {
  return {
    ...(security.tls === undefined
      ? {}
      : { tls: { ca: security.tls.ca, cert: security.tls.cert, key: security.tls.key } }),
    ...(security.token === undefined ? {} : { token: security.token }),
  };
}

/** Metadata carrying the token, or null without one (callers clone it per call). */
export function tokenMetadata(security: ChannelSecurity): Metadata | null {
  if (security.token === undefined) return null;
  const md = new Metadata();
  md.set(AUTHORIZATION_METADATA_KEY, `Bearer ${security.token}`);
  return md;
}

// ---- the token check --------------------------------------------------------------------------

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** True iff the metadata values hold exactly one `Bearer <token>` equal to the expected one. */
export function bearerMatches(values: readonly (string | Buffer)[], expected: Buffer): boolean {
  if (values.length !== 1) return false;
  const value = values[0];
  if (typeof value !== 'string' || !value.startsWith('Bearer ')) return false;
  // Equal-length digests: timingSafeEqual leaks neither the content nor the token's length.
  return timingSafeEqual(digest(value.slice('Bearer '.length)), expected);
}

/** The server interceptor that refuses calls without the token (see the header). */
export function tokenInterceptor(token: string): ServerInterceptor {
  const expected = digest(checkToken(token, 'the token'));
  return (method, call) => {
    if (method.path.startsWith(HEALTH_SERVICE_PREFIX)) return new ServerInterceptingCall(call);
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, pass) => {
            const values = metadata.get(AUTHORIZATION_METADATA_KEY);
            if (bearerMatches(values, expected)) {
              pass(metadata);
              return;
            }
            const trailers = new Metadata();
            trailers.set(REASON_METADATA_KEY, 'unauthenticated');
            call.sendStatus({
              code: status.UNAUTHENTICATED,
              details:
                values.length === 0
                  ? 'this server requires a bearer token (authorization: Bearer <token>)'
                  : 'the bearer token is not valid for this server',
              metadata: trailers,
            });
          },
        }),
    });
  };
}

// ---- peer identity ----------------------------------------------------------------------------

/** The names a verified peer certificate vouches for: its CN and its DNS/URI subjectAltNames. */
export function certificateNames(cert: PeerCertificate): string[] {
  const names: string[] = [];
  const cn = cert.subject?.CN as string | string[] | undefined;
  if (typeof cn === 'string') names.push(cn);
  else if (Array.isArray(cn)) names.push(...cn);
  for (const part of (cert.subjectaltname ?? '').split(',')) {
    const entry = part.trim();
    const colon = entry.indexOf(':');
    if (colon < 0) continue;
    const kind = entry.slice(0, colon);
    if (kind === 'DNS' || kind === 'URI') names.push(entry.slice(colon + 1));
  }
  return [...new Set(names)];
}

/**
 * Appended to "no connection" errors: grpc-js reports a refused TLS handshake (or a TLS-only
 * server to a plaintext client) as a bare "Failed to connect" after the first attempt, which
 * reads like a dead node.
 */
export function connectHint(security: ChannelSecurity): string {
  const tls = security.tls;
  if (tls === undefined) {
    return ' (the node is down, or it requires TLS and this client has no TLS configured)';
  }
  return tls.cert === undefined
    ? " (the node is down, or it refused the TLS handshake: it may require a client certificate, or its certificate is not signed by this client's CA)"
    : " (the node is down, or it refused the TLS handshake: check that it trusts the CA of this client's certificate and that its own certificate is signed by this client's CA)";
}
