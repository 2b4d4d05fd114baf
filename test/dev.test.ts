// `skv dev` (DESIGN.md §3, the README's quick start) and the CLI against it: a local ZooKeeper
// and three nodes, initialised, endpoints printed; `skv put/get/del/scan` through bin/skv.js
// (conditional both ways, bad input, a scan across ranges); `skv cluster init` twice (the second
// refuses with exit 3 and changes nothing); the demo runs; and Ctrl-C (SIGINT) as well as SIGTERM
// leaves no process of the tree running, checked by PID (every descendant of `skv dev`, read from
// /proc before the signal: the nodes, ZooKeeper's JVM and its guard shell).

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ZooKeeperCoordinator } from '../src/coordination/zookeeper/zk-coordinator.js';
import { SKV_BIN as BIN } from './support/cluster.js';

/** How long `skv dev` may take to print its endpoints (ZooKeeper's JVM start, 3 nodes, leaders). */
const DEV_READY_MS_MAX = 90_000;
/** One CLI command at most (a node process start plus one call). */
const CLI_MS_MAX = 30_000;

/** State of a process by PID: null when gone (a zombie counts as gone: it runs nothing). */
function procState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  const s = procState(pid);
  return s !== null && s !== 'Z' && s !== 'X';
}

/** Every live descendant of `root` (children, grandchildren, ...), from /proc. */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(name));
      children.set(ppid, list);
    } catch {
      // exited while we looked
    }
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    for (const c of children.get(todo.pop()!) ?? []) {
      out.push(c);
      todo.push(c);
    }
  }
  return out.filter(alive);
}

/**
 * A base port for `skv dev` (it takes base..base+2 for nodes and base+1000.. for their pages)
 * below the kernel's ephemeral range (32768-60999 here), where freePort() and every outgoing
 * connection of the tests running beside this one take theirs: a node port probed free could
 * be taken by one of those before the node binds it.
 */
async function devBasePort(): Promise<number> {
  const free = (port: number) =>
    new Promise<boolean>((resolve) => {
      const server = net.createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
  for (let attempt = 0; attempt < 100; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 9_000);
    const ports = [0, 1, 2, 1000, 1001, 1002].map((d) => base + d);
    if ((await Promise.all(ports.map(free))).every(Boolean)) return base;
  }
  throw new Error('no free base port in 20000-30000');
}

interface DevRun {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  output(): string;
}

function startDev(dir: string, basePort: number, extra: readonly string[]): DevRun {
  const child = spawn(
    process.execPath,
    [BIN, 'dev', '--dir', dir, '--base-port', String(basePort), '--no-open', ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  );
  return { child, exited, output: () => out };
}

/** Resolves once `skv dev` says it runs; rejects if it exits first or takes too long. */
async function waitReady(run: DevRun): Promise<void> {
  const deadline = Date.now() + DEV_READY_MS_MAX;
  while (!run.output().includes('press Ctrl-C')) {
    if (run.child.exitCode !== null) throw new Error(`skv dev exited:\n${run.output()}`);
    if (Date.now() > deadline) throw new Error(`skv dev not ready:\n${run.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function skv(args: readonly string[], env: Readonly<Record<string, string>>): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: { ...process.env, ...env }, timeout: CLI_MS_MAX },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        resolve({ code, stdout: stdout.toString(), stderr: stderr.toString() });
      },
    );
  });
}

describe('skv dev and the CLI', () => {
  const dirs: string[] = [];
  const runs: DevRun[] = [];
  afterAll(async () => {
    for (const r of runs) if (r.child.exitCode === null) r.child.kill('SIGKILL');
    if (process.env.SKV_KEEP_TEST_DIRS !== '1')
      for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('the CLI against `skv dev`: put/get/del/scan, --if-version both ways, bad input, cluster init twice; Ctrl-C stops every process', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'skv-cli-test-'));
    dirs.push(dir);
    // Three ranges split at h and p, no demo: the only rows are the ones written here.
    const run = startDev(dir, await devBasePort(), ['--no-demo', '--split-keys', 'h,p']);
    runs.push(run);
    await waitReady(run);
    const out = run.output();
    const servers = /export SKV_SERVERS=(\S+)/.exec(out)?.[1];
    const zk = /ZooKeeper (\S+);/.exec(out)?.[1];
    expect(servers).toBeDefined();
    expect(zk).toBeDefined();
    const tree = descendants(run.child.pid!);
    // Three nodes, ZooKeeper's JVM and its guard shell at least.
    expect(tree.length).toBeGreaterThanOrEqual(5);
    const env = { SKV_SERVERS: servers! };

    const put1 = await skv(['put', 'a-cli', 'c', 'one'], env);
    expect(put1).toMatchObject({ code: 0, stderr: '' });
    const v1 = Number(/^version (\d+)$/m.exec(put1.stdout)?.[1]);
    expect(v1).toBeGreaterThan(0);
    expect((await skv(['get', 'a-cli', 'c'], env)).stdout).toBe(`one\t(version ${v1})\n`);
    // Conditional put, both ways.
    const put2 = await skv(['put', 'a-cli', 'c', 'two', '--if-version', String(v1)], env);
    expect(put2.code).toBe(0);
    const v2 = Number(/^version (\d+)$/m.exec(put2.stdout)?.[1]);
    expect(v2).toBeGreaterThan(v1);
    const stale = await skv(['put', 'a-cli', 'c', 'stale', '--if-version', String(v1)], env);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toContain('version-mismatch');
    const afterStale = await skv(['get', 'a-cli', 'c', '--timeline'], env);
    expect(afterStale).toMatchObject({ code: 0, stdout: `two\t(version ${v2})\n` });
    // Conditional delete, both ways.
    const staleDel = await skv(['del', 'a-cli', 'c', '--if-version', String(v1)], env);
    expect(staleDel.code).toBe(1);
    expect(staleDel.stderr).toContain('version-mismatch');
    expect((await skv(['get', 'a-cli', 'c'], env)).stdout).toBe(`two\t(version ${v2})\n`);
    const del = await skv(['del', 'a-cli', 'c', '--if-version', String(v2)], env);
    expect(del).toMatchObject({ code: 0, stdout: `deleted (was version ${v2})\n` });
    expect(await skv(['get', 'a-cli', 'c'], env)).toMatchObject({
      code: 1,
      stdout: '(not found)\n',
    });
    // Bad input: an empty key.
    const empty = await skv(['put', '', 'c', 'v'], env);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain('invalid-argument');
    // A scan across both range boundaries (h, p), and a limit that ends in the second range.
    for (const k of ['b-row', 'm-row', 'x-row']) {
      expect((await skv(['put', k, 'c', `v-${k}`], env)).code).toBe(0);
    }
    const scan = await skv(['scan', 'b', 'z'], env);
    expect(scan.code).toBe(0);
    const rowKeys = (text: string) =>
      text
        .trim()
        .split('\n')
        .map((l) => l.split('\t')[0]);
    expect(rowKeys(scan.stdout)).toEqual(['"b-row"', '"m-row"', '"x-row"']);
    expect(scan.stdout).toMatch(/^"x-row"\t"c"="v-x-row"@\d+$/m);
    const limited = await skv(['scan', 'b', '', '--limit', '2'], env);
    expect(limited).toMatchObject({ code: 0, stderr: '' });
    expect(rowKeys(limited.stdout)).toEqual(['"b-row"', '"m-row"']);

    // `skv cluster init` twice against this ZooKeeper (a cluster name of its own).
    const init = ['cluster', 'init', '--zk', zk!, '--cluster', 'cli-init', '--nodes', 'n0,n1,n2'];
    const first = await skv([...init, '--split-keys', 'k'], {});
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('range 0: [""');
    const coord = new ZooKeeperCoordinator({ connectString: zk!, cluster: 'cli-init' });
    await coord.start();
    try {
      const before = await coord.readRangeMap();
      expect(before?.ranges).toHaveLength(2);
      const second = await skv([...init, '--ranges', '5'], {});
      expect(second.code).toBe(3);
      expect(second.stderr).toContain('already has a range map; nothing changed');
      expect(await coord.readRangeMap()).toEqual(before);
    } finally {
      await coord.close();
    }

    expect(tree.filter(alive)).toEqual(tree);
    run.child.kill('SIGINT');
    expect(await run.exited).toBe(0);
    expect(tree.filter(alive)).toEqual([]);
  }, 180_000);

  it('starts a cluster, runs the demo, and SIGTERM stops every process', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'skv-dev-test-'));
    dirs.push(dir);
    const run = startDev(dir, await devBasePort(), []);
    runs.push(run);
    await waitReady(run);
    const out = run.output();
    expect(out).toMatch(/conditional put if version \d+ again\s+-> rejected \(version-mismatch\)/);
    expect(out).toContain(
      'scan [fruit:, fruit;)                         -> fruit:alpha, fruit:mango, fruit:zebra',
    );
    const pids = [...out.matchAll(/\(pid (\d+)\)/g)].map((m) => Number(m[1]));
    expect(pids).toHaveLength(3);
    const tree = descendants(run.child.pid!);
    expect(tree).toEqual(expect.arrayContaining(pids));
    expect(tree.length).toBeGreaterThanOrEqual(5);
    expect(tree.filter(alive)).toEqual(tree);
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
    expect(tree.filter(alive)).toEqual([]);
  }, 120_000);
});
