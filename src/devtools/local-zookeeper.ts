// A standalone ZooKeeper on 127.0.0.1 for `skv dev` and the tests: started from the installed
// Debian package (or SKV_ZOOKEEPER_CLASSPATH), in its own data directory, on a free port.
//
// The JVM runs under a small shell guard whose stdin is a pipe from this process: if this
// process dies without stopping it (a killed test runner, a crashed `skv dev`), the pipe closes
// and the guard kills the JVM, so nothing is left running. `pid` is the JVM's own PID, so tests
// can SIGKILL, SIGSTOP and SIGCONT the real server.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { SkvError } from '../core/errors.js';

export interface LocalZooKeeperOptions {
  /** Holds zoo.cfg, the snapshots and zookeeper.log. Created if missing. */
  readonly dir: string;
  readonly host?: string;
  /** 0 or unset: pick a free port. */
  readonly port?: number;
  /** ZooKeeper's tick; sessions may last 2..20 ticks. 250 ms allows 0.5..5 s sessions. */
  readonly tickTimeMs?: number;
  readonly startTimeoutMs?: number;
}

const DEBIAN_CLASSPATH = ['/etc/zookeeper/conf', '/usr/share/java/zookeeper.jar'];
/**
 * Debian's ZooKeeper finds no SLF4J binding and logs nothing; with these (when installed) it logs
 * to zookeeper.log through log4j, so a slow session or fsync leaves a trace.
 */
const DEBIAN_LOGGING_JARS = ['/usr/share/java/slf4j-log4j12.jar', '/usr/share/java/log4j-1.2.jar'];

/** The classpath of an installed ZooKeeper, or null when none is installed. */
export function findZooKeeperClasspath(): string | null {
  const fromEnv = process.env.SKV_ZOOKEEPER_CLASSPATH;
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  if (!DEBIAN_CLASSPATH.every((p) => existsSync(p))) return null;
  const logging = DEBIAN_LOGGING_JARS.every((p) => existsSync(p)) ? DEBIAN_LOGGING_JARS : [];
  return [...DEBIAN_CLASSPATH, ...logging].join(':');
}

/**
 * The kernel's ephemeral port range (the local ports of outgoing connections), from
 * /proc/sys/net/ipv4/ip_local_port_range; Linux's default when it cannot be read.
 */
export function readEphemeralPortRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (lo !== undefined && hi !== undefined && lo > 0 && hi >= lo) return [lo, hi];
  } catch {
    // not Linux: the default below
  }
  return [32768, 60999];
}

/** Read once, at the first freePort. */
let ephemeralPortRange: [number, number] | null = null;
/** Ports this process has handed out already (a port is handed out once). */
const handedOut = new Set<number>();
const FREE_PORT_TRIES = 50;

/**
 * A port free on `host` now, for a server started soon after. Chosen at random outside the
 * ephemeral range: a port from `listen(0)` lies inside it, where any outgoing connection (a
 * ZooKeeper client, a peer stream, another test's) may take it before the server binds it: CI
 * saw a node fail to start with EADDRINUSE that way. Falls back to `listen(0)`.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  ephemeralPortRange ??= readEphemeralPortRange();
  const [lo, hi] = ephemeralPortRange;
  // The larger stretch outside [lo, hi] among 10000..65535.
  const below: [number, number] = [10_000, lo - 1];
  const above: [number, number] = [hi + 1, 65_535];
  const [from, to] = below[1] - below[0] >= above[1] - above[0] ? below : above;
  if (to - from >= 1000) {
    for (let i = 0; i < FREE_PORT_TRIES; i++) {
      const port = from + Math.floor(Math.random() * (to - from + 1));
      if (handedOut.has(port)) continue;
      const free = await listenOnce(host, port).then(
        () => true,
        () => false,
      );
      if (free) {
        handedOut.add(port);
        return port;
      }
    }
  }
  const port = await listenOnce(host, 0);
  handedOut.add(port);
  return port;
}

/** Listens on host:port, closes, and resolves with the port it had. */
async function listenOnce(host: string, port: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(port, host, () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

/** Sends a ZooKeeper four-letter word and returns the reply ('' on any failure). */
export async function fourLetterWord(
  host: string,
  port: number,
  word: string,
  timeoutMs = 1000,
): Promise<string> {
  return await new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let reply = '';
    const done = (text: string) => {
      socket.destroy();
      resolve(text);
    };
    socket.setTimeout(timeoutMs, () => done(''));
    socket.on('connect', () => socket.write(word));
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8');
    });
    socket.on('end', () => done(reply));
    socket.on('error', () => done(''));
  });
}

export class LocalZooKeeper {
  private guard: ChildProcess | null = null;
  private jvmPid = 0;

  private constructor(
    readonly dir: string,
    readonly host: string,
    readonly port: number,
    private readonly classpath: string,
    private readonly startTimeoutMs: number,
  ) {}

  static async start(options: LocalZooKeeperOptions): Promise<LocalZooKeeper> {
    const classpath = findZooKeeperClasspath();
    if (classpath === null) {
      throw new SkvError(
        'unavailable',
        'ZooKeeper is not installed: run `apt-get install -y zookeeper` (Debian/Ubuntu) or set ' +
          'SKV_ZOOKEEPER_CLASSPATH to the classpath of a ZooKeeper 3.8 installation',
      );
    }
    const host = options.host ?? '127.0.0.1';
    const port =
      options.port !== undefined && options.port !== 0 ? options.port : await freePort(host);
    const dir = path.resolve(options.dir);
    await mkdir(path.join(dir, 'data'), { recursive: true });
    const tickTimeMs = options.tickTimeMs ?? 250;
    await writeFile(
      path.join(dir, 'zoo.cfg'),
      [
        `tickTime=${tickTimeMs}`,
        `dataDir=${path.join(dir, 'data')}`,
        `clientPort=${port}`,
        `clientPortAddress=${host}`,
        'admin.enableServer=false',
        'maxClientCnxns=0',
        '4lw.commands.whitelist=*',
        // Sessions from 2 to 40 ticks.
        `maxSessionTimeout=${tickTimeMs * 40}`,
        '',
      ].join('\n'),
    );
    // Used when a log4j binding is on the classpath (see DEBIAN_LOGGING_JARS); to stdout, which
    // goes to zookeeper.log.
    await writeFile(
      path.join(dir, 'log4j.properties'),
      [
        'log4j.rootLogger=INFO, CONSOLE',
        'log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender',
        'log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout',
        'log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t] %c{1}: %m%n',
        '',
      ].join('\n'),
    );
    const zk = new LocalZooKeeper(dir, host, port, classpath, options.startTimeoutMs ?? 30_000);
    await zk.launch();
    return zk;
  }

  get connectString(): string {
    return `${this.host}:${this.port}`;
  }

  /** The JVM's PID (0 when not running). */
  get pid(): number {
    return this.jvmPid;
  }

  get running(): boolean {
    return this.jvmPid !== 0 && isAlive(this.jvmPid);
  }

  private async launch(): Promise<void> {
    const javaArgs = [
      '-Xmx256m',
      '-XX:+UseSerialGC',
      '-Dzookeeper.admin.enableServer=false',
      '-Dzookeeper.jmx.log4j.disable=true',
      `-Dlog4j.configuration=file:${path.join(this.dir, 'log4j.properties')}`,
      '-cp',
      this.classpath,
      'org.apache.zookeeper.server.ZooKeeperServerMain',
      path.join(this.dir, 'zoo.cfg'),
    ];
    // sh waits on the JVM (so a killed JVM is reaped at once and never lingers as a zombie);
    // a background reader kills the JVM when our end of the stdin pipe closes.
    const script =
      'exec 3<&0; java "$@" >>"$SKV_ZK_LOG" 2>&1 </dev/null & pid=$!; echo $pid; ' +
      '(read _ <&3; kill -9 $pid 2>/dev/null) >/dev/null 2>&1 & wait $pid; exit 0';
    const guard = spawn('sh', ['-c', script, 'sh', ...javaArgs], {
      stdio: ['pipe', 'pipe', 'ignore'],
      env: { ...process.env, SKV_ZK_LOG: path.join(this.dir, 'zookeeper.log') },
    });
    this.guard = guard;
    this.jvmPid = await new Promise<number>((resolve, reject) => {
      let out = '';
      guard.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString('utf8');
        const line = out.split('\n')[0];
        if (out.includes('\n') && line !== undefined) resolve(Number(line.trim()));
      });
      guard.on('error', reject);
      guard.on('exit', () => reject(new Error('ZooKeeper guard exited before starting the JVM')));
    });
    const deadline = Date.now() + this.startTimeoutMs;
    while (Date.now() < deadline) {
      if ((await fourLetterWord(this.host, this.port, 'ruok', 500)) === 'imok') return;
      if (!isAlive(this.jvmPid)) break;
      await sleep(100);
    }
    await this.stop();
    throw new SkvError(
      'unavailable',
      `ZooKeeper did not start on ${this.connectString}; see ${path.join(this.dir, 'zookeeper.log')}`,
    );
  }

  /** Signals the JVM (SIGKILL, SIGSTOP, SIGCONT ...). */
  signal(signal: NodeJS.Signals): void {
    if (this.jvmPid !== 0 && isAlive(this.jvmPid)) process.kill(this.jvmPid, signal);
  }

  /** Kills the JVM at once (a crash); `restart()` brings it back on the same port and data. */
  async kill(): Promise<void> {
    await this.terminate('SIGKILL');
  }

  async restart(): Promise<void> {
    await this.terminate('SIGKILL');
    await this.launch();
  }

  async stop(): Promise<void> {
    await this.terminate('SIGTERM');
  }

  private async terminate(signal: NodeJS.Signals): Promise<void> {
    const pid = this.jvmPid;
    const guard = this.guard;
    this.jvmPid = 0;
    this.guard = null;
    if (guard === null) return;
    // The guard exits once the JVM is dead and reaped.
    const exited = new Promise<void>((resolve) => {
      if (guard.exitCode !== null || guard.signalCode !== null) resolve();
      else guard.once('exit', () => resolve());
    });
    if (pid !== 0 && isAlive(pid)) {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, signal);
      const timer = setTimeout(() => {
        if (isAlive(pid)) process.kill(pid, 'SIGKILL');
      }, 10_000);
      await exited;
      clearTimeout(timer);
    }
    guard.stdin?.end();
    await exited;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
