// The built image, when there is one: its configuration agrees with deploy/Containerfile and the
// StatefulSet, its entrypoint runs as the unprivileged user with production dependencies only,
// and it serves: three `skv server` processes started from the image (buildah run, chroot
// isolation, host network, uid 10001, data under the image's /data) against a test ZooKeeper,
// after the image's own `skv cluster init`, turn SERVING for the image's own `skv health`, take a
// write and a read through the client library, and stop on SIGTERM. Opt-in, because building
// takes minutes, root, buildah and the network:
//   deploy/image/build-with-buildah.sh localhost/skv:dev
//   SKV_IMAGE=localhost/skv:dev npx vitest run test/deploy-image.test.ts
// (buildah's storage driver: BUILDAH_STORAGE_DRIVER, default vfs, as the build script; the serve
// test also needs ZooKeeper installed, as test/support/zookeeper.ts.)

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type SkvClient } from '../src/client/index.js';
import { freePort } from '../src/devtools/local-zookeeper.js';
import { checkHealth } from '../src/rpc/health-client.js';
import { startTestZooKeeper, type TestZooKeeper } from './support/zookeeper.js';

const image = process.env.SKV_IMAGE;
const storage = ['--storage-driver', process.env.BUILDAH_STORAGE_DRIVER ?? 'vfs'];

function buildah(args: readonly string[]): {
  status: number | null;
  stdout: string;
  stderr: string;
} {
  return spawnSync('buildah', [...storage, ...args], { encoding: 'utf8', timeout: 300_000 });
}

/** The image's user (deploy/Containerfile USER). */
const IMAGE_USER = '10001:10001';
const NODES = ['n0', 'n1', 'n2'] as const;
const SERVING_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 20_000;

interface Served {
  readonly id: string;
  readonly address: string;
  readonly proc: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: string;
}

describe.skipIf(image === undefined)('the built image', () => {
  let container = '';
  let zk: TestZooKeeper | null = null;
  const served: Served[] = [];
  const clients: SkvClient[] = [];

  beforeAll(() => {
    const r = buildah(['from', '--pull=never', image ?? '']);
    expect(r.status, r.stderr).toBe(0);
    container = r.stdout.trim();
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    // Each server was started by this test: stop it by its PID, SIGKILL if SIGTERM is not enough.
    for (const s of served) if (s.proc.exitCode === null && s.proc.pid) s.proc.kill('SIGKILL');
    await Promise.all(served.map((s) => s.exited));
    await zk?.stop();
    if (container !== '') buildah(['rm', container]);
  });

  it('is configured as deploy/Containerfile says', () => {
    const r = buildah(['inspect', '--type', 'image', image ?? '']);
    expect(r.status, r.stderr).toBe(0);
    const config = (JSON.parse(r.stdout) as { Docker: { config: Record<string, unknown> } }).Docker
      .config;
    expect(config.User).toBe('10001:10001');
    expect(config.Entrypoint).toEqual(['skv']);
    expect(config.Cmd).toEqual(['server']);
    expect(config.Volumes).toEqual({ '/data': {} });
    expect(config.Env).toEqual(expect.arrayContaining(['SKV_DATA=/data', 'NODE_ENV=production']));
    expect((config.Healthcheck as { Test: string[] }).Test).toEqual([
      'CMD',
      'skv',
      'health',
      '--addr',
      '127.0.0.1:7001',
    ]);
  });

  it('runs the entrypoint as uid 10001 with production dependencies only', () => {
    const run = (cmd: readonly string[]) =>
      buildah(['run', '--isolation', 'chroot', '--user', '10001:10001', container, '--', ...cmd]);
    const help = run(['skv', '--help']);
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^Usage: skv/);
    const id = run(['id', '-u']);
    expect(id.stdout.trim()).toBe('10001');
    const deps = run([
      'sh',
      '-c',
      "cd /app && node -e \"Promise.all([import('classic-level'), import('@grpc/grpc-js')]).then(() => console.log('ok'))\" && ls node_modules",
    ]);
    expect(deps.status, deps.stderr).toBe(0);
    const lines = deps.stdout.trim().split('\n');
    expect(lines[0]).toBe('ok');
    for (const dev of ['vitest', 'typescript', 'tsx', '@biomejs']) expect(lines).not.toContain(dev);
    const data = run(['sh', '-c', 'touch /data/probe && rm /data/probe && echo writable']);
    expect(data.stdout.trim()).toBe('writable');
  });

  it('serves: three servers from the image, after its `skv cluster init`, answer `skv health`, a write and a read', async () => {
    zk = await startTestZooKeeper({ tickTimeMs: 1000 });
    const cluster = `image-test-${process.pid}`;
    const inImage = (env: Record<string, string>, cmd: readonly string[]) => [
      ...storage,
      'run',
      '--isolation',
      'chroot',
      '--network',
      'host',
      '--user',
      IMAGE_USER,
      ...Object.entries(env).flatMap(([k, v]) => ['--env', `${k}=${v}`]),
      container,
      '--',
      ...cmd,
    ];
    const init = spawnSync(
      'buildah',
      inImage({}, [
        'skv',
        'cluster',
        'init',
        '--zk',
        zk.connectString,
        '--cluster',
        cluster,
        '--nodes',
        NODES.join(','),
        '--ranges',
        '3',
      ]),
      { encoding: 'utf8', timeout: 120_000 },
    );
    expect(init.status, init.stderr).toBe(0);
    expect(init.stdout.split('\n').filter((l) => /^range \d+:/.test(l))).toHaveLength(3);

    const t0 = performance.now();
    for (const id of NODES) {
      const address = `127.0.0.1:${await freePort()}`;
      // The image's ENV gives SKV_DATA=/data; each server gets its own directory under it.
      const proc = spawn(
        'buildah',
        inImage(
          {
            SKV_ID: id,
            SKV_LISTEN: address,
            SKV_ZK: zk.connectString,
            SKV_CLUSTER: cluster,
            SKV_DATA: `/data/${id}`,
            SKV_SESSION_TIMEOUT_MS: '4000',
            // The node exits if this test dies (its stdin closes).
            SKV_EXIT_ON_STDIN_CLOSE: '1',
          },
          ['skv', 'server'],
        ),
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      const s: Served = {
        id,
        address,
        proc,
        exited: new Promise((resolve) =>
          proc.once('exit', (code, signal) => resolve({ code, signal })),
        ),
        output: '',
      };
      const keep = (d: Buffer) => {
        s.output = (s.output + d.toString()).slice(-8_000);
      };
      proc.stdout?.on('data', keep);
      proc.stderr?.on('data', keep);
      served.push(s);
    }
    // Readiness as the StatefulSet's probe asks it (service skv.v1.KV), from outside the image.
    for (const s of served) {
      let ok = false;
      while (!ok && performance.now() - t0 < SERVING_TIMEOUT_MS && s.proc.exitCode === null) {
        ok = await checkHealth(s.address, 'skv.v1.KV', 1_000);
        if (!ok) await new Promise((r) => setTimeout(r, 250));
      }
      expect(ok, `${s.id} never SERVING:\n${s.output}`).toBe(true);
    }
    console.log(
      `[deploy-image] 3 servers from the image SERVING ${((performance.now() - t0) / 1000).toFixed(1)} s after start`,
    );
    // ...and with the image's own `skv health` (its HEALTHCHECK command), for both services.
    for (const s of served) {
      for (const service of ['', 'skv.v1.KV']) {
        const h = spawnSync(
          'buildah',
          inImage({}, ['skv', 'health', '--addr', s.address, '--service', service]),
          { encoding: 'utf8', timeout: 60_000 },
        );
        expect(h.status, `skv health ${s.address} "${service}": ${h.stderr}`).toBe(0);
      }
    }
    const wrong = spawnSync(
      'buildah',
      inImage({}, ['skv', 'health', '--addr', `127.0.0.1:${await freePort()}`]),
      { encoding: 'utf8', timeout: 60_000 },
    );
    expect(wrong.status, 'skv health on a port nobody serves').toBe(1);

    // A write and a strong read through the client library.
    const client = connect({ servers: served.map((s) => s.address), timeoutMs: 10_000 });
    clients.push(client);
    const version = await client.put('image-test', 'c', 'served from the image');
    expect(version).toBeGreaterThan(0);
    const got = await client.get('image-test', 'c');
    expect(got.found && got.value.toString()).toBe('served from the image');

    // SIGTERM (as the kubelet sends it) stops each server within the shutdown grace.
    for (const s of served) {
      s.proc.kill('SIGTERM');
      const exit = await Promise.race([
        s.exited,
        new Promise<null>((r) => setTimeout(() => r(null), STOP_TIMEOUT_MS)),
      ]);
      expect(exit, `${s.id} did not exit on SIGTERM:\n${s.output}`).not.toBeNull();
    }
  }, 300_000);
});
