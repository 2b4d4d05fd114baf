// `skv dev`: the embedded default (DESIGN.md §3). A local ZooKeeper and N nodes on 127.0.0.1,
// initialised, endpoints printed, a short demo, and Ctrl-C / SIGTERM stops everything it started
// (each child also exits when our stdin pipe to it closes, so a killed `skv dev` leaves nothing).
// Every node serves its status page and /metrics on an HTTP port of its own; the first page is
// opened in a browser when one is available (never an error when it is not).

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, openSync } from 'node:fs';
import { mkdir, mkdtemp, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../client/index.js';
import { SkvError } from '../core/errors.js';
import { findZooKeeperClasspath, freePort, LocalZooKeeper } from '../devtools/local-zookeeper.js';
import type { InitialSplit } from '../placement/initial-map.js';
import { checkHealth } from '../rpc/health-client.js';
import { initCluster } from './cluster-init.js';

export interface DevOptions {
  readonly nodes: number;
  /** How the key space is split into the first ranges (`cluster init`'s --ranges/--split-keys). */
  readonly split: InitialSplit;
  readonly dir?: string;
  readonly basePort: number;
  readonly demo: boolean;
  readonly exitAfterDemo: boolean;
  /** Open the first status page in a browser; undefined: only if one looks available. */
  readonly open?: boolean;
}

const BIN = fileURLToPath(new URL('../../../bin/skv.js', import.meta.url));
const CLUSTER = 'dev';
/** The health service a node reports SERVING once it has the range map and its cohorts. */
const READY_SERVICE = 'skv.v1.KV';

/** Gets ZooKeeper where it can (Debian/Ubuntu as root), otherwise says what to install. */
async function ensureZooKeeper(): Promise<void> {
  if (findZooKeeperClasspath() !== null) return;
  const debian = existsSync('/etc/debian_version');
  const root = process.getuid?.() === 0;
  if (debian && root) {
    console.log(
      'skv dev: ZooKeeper is not installed; installing the Debian package `zookeeper` (apt-get)...',
    );
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'zookeeper'], {
      stdio: 'inherit',
      env,
    });
    if (r.status !== 0) {
      spawnSync('apt-get', ['update'], { stdio: 'inherit', env });
      r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'zookeeper'], {
        stdio: 'inherit',
        env,
      });
    }
    if (r.status === 0 && findZooKeeperClasspath() !== null) return;
  }
  throw new SkvError(
    'unavailable',
    debian
      ? 'ZooKeeper is not installed. Install it with: sudo apt-get install -y zookeeper'
      : 'ZooKeeper 3.8 is not installed. Install it (Debian/Ubuntu: apt-get install -y zookeeper), or set SKV_ZOOKEEPER_CLASSPATH to its jars',
  );
}

async function portsFrom(base: number, n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < n; i++) {
    const want = base + i;
    // Use the requested port when it is free, a free one otherwise.
    const probe = await freePortIfAvailable(want);
    ports.push(probe ?? (await freePort()));
  }
  return ports;
}

async function freePortIfAvailable(port: number): Promise<number | null> {
  const net = await import('node:net');
  return await new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(null));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(port)));
  });
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export async function runDev(o: DevOptions): Promise<void> {
  if (o.nodes < 3) throw new SkvError('invalid-argument', 'a cluster needs at least 3 nodes');
  await ensureZooKeeper();
  const dir = o.dir ?? (await mkdtemp(path.join(os.tmpdir(), 'skv-dev-')));
  await mkdir(dir, { recursive: true });
  const children: ChildProcess[] = [];
  let zk: LocalZooKeeper | null = null;
  let stopping: Promise<void> | null = null;
  const stopAll = () => {
    stopping ??= (async () => {
      for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
      for (const c of children) {
        if (!(await waitExit(c, 5000))) c.kill('SIGKILL');
        await waitExit(c, 5000);
      }
      await zk?.stop();
    })();
    return stopping;
  };
  const onSignal = () => {
    console.log('\nskv dev: stopping...');
    void stopAll().then(() => {
      console.log('skv dev: stopped');
      process.exit(0);
    });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    zk = await LocalZooKeeper.start({ dir: path.join(dir, 'zookeeper') });
    const ids = Array.from({ length: o.nodes }, (_, i) => `n${i}`);
    const ports = await portsFrom(o.basePort, o.nodes);
    const addresses = ports.map((p) => `127.0.0.1:${p}`);
    // Status pages and /metrics: from base port + 1000 (7001 -> 8001), free ones otherwise.
    const httpPorts = await portsFrom(o.basePort + 1000, o.nodes);
    const pages = httpPorts.map((p) => `http://127.0.0.1:${p}/`);
    try {
      await initCluster(zk.connectString, CLUSTER, ids, o.split);
    } catch (err) {
      if (!(err instanceof SkvError && err.code === 'already-exists')) throw err;
    }
    for (const [i, id] of ids.entries()) {
      const data = path.join(dir, id);
      await mkdir(data, { recursive: true });
      const logFile = openSync(path.join(dir, `${id}.log`), 'a');
      const child = spawn(
        process.execPath,
        [
          BIN,
          'server',
          '--id',
          id,
          '--listen',
          addresses[i]!,
          '--zk',
          zk.connectString,
          '--data',
          data,
          '--cluster',
          CLUSTER,
          '--metrics-listen',
          `127.0.0.1:${httpPorts[i]}`,
        ],
        {
          stdio: ['pipe', logFile, logFile],
          env: { ...process.env, SKV_EXIT_ON_STDIN_CLOSE: '1' },
        },
      );
      children.push(child);
      // A node that dies while the cluster runs is said at once, with where its log is.
      child.once('exit', (code, signal) => {
        if (stopping === null) {
          console.error(
            `skv dev: node ${id} exited (${signal ?? `code ${code}`}); its log: ${path.join(dir, `${id}.log`)}`,
          );
        }
      });
    }
    const client = connect({ servers: addresses, timeoutMs: 10_000 });
    try {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const dead = children.find((c) => c.exitCode !== null);
        if (dead !== undefined) {
          const i = children.indexOf(dead);
          const tail = (await readFile(path.join(dir, `${ids[i]}.log`), 'utf8'))
            .split('\n')
            .slice(-15)
            .join('\n');
          throw new SkvError('internal', `node ${ids[i]} exited (code ${dead.exitCode}):\n${tail}`);
        }
        try {
          // Ready: every range has a leader and every node serves (a majority can elect
          // leaders while one node is still starting, or has failed to).
          const map = await client.rangeMap({ timeoutMs: 2000 });
          if (
            map.ranges.length > 0 &&
            map.ranges.every((r) => r.leader !== '') &&
            (await Promise.all(addresses.map((a) => checkHealth(a, READY_SERVICE, 2000)))).every(
              Boolean,
            )
          ) {
            break;
          }
        } catch {
          // nodes still starting
        }
        if (Date.now() > deadline)
          throw new SkvError('unavailable', 'the cluster did not elect leaders within 60 s');
        await new Promise((r) => setTimeout(r, 200));
      }
      console.log(`skv dev: ZooKeeper ${zk.connectString}; data and logs in ${dir}`);
      for (const [i, id] of ids.entries()) {
        console.log(
          `  node ${id}  ${addresses[i]}  status page ${pages[i]}  (pid ${children[i]?.pid})`,
        );
      }
      console.log(`  metrics: ${pages.map((p) => `${p}metrics`).join(' ')}`);
      console.log(`  export SKV_SERVERS=${addresses.join(',')}`);
      const first = pages[0];
      if (first !== undefined) openInBrowser(first, o.open);
      if (o.demo) await demo(client);
    } finally {
      client.close();
    }
    if (o.exitAfterDemo) {
      await stopAll();
      return;
    }
    console.log('skv dev: running; press Ctrl-C to stop');
    await new Promise<void>(() => {});
  } catch (err) {
    await stopAll();
    throw err;
  }
}

async function demo(client: ReturnType<typeof connect>): Promise<void> {
  console.log('demo:');
  const v1 = await client.put('user:ada', 'name', 'Ada Lovelace');
  console.log(`  put user:ada name = "Ada Lovelace"            -> version ${v1}`);
  const got = await client.get('user:ada', 'name');
  console.log(
    `  get user:ada name (strong)                    -> "${got.value.toString()}" version ${got.version}`,
  );
  const v2 = await client.put('user:ada', 'name', 'Augusta Ada King', { ifVersion: v1 });
  console.log(`  conditional put if version ${v1}                -> version ${v2}`);
  try {
    await client.put('user:ada', 'name', 'stale', { ifVersion: v1 });
  } catch (err) {
    console.log(
      `  conditional put if version ${v1} again          -> rejected (${(err as SkvError).code})`,
    );
  }
  for (const k of ['alpha', 'mango', 'zebra'])
    await client.put(`fruit:${k}`, 'n', String(k.length));
  const rows: string[] = [];
  for await (const row of client.scan('fruit:', 'fruit;')) rows.push(row.key.toString());
  console.log(`  scan [fruit:, fruit;)                         -> ${rows.join(', ')}`);
  const t = await client.get('user:ada', 'name', { timeline: true });
  console.log(`  timeline get user:ada name                    -> "${t.value.toString()}"`);
}

function onPath(command: string): boolean {
  return (process.env.PATH ?? '')
    .split(path.delimiter)
    .some((dir) => dir !== '' && existsSync(path.join(dir, command)));
}

/**
 * Opens `url` in a browser, best effort: with `open` undefined only when a browser looks
 * available ($DISPLAY or $BROWSER set, and xdg-open on the PATH). $BROWSER wins over xdg-open.
 * Never throws and never waits: a missing browser is a printed hint, not a failure.
 */
function openInBrowser(url: string, open: boolean | undefined): void {
  if (open === false) return;
  const browser = process.env.BROWSER?.split(':')[0]?.trim() ?? '';
  const xdg = onPath('xdg-open');
  const available = (process.env.DISPLAY ?? '') !== '' || browser !== '';
  if (open === undefined && !(available && xdg)) return;
  const command = browser !== '' ? browser : xdg ? 'xdg-open' : null;
  if (command === null) {
    console.log(`skv dev: no browser found (xdg-open); open ${url} yourself`);
    return;
  }
  try {
    const child = spawn(command, [url], { stdio: 'ignore', detached: true });
    child.once('error', () => console.log(`skv dev: could not start ${command}; open ${url}`));
    child.unref();
    console.log(`skv dev: opening ${url} (${command})`);
  } catch {
    console.log(`skv dev: could not start ${command}; open ${url}`);
  }
}
