// Test certificates made by the tests themselves (issue #8): a throw-away CA and leaf
// certificates signed by it, generated with the `openssl` CLI (Debian package `openssl`; .ci/run
// installs it) into a fresh temp directory per call. EC P-256 keys: fast to generate.
//
// A leaf names its subject in the CN and in the subjectAltName (DNS: the name, plus, for servers,
// IP 127.0.0.1 and DNS localhost), and may be used for both serverAuth and clientAuth — a node's
// one certificate serves its port and authenticates its peer links and forwarded requests.
// Nothing here is durable: `remove()` deletes the directory.

import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const VALID_DAYS = 2;

export interface TestCert {
  readonly name: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export interface TestCa {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: Buffer;
  /** A leaf certificate signed by this CA for `name` (CN and SAN DNS). */
  issue(name: string, options?: { server?: boolean }): Promise<TestCert>;
}

async function openssl(args: readonly string[], cwd: string): Promise<void> {
  try {
    await run('openssl', [...args], { cwd });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') {
      throw new Error('the openssl CLI is missing (Debian: apt-get install -y openssl)');
    }
    throw new Error(`openssl ${args[0]} failed: ${e.stderr ?? e.message}`);
  }
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function makeCa(dir: string, label: string): Promise<TestCa> {
  const certFile = path.join(dir, `${label}.crt`);
  const keyFile = path.join(dir, `${label}.key`);
  await openssl(
    [
      'req',
      '-x509',
      ...EC_KEY,
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      String(VALID_DAYS),
      '-subj',
      `/CN=${label}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  let serial = 1;
  const ca: TestCa = {
    certFile,
    keyFile,
    cert: await readFile(certFile),
    issue: async (name, options = {}) => {
      const base = path.join(dir, `${label}-${name}`);
      const ext = `${base}.ext`;
      const sans = [
        `DNS:${name}`,
        ...(options.server === false ? [] : ['DNS:localhost', 'IP:127.0.0.1']),
      ];
      await writeFile(
        ext,
        [
          `subjectAltName=${sans.join(',')}`,
          'basicConstraints=CA:FALSE',
          'keyUsage=critical,digitalSignature,keyEncipherment',
          'extendedKeyUsage=serverAuth,clientAuth',
          '',
        ].join('\n'),
      );
      await openssl(
        [
          'req',
          '-new',
          ...EC_KEY,
          '-keyout',
          `${base}.key`,
          '-out',
          `${base}.csr`,
          '-subj',
          `/CN=${name}`,
        ],
        dir,
      );
      await openssl(
        [
          'x509',
          '-req',
          '-in',
          `${base}.csr`,
          '-CA',
          certFile,
          '-CAkey',
          keyFile,
          '-set_serial',
          String(serial++),
          '-days',
          String(VALID_DAYS),
          '-extfile',
          ext,
          '-out',
          `${base}.crt`,
        ],
        dir,
      );
      return {
        name,
        certFile: `${base}.crt`,
        keyFile: `${base}.key`,
        cert: await readFile(`${base}.crt`),
        key: await readFile(`${base}.key`),
      };
    },
  };
  return ca;
}

export interface TestPki {
  readonly dir: string;
  /** The cluster's CA: signs node and client certificates. */
  readonly ca: TestCa;
  /** An unrelated CA: what a stranger's certificates are signed by. */
  readonly foreignCa: TestCa;
  remove(): Promise<void>;
}

export async function createTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'skv-pki-'));
  try {
    const [ca, foreignCa] = await Promise.all([
      makeCa(dir, 'skv-test-ca'),
      makeCa(dir, 'foreign-ca'),
    ]);
    return { dir, ca, foreignCa, remove: () => rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
