// Enforces STYLE.md's import rules ("Who may import whom") over every src/**/*.ts file:
// 1. src/core imports nothing outside src/core: no package, no node:* (or bare Node builtin).
// 2. src/replication and src/placement import only src/core (and themselves); no package,
//    no node:*. They are pure state machines / pure data.
// 3. Each third-party library has exactly one adapter folder: classic-level only in
//    src/storage/level/, node-zookeeper-client only in src/coordination/zookeeper/,
//    @grpc/grpc-js only in src/rpc/ (src/rpc/generated included).
// 4. Nothing outside src/sim imports src/sim (tests may).
// Test files (*.test.ts) are tests, not product code: in core/replication/placement they may
// also import the test tools (vitest, fast-check) and the simulator, and rules 3–4 do not apply
// to them. Type-only imports count: they are dependencies too. Folders that do not exist yet are
// simply not scanned. Imports are read with TypeScript's own pre-processor (static, dynamic,
// re-exports), so comments and strings that look like imports do not count.

import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, posix, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

interface SourceFile {
  /** Repository-relative, '/'-separated, e.g. 'src/core/lsn.ts'. */
  path: string;
  source: string;
}

interface Violation {
  file: string;
  importPath: string;
  rule: string;
}

const PURE_LAYERS = ['src/replication/', 'src/placement/'];
const TEST_TOOLS = new Set(['vitest', 'fast-check']);
const ADAPTERS: { pkg: string; folder: string }[] = [
  { pkg: 'classic-level', folder: 'src/storage/level/' },
  { pkg: 'node-zookeeper-client', folder: 'src/coordination/zookeeper/' },
  { pkg: '@grpc/grpc-js', folder: 'src/rpc/' },
];
const NODE_BUILTINS = new Set(builtinModules);

function importsOf(source: string): string[] {
  const info = ts.preProcessFile(source, true, true);
  return info.importedFiles.map((f) => f.fileName);
}

/** The package name of a bare specifier ('@scope/pkg/sub' -> '@scope/pkg'). */
function packageName(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? spec);
}

function isNodeBuiltin(spec: string): boolean {
  return spec.startsWith('node:') || NODE_BUILTINS.has(packageName(spec));
}

/** Repository-relative target of a relative import, or null for a bare specifier. */
function resolveRelative(file: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  return posix.normalize(posix.join(posix.dirname(file), spec));
}

const under = (path: string, folder: string): boolean => path.startsWith(folder);

/** Every rule violation in `files`, in file order. Pure, so it can be tested on fake trees. */
function importViolations(files: readonly SourceFile[]): Violation[] {
  const out: Violation[] = [];
  for (const { path: file, source } of files) {
    const isTest = file.endsWith('.test.ts');
    const inCore = under(file, 'src/core/');
    const pureLayer = PURE_LAYERS.find((l) => under(file, l));
    for (const spec of importsOf(source)) {
      const target = resolveRelative(file, spec);
      const report = (rule: string): void => {
        out.push({ file, importPath: spec, rule });
      };
      const testAllowed =
        isTest &&
        ((target === null && TEST_TOOLS.has(packageName(spec))) ||
          (target !== null && under(target, 'src/sim/')));

      if (inCore && !testAllowed) {
        if (target === null) {
          report(
            isNodeBuiltin(spec) ? 'core must not import node:*' : 'core must not import packages',
          );
        } else if (!under(target, 'src/core/')) {
          report('core imports nothing outside core');
        }
      }
      if (pureLayer !== undefined && !testAllowed) {
        const layer = pureLayer.slice('src/'.length, -1);
        if (target === null) {
          report(
            isNodeBuiltin(spec)
              ? `${layer} must not import node:*`
              : `${layer} must not import packages`,
          );
        } else if (!under(target, 'src/core/') && !under(target, pureLayer)) {
          report(`${layer} imports only core`);
        }
      }
      if (!isTest && target === null) {
        const adapter = ADAPTERS.find((a) => a.pkg === packageName(spec));
        if (adapter !== undefined && !under(file, adapter.folder)) {
          report(`${adapter.pkg} may be imported only in ${adapter.folder}`);
        }
      }
      if (!isTest && target !== null && under(target, 'src/sim/') && !under(file, 'src/sim/')) {
        report('nothing outside src/sim imports src/sim');
      }
    }
  }
  return out;
}

function listTs(root: string, dir: string): SourceFile[] {
  let entries: import('node:fs').Dirent[];
  try {
    entries = readdirSync(join(root, dir), { withFileTypes: true });
  } catch {
    return []; // a folder that does not exist yet
  }
  const out: SourceFile[] = [];
  for (const e of entries) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...listTs(root, rel));
    else if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) {
      out.push({ path: rel, source: readFileSync(join(root, rel), 'utf8') });
    }
  }
  return out;
}

describe('import rules (STYLE.md "Who may import whom")', () => {
  it('HoldForEverySourceFile', () => {
    const root = dirname(dirname(fileURLToPath(import.meta.url)));
    const files = listTs(root, 'src').map((f) => ({
      ...f,
      path: f.path.split(sep).join('/'),
    }));
    expect(files.length).toBeGreaterThan(0);
    const violations = importViolations(files);
    const report = violations.map((v) => `${v.file}: import '${v.importPath}' — ${v.rule}`);
    expect(report, `import rule violations:\n${report.join('\n')}`).toEqual([]);
  });
});

describe('importViolations (the rule function, on fake trees)', () => {
  const f = (path: string, ...imports: string[]): SourceFile => ({
    path,
    source: imports.map((i) => `import { x } from '${i}';`).join('\n'),
  });
  const rulesOf = (files: SourceFile[]) =>
    importViolations(files).map((v) => `${v.file} ${v.importPath} | ${v.rule}`);

  it('AcceptsALegalTree', () => {
    expect(
      rulesOf([
        f('src/core/lsn.ts', './assert.js'),
        f('src/core/lsn.test.ts', 'vitest', 'fast-check', './lsn.js'),
        f('src/replication/cohort.ts', '../core/lsn.js', './types.js'),
        f('src/replication/cohort.test.ts', 'vitest', '../sim/cluster.js'),
        f('src/placement/range-map.ts', '../core/ids.js'),
        f('src/storage/level/store.ts', 'classic-level', 'node:fs'),
        f('src/coordination/zookeeper/zk.ts', 'node-zookeeper-client'),
        f('src/rpc/server.ts', '@grpc/grpc-js'),
        f('src/rpc/generated/skv/v1/kv.ts', '@grpc/grpc-js'),
        f('src/sim/cluster.ts', '../replication/cohort.js', './checkers/history.js'),
        f('src/cli/main.ts', '../rpc/server.js', 'commander', 'node:process'),
        f('src/server/driver.test.ts', '../sim/network.js'),
      ]),
    ).toEqual([]);
  });

  it('ReportsCoreImportingOutsideCoreNodeOrPackages', () => {
    expect(
      rulesOf([f('src/core/x.ts', '../log/format.js', 'node:fs', 'fs', 'zod', './ok.js')]),
    ).toEqual([
      'src/core/x.ts ../log/format.js | core imports nothing outside core',
      'src/core/x.ts node:fs | core must not import node:*',
      'src/core/x.ts fs | core must not import node:*',
      'src/core/x.ts zod | core must not import packages',
    ]);
  });

  it('ReportsPureLayersImportingAnythingButCore', () => {
    expect(
      rulesOf([
        f('src/replication/a.ts', '../log/commit-log.js', 'node:crypto'),
        f('src/placement/b.ts', '../replication/types.js', 'zod'),
      ]),
    ).toEqual([
      'src/replication/a.ts ../log/commit-log.js | replication imports only core',
      'src/replication/a.ts node:crypto | replication must not import node:*',
      'src/placement/b.ts ../replication/types.js | placement imports only core',
      'src/placement/b.ts zod | placement must not import packages',
    ]);
  });

  it('ReportsALibraryUsedOutsideItsAdapterFolder', () => {
    expect(
      rulesOf([
        f('src/storage/memtable.ts', 'classic-level'),
        f('src/server/zk.ts', 'node-zookeeper-client'),
        f('src/client/c.ts', '@grpc/grpc-js'),
      ]),
    ).toEqual([
      'src/storage/memtable.ts classic-level | classic-level may be imported only in src/storage/level/',
      'src/server/zk.ts node-zookeeper-client | node-zookeeper-client may be imported only in src/coordination/zookeeper/',
      'src/client/c.ts @grpc/grpc-js | @grpc/grpc-js may be imported only in src/rpc/',
    ]);
  });

  it('ReportsProductCodeImportingTheSimulator', () => {
    expect(rulesOf([f('src/server/driver.ts', '../sim/clock.js')])).toEqual([
      'src/server/driver.ts ../sim/clock.js | nothing outside src/sim imports src/sim',
    ]);
  });

  it('SeesTypeOnlyDynamicAndReExportsButNotComments', () => {
    const file: SourceFile = {
      path: 'src/core/y.ts',
      source: [
        "import type { T } from 'zod';",
        "export { a } from '../log/a.js';",
        "const m = await import('node:fs');",
        "// import { x } from 'classic-level';",
        'const s = "import { y } from \'commander\'";',
      ].join('\n'),
    };
    expect(importViolations([file]).map((v) => v.importPath)).toEqual([
      'zod',
      '../log/a.js',
      'node:fs',
    ]);
  });
});
