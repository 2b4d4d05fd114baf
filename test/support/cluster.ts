// Test harness: a real skv cluster on 127.0.0.1 — a real standalone ZooKeeper (test/support/
// zookeeper.ts) and N real `skv server` processes (the built bin/skv.js, spawned with
// process.execPath so signals reach the node itself), each with its own data directory and log
// file, the range map written by `skv cluster init`'s code. Nodes can be killed (SIGKILL),
// paused (SIGSTOP/SIGCONT), stopped gracefully, restarted, and restarted with an emptied data
// directory. Every process started here is stopped by its PID in `stop()`; each node also exits
// when its stdin pipe closes, so a crashed test runner leaves nothing behind.

import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initCluster } from '../../src/cli/cluster-init.js';
import { type ConnectOptions, connect, type SkvClient } from '../../src/client/index.js';
import { freePort } from '../../src/devtools/local-zookeeper.js';
import type { RangeMapResponse } from '../../src/rpc/generated/skv/v1/kv.js';
import { startTestZooKeeper, type TestZooKeeper } from './zookeeper.js';

/**
 * The `skv` the tests run: SKV_TEST_BIN points them at another built one (e.g. an isolated build
 * of HEAD while other work is in progress in this checkout, or a deliberately broken one); by
 * default the checkout's own bin/skv.js.
 */
export const SKV_BIN =
  process.env.SKV_TEST_BIN !== undefined && process.env.SKV_TEST_BIN !== ''
    ? process.env.SKV_TEST_BIN
    : fileURLToPath(new URL('../../bin/skv.js', import.meta.url));
const BIN = SKV_BIN;

export interface ClusterOptions {
  readonly nodes?: number;
  readonly ranges?: number;
  readonly splitKeys?: readonly string[];
  readonly sessionTimeoutMs?: number;
  readonly tickMs?: number;
  readonly memtableBytes?: number;
  /** Serve Prometheus /metrics on a free port per node (TestNode.metricsAddress). */
  readonly metrics?: boolean;
  /** Extra `skv server` flags for every node. */
  readonly serverArgs?: readonly string[];
  /** Extra `skv server` flags per node (e.g. its own TLS certificate). */
  readonly nodeServerArgs?: (nodeId: string) => readonly string[];
  /** TLS and token for the harness's own clients (client(), rangeMap(), waitForLeaders()). */
  readonly clientSecurity?: Pick<ConnectOptions, 'tls' | 'token'>;
  /** Node i listens on hosts[i] (default 127.0.0.1 for all), e.g. inside a private netns. */
  readonly hosts?: readonly string[];
  /** One port for every node (needs distinct `hosts`); default: a free port each. */
  readonly port?: number;
  /** ZooKeeper's listen address (default 127.0.0.1) and port (default: a free one). */
  readonly zkHost?: string;
  readonly zkPort?: number;
  /** Node i runs as this uid/gid (its data dir is chowned): lets iptables tell nodes apart. */
  readonly uids?: readonly number[];
  /** Extra environment for every node process. */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * The ZooKeeper connect string node `nodeId` is given (default: ZooKeeper's own), e.g. a proxy
   * in front of it (test/support/zk-withholding-proxy.ts); called once per node at start.
   */
  readonly zkConnect?: (nodeId: string, zkConnectString: string) => Promise<string>;
  /** Extra environment per node (over `env`), e.g. a failpoint gate file of its own. */
  readonly nodeEnv?: (nodeId: string) => Readonly<Record<string, string>>;
}

export interface TestNode {
  readonly id: string;
  readonly address: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** host:port of /metrics when the cluster was started with `metrics: true`. */
  readonly metricsAddress: string | null;
  process: ChildProcess | null;
  /** The uid the node runs as (undefined: ours). */
  readonly uid?: number;
  /** The ZooKeeper connect string the node uses (ClusterOptions.zkConnect). */
  readonly zkConnect: string;
}

/** One line of a node's JSON log (pino). */
export interface LogLine {
  readonly time: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export class TestCluster {
  readonly nodes: TestNode[] = [];
  private readonly clients: SkvClient[] = [];

  private constructor(
    readonly dir: string,
    readonly zk: TestZooKeeper,
    readonly cluster: string,
    private readonly options: ClusterOptions,
  ) {}

  static async start(options: ClusterOptions = {}): Promise<TestCluster> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'skv-cluster-'));
    const zk = await startTestZooKeeper({
      ...(options.zkHost === undefined ? {} : { host: options.zkHost }),
      ...(options.zkPort === undefined ? {} : { port: options.zkPort }),
    });
    const c = new TestCluster(dir, zk, 'test', options);
    try {
      if (options.uids !== undefined) await chmod(dir, 0o755);
      const n = options.nodes ?? 3;
      for (let i = 0; i < n; i++) {
        const id = `n${i}`;
        const host = options.hosts?.[i] ?? '127.0.0.1';
        const port = options.port ?? (await freePort(host));
        const dataDir = path.join(dir, id);
        await mkdir(dataDir, { recursive: true });
        const uid = options.uids?.[i];
        if (uid !== undefined) await chown(dataDir, uid, uid);
        c.nodes.push({
          id,
          address: `${host}:${port}`,
          dataDir,
          logFile: path.join(dir, `${id}.log`),
          metricsAddress: options.metrics === true ? `127.0.0.1:${await freePort()}` : null,
          process: null,
          ...(uid === undefined ? {} : { uid }),
          zkConnect:
            options.zkConnect === undefined
              ? zk.connectString
              : await options.zkConnect(id, zk.connectString),
        });
      }
      const ids = c.nodes.map((x) => x.id);
      await initCluster(
        zk.connectString,
        c.cluster,
        ids,
        options.splitKeys !== undefined
          ? { splitKeys: options.splitKeys.map((k) => Buffer.from(k)) }
          : { ranges: options.ranges ?? n },
      );
      for (const node of c.nodes) c.spawn(node);
      await c.waitForLeaders();
      // Leaders need only a majority: a node still loading, or still waiting for its ZooKeeper
      // session on a loaded machine, would be missing from the cluster the test then sees.
      await c.waitForNodesStarted();
      return c;
    } catch (err) {
      // ZooKeeper's own log says why a session or a request was slow (e.g. its fsync warnings);
      // the nodes' say why one exited (read before stop removes the directory).
      const zkLog = await readFile(path.join(zk.zk.dir, 'zookeeper.log'), 'utf8').catch(() => '');
      const nodeLogs = await c.logTails();
      await c.stop();
      if (err instanceof Error) {
        if (!err.message.includes(nodeLogs)) err.message += `\n${nodeLogs}`;
        err.message += `\n--- ZooKeeper log (last 20 lines)\n${zkLog.trim().split('\n').slice(-20).join('\n')}`;
      }
      throw err;
    }
  }

  get addresses(): string[] {
    return this.nodes.map((n) => n.address);
  }

  node(id: string): TestNode {
    const n = this.nodes.find((x) => x.id === id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  client(options: { timeoutMs?: number; servers?: string[] } = {}): SkvClient {
    const c = connect({
      ...this.options.clientSecurity,
      servers: options.servers ?? this.addresses,
      timeoutMs: options.timeoutMs ?? 10_000,
    });
    this.clients.push(c);
    return c;
  }

  /** Starts the node's process; `env` adds to the cluster's environment for this life only. */
  spawn(node: TestNode, env: Readonly<Record<string, string>> = {}): void {
    const log = openSync(node.logFile, 'a');
    const o = this.options;
    const args = [
      BIN,
      'server',
      '--id',
      node.id,
      '--listen',
      node.address,
      '--zk',
      node.zkConnect,
      '--data',
      node.dataDir,
      '--cluster',
      this.cluster,
      '--session-timeout-ms',
      String(o.sessionTimeoutMs ?? 2000),
      '--tick-ms',
      String(o.tickMs ?? 50),
      '--shutdown-grace-ms',
      '300',
      ...(o.memtableBytes === undefined ? [] : ['--memtable-bytes', String(o.memtableBytes)]),
      ...(node.metricsAddress === null ? [] : ['--metrics-listen', node.metricsAddress]),
      ...(o.serverArgs ?? []),
      ...(o.nodeServerArgs?.(node.id) ?? []),
    ];
    const nodeArgs = (process.env.SKV_TEST_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
    node.process = spawn(process.execPath, [...nodeArgs, ...args], {
      stdio: ['pipe', log, log],
      env: {
        ...process.env,
        SKV_EXIT_ON_STDIN_CLOSE: '1',
        SKV_LOG_LEVEL: 'info',
        ...o.env,
        ...o.nodeEnv?.(node.id),
        ...env,
      },
      ...(node.uid === undefined ? {} : { uid: node.uid, gid: node.uid }),
    });
    closeSync(log);
  }

  /** SIGKILL: a crash (the OS keeps what was written; unsynced data is not lost by a kill). */
  async kill(id: string): Promise<void> {
    const node = this.node(id);
    const p = node.process;
    node.process = null;
    if (p === null || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill('SIGCONT');
    p.kill('SIGKILL');
    await exited;
  }

  /** SIGTERM: a graceful stop that hands leadership over. */
  async terminate(id: string): Promise<void> {
    const node = this.node(id);
    const p = node.process;
    node.process = null;
    if (p === null || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }

  pause(id: string): void {
    this.node(id).process?.kill('SIGSTOP');
  }

  resume(id: string): void {
    this.node(id).process?.kill('SIGCONT');
  }

  async restart(
    id: string,
    options: { wipe?: boolean; env?: Readonly<Record<string, string>> } = {},
  ): Promise<void> {
    const node = this.node(id);
    await this.kill(id);
    if (options.wipe === true) {
      await rm(node.dataDir, { recursive: true, force: true });
      await mkdir(node.dataDir, { recursive: true });
      if (node.uid !== undefined) await chown(node.dataDir, node.uid, node.uid);
    }
    this.spawn(node, options.env);
  }

  pid(id: string): number {
    const pid = this.node(id).process?.pid;
    if (pid === undefined) throw new Error(`node ${id} is not running`);
    return pid;
  }

  async rangeMap(timeoutMs = 2000): Promise<RangeMapResponse> {
    const probe = connect({
      ...this.options.clientSecurity,
      servers: this.liveAddresses(),
      timeoutMs,
    });
    try {
      return await probe.rangeMap({ timeoutMs });
    } finally {
      probe.close();
    }
  }

  private liveAddresses(): string[] {
    const live = this.nodes.filter((n) => n.process !== null).map((n) => n.address);
    return live.length > 0 ? live : this.addresses;
  }

  /** The leader node id of every range, once every range has one (as the nodes report it). */
  async waitForLeaders(
    timeoutMs = 30_000,
    accept: (map: RangeMapResponse) => boolean = () => true,
  ): Promise<Map<number, string>> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer';
    while (Date.now() < deadline) {
      this.checkAlive();
      try {
        const map = await this.rangeMap();
        const liveIds = new Set(this.nodes.filter((n) => n.process !== null).map((n) => n.id));
        if (
          map.ranges.length > 0 &&
          map.ranges.every((r) => r.leader !== '' && liveIds.has(r.leader)) &&
          accept(map)
        ) {
          return new Map(map.ranges.map((r) => [r.rangeId, r.leader]));
        }
        last = JSON.stringify(map.ranges.map((r) => [r.rangeId, r.leader, Number(r.epoch)]));
      } catch (err) {
        last = String(err);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(
      `no leader for every range within ${timeoutMs} ms: ${last}\n${await this.logTails()}`,
    );
  }

  /** Waits until every running node has finished starting (logged 'node started'). */
  async waitForNodesStarted(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.checkAlive();
      const pending: string[] = [];
      for (const n of this.nodes) {
        if (n.process === null) continue;
        const lines = await this.logLines(n.id);
        if (!lines.some((l) => l.msg === 'node started')) pending.push(n.id);
      }
      if (pending.length === 0) return;
      if (Date.now() >= deadline) {
        throw new Error(
          `node(s) ${pending.join(', ')} not started within ${timeoutMs} ms\n${await this.logTails()}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Fails fast when a node the test did not stop has exited. */
  checkAlive(): void {
    for (const n of this.nodes) {
      const p = n.process;
      if (
        p !== null &&
        (p.exitCode !== null || (p.signalCode !== null && p.signalCode !== 'SIGSTOP'))
      ) {
        throw new Error(
          `node ${n.id} exited unexpectedly (code ${p.exitCode}, signal ${p.signalCode})`,
        );
      }
    }
  }

  /** The node's JSON log lines so far (a line still being written is skipped). */
  async logLines(id: string): Promise<LogLine[]> {
    const text = await readFile(this.node(id).logFile, 'utf8').catch(() => '');
    const out: LogLine[] = [];
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as LogLine);
      } catch {
        // a line being written
      }
    }
    return out;
  }

  async logTails(lines = 12): Promise<string> {
    const parts: string[] = [];
    for (const n of this.nodes) {
      const text = await readFile(n.logFile, 'utf8').catch(() => '');
      parts.push(`--- ${n.id}\n${text.trim().split('\n').slice(-lines).join('\n')}`);
    }
    return parts.join('\n');
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.close();
    await Promise.all(this.nodes.map((n) => this.kill(n.id)));
    await this.zk.stop();
    if (process.env.SKV_KEEP_TEST_DIRS !== '1')
      await rm(this.dir, { recursive: true, force: true });
  }
}
