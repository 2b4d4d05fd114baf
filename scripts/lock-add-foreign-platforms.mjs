#!/usr/bin/env node
// The npm registry reachable from our machines serves only the linux-x64 builds of packages that
// ship per-platform binaries (biome, buf, esbuild): metadata for the other platforms answers 404,
// so `npm install` writes a package-lock.json without them, and `npm ci` then refuses the lock
// ("Missing: @biomejs/cli-darwin-arm64@ from lock file"). This script adds a stub entry for every
// missing platform package, carrying the os/cpu/libc that make npm skip it on any other machine.
// Run it after changing dependencies: `node scripts/lock-add-foreign-platforms.mjs`.
import { readFileSync, writeFileSync } from 'node:fs';

const OS = [
  'darwin',
  'linux',
  'win32',
  'android',
  'freebsd',
  'openbsd',
  'netbsd',
  'sunos',
  'aix',
  'openharmony',
  'cygwin',
];
const CPU = {
  arm64: 'arm64',
  x64: 'x64',
  ia32: 'ia32',
  arm: 'arm',
  armv7: 'arm',
  ppc64: 'ppc64',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mips64el: 'mips64el',
  x86_64: 'x64',
  aarch64: 'arm64',
  32: 'ia32',
  64: 'x64',
};

const path = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(path, 'utf8'));
let added = 0;
for (const [where, pkg] of Object.entries(lock.packages)) {
  for (const [name, version] of Object.entries(pkg.optionalDependencies ?? {})) {
    const nested = `${where === '' ? '' : `${where}/`}node_modules/${name}`;
    if (lock.packages[nested] !== undefined || lock.packages[`node_modules/${name}`] !== undefined)
      continue;
    const parts = name.split('/').pop().split('-');
    const os = parts.find((p) => OS.includes(p));
    const cpu = parts.map((p) => CPU[p]).find((c) => c !== undefined);
    if (os === undefined) continue; // not a platform package: leave it to npm
    const entry = { version, dev: pkg.dev === true || undefined, optional: true, os: [os] };
    if (cpu !== undefined) entry.cpu = [cpu];
    if (parts.includes('musl')) entry.libc = ['musl'];
    else if (os === 'linux') entry.libc = ['glibc'];
    lock.packages[`node_modules/${name}`] = entry;
    added++;
  }
}
lock.packages = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1)),
);
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`lock: added ${added} foreign-platform stubs`);
