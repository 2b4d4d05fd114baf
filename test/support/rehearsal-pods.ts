// Rehearsal support, the process half: a "pod" is the manifest's container process started the
// way a kubelet would start it, and a "kubelet" runs the container's probes on its schedule.
//
// A pod runs in its own UTS namespace with the pod name as hostname (`unshare -u`, needs root),
// as the pod's runAsUser/runAsGroup (setpriv), with exactly the given env (no inherited
// variables), in a working directory it cannot write to (the image's root filesystem is
// read-only). The exec chain unshare → sh → setpriv → skv (→ env → node) keeps one PID, so the
// PID signalled is the node's own; `start` checks that through /proc before returning.
//
// Runtime additions to the env, and why: PATH (the image's, with a directory holding `skv` the
// way the image links /usr/local/bin/skv), HOSTNAME and HOME (the container runtime sets them),
// SKV_EXIT_ON_STDIN_CLOSE=1 (a harness safety net: the node exits if the test runner dies; it
// changes nothing while the runner lives).
//
// The kubelet simulation follows pkg/kubelet/prober: one worker per probe from container start,
// first run after initialDelaySeconds, then every periodSeconds; readiness and liveness do
// nothing until the startup probe has succeeded; a result flips after failureThreshold /
// successThreshold consecutive outcomes. A startup or liveness probe exhausting its threshold is
// recorded (the kubelet would kill the container) and fails the rehearsal.
//
// Bounds: every probe has its timeout, every wait a deadline; event lists are capped.

import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { checkHealth } from '../../src/rpc/health-client.js';
import type { Probe, ProcessSpec } from './rehearsal-manifest.js';

const PID_CHECK_TIMEOUT_MS = 5_000;

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs argv to its end as uid:gid with exactly `env` (nothing inherited), as a container's exec
 * would (a Job's command, an exec probe), bounded by `timeoutMs` (then SIGKILL by PID).
 */
export function runAs(
  argv: readonly string[],
  env: ReadonlyMap<string, string>,
  o: { uid: number; gid: number; cwd: string; timeoutMs: number },
): Promise<RunResult> {
  const e: Record<string, string> = {};
  for (const [k, v] of env) e[k] = v;
  return new Promise((resolve, reject) => {
    const p = spawn(
      '/usr/bin/setpriv',
      [`--reuid=${o.uid}`, `--regid=${o.gid}`, '--clear-groups', '--', ...argv],
      { cwd: o.cwd, env: e, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      if (p.pid !== undefined) process.kill(p.pid, 'SIGKILL');
      reject(new Error(`${argv.join(' ')}: no exit within ${o.timeoutMs} ms`));
    }, o.timeoutMs);
    p.once('error', reject);
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
const EVENTS_MAX = 1_000;

export interface PodOptions {
  readonly name: string;
  readonly spec: ProcessSpec;
  readonly uid: number;
  readonly gid: number;
  /** Working directory (not writable by uid). */
  readonly cwd: string;
  readonly logFile: string;
  /** The image's PATH with the `skv` link directory first. */
  readonly path: string;
  readonly home: string;
  /** A substring of the node's command line that proves the PID is the node (e.g. bin/skv.js). */
  readonly nodeMarker: string;
}

export interface PodExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly atMs: number;
}

export class Pod {
  readonly exited: Promise<PodExit>;
  exit: PodExit | null = null;

  private constructor(
    readonly name: string,
    readonly proc: ChildProcess,
    readonly pid: number,
    readonly startedAtMs: number,
    readonly logFile: string,
  ) {
    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        this.exit = { code, signal, atMs: performance.now() };
        resolve(this.exit);
      };
      if (proc.exitCode !== null || proc.signalCode !== null) done(proc.exitCode, proc.signalCode);
      else proc.once('exit', done);
    });
  }

  static async start(o: PodOptions): Promise<Pod> {
    const env: Record<string, string> = {};
    for (const [k, v] of o.spec.env) env[k] = v;
    env.PATH = o.path;
    env.HOSTNAME = o.name;
    env.HOME = o.home;
    env.SKV_EXIT_ON_STDIN_CLOSE = '1';
    const log = openSync(o.logFile, 'a');
    const startedAtMs = performance.now();
    const proc = spawn(
      '/usr/bin/unshare',
      [
        '-u',
        '--',
        '/bin/sh',
        '-c',
        'hostname "$0" || exit 125; exec "$@"',
        o.name,
        'setpriv',
        `--reuid=${o.uid}`,
        `--regid=${o.gid}`,
        '--clear-groups',
        '--',
        ...o.spec.argv,
      ],
      { cwd: o.cwd, env, stdio: ['pipe', log, log] },
    );
    closeSync(log);
    const pid = proc.pid;
    if (pid === undefined) throw new Error(`pod ${o.name}: spawn failed`);
    const pod = new Pod(o.name, proc, pid, startedAtMs, o.logFile);
    try {
      await pod.waitUntilNode(o.nodeMarker, o.uid);
    } catch (err) {
      await pod.kill();
      throw err;
    }
    return pod;
  }

  /** Waits until PID `pid` is node running the skv CLI as `uid` (the exec chain is done). */
  private async waitUntilNode(marker: string, uid: number): Promise<void> {
    const deadline = performance.now() + PID_CHECK_TIMEOUT_MS;
    let last = '';
    while (performance.now() < deadline) {
      if (this.exit !== null) break;
      const cmdline = await readFile(`/proc/${this.pid}/cmdline`, 'utf8').catch(() => '');
      const status = await readFile(`/proc/${this.pid}/status`, 'utf8').catch(() => '');
      const argv = cmdline.split('\0');
      const uidLine = /^Uid:\s+(\d+)/m.exec(status)?.[1];
      last = argv.join(' ');
      if (/(^|\/)node$/.test(argv[0] ?? '') && cmdline.includes(marker) && uidLine === String(uid))
        return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(
      `pod ${this.name}: PID ${this.pid} did not become the node (last cmdline: ${last}; exit ${JSON.stringify(this.exit)})\n${await this.logTail()}`,
    );
  }

  get running(): boolean {
    return this.exit === null;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.exit === null) process.kill(this.pid, sig);
  }

  async kill(): Promise<void> {
    if (this.exit !== null) return;
    this.signal('SIGKILL');
    await this.exited;
  }

  async logTail(lines = 15): Promise<string> {
    const text = await readFile(this.logFile, 'utf8').catch(() => '');
    return `--- ${this.name} (${this.logFile})\n${text.trim().split('\n').slice(-lines).join('\n')}`;
  }
}

// ---------------------------------------------------------------------------------------------
// The kubelet's probes.

export interface ProbeTarget {
  /** 127.0.0.1:<port> the probe's port maps to on this machine. */
  readonly address: string;
  readonly probe: Probe;
}

export type KubeletEvent =
  | { readonly type: 'started'; readonly atMs: number }
  | { readonly type: 'ready'; readonly atMs: number }
  | { readonly type: 'not-ready'; readonly atMs: number }
  | { readonly type: 'startup-failed'; readonly atMs: number }
  | { readonly type: 'liveness-failed'; readonly atMs: number };

type ProbeKind = 'startup' | 'readiness' | 'liveness';

export class Kubelet {
  started = false;
  ready = false;
  readonly events: KubeletEvent[] = [];
  /** Probe calls made, by kind (for the report). */
  readonly calls = { startup: 0, readiness: 0, liveness: 0 };
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly waiters = new Set<() => void>();
  private stopped = false;

  constructor(
    readonly pod: Pod,
    private readonly probes: Readonly<Record<ProbeKind, ProbeTarget>>,
  ) {
    for (const kind of ['startup', 'readiness', 'liveness'] as const) this.worker(kind);
    void pod.exited.then(() => this.wake());
  }

  private worker(kind: ProbeKind): void {
    const p = this.probes[kind].probe;
    const periodMs = (p.periodSeconds ?? 10) * 1000;
    const failureThreshold = p.failureThreshold ?? 3;
    const successThreshold = p.successThreshold ?? 1;
    let failures = 0;
    let successes = 0;
    let busy = false;
    const run = async () => {
      if (this.stopped || busy || !this.pod.running) return;
      if (kind !== 'startup' && !this.started) return;
      if (kind === 'startup' && this.started) return;
      busy = true;
      this.calls[kind]++;
      const ok = await this.check(kind);
      busy = false;
      if (this.stopped) return;
      if (ok) {
        failures = 0;
        successes++;
      } else {
        successes = 0;
        failures++;
      }
      switch (kind) {
        case 'startup':
          if (ok) {
            this.started = true;
            this.record({ type: 'started', atMs: performance.now() });
          } else if (failures >= failureThreshold) {
            this.record({ type: 'startup-failed', atMs: performance.now() });
          }
          break;
        case 'readiness':
          if (!this.ready && successes >= successThreshold) {
            this.ready = true;
            this.record({ type: 'ready', atMs: performance.now() });
          } else if (this.ready && failures >= failureThreshold) {
            this.ready = false;
            this.record({ type: 'not-ready', atMs: performance.now() });
          }
          break;
        case 'liveness':
          if (failures >= failureThreshold) {
            failures = 0;
            this.record({ type: 'liveness-failed', atMs: performance.now() });
          }
          break;
        default: {
          const never: never = kind;
          throw new Error(`unknown probe ${String(never)}`);
        }
      }
    };
    const first = setTimeout(
      () => {
        void run();
        this.timers.push(setInterval(() => void run(), periodMs));
      },
      (p.initialDelaySeconds ?? 0) * 1000,
    );
    this.timers.push(first);
  }

  private check(kind: ProbeKind): Promise<boolean> {
    const { address, probe } = this.probes[kind];
    if (probe.grpc === undefined) throw new Error(`${kind} probe is not a gRPC probe`);
    return checkHealth(address, probe.grpc.service ?? '', (probe.timeoutSeconds ?? 1) * 1000);
  }

  private record(e: KubeletEvent): void {
    if (this.events.length < EVENTS_MAX) this.events.push(e);
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Failures the kubelet would have acted on (container killed). */
  failures(): KubeletEvent[] {
    return this.events.filter((e) => e.type === 'startup-failed' || e.type === 'liveness-failed');
  }

  /** Resolves at the pod's first Ready; rejects at the deadline or if the process exits. */
  waitReady(timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const ready = this.events.find((e) => e.type === 'ready');
        if (ready !== undefined) {
          done();
          resolve(ready.atMs);
        } else if (!this.pod.running) {
          done();
          reject(
            new Error(`pod ${this.pod.name} exited before Ready: ${JSON.stringify(this.pod.exit)}`),
          );
        } else if (this.failures().length > 0) {
          done();
          reject(new Error(`pod ${this.pod.name}: ${JSON.stringify(this.failures())}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`pod ${this.pod.name} not Ready within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** The pod is being deleted: the kubelet stops probing it. */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.length = 0;
  }
}
