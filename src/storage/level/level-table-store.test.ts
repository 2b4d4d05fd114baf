import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LevelTableStore, parseLevelStats } from './level-table-store.js';

describe('LevelDB level stats', () => {
  it('parses leveldb.stats', () => {
    const text = [
      '                               Compactions',
      'Level  Files Size(MB) Time(sec) Read(MB) Write(MB)',
      '--------------------------------------------------',
      '  0        1        2         0        0         2',
      '  3      536     1033        45     1650      1604',
      '',
    ].join('\n');
    const MiB = 1024 * 1024;
    expect(parseLevelStats(text)).toEqual([
      {
        level: 0,
        files: 1,
        bytes: 2 * MiB,
        compactionSeconds: 0,
        compactionReadBytes: 0,
        compactionWrittenBytes: 2 * MiB,
      },
      {
        level: 3,
        files: 536,
        bytes: 1033 * MiB,
        compactionSeconds: 45,
        compactionReadBytes: 1650 * MiB,
        compactionWrittenBytes: 1604 * MiB,
      },
    ]);
  });

  it('reports the tables a flush wrote, from a real LevelDB', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'skv-level-stats-'));
    const store = await LevelTableStore.open(dir);
    try {
      expect(store.levelStats()).toEqual([]);
      for (let i = 0; i < 4; i++) {
        // Random values: LevelDB compresses its blocks, and these must not shrink.
        const ops = Array.from({ length: 1000 }, (_, j) => ({
          type: 'put' as const,
          key: Buffer.from(`k${String(i * 1000 + j).padStart(6, '0')}`),
          value: randomBytes(1000),
        }));
        await store.write(ops);
      }
      await store.flushToTables();
      const levels = store.levelStats();
      expect(levels.reduce((n, l) => n + l.files, 0)).toBeGreaterThanOrEqual(1);
      // ~4 MB of values, written once into whichever level the flush's table went to.
      expect(levels.reduce((n, l) => n + l.compactionWrittenBytes, 0)).toBeGreaterThanOrEqual(
        3 * 1024 * 1024,
      );
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
    expect(store.levelStats()).toEqual([]);
  });
});
