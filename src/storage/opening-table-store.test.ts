import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LevelTableStore } from './level/level-table-store.js';
import { OpeningTableStore } from './opening-table-store.js';
import type { TableStore } from './table-store.js';

const b = (s: string) => Buffer.from(s);
const dirs: string[] = [];

afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function later(): Promise<{ dir: string; open: () => void; opening: Promise<TableStore> }> {
  const dir = await mkdtemp(join(tmpdir(), 'skv-opening-'));
  dirs.push(dir);
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { dir, open, opening: gate.then(() => LevelTableStore.open(dir)) };
}

async function all(
  t: TableStore,
  snapshot?: ReturnType<TableStore['snapshot']>,
): Promise<string[]> {
  const out: string[] = [];
  for await (const batch of t.iterate({
    gte: b('a'),
    lt: b('z'),
    ...(snapshot ? { snapshot } : {}),
  })) {
    for (const [k, v] of batch) out.push(`${k}=${v}`);
  }
  return out;
}

describe('OpeningTableStore', () => {
  it('calls made while the store opens wait for it; a snapshot taken before then is empty', async () => {
    const { open, opening } = await later();
    const t = new OpeningTableStore(opening);
    const before = t.snapshot();
    const batch = t.batch();
    const key = b('k1');
    batch.put(key, b('v1'));
    key.write('X'); // the batch copied the bytes
    const written = batch.write();
    const w2 = t.write([{ type: 'put', key: b('k2'), value: b('v2') }]);
    let settled = false;
    void written.then(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(settled).toBe(false);
    open();
    await Promise.all([written, w2]);
    expect(await t.get(b('k1'))).toEqual(b('v1'));
    expect(await t.get(b('k1'), before)).toBeUndefined();
    expect(await all(t, before)).toEqual([]);
    expect(await all(t)).toEqual(['k1=v1', 'k2=v2']);
    const after = t.snapshot();
    await t.write([{ type: 'del', key: b('k1') }]);
    expect(await all(t, after)).toEqual(['k1=v1', 'k2=v2']);
    await after.close();
    await before.close();
    await t.flushToTables();
    await t.close();
  });

  it('a failed open fails every call with its error', async () => {
    const t = new OpeningTableStore(Promise.reject(new Error('disk gone')));
    await expect(t.get(b('k'))).rejects.toThrow('disk gone');
    await expect(t.write([{ type: 'put', key: b('k'), value: b('v') }])).rejects.toThrow(
      'disk gone',
    );
    await expect(all(t)).rejects.toThrow('disk gone');
    await expect(t.flushToTables()).rejects.toThrow('disk gone');
    await expect(t.ready).rejects.toThrow('disk gone');
    await t.close();
  });
});
