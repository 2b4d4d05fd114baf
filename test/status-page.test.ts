// The status page and `skv status` against a real 3-node cluster (issue #8). Debian's chromium,
// headless, driven by playwright-core, loads one node's page: it shows the cluster's real ranges
// and leaders (compared with the RangeMap RPC), its charts move under a light workload, and after
// the leader of a range is SIGKILLed the page shows the new leader and a longer election list
// (waited for with a deadline). The screenshot is kept in test-artifacts/status-page.png.
// `skv status` (the built CLI) must list every range with its leader and every replica's LSNs.
//
// Chromium runs as root in CI, hence --no-sandbox. CHROMIUM_PATH overrides /usr/bin/chromium.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusDocument } from '../src/observability/status-page.js';
import { SKV_BIN as BIN, TestCluster } from './support/cluster.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const SCREENSHOT = path.join(ARTIFACTS, 'status-page.png');

/** Polls `probe` until it returns a value (not undefined) or the deadline passes. */
async function until<T>(what: string, deadlineMs: number, probe: () => Promise<T | undefined>) {
  const deadline = Date.now() + deadlineMs;
  let last: unknown = 'never probed';
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
      last = 'not yet';
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${deadlineMs} ms (last: ${String(last)})`);
}

/** range id -> leader as the page's ranges table shows it ('' when none). */
async function pageLeaders(page: Page): Promise<Map<number, string>> {
  const rows = await page.$$eval('#ranges tbody tr', (trs) =>
    trs.map((tr) => [Number(tr.getAttribute('data-range')), tr.getAttribute('data-leader') ?? '']),
  );
  return new Map(rows as [number, string][]);
}

async function electionsTotal(page: Page): Promise<number> {
  return Number(await page.getAttribute('#elections', 'data-total'));
}

describe('status page and skv status', () => {
  let cluster: TestCluster;
  let browser: Browser | null = null;
  let workload: Promise<void> = Promise.resolve();
  let stopWorkload = false;

  beforeAll(async () => {
    cluster = await TestCluster.start({ nodes: 3, ranges: 3, metrics: true });
    // A light, steady workload so the charts move on every node: writes and strong reads go to
    // the leaders, timeline reads to any replica (so a follower's page shows traffic too). The
    // prefixes fall in each of the three ranges ("", "UU") ["UU", 0xaaaa) [0xaaaa, end).
    const kv = cluster.client({ timeoutMs: 5_000 });
    const prefixes = ['A', 's', 'é'];
    workload = (async () => {
      for (let i = 0; !stopWorkload; i++) {
        const key = `${prefixes[i % 3]}-sp-${i % 100}`;
        await kv.put(key, 'c', `v${i}`).catch(() => {});
        await kv.get(key, 'c').catch(() => {});
        await kv.get(key, 'c', { timeline: true }).catch(() => {});
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
  }, 120_000);

  afterAll(async () => {
    stopWorkload = true;
    await workload;
    await browser?.close();
    await cluster?.stop();
  });

  it('skv status lists every range with its leader, and every replica with its LSNs', async () => {
    const leaders = await cluster.waitForLeaders();
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [BIN, 'status', '--servers', cluster.addresses.join(',')],
      { timeout: 30_000 },
    );
    const lines = stdout.split('\n');
    expect(lines[0]).toMatch(/^nodes: /);
    expect(lines[1]).toBe(
      'range  start            end              members          leader  epoch',
    );
    const map = await cluster.rangeMap();
    expect(map.ranges).toHaveLength(3);
    for (const r of map.ranges) {
      // The range table row: id, bounds, members, leader (as RangeMap says), epoch.
      const row = lines.find((l) => new RegExp(`^${r.rangeId} +("|0x)`).test(l));
      expect(row, stdout).toBeDefined();
      expect(row!.split(/ +/).slice(-2)).toEqual([leaders.get(r.rangeId), String(r.epoch)]);
      // One cohort line per member: role, voter, epoch, last LSN e.s, durable/committed/applied.
      for (const member of r.members) {
        const line = lines.find((l) => new RegExp(`^${r.rangeId} +${member} +`).test(l));
        expect(line, stdout).toMatch(
          /^\d+ +n\d +(leader|follower|candidate) +(yes|no) +\d+ +\d+\.\d+ +\d+ +\d+ +\d+ +(max \d+|\d+|\?) +[\d.]+ (B|KiB|MiB)$/,
        );
        const role = line!.split(/ +/)[2];
        expect(role).toBe(member === leaders.get(r.rangeId) ? 'leader' : 'follower');
      }
    }
    for (const n of cluster.nodes) {
      expect(stdout).toMatch(new RegExp(`^node ${n.id}: ${n.address}  zookeeper connected`, 'm'));
    }
  }, 60_000);

  it('the page shows the real ranges and leaders, moves, and follows a leader killed', async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} (apt-get install -y chromium)`).toBe(true);
    const leaders = await cluster.waitForLeaders();
    // Kill the leader of range 0; watch from a node that survives.
    const victimRange = 0;
    const victim = leaders.get(victimRange)!;
    const watcher = cluster.nodes.find((n) => n.id !== victim)!;
    const base = `http://${watcher.metricsAddress}`;

    // The JSON the page polls answers on its own.
    const res = await fetch(`${base}/status.json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as StatusDocument;
    expect(doc.node.id).toBe(watcher.id);
    expect(doc.rangeMap.ranges.map((r) => r.rangeId).sort()).toEqual([0, 1, 2]);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const requested: string[] = [];
    page.on('request', (r) => requested.push(r.url()));
    const consoleErrors: string[] = [];
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    await page.goto(`${base}/`);
    await page.waitForSelector('#ranges tbody tr[data-range="2"]', { timeout: 10_000 });
    expect(await page.textContent('#node-id')).toBe(watcher.id);

    // The page's leaders are the cluster's (as RangeMap reports them; wait out a poll period).
    await until('page leaders = RangeMap leaders', 10_000, async () => {
      const map = await cluster.rangeMap();
      const shown = await pageLeaders(page);
      const want = new Map(map.ranges.map((r) => [r.rangeId, r.leader]));
      return [...want].every(([id, l]) => l !== '' && shown.get(id) === l) ? true : undefined;
    });

    // The throughput chart moves: the total series changes between polls and is not all zero.
    const firstPath = await until('a throughput line', 10_000, async () => {
      const d = await page.getAttribute('#chart-throughput path[data-series="total"]', 'd');
      return d ?? undefined;
    });
    await until('the throughput line to move', 10_000, async () => {
      const d = await page.getAttribute('#chart-throughput path[data-series="total"]', 'd');
      return d !== null && d !== firstPath ? true : undefined;
    });
    expect(await page.$('#chart-latency path[data-series="p99"]')).not.toBeNull();

    const electionsBefore = await electionsTotal(page);
    expect(electionsBefore).toBeGreaterThanOrEqual(3); // every range's leader, learnt at start

    await cluster.kill(victim);
    const newLeader = await until('the page to show a new leader of range 0', 30_000, async () => {
      const shown = (await pageLeaders(page)).get(victimRange);
      return shown !== undefined && shown !== '' && shown !== victim ? shown : undefined;
    });
    await until('the election list to grow', 10_000, async () =>
      (await electionsTotal(page)) > electionsBefore ? true : undefined,
    );
    const newest = await page.$$eval('#elections li', (lis) =>
      lis.map((li) => [li.getAttribute('data-range'), li.getAttribute('data-leader')]),
    );
    expect(newest).toContainEqual([String(victimRange), newLeader]);
    // The survivors' RangeMap agrees with the page.
    const after = await cluster.waitForLeaders(30_000);
    expect(after.get(victimRange)).toBe(newLeader);

    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(existsSync(SCREENSHOT)).toBe(true);

    // Offline: every request the page made went to the node itself.
    expect(requested.length).toBeGreaterThan(1);
    expect(requested.filter((u) => !u.startsWith(`${base}/`))).toEqual([]);
    expect(consoleErrors).toEqual([]);

    // `skv status` with a node down still answers and names it.
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [BIN, 'status', '--servers', cluster.addresses.join(',')],
      { timeout: 30_000 },
    );
    expect(stdout).toMatch(new RegExp(`^node ${victim}: (not registered|unreachable)`, 'm'));
    expect(stdout).toMatch(new RegExp(`^${victimRange} +("|0x)[^\\n]* ${newLeader} +\\d+$`, 'm'));
  }, 120_000);
});
