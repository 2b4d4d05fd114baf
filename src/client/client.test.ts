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
  scanCalls: string[] = [];
  /** Per scan call: the rows to stream, then (if set) the error to end with. */
  scanAnswer: (address: string, n: number) => { rows: string[]; error?: Error } = () => ({
    rows: [],
  });
  async *scan(address: string): AsyncIterable<ScanResponse> {
    this.scanCalls.push(address);
    const a = this.scanAnswer(address, this.scanCalls.length);
    for (const k of a.rows) {
      yield {
        rows: [
          {
            key: Buffer.from(k),
            cells: [{ column: Buffer.from('c'), value: Buffer.from('v'), version: 1n }],
          },
        ],
      } as unknown as ScanResponse;
    }
    if (a.error !== undefined) throw a.error;
  }
  close(): void {}
}

const putOk: SessionResult = { $case: 'put', value: { version: 7n } };

describe('SkvClient scans', () => {
  const collect = async (it: AsyncIterable<{ key: Buffer }>) => {
    const keys: string[] = [];
    for await (const r of it) keys.push(r.key.toString());
    return keys;
  };

  it('retries a scan on another node when the first cannot be reached, before any row', async () => {
    const t = new FakeTransport(() => putOk);
    t.scanAnswer = (_address, n) =>
      n === 1
        ? { rows: [], error: new SkvError('unavailable', 'connect ECONNREFUSED') }
        : { rows: ['a', 'b'] };
    const c = new SkvClient({ servers: ['seed'], transport: t, backoffBaseMs: 1 });
    expect(await collect(c.scan('a', null))).toEqual(['a', 'b']);
    expect(t.scanCalls).toHaveLength(2);
    expect(t.scanCalls[1]).not.toBe(t.scanCalls[0]);
  });

  it('does not retry a scan that already yielded rows, nor one refused for another reason', async () => {
    const t = new FakeTransport(() => putOk);
    t.scanAnswer = () => ({ rows: ['a'], error: new SkvError('unavailable', 'node went away') });
    const c = new SkvClient({ servers: ['seed'], transport: t, backoffBaseMs: 1 });
    await expect(collect(c.scan('a', null))).rejects.toMatchObject({ code: 'unavailable' });
    expect(t.scanCalls).toHaveLength(1);

    const u = new FakeTransport(() => putOk);
    u.scanAnswer = () => ({ rows: [], error: new SkvError('invalid-argument', 'bad range') });
    const d = new SkvClient({ servers: ['seed'], transport: u, backoffBaseMs: 1 });
    await expect(collect(d.scan('b', 'a'))).rejects.toMatchObject({ code: 'invalid-argument' });
    expect(u.scanCalls).toHaveLength(1);
  });

  it("starts a scan at the node serving its start key's range: the leader, or for timeline a replica", async () => {
    const t = new FakeTransport(() => putOk);
    t.scanAnswer = () => ({ rows: ['x'] });
    const c = new SkvClient({ servers: ['seed'], transport: t, backoffBaseMs: 1 });
    await collect(c.scan('n', null));
    await collect(c.scan('a', 'c'));
    await collect(c.scan('', null));
    expect(t.scanCalls).toEqual(['a1', 'a0', 'a0']);
    for (let i = 0; i < 20; i++) await collect(c.scan('q', null, { timeline: true }));
    expect(new Set(t.scanCalls.slice(3))).toEqual(new Set(['a0', 'a1', 'a2']));
  });

  it('gives up on an unreachable cluster when the deadline passes', async () => {
    const t = new FakeTransport(() => putOk);
    t.scanAnswer = () => ({ rows: [], error: new SkvError('unavailable', 'down') });
    const c = new SkvClient({ servers: ['seed'], transport: t, backoffBaseMs: 5 });
    await expect(collect(c.scan('a', null, { timeoutMs: 200 }))).rejects.toMatchObject({
      code: 'unavailable',
    });
    expect(t.scanCalls.length).toBeGreaterThan(1);
  });
});

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

  it('backs off and retries a write the range refused as overloaded; surfaces it on a read', async () => {
    const t = new FakeTransport((_a, op, n) => {
      if (n <= 3) throw new RemoteError('overloaded', 'too many writes in flight', 8, null);
      if (op.$case === 'get') throw new RemoteError('overloaded', 'answer too large', 8, null);
      return putOk;
    });
    const c = new SkvClient({ servers: ['seed'], transport: t, timeoutMs: 2000, backoffBaseMs: 5 });
    const started = performance.now();
    await expect(c.put('apple', 'c', 'v')).resolves.toBe(7);
    expect(t.calls.map((x) => x.address)).toEqual(['a0', 'a0', 'a0', 'a0']);
    // Three backoffs of at least 2.5, 5 and 10 ms (half the ceiling, jittered).
    expect(performance.now() - started).toBeGreaterThanOrEqual(17);
    await expect(c.get('apple', 'c')).rejects.toMatchObject({ code: 'overloaded' });
    expect(t.calls.length).toBe(5);
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
