// Which LevelDB this process runs: the one scripts/build-leveldb.mjs built from classic-level's
// sources with skv's patch (no compaction started by reads, a 64 MiB level 1, unlogged batches,
// hardware CRC-32C, snappy that stops trying on data that does not compress), or classic-level's
// prebuilt binary.
// classic-level loads build/Release/ before its prebuilds (node-gyp-build), and the build script
// writes its marker next to that binary.

import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export interface LevelDbBuild {
  /** True when the loaded binary is skv's build, in which reads start no compaction. */
  readonly patched: boolean;
  /** What was found, for the node's log. */
  readonly detail: string;
}

export function levelDbBuild(): LevelDbBuild {
  const require = createRequire(import.meta.url);
  const pkgDir = dirname(require.resolve('classic-level/package.json'));
  const binary = join(pkgDir, 'build', 'Release', 'classic_level.node');
  const markerPath = join(pkgDir, 'build', 'skv-leveldb.json');
  if (!existsSync(binary)) {
    return {
      patched: false,
      detail: 'classic-level prebuilt binary (reads start seek compactions)',
    };
  }
  try {
    const marker = JSON.parse(readFileSync(markerPath, 'utf8')) as {
      patch?: string;
      seekCompaction?: boolean;
      level1Bytes?: number;
      noLogBatches?: boolean;
      hardwareCrc32c?: boolean;
      adaptiveSnappy?: boolean;
    };
    if (marker.seekCompaction === false && typeof marker.patch === 'string') {
      const level1 = (marker.level1Bytes ?? 10 * 1024 * 1024) / (1024 * 1024);
      const features = [
        'no seek compaction',
        `level 1 ${level1} MiB`,
        ...(marker.noLogBatches === true ? ['unlogged batches'] : []),
        ...(marker.hardwareCrc32c === true ? ['hardware CRC-32C'] : []),
        ...(marker.adaptiveSnappy === true ? ['adaptive snappy'] : []),
      ];
      return { patched: true, detail: `skv build, patch ${marker.patch} (${features.join(', ')})` };
    }
  } catch {
    // No marker: a build/Release that scripts/build-leveldb.mjs did not make.
  }
  return { patched: false, detail: `unpatched build at ${binary} (reads start seek compactions)` };
}
