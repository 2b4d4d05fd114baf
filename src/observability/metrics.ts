// Prometheus metrics of one node (prom-client: this folder is its only importer). Request
// counters and latency histograms are fed by the node through the `RequestObserver` port on the
// request path (into a RequestTally: plain counts, handed to prom-client at scrape); everything else —
// per-cohort role, epoch and LSNs, memtable bytes, commit-log counters, ZooKeeper session — is
// read from the node only when Prometheus scrapes (collect callbacks), so it costs nothing between
// scrapes. The same HTTP port serves the live status page (status-page.ts): `/` and
// `/status.json`, built on request; its per-second rings are fed from `observe` below.

import http from 'node:http';
import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type MetricObjectWithValues,
  type MetricValueWithName,
  Registry,
} from 'prom-client';
import type { RequestObserver } from '../server/node.js';
import type { TableLevelStats } from '../storage/table-store.js';
import { STATUS_PAGE_HTML } from './status-page.html.js';
import { buildStatus, ElectionLog, LiveRequestStats, type StatusSource } from './status-page.js';

/** What the metrics (and the status page) read from a node at scrape time. */
export interface NodeMetricsSource extends StatusSource {
  cohortMetrics(): readonly {
    readonly rangeId: number;
    readonly role: string;
    readonly voter: boolean;
    readonly epoch: number;
    readonly lastLsnSeq: number;
    readonly durableSeq: number;
    readonly commitSeq: number;
    readonly appliedSeq: number;
    readonly storeAppliedSeq: number;
    readonly memtableBytes: number;
    /** Leader only: per follower, the entries it lags behind (empty on other roles). */
    readonly followerLags: ReadonlyMap<string, number>;
  }[];
  logMetrics(): {
    batches: number;
    records: number;
    bytes: number;
    fsyncs: number;
    segments: number;
    segmentBytes: number;
    queuedBytes: number;
  };
  /** The node's table store (LevelDB): per level, its tables and compaction work so far. */
  tableLevels(): readonly TableLevelStats[];
  sessionState(): string;
}

/** How long one read of LevelDB's level stats serves the table gauges. */
const LEVEL_STATS_FRESH_MS = 500;
const ROLES = ['follower', 'candidate', 'leader'] as const;
const SESSION_STATES = ['connecting', 'connected', 'disconnected', 'expired', 'closed'] as const;
/** Bounds (seconds) of `skv_request_duration_seconds`. */
export const REQUEST_LATENCY_BUCKETS = [
  0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5,
] as const;

/** One method and consistency's requests: counts by outcome, latency bucket counts. */
interface TallyEntry {
  readonly method: string;
  readonly consistency: string;
  readonly outcomes: Map<string, number>;
  /** Per bucket (`bounds` in order, then one past the last bound), not cumulative. */
  readonly buckets: number[];
  sum: number;
  count: number;
}

/**
 * Request counts and latencies as the request path records them: two map lookups and a bucket
 * increment. prom-client's labelled `inc` and `observe` hash their label objects on every call
 * (about 3 us a request on these machines, a tenth of a strong read's server CPU); the counter
 * and histogram are built from this only when Prometheus scrapes.
 */
export class RequestTally {
  private readonly byMethod = new Map<string, Map<string, TallyEntry>>();

  constructor(readonly bounds: readonly number[]) {}

  observe(method: string, consistency: string, outcome: string, seconds: number): void {
    let byConsistency = this.byMethod.get(method);
    if (byConsistency === undefined) {
      byConsistency = new Map();
      this.byMethod.set(method, byConsistency);
    }
    let e = byConsistency.get(consistency);
    if (e === undefined) {
      e = {
        method,
        consistency,
        outcomes: new Map(),
        buckets: new Array<number>(this.bounds.length + 1).fill(0),
        sum: 0,
        count: 0,
      };
      byConsistency.set(consistency, e);
    }
    e.outcomes.set(outcome, (e.outcomes.get(outcome) ?? 0) + 1);
    // Prometheus buckets are "less than or equal to" their bound.
    let i = 0;
    while (i < this.bounds.length && seconds > this.bounds[i]!) i++;
    e.buckets[i]!++;
    e.sum += seconds;
    e.count++;
  }

  *entries(): Generator<Readonly<TallyEntry>> {
    for (const byConsistency of this.byMethod.values()) yield* byConsistency.values();
  }
}

type HistogramData = MetricObjectWithValues<MetricValueWithName<'method' | 'consistency'>>;

/**
 * A Prometheus histogram whose series are read from a RequestTally at scrape time (the registry
 * asks a metric for `getForPromString()`, else `get()`); it never observes anything itself.
 */
class TalliedHistogram extends Histogram<'method' | 'consistency'> {
  constructor(
    registry: Registry,
    private readonly metricName: string,
    private readonly metricHelp: string,
    private readonly tally: RequestTally,
  ) {
    super({
      name: metricName,
      help: metricHelp,
      labelNames: ['method', 'consistency'],
      buckets: [...tally.bounds],
      registers: [registry],
    });
  }

  /** For the text format: the series' labels as `sharedLabels`, as prom-client's own does. */
  async getForPromString(): Promise<HistogramData> {
    return this.data(true);
  }

  override async get(): Promise<HistogramData> {
    return this.data(false);
  }

  // prom-client's typings want an enum `type` and a `collect` here; at run time the registry
  // reads the string type and the values (as prom-client's own Histogram returns them).
  private data(shared: boolean): HistogramData {
    const values: object[] = [];
    const bucket = `${this.metricName}_bucket`;
    const value = (metricName: string, labels: object, extra: object, v: number) =>
      shared
        ? { metricName, labels: extra, sharedLabels: labels, value: v }
        : { metricName, labels: { ...labels, ...extra }, value: v };
    for (const e of this.tally.entries()) {
      const labels = { method: e.method, consistency: e.consistency };
      let cumulative = 0;
      for (const [i, le] of this.tally.bounds.entries()) {
        cumulative += e.buckets[i]!;
        values.push(value(bucket, labels, { le }, cumulative));
      }
      values.push(value(bucket, labels, { le: '+Inf' }, e.count));
      values.push(value(`${this.metricName}_sum`, labels, {}, e.sum));
      values.push(value(`${this.metricName}_count`, labels, {}, e.count));
    }
    const data = {
      name: this.metricName,
      help: this.metricHelp,
      type: 'histogram',
      aggregator: 'sum',
      values,
    };
    return data as unknown as HistogramData;
  }
}

export class NodeMetrics implements RequestObserver {
  readonly registry = new Registry();
  /** Request counts and latencies, handed to their counter and histogram at scrape. */
  private readonly tally = new RequestTally(REQUEST_LATENCY_BUCKETS);
  private readonly forwarded: Counter<'method' | 'consistency'>;
  private readonly fsyncSeconds: Histogram;
  private readonly batchRecords: Histogram;
  private readonly cohortEvents: Counter<'range' | 'event'>;
  private source: NodeMetricsSource | null = null;
  /** The status page's rings (bounded; fed by `observe` and `leaderElected`). */
  readonly live = new LiveRequestStats();
  readonly elections = new ElectionLog();

  constructor(nodeId: string) {
    const registry = this.registry;
    registry.setDefaultLabels({ node: nodeId });
    collectDefaultMetrics({ register: registry });
    const tally = this.tally;
    new Counter({
      name: 'skv_requests_total',
      help: 'Requests served by this node, by method, consistency and outcome (ok or an skv error code)',
      labelNames: ['method', 'consistency', 'outcome'],
      registers: [registry],
      collect() {
        this.reset();
        for (const e of tally.entries()) {
          for (const [outcome, n] of e.outcomes) {
            this.inc({ method: e.method, consistency: e.consistency, outcome }, n);
          }
        }
      },
    });
    new TalliedHistogram(
      registry,
      'skv_request_duration_seconds',
      'Request latency at this node (forwarding included), by method and consistency',
      tally,
    );
    this.forwarded = new Counter({
      name: 'skv_requests_forwarded_total',
      help: 'Requests this node relayed to their range leader, which answered them (both nodes count them in skv_requests_total): clients with a stale range map, or plain gRPC clients',
      labelNames: ['method', 'consistency'],
      registers: [registry],
    });
    this.fsyncSeconds = new Histogram({
      name: 'skv_log_fsync_duration_seconds',
      help: "Duration of the shared commit log's fdatasync, one per group commit",
      buckets: [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1],
      registers: [registry],
    });
    this.batchRecords = new Histogram({
      name: 'skv_log_batch_records',
      help: 'Records made durable by one group commit (all cohorts together)',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
      registers: [registry],
    });
    this.cohortEvents = new Counter({
      name: 'skv_cohort_events_total',
      help: 'Protocol events per range: checkpoint (memtable flushed), snapshot-send, snapshot-install, truncate, peer-message-rejected',
      labelNames: ['range', 'event'],
      registers: [registry],
    });
    const self = this;
    type CohortSample = ReturnType<NodeMetricsSource['cohortMetrics']>[number];
    const cohortGauge = (name: string, help: string, pick: (c: CohortSample) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['range'],
        registers: [registry],
        collect() {
          this.reset();
          for (const c of self.source?.cohortMetrics() ?? [])
            this.set({ range: String(c.rangeId) }, pick(c));
        },
      });
    /** A per-range gauge with a second label: one sample per (range, value of `label`). */
    const cohortGaugeBy = (
      name: string,
      help: string,
      label: string,
      samples: (c: CohortSample) => Iterable<readonly [string, number]>,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ['range', label],
        registers: [registry],
        collect() {
          this.reset();
          for (const c of self.source?.cohortMetrics() ?? []) {
            for (const [value, n] of samples(c)) {
              this.set({ range: String(c.rangeId), [label]: value }, n);
            }
          }
        },
      });
    cohortGaugeBy(
      'skv_cohort_role',
      "This replica's role per range (1 for the current role)",
      'role',
      (c) => ROLES.map((role) => [role, c.role === role ? 1 : 0] as const),
    );
    cohortGauge(
      'skv_cohort_voter',
      'Whether this replica votes (0 while it rebuilds a lost disk)',
      (c) => (c.voter ? 1 : 0),
    );
    cohortGauge('skv_cohort_epoch', 'The epoch this replica is in', (c) => c.epoch);
    cohortGauge(
      'skv_cohort_last_lsn_seq',
      "Seq of the last record in this replica's log",
      (c) => c.lastLsnSeq,
    );
    cohortGauge(
      'skv_cohort_durable_seq',
      "Seq up to which this replica's log is durable",
      (c) => c.durableSeq,
    );
    cohortGauge(
      'skv_cohort_committed_seq',
      'Seq up to which this replica knows writes are committed',
      (c) => c.commitSeq,
    );
    cohortGauge(
      'skv_cohort_applied_seq',
      'Seq up to which committed writes are applied to the store',
      (c) => c.storeAppliedSeq,
    );
    cohortGauge(
      'skv_cohort_memtable_bytes',
      "Bytes in the range's memtable",
      (c) => c.memtableBytes,
    );
    cohortGauge(
      'skv_cohort_uncommitted_entries',
      "Entries in this replica's log not known committed yet (the commit queue)",
      (c) => Math.max(0, c.lastLsnSeq - c.commitSeq),
    );
    cohortGauge(
      'skv_cohort_follower_lag_entries',
      'Leader only: entries the furthest follower lags behind',
      (c) => Math.max(0, ...c.followerLags.values()),
    );
    cohortGaugeBy(
      'skv_cohort_follower_lag_by_follower_entries',
      'Leader only: entries each follower lags behind, by follower node id',
      'follower',
      (c) => c.followerLags,
    );
    const logGauge = (
      name: string,
      help: string,
      pick: (l: ReturnType<NodeMetricsSource['logMetrics']>) => number,
    ) =>
      new Gauge({
        name,
        help,
        registers: [registry],
        collect() {
          const l = self.source?.logMetrics();
          if (l !== undefined) this.set(pick(l));
        },
      });
    logGauge(
      'skv_log_batches_total',
      'Group-commit batches written to the shared commit log',
      (l) => l.batches,
    );
    logGauge(
      'skv_log_records_total',
      'Records appended to the shared commit log',
      (l) => l.records,
    );
    logGauge('skv_log_bytes_total', 'Bytes appended to the shared commit log', (l) => l.bytes);
    logGauge('skv_log_fsyncs_total', 'fdatasync calls of the shared commit log', (l) => l.fsyncs);
    logGauge('skv_log_segments', 'Segment files of the shared commit log', (l) => l.segments);
    logGauge(
      'skv_log_segment_bytes',
      'Disk bytes of the segment files of the shared commit log',
      (l) => l.segmentBytes,
    );
    logGauge(
      'skv_log_queued_bytes',
      'Bytes waiting for the next group commit',
      (l) => l.queuedBytes,
    );
    // LevelDB's `leveldb.stats`, read once for the five gauges of a scrape (each collect reads
    // it again only when the last read is older than LEVEL_STATS_FRESH_MS).
    let levels: readonly TableLevelStats[] = [];
    let levelsAt = Number.NEGATIVE_INFINITY;
    const levelGauge = (name: string, help: string, pick: (l: TableLevelStats) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['level'],
        registers: [registry],
        collect() {
          const now = performance.now();
          if (now - levelsAt > LEVEL_STATS_FRESH_MS) {
            levels = self.source?.tableLevels() ?? [];
            levelsAt = now;
          }
          this.reset();
          for (const l of levels) this.set({ level: String(l.level) }, pick(l));
        },
      });
    levelGauge('skv_tables_files', 'LevelDB table files per level', (l) => l.files);
    levelGauge('skv_tables_bytes', 'LevelDB table bytes per level (whole MiB)', (l) => l.bytes);
    levelGauge(
      'skv_tables_compaction_seconds_total',
      'LevelDB compaction time spent producing tables of this level since the node started',
      (l) => l.compactionSeconds,
    );
    levelGauge(
      'skv_tables_compaction_read_bytes_total',
      'Bytes LevelDB compactions into this level read since the node started (whole MiB)',
      (l) => l.compactionReadBytes,
    );
    levelGauge(
      'skv_tables_compaction_written_bytes_total',
      'Bytes LevelDB compactions and flushes wrote into this level since the node started (whole MiB)',
      (l) => l.compactionWrittenBytes,
    );
    new Gauge({
      name: 'skv_zookeeper_session_state',
      help: 'The ZooKeeper session state (1 for the current state)',
      labelNames: ['state'],
      registers: [registry],
      collect() {
        const now = self.source?.sessionState();
        for (const state of SESSION_STATES) this.set({ state }, now === state ? 1 : 0);
      },
    });
  }

  attach(source: NodeMetricsSource): void {
    this.source = source;
  }

  observe(
    method: string,
    consistency: string,
    outcome: string,
    seconds: number,
    forwarded = false,
  ): void {
    this.tally.observe(method, consistency, outcome, seconds);
    this.live.observe(method, seconds);
    if (forwarded) this.forwarded.inc({ method, consistency });
  }

  leaderElected(rangeId: number, leader: string, epoch: number): void {
    this.elections.record(rangeId, leader, epoch);
  }

  groupCommit(fsyncSeconds: number, records: number, _bytes: number): void {
    this.fsyncSeconds.observe(fsyncSeconds);
    this.batchRecords.observe(records);
  }

  cohortEvent(rangeId: number, event: string): void {
    this.cohortEvents.inc({ range: String(rangeId), event });
  }

  /** The /status.json document, or null before the node is attached (still starting). */
  async status(): Promise<Awaited<ReturnType<typeof buildStatus>> | null> {
    const source = this.source;
    return source === null ? null : await buildStatus(source, this.live, this.elections);
  }
}

function respond(res: http.ServerResponse, code: number, type: string, body: string): void {
  res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
}

/**
 * Serves on host:port: GET /metrics (Prometheus), GET / (the status page) and GET /status.json
 * (what the page polls). Resolves once listening (a taken port fails the start).
 */
export async function serveMetrics(
  host: string,
  port: number,
  metrics: NodeMetrics,
): Promise<http.Server> {
  const registry = metrics.registry;
  const server = http.createServer((req, res) => {
    const route = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    switch (route) {
      case '/metrics':
        registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
          (err: unknown) => res.writeHead(500).end(String(err)),
        );
        return;
      case '/':
      case '/index.html':
        respond(res, 200, 'text/html; charset=utf-8', STATUS_PAGE_HTML);
        return;
      case '/status.json':
        metrics.status().then(
          (doc) =>
            doc === null
              ? respond(res, 503, 'application/json', '{"error":"the node is starting"}')
              : respond(res, 200, 'application/json', JSON.stringify(doc)),
          (err: unknown) =>
            respond(res, 500, 'application/json', JSON.stringify({ error: String(err) })),
        );
        return;
      default:
        res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
