import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CommitLog } from './commit-log.js';
import type { LogRecord } from './format.js';
import { type LogFile, type LogFs, nodeLogFs } from './fs-port.js';
import { defaultLogFs, powerLossLogFs } from './power-loss-fs.js';

let dir: string;
const toClose: { close(): Promise<void> }[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'skv-powerloss-'));
});

afterEach(async () => {
  for (const c of toClose.splice(0).reverse()) await c.close().catch(() => {});
  await rm(dir, { recursive: true, force: true });
});

/** A file of `bytes` zeros, made durable through the real port. */
async function zeroFile(name: string, bytes: number): Promise<string> {
  const path = join(dir, name);
  const f = await nodeLogFs.create(path);
  await f.write(Buffer.alloc(bytes), 0);
  await f.datasync();
  await f.close();
  return path;
}

async function opened(fs: LogFs, path: string): Promise<LogFile> {
  const f = await fs.openExisting(path);
  toClose.push(f);
  return f;
}

/** The real port, with every opened file's writes going through `write` (to stage a crash). */
function writesThrough(
  write: (real: LogFile, data: Uint8Array, position: number) => Promise<void>,
): LogFs {
  return {
    ...nodeLogFs,
    async openExisting(p) {
      const real = await nodeLogFs.openExisting(p);
      toClose.push(real);
      return {
        ...real,
        read: (b, l, pos) => real.read(b, l, pos),
        sizeBytes: () => real.sizeBytes(),
        datasync: () => real.datasync(),
        close: () => real.close(),
        write: (d, pos) => write(real, d, pos),
      };
    },
  };
}

function bytesOf(text: string): Buffer {
  return Buffer.from(text);
}

describe('power-loss file port', () => {
  it('an unsynced write is gone after a crash (the process dropped without a sync)', async () => {
    const path = await zeroFile('a', 64);
    const f = await opened(powerLossLogFs(), path);
    await f.write(bytesOf('lost'), 8);
    // The writer's own reads see it...
    const seen = Buffer.alloc(4);
    expect(await f.read(seen, 4, 8)).toBe(4);
    expect(seen.toString()).toBe('lost');
    // ...the file does not: "crash" = drop the object; a new life opens the file afresh.
    expect((await readFile(path)).subarray(8, 12)).toEqual(Buffer.alloc(4));
    const after = await opened(powerLossLogFs(), path);
    const again = Buffer.alloc(4);
    await after.read(again, 4, 8);
    expect(again).toEqual(Buffer.alloc(4));
  });

  it('a write covered by a datasync survives the crash', async () => {
    const path = await zeroFile('b', 64);
    const f = await opened(powerLossLogFs(), path);
    await f.write(bytesOf('kept'), 8);
    await f.datasync();
    await f.write(bytesOf('gone'), 20);
    const file = await readFile(path);
    expect(file.subarray(8, 12).toString()).toBe('kept');
    expect(file.subarray(20, 24)).toEqual(Buffer.alloc(4));
  });

  it('close drops unsynced writes (a later power cut would have)', async () => {
    const port = powerLossLogFs();
    const path = await zeroFile('c', 64);
    const f = await port.openExisting(path);
    await f.write(bytesOf('xx'), 0);
    expect(port.stats).toMatchObject({ unsyncedWrites: 1, unsyncedBytes: 2 });
    await f.close();
    expect(port.stats).toEqual({ unsyncedWrites: 0, unsyncedBytes: 0, droppedWrites: 1 });
    expect((await readFile(path)).subarray(0, 2)).toEqual(Buffer.alloc(2));
  });

  it('reads overlay unsynced writes in order, past the end of the file too', async () => {
    const path = await zeroFile('d', 8);
    const f = await opened(powerLossLogFs(), path);
    await f.write(bytesOf('aaaa'), 2);
    await f.write(bytesOf('bb'), 4); // overlaps the first: the later write wins
    await f.write(bytesOf('zz'), 12); // past the end, with a gap at 8..12
    expect(await f.sizeBytes()).toBe(14);
    const buf = Buffer.alloc(20, 0xff);
    expect(await f.read(buf, 20, 0)).toBe(14);
    expect(buf.subarray(0, 14)).toEqual(Buffer.from('\0\0aabb\0\0\0\0\0\0zz', 'latin1'));
    // The caller may reuse its buffer: what was written is a copy.
    const reused = bytesOf('cc');
    await f.write(reused, 0);
    reused.fill(0x71);
    const two = Buffer.alloc(2);
    await f.read(two, 2, 0);
    expect(two.toString()).toBe('cc');
  });

  it('a crash in the middle of a datasync leaves at most a prefix of the batch being synced', async () => {
    const path = await zeroFile('e', 64);
    // An inner port that "crashes" (stops for good) after its first write of the second sync.
    let writes = 0;
    let crashed = false;
    const hang = new Promise<never>(() => {});
    const inner = writesThrough(async (real, d, pos) => {
      if (crashed) return hang;
      await real.write(d, pos);
      if (++writes === 2) crashed = true;
    });
    const f = await powerLossLogFs(inner).openExisting(path);
    await f.write(bytesOf('11'), 0);
    await f.datasync(); // batch 1: durable
    await f.write(bytesOf('22'), 10);
    await f.write(bytesOf('33'), 20);
    void f.datasync(); // batch 2: the crash lands after its first write
    await f.write(bytesOf('44'), 30); // after the sync began: the next batch, never written
    await new Promise((r) => setTimeout(r, 20));
    expect(crashed).toBe(true);
    const file = await readFile(path);
    expect(file.subarray(0, 2).toString()).toBe('11');
    expect(file.subarray(10, 12).toString()).toBe('22');
    expect(file.subarray(20, 22)).toEqual(Buffer.alloc(2));
    expect(file.subarray(30, 32)).toEqual(Buffer.alloc(2));
  });

  it('a crash during a slow datasync leaves a sector-aligned prefix of the flush in the file', async () => {
    const path = await zeroFile('f', 4096);
    // An inner port whose first write is reported and whose later writes never finish (the crash).
    let wroteOnce: () => void = () => {};
    const firstWrite = new Promise<void>((r) => {
      wroteOnce = r;
    });
    let writes = 0;
    const inner = writesThrough(async (real, d, pos) => {
      if (writes++ > 0) return new Promise<never>(() => {});
      await real.write(d, pos);
      wroteOnce();
    });
    // 2048 bytes at 100 span 5 sectors; random 0.5 picks k = floor(0.5 * 6) = 3 of them.
    const f = await powerLossLogFs(inner, { syncDelayMs: 10_000, random: () => 0.5 }).openExisting(
      path,
    );
    await f.write(Buffer.alloc(2048, 0x61), 100);
    void f.datasync();
    await firstWrite;
    const file = await readFile(path);
    expect(file.subarray(100, 1536)).toEqual(Buffer.alloc(1436, 0x61));
    expect(file.subarray(1536, 2148)).toEqual(Buffer.alloc(612));
    // The process itself still sees the whole write while its flush is under way.
    const seen = Buffer.alloc(2048);
    await f.read(seen, 2048, 100);
    expect(seen).toEqual(Buffer.alloc(2048, 0x61));
  });

  it('defaultLogFs is the real port unless SKV_TEST_POWER_LOSS=1', () => {
    expect(defaultLogFs({})).toBe(nodeLogFs);
    expect(defaultLogFs({ SKV_TEST_POWER_LOSS: '0' })).toBe(nodeLogFs);
    expect(defaultLogFs({ SKV_TEST_POWER_LOSS: '1' })).not.toBe(nodeLogFs);
    expect(() => defaultLogFs({ SKV_TEST_POWER_LOSS: 'yes' })).toThrow(/1 or 0/);
    expect(() =>
      defaultLogFs({ SKV_TEST_POWER_LOSS: '1', SKV_TEST_POWER_LOSS_SYNC_MS: 'slow' }),
    ).toThrow(/number of ms/);
  });
});

function entry(seq: number, text: string): LogRecord {
  return { type: 'entry', cohort: 1, lsn: { epoch: 1, seq }, kind: 1, payload: Buffer.from(text) };
}

async function texts(log: CommitLog): Promise<string[]> {
  const out: string[] = [];
  const c = log.cohort(1);
  for await (const e of c.readEntries(c.firstSeq)) out.push(Buffer.from(e.payload).toString());
  return out;
}

describe('CommitLog on the power-loss port', () => {
  const options = { segmentSizeBytes: 64 * 1024 };

  it('an append that resolved before its fdatasync is lost by a crash; durable ones are not', async () => {
    // The flush takes 1 s: long enough to "crash" while the second batch waits for it (none of
    // which reached the disk before the wait: random 0).
    const { log } = await CommitLog.open({
      dir,
      ...options,
      fs: powerLossLogFs(nodeLogFs, { syncDelayMs: 1000, random: () => 0 }),
    });
    toClose.push(log);
    await log.append([entry(1, 'durable')]);
    const unsynced = log.append([entry(2, 'written only')], { sync: false });
    await unsynced; // resolved: handed to the "OS", not yet synced
    // Crash: a new life opens the same directory while the old one never synced the second batch.
    const { log: again, report } = await CommitLog.open({ dir, ...options, fs: powerLossLogFs() });
    toClose.push(again);
    expect(report.tornTail).toBeNull();
    expect(await texts(again)).toEqual(['durable']);
    expect(again.cohort(1).lastDurableLsn).toEqual({ epoch: 1, seq: 1 });
  });

  it('every acknowledged append survives a crash right after it', async () => {
    const { log } = await CommitLog.open({ dir, ...options, fs: powerLossLogFs() });
    toClose.push(log);
    for (let s = 1; s <= 20; s++) await log.append([entry(s, `e${s}`)]);
    const { log: again } = await CommitLog.open({ dir, ...options, fs: powerLossLogFs() });
    toClose.push(again);
    expect((await texts(again)).length).toBe(20);
  });

  it('the same crash on the real port keeps the unsynced append (why the emulation exists)', async () => {
    const slowSync: LogFs = {
      ...nodeLogFs,
      async openExisting(p) {
        const f = await nodeLogFs.openExisting(p);
        return { ...wrapSlow(f) };
      },
      async create(p) {
        return wrapSlow(await nodeLogFs.create(p));
      },
    };
    const { log } = await CommitLog.open({ dir, ...options, fs: slowSync });
    toClose.push(log);
    await log.append([entry(1, 'durable')]);
    await log.append([entry(2, 'written only')], { sync: false });
    const { log: again } = await CommitLog.open({ dir, ...options, fs: nodeLogFs });
    toClose.push(again);
    expect(await texts(again)).toEqual(['durable', 'written only']);
  });
});

/** The real file, with a datasync that takes 1 s once the file holds records. */
function wrapSlow(f: LogFile): LogFile {
  let syncs = 0;
  return {
    write: (d, p) => f.write(d, p),
    read: (b, l, p) => f.read(b, l, p),
    sizeBytes: () => f.sizeBytes(),
    close: () => f.close(),
    async datasync() {
      // The first sync of a file is its preparation; later ones cover appended batches.
      if (syncs++ > 1) await new Promise((r) => setTimeout(r, 1000));
      return f.datasync();
    },
  };
}
