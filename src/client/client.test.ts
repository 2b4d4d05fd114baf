import { describe, expect, it } from 'vitest';
import { SkvError } from '../core/errors.js';
import type { RangeMapResponse, ScanResponse } from '../rpc/generated/skv/v1/kv.js';
import type { NodeTransport, SessionOp, SessionResult } from '../rpc/node-transport.js';
import { RemoteError } from '../rpc/session-channel.js';
import { SkvClient } from './client.js';

const map: RangeMapResponse = {
  version: 1n,
  nodes: [
    { id: 'n0', address: 'a0', live: true },
    { id: 'n1', address: 'a1', live: true },
    { id: 'n2', address: 'a2', live: true },
  ],
  ranges: [
    {
      rangeId: 0,
      start: Buffer.alloc(0),
      end: Buffer.from('m'),
      members: ['n0', 'n1', 'n2'],
      leader: 'n0',
      epoch: 1n,
    },
    {
      rangeId: 1,
      start: Buffer.from('m'),
      end: Buffer.alloc(0),
      members: ['n1', 'n2', 'n0'],
      leader: 'n1',
      epoch: 1n,
    },
  ],
};

class FakeTransport implements NodeTransport {
  calls: { address: string; op: SessionOp['$case'] }[] = [];
  mapReads = 0;
  constructor(
    private readonly answer: (address: string, op: SessionOp, n: number) => SessionResult,
  ) {}
  async call(address: string, op: SessionOp): Promise<SessionResult> {
    this.calls.push({ address, op: op.$case });
    return this.answer(address, op, this.calls.length);
  }
  async rangeMap(): Promise<RangeMapResponse> {
    this.mapReads++;
    return map;
  }
  async *scan(): AsyncIterable<ScanResponse> {}
  close(): void {}
}

const putOk: SessionResult = { $case: 'put', value: { version: 7n } };

describe('SkvClient routing', () => {
  it('sends strong requests to the leader of the key range', async () => {
    const t = new FakeTransport(() => putOk);
    const c = new SkvClient({ servers: ['seed'], transport: t });
    await c.put('apple', 'c', 'v');
    await c.put('zebra', 'c', 'v');
    expect(t.calls.map((x) => x.address)).toEqual(['a0', 'a1']);
  });

  it('follows a leader hint after not-leader and retries', async () => {
    const t = new FakeTransport((address) => {
      if (address === 'a0') throw new RemoteError('not-leader', 'moved', 14, 'a2');
      return putOk;
    });
    const c = new SkvClient({ servers: ['seed'], transport: t });
    expect(await c.put('apple', 'c', 'v')).toBe(7);
    expect(t.calls.map((x) => x.address)).toEqual(['a0', 'a2']);
  });

  it('never retries a write whose outcome is unknown', async () => {
    const t = new FakeTransport(() => {
      throw new SkvError('deadline-exceeded', 'lost');
    });
    const c = new SkvClient({ servers: ['seed'], transport: t });
    await expect(c.put('apple', 'c', 'v')).rejects.toMatchObject({ code: 'deadline-exceeded' });
    expect(t.calls.length).toBe(1);
  });

  it('re-reads the range map after an unknown outcome (the node may be gone)', async () => {
    let fail = true;
    const t = new FakeTransport(() => {
      if (fail) {
        fail = false;
        throw new SkvError('deadline-exceeded', 'lost');
      }
      return putOk;
    });
    const c = new SkvClient({ servers: ['seed'], transport: t });
    await expect(c.put('apple', 'c', 'v')).rejects.toMatchObject({ code: 'deadline-exceeded' });
    expect(t.mapReads).toBe(1);
    await c.put('apple', 'c', 'v');
    expect(t.mapReads).toBe(2);
  });

  it('backs off while no leader is known instead of spending every attempt at once', async () => {
    const t = new FakeTransport(() => {
      throw new RemoteError('not-leader', 'election', 14, null);
    });
    const c = new SkvClient({ servers: ['seed'], transport: t, timeoutMs: 400, backoffBaseMs: 20 });
    const started = performance.now();
    await expect(c.put('apple', 'c', 'v')).rejects.toMatchObject({ code: 'not-leader' });
    expect(performance.now() - started).toBeGreaterThan(150);
    expect(t.calls.length).toBeLessThan(20);
  });

  it('backs off when leader hints lead in circles (stale views during a handover)', async () => {
    const t = new FakeTransport((address) => {
      throw new RemoteError('not-leader', 'moved', 14, address === 'a1' ? 'a2' : 'a1');
    });
    const c = new SkvClient({ servers: ['seed'], transport: t, timeoutMs: 400, backoffBaseMs: 20 });
    await expect(c.put('apple', 'c', 'v')).rejects.toMatchObject({ code: 'not-leader' });
    // Without the backoff, 64 attempts would go out in a few milliseconds.
    expect(t.calls.length).toBeLessThan(40);
  });

  it('surfaces a version mismatch at once', async () => {
    const t = new FakeTransport(() => {
      throw new RemoteError('version-mismatch', 'no', 9, null);
    });
    const c = new SkvClient({ servers: ['seed'], transport: t });
    await expect(c.put('apple', 'c', 'v', { ifVersion: 3 })).rejects.toMatchObject({
      code: 'version-mismatch',
    });
    expect(t.calls.length).toBe(1);
  });

  it('retries unavailable within the deadline, then gives up', async () => {
    const t = new FakeTransport(() => {
      throw new RemoteError('unavailable', 'no quorum', 14, null);
    });
    const c = new SkvClient({ servers: ['seed'], transport: t, timeoutMs: 300, backoffBaseMs: 5 });
    await expect(c.put('apple', 'c', 'v')).rejects.toMatchObject({ code: 'unavailable' });
    expect(t.calls.length).toBeGreaterThan(2);
  });

  it('spreads timeline reads over the replicas', async () => {
    const t = new FakeTransport(() => ({
      $case: 'get',
      value: { found: true, value: Buffer.from('v'), version: 1n },
    }));
    const c = new SkvClient({ servers: ['seed'], transport: t });
    for (let i = 0; i < 60; i++) await c.get('apple', 'c', { timeline: true });
    expect(new Set(t.calls.map((x) => x.address))).toEqual(new Set(['a0', 'a1', 'a2']));
  });
});
