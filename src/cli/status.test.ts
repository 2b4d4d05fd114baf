import { describe, expect, it } from 'vitest';
import type { NodeCohortStatus, RangeMapResponse } from '../rpc/generated/skv/v1/kv.js';
import { type NodeReport, renderStatus } from './status.js';

function cohort(rangeId: number, role: string, lastSeq: number, lag = 0): NodeCohortStatus {
  return {
    rangeId,
    role,
    voter: true,
    epoch: 2n,
    lastLsnEpoch: 2n,
    lastSeq: BigInt(lastSeq),
    durableSeq: BigInt(lastSeq),
    committedSeq: BigInt(lastSeq),
    appliedSeq: BigInt(lastSeq),
    memtableBytes: 2048n,
    followerLagEntries: BigInt(lag),
  };
}

const map: RangeMapResponse = {
  version: 7n,
  nodes: [
    { id: 'n0', address: '127.0.0.1:1', live: true },
    { id: 'n1', address: '127.0.0.1:2', live: true },
  ],
  ranges: [
    {
      rangeId: 0,
      start: Buffer.alloc(0),
      end: Buffer.from('m'),
      members: ['n0', 'n1', 'n2'],
      leader: 'n0',
      epoch: 2n,
    },
  ],
};

describe('renderStatus', () => {
  it('keeps the range table lines and adds per-replica LSNs, lag and unreachable nodes', () => {
    const reports = new Map<string, NodeReport>([
      [
        'n0',
        {
          ok: true,
          status: {
            nodeId: 'n0',
            address: '127.0.0.1:1',
            sessionState: 'connected',
            uptimeMs: 65_000n,
            cohorts: [cohort(0, 'leader', 120, 5)],
          },
        },
      ],
      ['n1', { ok: false, error: 'deadline exceeded' }],
    ]);
    const lines = renderStatus(map, reports);
    expect(lines[0]).toBe('nodes: n0=127.0.0.1:1 n1=127.0.0.1:2');
    expect(lines[1]).toBe(
      'range  start            end              members          leader  epoch',
    );
    expect(lines[2]).toBe('0      ""               "m"              n0,n1,n2         n0      2');
    const text = lines.join('\n');
    expect(text).toContain('node n0: 127.0.0.1:1  zookeeper connected  up 1m05s  cohorts 1');
    expect(text).toContain('node n1: unreachable (deadline exceeded)');
    expect(text).toContain('node n2: not registered (down?)');
    expect(text).toMatch(/^0 +n0 +leader +yes +2 +2\.120 +120 +120 +120 +max 5 +2\.0 KiB$/m);
    expect(text).toMatch(/^0 +n1 +\(unreachable\)$/m);
  });

  it('says when a range is not led by its preferred node (its first member)', () => {
    const elsewhere: RangeMapResponse = {
      ...map,
      ranges: [{ ...map.ranges[0]!, leader: 'n1' }],
    };
    const lines = renderStatus(elsewhere, new Map());
    expect(lines).toContain(
      'range 0: led by n1, not by its preferred node n0 (handed back once n0 is caught up, unless the servers run with --leader-handoff-ms 0)',
    );
    expect(renderStatus(map, new Map()).join('\n')).not.toContain('preferred');
  });

  it("a follower's lag is its leader's last seq minus its own", () => {
    const ok = (cohorts: NodeCohortStatus[]): NodeReport => ({
      ok: true,
      status: { nodeId: '', address: '', sessionState: 'connected', uptimeMs: 0n, cohorts },
    });
    const reports = new Map<string, NodeReport>([
      ['n0', ok([cohort(0, 'leader', 120, 20)])],
      ['n1', ok([cohort(0, 'follower', 100)])],
    ]);
    expect(renderStatus(map, reports).join('\n')).toMatch(
      /^0 +n1 +follower +.* 100 +20 +2\.0 KiB$/m,
    );
  });
});
