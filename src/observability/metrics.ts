// Prometheus metrics of one node (prom-client: this folder is its only importer). Request
// counters and latency histograms are fed by the node through the `RequestObserver` port on the
// request path (a counter increment and a histogram observation per request); everything else —
// per-cohort role, epoch and LSNs, memtable bytes, commit-log counters, ZooKeeper session — is
// read from the node only when Prometheus scrapes (collect callbacks), so it costs nothing between
// scrapes. The same HTTP port serves the live status page (status-page.ts): `/` and
// `/status.json`, built on request; its per-second rings are fed from `observe` below.

import http from 'node:http';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { RequestObserver } from '../server/node.js';
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
  sessionState(): string;
}

const ROLES = ['follower', 'candidate', 'leader'] as const;
const SESSION_STATES = ['connecting', 'connected', 'disconnected', 'expired', 'closed'] as const;

export class NodeMetrics implements RequestObserver {
  readonly registry = new Registry();
  private readonly requests: Counter<'method' | 'consistency' | 'outcome'>;
  private readonly latency: Histogram<'method' | 'consistency'>;
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
    this.requests = new Counter({
      name: 'skv_requests_total',
      help: 'Requests served by this node, by method, consistency and outcome (ok or an skv error code)',
      labelNames: ['method', 'consistency', 'outcome'],
      registers: [registry],
    });
    this.latency = new Histogram({
      name: 'skv_request_duration_seconds',
      help: 'Request latency at this node (forwarding included), by method and consistency',
      labelNames: ['method', 'consistency'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
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

  observe(method: string, consistency: string, outcome: string, seconds: number): void {
    this.requests.inc({ method, consistency, outcome });
    this.latency.observe({ method, consistency }, seconds);
    this.live.observe(method, seconds);
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
