import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { NodeMetrics, REQUEST_LATENCY_BUCKETS } from './metrics.js';

/** The sample lines of one metric family in a scrape. */
function family(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(name));
}

describe('request metrics', () => {
  it('scrape exactly as prom-client counters and histograms fed one call per request would', async () => {
    const observations: [string, string, string, number][] = [
      ['write', 'strong', 'ok', 0.0004],
      ['write', 'strong', 'ok', 0.0005], // on a bound: counted in it (le)
      ['write', 'strong', 'version-mismatch', 0.003],
      ['get', 'timeline', 'ok', 0.02],
      ['get', 'strong', 'not-leader', 7], // past the last bound: +Inf only
      ['get', 'timeline', 'ok', 0.0001],
    ];
    const metrics = new NodeMetrics('n0');
    for (const [m, c, o, s] of observations) metrics.observe(m, c, o, s);

    // The reference: prom-client's own metrics, one inc and one observe per request.
    const reference = new Registry();
    reference.setDefaultLabels({ node: 'n0' });
    const requests = new Counter({
      name: 'skv_requests_total',
      help: 'x',
      labelNames: ['method', 'consistency', 'outcome'],
      registers: [reference],
    });
    const latency = new Histogram({
      name: 'skv_request_duration_seconds',
      help: 'x',
      labelNames: ['method', 'consistency'],
      buckets: [...REQUEST_LATENCY_BUCKETS],
      registers: [reference],
    });
    for (const [method, consistency, outcome, s] of observations) {
      requests.inc({ method, consistency, outcome });
      latency.observe({ method, consistency }, s);
    }

    const got = await metrics.registry.metrics();
    const want = await reference.metrics();
    for (const name of ['skv_requests_total', 'skv_request_duration_seconds']) {
      const lines = family(got, name);
      expect(lines.length).toBeGreaterThan(0);
      expect(lines.sort()).toEqual(family(want, name).sort());
    }
    expect(got).toContain('# TYPE skv_request_duration_seconds histogram');
    expect(got).toContain('# TYPE skv_requests_total counter');
    expect(got).toContain(
      'skv_request_duration_seconds_bucket{le="0.0005",node="n0",method="write",consistency="strong"} 2',
    );

    // Counts keep growing across scrapes (the counter is rebuilt from the totals each time).
    metrics.observe('write', 'strong', 'ok', 0.0004);
    const again = await metrics.registry.metrics();
    expect(again).toContain(
      'skv_requests_total{method="write",consistency="strong",outcome="ok",node="n0"} 3',
    );
    const json = await metrics.registry.getMetricsAsJSON();
    const histogram = json.find((m) => m.name === 'skv_request_duration_seconds');
    expect(histogram?.values.some((v) => v.labels.le === '+Inf' && v.value === 4)).toBe(true);
  });
});

describe('table metrics', () => {
  it('show LevelDB per level: tables, bytes and compaction work, as the source reports them', async () => {
    const metrics = new NodeMetrics('n0');
    let levels = [
      {
        level: 0,
        files: 2,
        bytes: 4 * 1024 * 1024,
        compactionSeconds: 1,
        compactionReadBytes: 0,
        compactionWrittenBytes: 6 * 1024 * 1024,
      },
      {
        level: 2,
        files: 40,
        bytes: 80 * 1024 * 1024,
        compactionSeconds: 12,
        compactionReadBytes: 300 * 1024 * 1024,
        compactionWrittenBytes: 290 * 1024 * 1024,
      },
    ];
    let reads = 0;
    const source = {
      cohortMetrics: () => [],
      logMetrics: () => ({
        batches: 0,
        records: 0,
        bytes: 0,
        fsyncs: 0,
        segments: 0,
        segmentBytes: 0,
        queuedBytes: 0,
      }),
      tableLevels: () => {
        reads++;
        return levels;
      },
      sessionState: () => 'connected',
    };
    metrics.attach(source as unknown as Parameters<NodeMetrics['attach']>[0]);
    const text = await metrics.registry.metrics();
    expect(family(text, 'skv_tables_files{')).toEqual([
      'skv_tables_files{level="0",node="n0"} 2',
      'skv_tables_files{level="2",node="n0"} 40',
    ]);
    expect(text).toContain(`skv_tables_bytes{level="2",node="n0"} ${80 * 1024 * 1024}`);
    expect(text).toContain('skv_tables_compaction_seconds_total{level="2",node="n0"} 12');
    expect(text).toContain(
      `skv_tables_compaction_read_bytes_total{level="2",node="n0"} ${300 * 1024 * 1024}`,
    );
    expect(text).toContain(
      `skv_tables_compaction_written_bytes_total{level="0",node="n0"} ${6 * 1024 * 1024}`,
    );
    // One read of LevelDB's stats serves the five gauges of a scrape.
    expect(reads).toBe(1);

    // A level that empties is no longer shown (after the stats go stale).
    levels = levels.slice(1);
    await new Promise((r) => setTimeout(r, 600));
    const later = await metrics.registry.metrics();
    expect(family(later, 'skv_tables_files{')).toEqual([
      'skv_tables_files{level="2",node="n0"} 40',
    ]);
    expect(reads).toBe(2);
  });
});
