#!/usr/bin/env node
// Builds classic-level's LevelDB from the sources it ships, with skv's five changes, each
// explained where its edits are defined below: no compaction started by reads, a 64 MiB level 1,
// batches that may skip LevelDB's log, hardware CRC-32C, and snappy that stops trying on data
// that does not compress.
//
// Runs as the package's postinstall (npm ci / npm install). It needs python3, make and a C++
// compiler, and Node's headers (npm's nodedir, or node-gyp's download); when the build fails the
// install fails, with the reason (installed as a dependency, it only warns).
// SKV_LEVELDB_PREBUILT=1 skips it and keeps classic-level's shipped binary, which works but
// compacts on reads; the server logs a warning when it runs on that binary
// (src/storage/level/leveldb-build.ts reads the marker written here).
//
//   node scripts/build-leveldb.mjs           patch and build unless the marker says it is done
//   node scripts/build-leveldb.mjs --force   rebuild
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, sep } from 'node:path';

const require = createRequire(import.meta.url);

/** The classic-level release whose sources the edits below were written against. */
const CLASSIC_LEVEL_VERSION = '3.0.0';
/** Written next to the built binary; the server reads it to tell which LevelDB it runs. */
const MARKER = 'skv-leveldb.json';

// No seek compaction. LevelDB 1.20 charges a "seek" to a table whenever a get looks in it and
// then has to look in a second table, and compacts a table once it has been charged about one
// seek per 16 KiB. With random keys over a store several levels deep, nearly every read is
// charged, so the reads that follow a burst of writes rewrite the upper levels into the lower
// ones, gigabytes at a time (BENCHMARKS.md, "Size"). RocksDB removed seek compaction for the
// same reason; the bloom filters (10 bits per key, classic-level's setting) make the extra table
// lookups cheap. Size-triggered compaction, which bounds the tree, is unchanged.
const SEEK_FILE = 'deps/leveldb/leveldb-1.20/db/version_set.cc';
const SEEK_ANCHOR = `bool Version::UpdateStats(const GetStats& stats) {
  FileMetaData* f = stats.seek_file;`;
const SEEK_PATCHED = `bool Version::UpdateStats(const GetStats& stats) {
  // skv (scripts/build-leveldb.mjs): reads never schedule a compaction.
  if (stats.seek_file != NULL) return false;
  FileMetaData* f = stats.seek_file;`;

// Level 1 holds 64 MiB instead of 10 MiB (and each level below ten times the one above, as
// before): the size of level 0 when it is compacted (4 tables of skv's 16 MiB write buffer), as
// RocksDB sizes its base level. With 10 MiB, every level-0 compaction overfilled level 1 several
// times over, and a node's 1.4 GB at 10 M rows spread over five levels instead of four.
const LEVEL1_MIB = 64;
const LEVEL_ANCHOR = `  // Result for both level-0 and level-1
  double result = 10. * 1048576.0;`;
const LEVEL_PATCHED = `  // Result for both level-0 and level-1
  // skv (scripts/build-leveldb.mjs): ${LEVEL1_MIB} MiB, the size of level 0 when it is compacted.
  double result = ${LEVEL1_MIB}. * 1048576.0;`;

// A batch written with `skvNoLog: true` skips LevelDB's log: it lives in the memtable until the
// memtable is written to a table, and a crash before that loses it whole. skv writes a flushed
// memtable that way and then forces it into a synced table (flushToTables) before it reports
// the checkpoint, so its commit log covers the batch until then; with the log, every flushed
// byte went to the disk twice. Batches with and without log are never grouped into one write.
const DB_IMPL = 'deps/leveldb/leveldb-1.20/db/db_impl.cc';
const OPTIONS_H = 'deps/leveldb/leveldb-1.20/include/leveldb/options.h';
const NO_LOG_EDITS = [
  {
    file: OPTIONS_H,
    anchor: `  bool sync;

  WriteOptions()
      : sync(false) {`,
    patched: `  bool sync;

  // skv (scripts/build-leveldb.mjs): the write skips the log; it is durable only once its
  // memtable is written to a table (a crash before that loses it whole).
  bool skv_no_log;

  WriteOptions()
      : sync(false), skv_no_log(false) {`,
  },
  {
    file: DB_IMPL,
    anchor: `  bool sync;
  bool done;
  port::CondVar cv;`,
    patched: `  bool sync;
  bool no_log;  // skv
  bool done;
  port::CondVar cv;`,
  },
  {
    file: DB_IMPL,
    anchor: `  w.sync = options.sync;
  w.done = false;`,
    patched: `  w.sync = options.sync;
  w.no_log = options.skv_no_log;
  w.done = false;`,
  },
  {
    file: DB_IMPL,
    anchor: `      status = log_->AddRecord(WriteBatchInternal::Contents(updates));
      bool sync_error = false;
      if (status.ok() && options.sync) {
        status = logfile_->Sync();
        if (!status.ok()) {
          sync_error = true;
        }
      }`,
    patched: `      bool sync_error = false;
      if (!options.skv_no_log) {  // skv
      status = log_->AddRecord(WriteBatchInternal::Contents(updates));
      if (status.ok() && options.sync) {
        status = logfile_->Sync();
        if (!status.ok()) {
          sync_error = true;
        }
      }
      }`,
  },
  {
    file: DB_IMPL,
    anchor: `    if (w->sync && !first->sync) {`,
    patched: `    if (w->no_log != first->no_log) break;  // skv: never mix logged and unlogged
    if (w->sync && !first->sync) {`,
  },
  {
    file: 'binding.cc',
    anchor: `  leveldb::Status Write (bool sync) {
    leveldb::WriteOptions options;
    options.sync = sync;`,
    patched: `  leveldb::Status Write (bool sync, bool noLog) {
    leveldb::WriteOptions options;
    options.sync = sync;
    options.skv_no_log = noLog;`,
  },
  {
    file: 'binding.cc',
    anchor: `                    const bool sync)
    : PriorityWorker(env, batch->database_, deferred, "classic_level.batch.write"),
      batch_(batch),
      sync_(sync) {`,
    patched: `                    const bool sync,
                    const bool noLog)
    : PriorityWorker(env, batch->database_, deferred, "classic_level.batch.write"),
      batch_(batch),
      sync_(sync),
      noLog_(noLog) {`,
  },
  {
    file: 'binding.cc',
    anchor: `      SetStatus(batch_->Write(sync_));`,
    patched: `      SetStatus(batch_->Write(sync_, noLog_));`,
  },
  {
    file: 'binding.cc',
    anchor: `  Batch* batch_;
  const bool sync_;
  napi_ref contextRef_;`,
    patched: `  Batch* batch_;
  const bool sync_;
  const bool noLog_;
  napi_ref contextRef_;`,
  },
  {
    file: 'binding.cc',
    anchor: `  const bool sync = BooleanProperty(env, options, "sync", false);

  BatchWriteWorker* worker = new BatchWriteWorker(
    env, argv[0], batch, deferred, sync
  );`,
    patched: `  const bool sync = BooleanProperty(env, options, "sync", false);
  const bool noLog = BooleanProperty(env, options, "skvNoLog", false);

  BatchWriteWorker* worker = new BatchWriteWorker(
    env, argv[0], batch, deferred, sync, noLog
  );`,
  },
];

// Hardware CRC-32C. LevelDB 1.20 checksums every block it writes with CRC-32C, and uses the
// SSE 4.2 instruction only when the build defines LEVELDB_PLATFORM_POSIX_SSE and compiles this
// file with -msse4.2; classic-level's build does neither, so its table-driven loop took a tenth
// of a compaction thread's time at 10 M rows (BENCHMARKS.md "Size"). The function is compiled
// for SSE 4.2 on its own (a target attribute) and still asks the CPU at run time, as before.
const SSE_FILE = 'deps/leveldb/leveldb-1.20/port/port_posix_sse.cc';
const SSE_EDITS = [
  {
    file: SSE_FILE,
    anchor: `#include "port/port.h"

#if defined(LEVELDB_PLATFORM_POSIX_SSE)`,
    patched: `#include "port/port.h"

// skv (scripts/build-leveldb.mjs): SSE 4.2 CRC-32C on x86-64 without -msse4.2 for the build.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(LEVELDB_PLATFORM_POSIX_SSE)
#define LEVELDB_PLATFORM_POSIX_SSE 1
#define SKV_SSE42 __attribute__((target("sse4.2")))
#else
#define SKV_SSE42
#endif

#if defined(LEVELDB_PLATFORM_POSIX_SSE)`,
  },
  {
    file: SSE_FILE,
    anchor: `#elif defined(__GNUC__) && defined(__SSE4_2__)`,
    patched: `#elif defined(__GNUC__)  // skv: the function below is compiled for SSE 4.2`,
  },
  {
    file: SSE_FILE,
    anchor: `uint32_t AcceleratedCRC32C(uint32_t crc, const char* buf, size_t size) {`,
    patched: `SKV_SSE42 uint32_t AcceleratedCRC32C(uint32_t crc, const char* buf, size_t size) {`,
  },
];

// Snappy that stops trying on data that does not compress. LevelDB compresses every block it
// writes and keeps the result only if it is 12.5 % smaller; on values that do not compress
// (random, encrypted or already compressed bytes) that is a tenth of a compaction thread's time
// for nothing. After 8 blocks in a row that did not compress, a table builder stores the next
// 31 as they are and then tries again; data that compresses is compressed as before, except up
// to 31 blocks right after a run of 8 that did not. Every block still records its own
// compression type, so the tables are read as before.
const TABLE_BUILDER = 'deps/leveldb/leveldb-1.20/table/table_builder.cc';
const SNAPPY_EDITS = [
  {
    file: TABLE_BUILDER,
    anchor: `  std::string compressed_output;

  Rep(const Options& opt, WritableFile* f)`,
    patched: `  std::string compressed_output;
  int skv_incompressible;  // skv: blocks in a row that snappy did not shrink by 12.5 %
  int skv_skip;            // skv: blocks still to store without trying snappy

  Rep(const Options& opt, WritableFile* f)`,
  },
  {
    file: TABLE_BUILDER,
    anchor: `        pending_index_entry(false) {`,
    patched: `        pending_index_entry(false),
        skv_incompressible(0),
        skv_skip(0) {`,
  },
  {
    file: TABLE_BUILDER,
    anchor: `    case kSnappyCompression: {
      std::string* compressed = &r->compressed_output;
      if (port::Snappy_Compress(raw.data(), raw.size(), compressed) &&
          compressed->size() < raw.size() - (raw.size() / 8u)) {
        block_contents = *compressed;
      } else {
        // Snappy not supported, or compressed less than 12.5%, so just
        // store uncompressed form
        block_contents = raw;
        type = kNoCompression;
      }
      break;
    }`,
    patched: `    case kSnappyCompression: {
      std::string* compressed = &r->compressed_output;
      if (r->skv_skip > 0) {  // skv: see scripts/build-leveldb.mjs
        r->skv_skip--;
        block_contents = raw;
        type = kNoCompression;
      } else if (port::Snappy_Compress(raw.data(), raw.size(), compressed) &&
          compressed->size() < raw.size() - (raw.size() / 8u)) {
        block_contents = *compressed;
        r->skv_incompressible = 0;
      } else {
        // Snappy not supported, or compressed less than 12.5%, so just
        // store uncompressed form
        block_contents = raw;
        type = kNoCompression;
        if (++r->skv_incompressible >= 8) {
          r->skv_incompressible = 7;
          r->skv_skip = 31;
        }
      }
      break;
    }`,
  },
];

/** Each edit: file, the text it must find once, the text it leaves. */
const EDITS = [
  { file: SEEK_FILE, anchor: SEEK_ANCHOR, patched: SEEK_PATCHED },
  { file: SEEK_FILE, anchor: LEVEL_ANCHOR, patched: LEVEL_PATCHED },
  ...NO_LOG_EDITS,
  ...SSE_EDITS,
  ...SNAPPY_EDITS,
];
const PATCH_ID = createHash('sha256').update(JSON.stringify(EDITS)).digest('hex').slice(0, 16);

// Installed as another project's dependency (the client library), a failed build only warns:
// the prebuilt binary serves the same data, and such an install may have no compiler.
const asDependency = process.cwd().split(sep).includes('node_modules');

function fail(message) {
  console.error(`build-leveldb: ${message}`);
  console.error(
    "build-leveldb: set SKV_LEVELDB_PREBUILT=1 to keep classic-level's prebuilt binary instead (it compacts on reads)",
  );
  process.exit(asDependency ? 0 : 1);
}

if (process.env.SKV_LEVELDB_PREBUILT === '1') {
  console.log("build-leveldb: SKV_LEVELDB_PREBUILT=1, keeping classic-level's prebuilt binary");
  process.exit(0);
}

const pkgDir = dirname(require.resolve('classic-level/package.json'));
const version = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')).version;
if (version !== CLASSIC_LEVEL_VERSION) {
  fail(
    `classic-level is ${version}, the edits are written for ${CLASSIC_LEVEL_VERSION}: check them against its LevelDB sources and update CLASSIC_LEVEL_VERSION`,
  );
}

const markerPath = join(pkgDir, 'build', MARKER);
const binaryPath = join(pkgDir, 'build', 'Release', 'classic_level.node');
if (!process.argv.includes('--force') && existsSync(markerPath) && existsSync(binaryPath)) {
  const marker = JSON.parse(readFileSync(markerPath, 'utf8'));
  if (marker.patch === PATCH_ID && marker.node === process.versions.modules) {
    console.log(`build-leveldb: already built (patch ${PATCH_ID})`);
    process.exit(0);
  }
}

// Each source file read once, all its edits applied, written once if anything changed.
for (const file of new Set(EDITS.map((e) => e.file))) {
  const path = join(pkgDir, file);
  const original = readFileSync(path, 'utf8');
  let text = original;
  for (const edit of EDITS.filter((e) => e.file === file)) {
    if (text.includes(edit.patched)) continue;
    const at = text.indexOf(edit.anchor);
    if (at < 0 || text.indexOf(edit.anchor, at + 1) >= 0) {
      fail(`${file}: the text to change is not there exactly once`);
    }
    text = text.replace(edit.anchor, edit.patched);
  }
  if (text !== original) writeFileSync(path, text);
}

// node-gyp: the one npm runs scripts with, else the one bundled with this npm.
const npmCli = process.env.npm_execpath;
const candidates = [
  process.env.npm_config_node_gyp,
  npmCli
    ? join(dirname(npmCli), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')
    : undefined,
  join(
    dirname(process.execPath),
    '..',
    'lib',
    'node_modules',
    'npm',
    'node_modules',
    'node-gyp',
    'bin',
    'node-gyp.js',
  ),
];
const nodeGyp = candidates.find((p) => p !== undefined && existsSync(p));
if (nodeGyp === undefined) fail('node-gyp not found (it comes with npm)');

console.log(
  `build-leveldb: building classic-level ${version}'s LevelDB with skv's patch ${PATCH_ID}`,
);
const started = Date.now();
const args = [nodeGyp, 'rebuild', '--jobs=max'];
// Node's own headers, when this Node has them (node-gyp would otherwise download them): npm passes
// its nodedir setting as npm_config_nodedir; run by hand, look next to the node binary.
const prefix = join(dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node.h'))) {
  args.push(`--nodedir=${prefix}`);
}
const r = spawnSync(process.execPath, args, {
  cwd: pkgDir,
  stdio: ['ignore', 'pipe', 'pipe'],
  encoding: 'utf8',
  maxBuffer: 64 * 1024 * 1024,
});
if (r.status !== 0 || !existsSync(binaryPath)) {
  process.stderr.write(r.stdout.slice(-4000));
  process.stderr.write(r.stderr.slice(-8000));
  fail(`node-gyp rebuild failed (exit ${r.status ?? r.signal})`);
}
writeFileSync(
  markerPath,
  `${JSON.stringify({ patch: PATCH_ID, classicLevel: version, node: process.versions.modules, seekCompaction: false, level1Bytes: LEVEL1_MIB * 1024 * 1024, noLogBatches: true, hardwareCrc32c: true, adaptiveSnappy: true }, null, 2)}\n`,
);
console.log(`build-leveldb: built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
