// `skv dev` (DESIGN.md §3, the README's quick start): a local ZooKeeper and three nodes,
// initialised, endpoints printed, the demo runs, and SIGTERM leaves nothing running.

import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../src/devtools/local-zookeeper.js';

const BIN = fileURLToPath(new URL('../bin/skv.js', import.meta.url));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('skv dev', () => {
  let dir = '';
  afterAll(async () => {
    if (dir !== '' && process.env.SKV_KEEP_TEST_DIRS !== '1')
      await rm(dir, { recursive: true, force: true });
  });

  it('starts a cluster, runs the demo, and stops everything on SIGTERM', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'skv-dev-test-'));
    const basePort = await freePort();
    const child = spawn(
      process.execPath,
      [BIN, 'dev', '--dir', dir, '--base-port', String(basePort)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    const exited = new Promise<number | null>((resolve) =>
      child.once('exit', (code) => resolve(code)),
    );
    try {
      const deadline = Date.now() + 90_000;
      while (!out.includes('press Ctrl-C') && Date.now() < deadline && child.exitCode === null) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(out).toContain('press Ctrl-C');
      expect(out).toMatch(
        /conditional put if version \d+ again\s+-> rejected \(version-mismatch\)/,
      );
      expect(out).toContain(
        'scan [fruit:, fruit;)                         -> fruit:alpha, fruit:mango, fruit:zebra',
      );
      const pids = [...out.matchAll(/\(pid (\d+)\)/g)].map((m) => Number(m[1]));
      expect(pids).toHaveLength(3);
      expect(pids.every(alive)).toBe(true);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(pids.filter(alive)).toEqual([]);
      // ZooKeeper is gone too: nothing of this dir is still running.
      const { execFileSync } = await import('node:child_process');
      const left = execFileSync('ps', ['-eo', 'pid,args'])
        .toString()
        .split('\n')
        .filter((l) => l.includes(dir));
      expect(left).toEqual([]);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 120_000);
});
