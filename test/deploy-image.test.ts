// The built image, when there is one: its configuration agrees with deploy/Containerfile and the
// StatefulSet, and its entrypoint runs as the unprivileged user with production dependencies
// only. Opt-in, because building takes minutes, root, buildah and the network:
//   deploy/image/build-with-buildah.sh localhost/skv:dev
//   SKV_IMAGE=localhost/skv:dev npx vitest run test/deploy-image.test.ts
// (buildah's storage driver: BUILDAH_STORAGE_DRIVER, default vfs, as the build script.)

import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const image = process.env.SKV_IMAGE;
const storage = ['--storage-driver', process.env.BUILDAH_STORAGE_DRIVER ?? 'vfs'];

function buildah(args: readonly string[]): {
  status: number | null;
  stdout: string;
  stderr: string;
} {
  return spawnSync('buildah', [...storage, ...args], { encoding: 'utf8', timeout: 300_000 });
}

describe.skipIf(image === undefined)('the built image', () => {
  let container = '';

  beforeAll(() => {
    const r = buildah(['from', '--pull=never', image ?? '']);
    expect(r.status, r.stderr).toBe(0);
    container = r.stdout.trim();
  });
  afterAll(() => {
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
});
