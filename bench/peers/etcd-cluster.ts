// A 3-member etcd cluster on 127.0.0.1 for the side-by-side benchmark: one `etcd` process per
// member (the Debian `etcd-server` binary, or SKV_ETCD_BIN), each with its own data directory
// under `dir`, its own client and peer port, started under a guard (guarded-process.ts).
//
// Durability: etcd fsyncs its WAL before acknowledging a write by default (`--unsafe-no-fsync`
// is never passed), so a put is durable on a quorum when it resolves: the contract the
// benchmark compares against skv's. Healthy means every member answers GET /health with
// {"health":"true"} (a leader is known and no alarm is raised), within a deadline.

import { execFileSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { SkvError } from '../../src/core/errors.js';
import { freePort } from '../../src/devtools/local-zookeeper.js';
import { which } from '../plot/png.js';
import { GuardedProcess } from './guarded-process.js';

export interface EtcdClusterOptions {
  /** Holds one data directory and one log file per member. Created if missing. */
  readonly dir: string;
  readonly members?: number;
  readonly startTimeoutMs?: number;
}

const HEALTH_POLL_MS = 100;

/** The etcd binary: SKV_ETCD_BIN, else `etcd` on PATH; null when there is none. */
export function findEtcdBinary(): string | null {
  const fromEnv = process.env.SKV_ETCD_BIN;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  return which('etcd');
}

/** "3.4.23" from `etcd --version`, or "unknown". */
export function etcdVersion(binary: string): string {
  try {
    const out = execFileSync(binary, ['--version'], { encoding: 'utf8', timeout: 5_000 });
    return /etcd Version:\s*(\S+)/.exec(out)?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

interface Member {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
}

export class EtcdCluster {
  private readonly processes: GuardedProcess[] = [];

  private constructor(
    readonly dir: string,
    private readonly members: readonly Member[],
    readonly binary: string,
    readonly version: string,
  ) {}

  static async start(options: EtcdClusterOptions): Promise<EtcdCluster> {
    const binary = findEtcdBinary();
    if (binary === null) {
      throw new SkvError(
        'unavailable',
        'etcd is not installed: run `apt-get install -y etcd-server` (Debian) or set SKV_ETCD_BIN',
      );
    }
    const n = options.members ?? 3;
    const dir = path.resolve(options.dir);
    const members: Member[] = [];
    for (let i = 1; i <= n; i++) {
      const name = `m${i}`;
      const dataDir = path.join(dir, name);
      await mkdir(dataDir, { recursive: true, mode: 0o700 });
      members.push({
        name,
        clientUrl: `http://127.0.0.1:${await freePort()}`,
        peerUrl: `http://127.0.0.1:${await freePort()}`,
        dataDir,
        logFile: path.join(dir, `${name}.log`),
      });
    }
    const cluster = new EtcdCluster(dir, members, binary, etcdVersion(binary));
    try {
      await cluster.launch(options.startTimeoutMs ?? 30_000);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  /** Client URLs, one per member. */
  get endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  pids(): number[] {
    return this.processes.map((p) => p.pid);
  }

  private async launch(timeoutMs: number): Promise<void> {
    const initialCluster = this.members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
    for (const m of this.members) {
      const args = [
        '--name',
        m.name,
        '--data-dir',
        m.dataDir,
        '--listen-client-urls',
        m.clientUrl,
        '--advertise-client-urls',
        m.clientUrl,
        '--listen-peer-urls',
        m.peerUrl,
        '--initial-advertise-peer-urls',
        m.peerUrl,
        '--initial-cluster',
        initialCluster,
        '--initial-cluster-token',
        `skv-bench-${process.pid}`,
        '--initial-cluster-state',
        'new',
        '--logger',
        'zap',
        '--log-outputs',
        'stderr',
        '--log-level',
        'warn',
      ];
      this.processes.push(await GuardedProcess.start(this.binary, args, { logFile: m.logFile }));
    }
    const deadline = Date.now() + timeoutMs;
    for (const [i, m] of this.members.entries()) {
      for (;;) {
        if (await healthy(m.clientUrl)) break;
        if (!this.processes[i]?.running) {
          throw new SkvError('unavailable', `etcd member ${m.name} exited; see ${m.logFile}`);
        }
        if (Date.now() > deadline) {
          throw new SkvError(
            'unavailable',
            `etcd member ${m.name} not healthy within ${timeoutMs} ms; see ${m.logFile}`,
          );
        }
        await new Promise((r) => setTimeout(r, HEALTH_POLL_MS));
      }
    }
  }

  /**
   * Stops every member by its PID (SIGTERM, then SIGKILL after a bounded wait), one at a time:
   * a leader stopped while its followers are stopping waits out a leadership transfer that
   * cannot happen (about 7 s here), while one at a time each stop takes a fraction of a second.
   */
  async stop(): Promise<void> {
    for (const p of this.processes.splice(0)) await p.stop();
  }
}

async function healthy(clientUrl: string): Promise<boolean> {
  try {
    const res = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1_000) });
    const body = (await res.json()) as { health?: unknown };
    return body.health === 'true';
  } catch {
    return false;
  }
}
