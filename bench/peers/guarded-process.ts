// A peer server process (an etcd member, a ZooKeeper JVM) started under a small shell guard, the
// same trick as src/devtools/local-zookeeper.ts: the guard's stdin is a pipe from this process,
// and when that pipe closes (this process exits or is killed without stopping the server) the
// guard SIGKILLs the server, so a crashed benchmark leaves nothing running.
//
// `pid` is the server's own PID (not the guard's), so CPU and RSS accounting and signals reach the
// real server. stop() sends SIGTERM to that one PID, waits (bounded) for it to exit, then
// SIGKILLs it; it never signals anything by name.

import { type ChildProcess, spawn } from 'node:child_process';
import { SkvError } from '../../src/core/errors.js';

const PID_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;

export class GuardedProcess {
  private exited: Promise<void>;

  private constructor(
    private readonly guard: ChildProcess,
    readonly pid: number,
    readonly logFile: string,
  ) {
    this.exited = new Promise((resolve) => {
      if (guard.exitCode !== null || guard.signalCode !== null) resolve();
      else guard.once('exit', () => resolve());
    });
  }

  /** Starts `command args...` with stdout and stderr appended to `logFile`. */
  static async start(
    command: string,
    args: readonly string[],
    options: { logFile: string; cwd?: string; env?: Readonly<Record<string, string>> },
  ): Promise<GuardedProcess> {
    // sh waits on the server (so a dead server is reaped at once), and a background reader kills
    // it when our end of the stdin pipe closes.
    const script =
      'exec 3<&0; "$@" >>"$SKV_PEER_LOG" 2>&1 </dev/null & pid=$!; echo $pid; ' +
      '(read _ <&3; kill -9 $pid 2>/dev/null) >/dev/null 2>&1 & wait $pid; exit 0';
    const guard = spawn('sh', ['-c', script, 'sh', command, ...args], {
      stdio: ['pipe', 'pipe', 'ignore'],
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      env: { ...process.env, ...options.env, SKV_PEER_LOG: options.logFile },
    });
    const pid = await new Promise<number>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new SkvError('deadline-exceeded', `${command} did not start in ${PID_TIMEOUT_MS} ms`),
        );
      }, PID_TIMEOUT_MS);
      const onData = (chunk: Buffer) => {
        out += chunk.toString('utf8');
        const nl = out.indexOf('\n');
        if (nl < 0) return;
        cleanup();
        resolve(Number(out.slice(0, nl).trim()));
      };
      const onExit = () => {
        cleanup();
        reject(new SkvError('unavailable', `the guard of ${command} exited before starting it`));
      };
      const cleanup = () => {
        clearTimeout(timer);
        guard.stdout?.off('data', onData);
        guard.off('exit', onExit);
      };
      guard.stdout?.on('data', onData);
      guard.once('exit', onExit);
    });
    guard.stdout?.resume();
    return new GuardedProcess(guard, pid, options.logFile);
  }

  get running(): boolean {
    return isAlive(this.pid);
  }

  /** SIGTERM by PID, SIGKILL after a bounded wait; resolves once the server is gone. */
  async stop(): Promise<void> {
    if (signal(this.pid, 'SIGTERM')) {
      const timer = setTimeout(() => signal(this.pid, 'SIGKILL'), STOP_TIMEOUT_MS);
      await this.exited;
      clearTimeout(timer);
    }
    this.guard.stdin?.end();
    await this.exited;
  }
}

/** Sends `sig` to `pid`; false when there is no such process (any more). */
function signal(pid: number, sig: NodeJS.Signals): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch {
    return false;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
