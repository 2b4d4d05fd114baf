// The `skv` command (DESIGN.md §3). The only place that wires real adapters together: the
// ZooKeeper coordinator, the gRPC transport, the node, the client library.
//
// Every server flag has an environment variable (deploy/README.md lists them); a flag wins over
// its variable, and the variable over the default.

import os from 'node:os';
import { Command, CommanderError, Option } from 'commander';
import { registerBenchCommand } from '../../bench/cli.js';
import { connect, type SkvClient } from '../client/index.js';
import { ZooKeeperCoordinator } from '../coordination/zookeeper/zk-coordinator.js';
import { assert } from '../core/assert.js';
import { SkvError } from '../core/errors.js';
import { NodeMetrics, serveMetrics } from '../observability/metrics.js';
import { formatBytes } from '../placement/bytes.js';
import { type InitialSplit, parseSplitKeys } from '../placement/initial-map.js';
import { checkHealth } from '../rpc/health-client.js';
import { GrpcNodeTransport } from '../rpc/node-transport.js';
import {
  type ChannelSecurity,
  CredentialError,
  checkToken,
  nodeChannelSecurity,
  readTlsFiles,
  readTokenFile,
  type ServerSecurity,
} from '../rpc/tls.js';
import {
  LEADER_HANDOFF_MS_DEFAULT,
  LOG_CATCH_UP_ENTRIES_DEFAULT,
  LOG_RETAIN_BYTES_DEFAULT,
  SkvNode,
  splitHostPort,
} from '../server/node.js';
import { initCluster } from './cluster-init.js';
import { runDev } from './dev.js';
import { createLogger } from './logger.js';
import { collectStatus, renderStatus } from './status.js';

/** `skv cluster init` exits with this when a range map already exists (idempotent Jobs). */
export const EXIT_ALREADY_INITIALISED = 3;
/** A credential file (TLS, token) is missing, unreadable or malformed: nothing started. */
export const EXIT_BAD_CREDENTIALS = 2;

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

function intOption(value: string, what: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new SkvError('invalid-argument', `${what} must be a non-negative integer, got ${value}`);
  return n;
}

/** Ranges of `skv dev` when neither --ranges nor --split-keys is given. */
const DEV_RANGES_DEFAULT = 3;

/** The first ranges from --ranges or --split-keys (one of them, or `defaultRanges`). */
function initialSplit(
  o: { ranges?: string; splitKeys?: string },
  defaultRanges: number,
): InitialSplit {
  if (o.ranges !== undefined && o.splitKeys !== undefined) {
    throw new SkvError('invalid-argument', 'give --ranges or --split-keys, not both');
  }
  if (o.splitKeys !== undefined) return { splitKeys: parseSplitKeys(o.splitKeys) };
  return { ranges: o.ranges === undefined ? defaultRanges : intOption(o.ranges, '--ranges') };
}

/** `skv-3` (a StatefulSet pod) gives node id `n3`. */
export function idFromHostname(hostname: string): string {
  const m = /-(\d+)$/.exec(hostname);
  if (m === null)
    throw new SkvError('invalid-argument', `cannot derive a node id from hostname ${hostname}`);
  return `n${m[1]}`;
}

function servers(opts: { servers?: string }): string[] {
  const list = (opts.servers ?? env('SKV_SERVERS') ?? '127.0.0.1:7001')
    .split(',')
    .map((s) => s.trim());
  return list.filter((s) => s !== '');
}

/** Runs `load`; a CredentialError becomes exit code 2 with its message (never plaintext). */
async function credentialsOrExit<T>(load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    if (!(err instanceof CredentialError)) throw err;
    console.error(`skv: ${err.message}`);
    throw new CommanderError(EXIT_BAD_CREDENTIALS, 'skv.credentials', err.message);
  }
}

interface ServerCredentialOptions {
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsClientAuth?: boolean;
  authTokenFile?: string;
}

/** `skv server`: TLS needs all three files; client auth needs TLS. */
async function serverSecurity(o: ServerCredentialOptions): Promise<ServerSecurity> {
  const given = [o.tlsCert, o.tlsKey, o.tlsCa].filter((f) => f !== undefined).length;
  if (given !== 0 && given !== 3) {
    throw new CredentialError('TLS needs --tls-cert, --tls-key and --tls-ca together');
  }
  if (o.tlsClientAuth === true && given === 0) {
    throw new CredentialError('--tls-client-auth needs TLS (--tls-cert, --tls-key, --tls-ca)');
  }
  let security: ServerSecurity = {};
  if (o.tlsCa !== undefined && o.tlsCert !== undefined && o.tlsKey !== undefined) {
    const m = await readTlsFiles({ caFile: o.tlsCa, certFile: o.tlsCert, keyFile: o.tlsKey });
    assert(m.cert !== undefined && m.key !== undefined, 'readTlsFiles returns cert and key');
    security = {
      tls: {
        ca: m.ca,
        cert: m.cert,
        key: m.key,
        requireClientCertificate: o.tlsClientAuth === true,
      },
    };
  }
  if (o.authTokenFile !== undefined) {
    security = { ...security, token: await readTokenFile(o.authTokenFile) };
  }
  return security;
}

interface ClientCredentialOptions {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tokenFile?: string;
}

/** Client commands: flags (or their env vars); the token from --token-file or SKV_TOKEN. */
async function clientSecurity(o: ClientCredentialOptions): Promise<ChannelSecurity> {
  if (o.tlsCa === undefined && (o.tlsCert !== undefined || o.tlsKey !== undefined)) {
    throw new CredentialError('a client certificate (--tls-cert, --tls-key) needs --tls-ca');
  }
  let security: ChannelSecurity = {};
  if (o.tlsCa !== undefined) {
    security = {
      tls: await readTlsFiles({ caFile: o.tlsCa, certFile: o.tlsCert, keyFile: o.tlsKey }),
    };
  }
  const envToken = env('SKV_TOKEN');
  if (o.tokenFile !== undefined) {
    security = { ...security, token: await readTokenFile(o.tokenFile) };
  } else if (envToken !== undefined) {
    security = { ...security, token: checkToken(envToken.trim(), 'SKV_TOKEN') };
  }
  return security;
}

async function withClient<T>(
  opts: { servers?: string; timeoutMs?: string } & ClientCredentialOptions,
  fn: (c: SkvClient) => Promise<T>,
): Promise<T> {
  const security = await credentialsOrExit(() => clientSecurity(opts));
  const client = connect({
    servers: servers(opts),
    timeoutMs: opts.timeoutMs === undefined ? 5000 : intOption(opts.timeoutMs, '--timeout-ms'),
    ...(security.tls === undefined ? {} : { tls: security.tls }),
    ...(security.token === undefined ? {} : { token: security.token }),
  });
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

/** TLS flags shared by the client commands and `skv health`. */
function clientTlsOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--tls-ca <file>', 'PEM CA that signed the servers (turns TLS on)').env(
        'SKV_TLS_CA',
      ),
    )
    .addOption(
      new Option('--tls-cert <file>', 'PEM client certificate (servers with client auth)').env(
        'SKV_TLS_CERT',
      ),
    )
    .addOption(new Option('--tls-key <file>', 'PEM key of --tls-cert').env('SKV_TLS_KEY'));
}

function clientOptions(cmd: Command): Command {
  return clientTlsOptions(cmd)
    .option('--servers <list>', 'comma-separated HOST:PORT of any nodes (env SKV_SERVERS)')
    .option('--timeout-ms <n>', 'per-call deadline', '5000')
    .addOption(
      new Option(
        '--token-file <file>',
        'file holding the bearer token (or the token itself in env SKV_TOKEN)',
      ).env('SKV_TOKEN_FILE'),
    );
}

function show(b: Buffer): string {
  return formatBytes(b);
}

export function buildProgram(): Command {
  const program = new Command('skv')
    .description('skv: a Spinnaker-style sharded, replicated key-value datastore')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('server')
    .description('run one node')
    .addOption(new Option('--id <id>', 'node id').env('SKV_ID'))
    .addOption(
      new Option('--id-from-hostname', 'derive the id from the hostname (pod skv-3 → n3)').env(
        'SKV_ID_FROM_HOSTNAME',
      ),
    )
    .addOption(
      new Option('--listen <host:port>', 'gRPC address to bind (clients, peers, health)')
        .env('SKV_LISTEN')
        .default('127.0.0.1:7001'),
    )
    .addOption(
      new Option(
        '--advertise <host:port>',
        'address other nodes and clients use (default: --listen)',
      ).env('SKV_ADVERTISE'),
    )
    .addOption(
      new Option('--zk <connect>', 'ZooKeeper connect string')
        .env('SKV_ZK')
        .default('127.0.0.1:2181'),
    )
    .addOption(new Option('--data <dir>', 'data directory').env('SKV_DATA').default('./skv-data'))
    .addOption(
      new Option('--cluster <name>', 'cluster name (ZooKeeper root /skv/<name>)')
        .env('SKV_CLUSTER')
        .default('default'),
    )
    .addOption(
      new Option('--session-timeout-ms <n>', 'ZooKeeper session timeout')
        .env('SKV_SESSION_TIMEOUT_MS')
        .default('2000'),
    )
    .addOption(
      new Option('--tick-ms <n>', 'replication tick (commit period = 2 ticks)')
        .env('SKV_TICK_MS')
        .default('50'),
    )
    .addOption(
      new Option(
        '--leader-handoff-ms <n>',
        "hand a range's leadership to its preferred node after leading this long (0 = never)",
      )
        .env('SKV_LEADER_HANDOFF_MS')
        .default(String(LEADER_HANDOFF_MS_DEFAULT)),
    )
    .addOption(
      new Option('--memtable-bytes <n>', 'memtable size per range before a flush').env(
        'SKV_MEMTABLE_BYTES',
      ),
    )
    .addOption(
      new Option(
        '--log-catch-up-entries <n>',
        "log entries a range keeps in memory before its checkpoint, so a follower that falls that far behind catches up from the leader's log, not by a snapshot of the whole range",
      )
        .env('SKV_LOG_CATCH_UP_ENTRIES')
        .default(String(LOG_CATCH_UP_ENTRIES_DEFAULT)),
    )
    .addOption(
      new Option(
        '--log-retain-bytes <n>',
        'commit log kept on disk before the range that holds back its oldest segment is flushed',
      )
        .env('SKV_LOG_RETAIN_BYTES')
        .default(String(LOG_RETAIN_BYTES_DEFAULT)),
    )
    .addOption(new Option('--log-level <level>', 'log level').env('SKV_LOG_LEVEL').default('info'))
    .addOption(
      new Option('--shutdown-grace-ms <n>', 'on SIGTERM: time to hand leadership over')
        .env('SKV_SHUTDOWN_GRACE_MS')
        .default('10000'),
    )
    .addOption(
      new Option(
        '--metrics-listen <host:port>',
        'Prometheus /metrics over HTTP (default: off)',
      ).env('SKV_METRICS_LISTEN'),
    )
    .addOption(
      new Option('--tls-cert <file>', 'PEM certificate of this node (TLS on the port)').env(
        'SKV_TLS_CERT',
      ),
    )
    .addOption(new Option('--tls-key <file>', 'PEM key of --tls-cert').env('SKV_TLS_KEY'))
    .addOption(
      new Option('--tls-ca <file>', 'PEM CA of the cluster: verifies peers and client certs').env(
        'SKV_TLS_CA',
      ),
    )
    .addOption(
      new Option('--tls-client-auth', 'require client certificates signed by --tls-ca').env(
        'SKV_TLS_CLIENT_AUTH',
      ),
    )
    .addOption(
      new Option(
        '--auth-token-file <file>',
        'require "authorization: Bearer <token>" with the token in this file',
      ).env('SKV_AUTH_TOKEN_FILE'),
    )
    .addOption(
      new Option(
        '--unsafe-follower-strong-reads',
        'TEST ONLY: serve strong reads at followers',
      ).hideHelp(),
    )
    .addOption(
      new Option(
        '--unsafe-ack-before-durable',
        'TEST ONLY: ack before the record is durable',
      ).hideHelp(),
    )
    .action(async (o) => {
      const id: string = o.idFromHostname ? idFromHostname(os.hostname()) : o.id;
      if (id === undefined)
        throw new SkvError('invalid-argument', 'give --id (or --id-from-hostname)');
      // Credentials first: a bad file stops the start (exit 2) before anything binds.
      const security = await credentialsOrExit(() => serverSecurity(o));
      const logger = createLogger(o.logLevel, { node: id });
      if (security.token !== undefined && security.tls === undefined) {
        logger.warn('a bearer token without TLS travels in clear text: add --tls-cert/--tls-key');
      }
      // --metrics-listen: Prometheus /metrics. Bound before the node starts, so a taken port
      // fails the start instead of leaving a node that cannot be scraped.
      const nodeMetrics = new NodeMetrics(id);
      let metrics: Awaited<ReturnType<typeof serveMetrics>> | null = null;
      if (o.metricsListen !== undefined) {
        const [mhost, mport] = splitHostPort(o.metricsListen);
        metrics = await serveMetrics(mhost, intOption(mport, '--metrics-listen port'), nodeMetrics);
      }
      const coordinator = new ZooKeeperCoordinator({
        connectString: o.zk,
        cluster: o.cluster,
        sessionTimeoutMs: intOption(o.sessionTimeoutMs, '--session-timeout-ms'),
      });
      const node = await SkvNode.start(
        {
          id,
          listen: o.listen,
          ...(o.advertise === undefined ? {} : { advertise: o.advertise }),
          dataDir: o.data,
          cluster: o.cluster,
          tickMs: intOption(o.tickMs, '--tick-ms'),
          leaderHandoffMs: intOption(o.leaderHandoffMs, '--leader-handoff-ms'),
          ...(o.memtableBytes === undefined
            ? {}
            : { memtableSizeBytesMax: intOption(o.memtableBytes, '--memtable-bytes') }),
          logRetainBytes: intOption(o.logRetainBytes, '--log-retain-bytes'),
          logCatchUpEntries: intOption(o.logCatchUpEntries, '--log-catch-up-entries'),
          unsafe: {
            ...(o.unsafeFollowerStrongReads ? { followerStrongReads: true } : {}),
            ...(o.unsafeAckBeforeDurable ? { ackBeforeDurable: true } : {}),
          },
          security,
        },
        {
          coordinator,
          // Forwarded requests present this node's certificate and the cluster's token.
          transport: new GrpcNodeTransport(nodeChannelSecurity(security)),
          log: (level, msg, fields) => logger[level](fields ?? {}, msg),
          requests: nodeMetrics,
        },
      );
      nodeMetrics.attach(node.metricsSource());
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = (signal: string) => {
          if (stopping) return;
          stopping = true;
          logger.info({ signal }, 'stopping');
          node
            .shutdown(intOption(o.shutdownGraceMs, '--shutdown-grace-ms'))
            .catch((err: unknown) => logger.error({ error: String(err) }, 'shutdown failed'))
            .finally(resolve);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
        // A parent that holds our stdin (tests, `skv dev`) dies: so do we.
        if (process.env.SKV_EXIT_ON_STDIN_CLOSE === '1') {
          process.stdin.on('end', () => stop('stdin closed'));
          process.stdin.on('close', () => stop('stdin closed'));
          process.stdin.resume();
        }
      });
      metrics?.close();
      // Open handles (the stdin watch, gRPC channels winding down) must not keep a stopped node
      // alive.
      process.exit(0);
    });

  const cluster = program.command('cluster').description('cluster administration');
  cluster
    .command('init')
    .description('write the range map once (chained declustering); refuses to overwrite one')
    .addOption(
      new Option('--zk <connect>', 'ZooKeeper connect string')
        .env('SKV_ZK')
        .default('127.0.0.1:2181'),
    )
    .addOption(new Option('--cluster <name>', 'cluster name').env('SKV_CLUSTER').default('default'))
    .requiredOption('--nodes <ids>', 'node ids in ring order, e.g. n0,n1,n2')
    .option('--ranges <n>', 'split the key space into N ranges (default: one per node)')
    .option('--split-keys <keys>', 'explicit split keys a,b,... (instead of --ranges)')
    .action(async (o) => {
      const nodes = String(o.nodes)
        .split(',')
        .map((s: string) => s.trim())
        .filter((s: string) => s !== '');
      const split = initialSplit(o, nodes.length);
      let map: Awaited<ReturnType<typeof initCluster>>;
      try {
        map = await initCluster(o.zk, o.cluster, nodes, split);
      } catch (err) {
        if (err instanceof SkvError && err.code === 'already-exists') {
          console.error(`skv: cluster ${o.cluster} already has a range map; nothing changed`);
          throw new CommanderError(EXIT_ALREADY_INITIALISED, 'skv.already', 'already initialised');
        }
        throw err;
      }
      for (const r of map.ranges) {
        const end = r.end.length === 0 ? '∞' : show(Buffer.from(r.end));
        console.log(
          `range ${r.rangeId}: [${show(Buffer.from(r.start))}, ${end}) on ${r.members.join(',')}`,
        );
      }
    });

  program
    .command('dev')
    .description(
      'run a local ZooKeeper and N nodes on 127.0.0.1, initialised, with a demo; Ctrl-C stops all',
    )
    .option('--nodes <n>', 'number of nodes', '3')
    .option(
      '--ranges <n>',
      'number of ranges, an even split of the first two key bytes (default: 3)',
    )
    .option('--split-keys <keys>', 'explicit split keys a,b,... (instead of --ranges)')
    .option('--dir <dir>', 'working directory (default: a fresh temp dir)')
    .option('--base-port <port>', 'first node port', '7001')
    .option('--no-demo', 'skip the demo writes and reads')
    .option('--exit-after-demo', 'stop everything after the demo (for scripts and tests)')
    .option('--open', "open node n0's status page in a browser (default: if one is available)")
    .option('--no-open', 'never open a browser')
    .action(async (o) => {
      await runDev({
        nodes: intOption(o.nodes, '--nodes'),
        split: initialSplit(o, DEV_RANGES_DEFAULT),
        dir: o.dir,
        basePort: intOption(o.basePort, '--base-port'),
        demo: o.demo !== false,
        exitAfterDemo: o.exitAfterDemo === true,
        ...(o.open === undefined ? {} : { open: o.open === true }),
      });
    });

  clientOptions(
    program.command('get').description('read a column').argument('<key>').argument('<column>'),
  )
    .option('--timeline', 'timeline read (any replica; maybe stale, never uncommitted)')
    .action(async (key: string, column: string, o) => {
      await withClient(o, async (c) => {
        const r = await c.get(key, column, { timeline: o.timeline === true });
        if (!r.found) {
          console.log('(not found)');
          process.exitCode = 1;
          return;
        }
        console.log(`${r.value.toString('utf8')}\t(version ${r.version})`);
      });
    });

  clientOptions(
    program
      .command('put')
      .description('write a column')
      .argument('<key>')
      .argument('<column>')
      .argument('<value>'),
  )
    .option('--if-version <v>', 'conditional put: only if the current version is V (0 = absent)')
    .action(async (key: string, column: string, value: string, o) => {
      await withClient(o, async (c) => {
        const v = await c.put(
          key,
          column,
          value,
          o.ifVersion === undefined ? {} : { ifVersion: intOption(o.ifVersion, '--if-version') },
        );
        console.log(`version ${v}`);
      });
    });

  clientOptions(
    program.command('del').description('delete a column').argument('<key>').argument('<column>'),
  )
    .option('--if-version <v>', 'conditional delete: only if the current version is V')
    .action(async (key: string, column: string, o) => {
      await withClient(o, async (c) => {
        const r = await c.delete(
          key,
          column,
          o.ifVersion === undefined ? {} : { ifVersion: intOption(o.ifVersion, '--if-version') },
        );
        console.log(r.found ? `deleted (was version ${r.version})` : '(not found)');
      });
    });

  clientOptions(
    program
      .command('scan')
      .description('list rows with START <= key < END')
      .argument('[start]', 'first key', '')
      .argument('[end]', 'end key (exclusive; empty = to the end)', ''),
  )
    .option('--limit <n>', 'rows at most', '100')
    .option('--timeline', 'timeline reads')
    .action(async (start: string, end: string, o) => {
      await withClient(o, async (c) => {
        for await (const row of c.scan(start, end === '' ? null : end, {
          limit: intOption(o.limit, '--limit'),
          timeline: o.timeline === true,
        })) {
          const cells = row.cells
            .map((x) => `${show(x.column)}=${show(x.value)}@${x.version}`)
            .join(' ');
          console.log(`${show(row.key)}\t${cells}`);
        }
      });
    });

  clientOptions(
    program
      .command('status')
      .description(
        "print every range (bounds, cohort, leader, epoch) and every replica's LSNs and lag",
      ),
  ).action(async (o) => {
    const security = await credentialsOrExit(() => clientSecurity(o));
    const timeoutMs = o.timeoutMs === undefined ? 5000 : intOption(o.timeoutMs, '--timeout-ms');
    await withClient(o, async (c) => {
      const { map, reports } = await collectStatus(c, { timeoutMs, security });
      for (const line of renderStatus(map, reports)) console.log(line);
    });
  });

  clientTlsOptions(
    program
      .command('health')
      .description(
        'exit 0 iff the node answers the gRPC health check as SERVING (no token needed)',
      ),
  )
    .option('--addr <host:port>', 'node address', '127.0.0.1:7001')
    .option('--service <name>', 'health service name ("" = the process, skv.v1.KV = can serve)', '')
    .action(async (o) => {
      const { tls } = await credentialsOrExit(() => clientSecurity({ ...o, tokenFile: undefined }));
      const ok = await checkHealth(o.addr, o.service, 2000, tls === undefined ? {} : { tls });
      if (!ok) process.exitCode = 1;
    });

  registerBenchCommand(program);
  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv]);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    if (err instanceof SkvError) {
      console.error(`skv: ${err.message} (${err.code})`);
      return 1;
    }
    console.error(`skv: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
