// A 3-server ZooKeeper ensemble on 127.0.0.1 for the side-by-side benchmark: one JVM
// (QuorumPeerMain from the Debian `zookeeper` package, or SKV_ZOOKEEPER_CLASSPATH) per server,
// each with its own zoo.cfg, myid and data directory under `dir`, its own client, quorum and
// election port, started under a guard (guarded-process.ts).
//
// Durability: `forceSync=yes` (ZooKeeper's default, written out explicitly) fsyncs the
// transaction log before a server acknowledges a proposal, so a write is durable on a quorum
// when it resolves. Healthy means every server answers the `srvr` four-letter word with a
// `Mode:` of leader or follower (it has joined a quorum), and exactly one is the leader.

import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SkvError } from '../../src/core/errors.js';
import {
  findZooKeeperClasspath,
  fourLetterWord,
  freePort,
} from '../../src/devtools/local-zookeeper.js';
import { GuardedProcess } from './guarded-process.js';

export interface ZooKeeperEnsembleOptions {
  readonly dir: string;
  readonly servers?: number;
  readonly startTimeoutMs?: number;
}

/** Heap per JVM: ZooKeeper keeps the whole tree in memory; 10^5 small znodes need far less. */
const JVM_ARGS = ['-Xms256m', '-Xmx512m'];
const HEALTH_POLL_MS = 200;

interface Server {
  readonly id: number;
  readonly clientPort: number;
  readonly quorumPort: number;
  readonly electionPort: number;
  readonly dir: string;
  readonly logFile: string;
}

export type ServerMode = 'leader' | 'follower' | 'other';

/** The server's mode from its `srvr` reply, null when it does not answer. */
export async function serverMode(host: string, port: number): Promise<ServerMode | null> {
  const reply = await fourLetterWord(host, port, 'srvr', 1_000);
  const mode = /^Mode:\s*(\S+)/m.exec(reply)?.[1];
  if (mode === undefined) return null;
  return mode === 'leader' || mode === 'follower' ? mode : 'other';
}

/** "3.8.0-..." from a server's `srvr` reply, or "unknown". */
export async function zooKeeperVersion(host: string, port: number): Promise<string> {
  const reply = await fourLetterWord(host, port, 'srvr', 1_000);
  const version = /Zookeeper version:\s*([^,\s]+)/.exec(reply)?.[1];
  if (version === undefined) return 'unknown';
  // Debian's build leaves an unexpanded "-${mvngit.commit.id}" suffix: keep the release only.
  return version.includes('${') ? version.replace(/-?\$\{.*$/, '') : version;
}

export class ZooKeeperEnsemble {
  private readonly processes: GuardedProcess[] = [];
  private versionText = 'unknown';

  private constructor(
    readonly dir: string,
    private readonly servers: readonly Server[],
    private readonly classpath: string,
  ) {}

  static async start(options: ZooKeeperEnsembleOptions): Promise<ZooKeeperEnsemble> {
    const classpath = findZooKeeperClasspath();
    if (classpath === null) {
      throw new SkvError(
        'unavailable',
        'ZooKeeper is not installed: run `apt-get install -y zookeeper` (Debian) or set SKV_ZOOKEEPER_CLASSPATH',
      );
    }
    const n = options.servers ?? 3;
    const dir = path.resolve(options.dir);
    const servers: Server[] = [];
    for (let id = 1; id <= n; id++) {
      servers.push({
        id,
        clientPort: await freePort(),
        quorumPort: await freePort(),
        electionPort: await freePort(),
        dir: path.join(dir, `zk${id}`),
        logFile: path.join(dir, `zk${id}.log`),
      });
    }
    const ensemble = new ZooKeeperEnsemble(dir, servers, classpath);
    try {
      await ensemble.launch(options.startTimeoutMs ?? 60_000);
    } catch (err) {
      await ensemble.stop();
      throw err;
    }
    return ensemble;
  }

  /** One `host:port` connect string per server. */
  get connectStrings(): string[] {
    return this.servers.map((s) => `127.0.0.1:${s.clientPort}`);
  }

  get version(): string {
    return this.versionText;
  }

  pids(): number[] {
    return this.processes.map((p) => p.pid);
  }

  private async launch(timeoutMs: number): Promise<void> {
    const quorum = this.servers.map(
      (s) => `server.${s.id}=127.0.0.1:${s.quorumPort}:${s.electionPort}`,
    );
    for (const s of this.servers) {
      const data = path.join(s.dir, 'data');
      await mkdir(data, { recursive: true });
      await writeFile(path.join(data, 'myid'), `${s.id}\n`);
      const cfg = path.join(s.dir, 'zoo.cfg');
      await writeFile(
        cfg,
        [
          'tickTime=2000',
          'initLimit=10',
          'syncLimit=5',
          `dataDir=${data}`,
          `clientPort=${s.clientPort}`,
          'clientPortAddress=127.0.0.1',
          'forceSync=yes',
          'maxClientCnxns=0',
          'admin.enableServer=false',
          '4lw.commands.whitelist=*',
          ...quorum,
          '',
        ].join('\n'),
      );
      const args = [
        ...JVM_ARGS,
        '-Dzookeeper.admin.enableServer=false',
        '-Dzookeeper.jmx.log4j.disable=true',
        '-cp',
        this.classpath,
        'org.apache.zookeeper.server.quorum.QuorumPeerMain',
        cfg,
      ];
      this.processes.push(await GuardedProcess.start('java', args, { logFile: s.logFile }));
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const modes = await Promise.all(
        this.servers.map((s) => serverMode('127.0.0.1', s.clientPort)),
      );
      const leaders = modes.filter((m) => m === 'leader').length;
      if (leaders === 1 && modes.every((m) => m === 'leader' || m === 'follower')) break;
      const dead = this.processes.findIndex((p) => !p.running);
      if (dead >= 0) {
        throw new SkvError(
          'unavailable',
          `ZooKeeper server ${dead + 1} exited; see ${this.servers[dead]?.logFile}`,
        );
      }
      if (Date.now() > deadline) {
        throw new SkvError(
          'unavailable',
          `the ZooKeeper ensemble did not form within ${timeoutMs} ms (modes ${modes.join(',')}); see ${this.dir}`,
        );
      }
      await new Promise((r) => setTimeout(r, HEALTH_POLL_MS));
    }
    const first = this.servers[0];
    if (first !== undefined)
      this.versionText = await zooKeeperVersion('127.0.0.1', first.clientPort);
  }

  /** Stops every server by its PID (SIGTERM, then SIGKILL after a bounded wait). */
  async stop(): Promise<void> {
    const all = this.processes.splice(0);
    await Promise.all(all.map((p) => p.stop()));
  }
}
