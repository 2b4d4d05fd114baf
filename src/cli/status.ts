// `skv status`: the status page's facts in the terminal. The range map (RangeMap, from any node:
// bounds, members, leader, epoch), then every node of the map asked for its own cohorts
// (NodeStatus: role, epoch, last/durable/committed/applied LSNs, memtable, follower lag).
//
// Output contract: the first lines — `nodes: id=addr ...`, the range table's header and one row
// per range — are the same as before NodeStatus existed (scripts and the deploy README read
// them); the per-node and per-cohort sections follow. A node that cannot be reached is reported
// in its section and does not fail the command: status is most needed when something is down.

import type { SkvClient } from '../client/index.js';
import { formatBytes } from '../placement/bytes.js';
import type { NodeStatusResponse, RangeMapResponse } from '../rpc/generated/skv/v1/kv.js';
import { fetchNodeStatus } from '../rpc/node-status-client.js';
import type { ChannelSecurity } from '../rpc/tls.js';

export type NodeReport =
  | { readonly ok: true; readonly status: NodeStatusResponse }
  | { readonly ok: false; readonly error: string };

function show(b: Uint8Array): string {
  return formatBytes(b);
}

function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

function row(cells: readonly string[], widths: readonly number[]): string {
  return cells
    .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
    .join(' ')
    .trimEnd();
}

/**
 * The lines `skv status` prints. Pure. `reports` is keyed by node id; a member of a range that is
 * not in it was not asked (not registered in ZooKeeper: down, or never started).
 */
export function renderStatus(
  map: RangeMapResponse,
  reports: ReadonlyMap<string, NodeReport>,
): string[] {
  const out: string[] = [];
  out.push(`nodes: ${map.nodes.map((n) => `${n.id}=${n.address}`).join(' ')}`);
  out.push('range  start            end              members          leader  epoch');
  for (const r of map.ranges) {
    out.push(
      [
        String(r.rangeId).padEnd(6),
        show(r.start).padEnd(16),
        (r.end.length === 0 ? '∞' : show(r.end)).padEnd(16),
        r.members.join(',').padEnd(16),
        (r.leader === '' ? '-' : r.leader).padEnd(7),
        String(r.epoch),
      ].join(' '),
    );
  }

  // Leader balancing hands a range back to its preferred node (its first member) once that node
  // is caught up: a range led elsewhere is news only while that has not happened yet.
  for (const r of map.ranges) {
    const preferred = r.members[0];
    if (r.leader === '' || preferred === undefined || r.leader === preferred) continue;
    out.push(
      `range ${r.rangeId}: led by ${r.leader}, not by its preferred node ${preferred} (handed back once ${preferred} is caught up, unless the servers run with --leader-handoff-ms 0)`,
    );
  }

  out.push('');
  const ids = [
    ...new Set([...map.nodes.map((n) => n.id), ...map.ranges.flatMap((r) => r.members)]),
  ];
  for (const id of ids.sort()) {
    const report = reports.get(id);
    if (report === undefined) out.push(`node ${id}: not registered (down?)`);
    else if (!report.ok) out.push(`node ${id}: unreachable (${report.error})`);
    else {
      const s = report.status;
      out.push(
        `node ${id}: ${s.address}  zookeeper ${s.sessionState}  up ${duration(Number(s.uptimeMs))}  cohorts ${s.cohorts.length}`,
      );
    }
  }

  // Per-cohort LSNs, grouped by range; a follower's lag is its leader's last seq minus its own.
  out.push('');
  const widths = [6, 5, 10, 6, 6, 12, 8, 10, 8, 10, 10];
  out.push(
    row(
      [
        'range',
        'node',
        'role',
        'voter',
        'epoch',
        'last-lsn',
        'durable',
        'committed',
        'applied',
        'lag',
        'memtable',
      ],
      widths,
    ),
  );
  for (const r of map.ranges) {
    const leaderCohort = cohortOf(reports, r.leader, r.rangeId);
    for (const member of r.members) {
      const report = reports.get(member);
      const c = cohortOf(reports, member, r.rangeId);
      if (c === null) {
        const why =
          report === undefined ? 'not registered' : report.ok ? 'no cohort' : 'unreachable';
        out.push(row([String(r.rangeId), member, `(${why})`], widths));
        continue;
      }
      const lag =
        c.role === 'leader'
          ? `max ${c.followerLagEntries}`
          : leaderCohort === null || leaderCohort.role !== 'leader'
            ? '?'
            : String(Math.max(0, Number(leaderCohort.lastSeq - c.lastSeq)));
      out.push(
        row(
          [
            String(r.rangeId),
            member,
            c.role,
            c.voter ? 'yes' : 'no',
            String(c.epoch),
            `${c.lastLsnEpoch}.${c.lastSeq}`,
            String(c.durableSeq),
            String(c.committedSeq),
            String(c.appliedSeq),
            lag,
            bytes(Number(c.memtableBytes)),
          ],
          widths,
        ),
      );
    }
  }
  return out;
}

function cohortOf(reports: ReadonlyMap<string, NodeReport>, node: string, rangeId: number) {
  const report = reports.get(node);
  if (report === undefined || !report.ok) return null;
  return report.status.cohorts.find((c) => c.rangeId === rangeId) ?? null;
}

/** Fetches the map through `client`, then every registered node's status, in parallel. */
export async function collectStatus(
  client: SkvClient,
  options: { readonly timeoutMs: number; readonly security?: ChannelSecurity },
): Promise<{ map: RangeMapResponse; reports: Map<string, NodeReport> }> {
  const map = await client.rangeMap({ timeoutMs: options.timeoutMs });
  const reports = new Map<string, NodeReport>();
  await Promise.all(
    map.nodes.map(async (n) => {
      try {
        const status = await fetchNodeStatus(n.address, options.timeoutMs, options.security);
        reports.set(n.id, { ok: true, status });
      } catch (err) {
        reports.set(n.id, { ok: false, error: err instanceof Error ? err.message : String(err) });
      }
    }),
  );
  return { map, reports };
}
