// The machine a side-by-side run came from, for the report: CPUs (nproc and the model name from
// /proc/cpuinfo), RAM (/proc/meminfo), the disk holding the data directories (df, and whether
// the block device is rotational), the kernel, Node, and the versions of the systems compared.
// Every probe is bounded and falls back to "unknown": the report is still written.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface MachineFacts {
  readonly nproc: number;
  readonly cpuModel: string;
  readonly memoryBytes: number;
  readonly disk: string;
  readonly kernel: string;
  readonly node: string;
  readonly etcd: string;
  readonly zookeeper: string;
  readonly skvCommit: string;
}

function run(cmd: string, args: readonly string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', timeout: 5_000, stdio: 'pipe' }).trim();
  } catch {
    return null;
  }
}

function read(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

export function cpuModel(cpuinfo: string | null): string {
  const m = /^model name\s*:\s*(.+)$/m.exec(cpuinfo ?? '');
  return m?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
}

export function memTotalBytes(meminfo: string | null): number {
  const m = /^MemTotal:\s+(\d+)\s+kB$/m.exec(meminfo ?? '');
  return m === null ? os.totalmem() : Number(m[1]) * 1024;
}

/** "ext4 on /dev/vda (252G, kernel rotational flag 1)" for the filesystem holding `dir`. */
export function diskOf(dir: string): string {
  const out = run('df', ['-hT', dir]);
  const fields = out?.split('\n')[1]?.trim().split(/\s+/);
  if (fields === undefined || fields.length < 3) return 'unknown';
  const [device, fsType, size] = fields;
  const base = /^\/dev\/([a-z]+)/.exec(device ?? '')?.[1];
  const rotational = base === undefined ? null : read(`/sys/block/${base}/queue/rotational`);
  // The kernel's flag, as the device reports it (virtual disks often say rotational).
  const kind = rotational === null ? '' : `, kernel rotational flag ${rotational.trim()}`;
  return `${fsType} on ${device} (${size}${kind})`;
}

export function machineFacts(o: {
  dataDir: string;
  etcdVersion: string;
  zooKeeperVersion: string;
}): MachineFacts {
  const head = run('git', ['rev-parse', '--short=12', 'HEAD']);
  const dirty = run('git', ['status', '--porcelain', '--untracked-files=no']);
  return {
    nproc: os.availableParallelism(),
    cpuModel: cpuModel(read('/proc/cpuinfo')),
    memoryBytes: memTotalBytes(read('/proc/meminfo')),
    disk: diskOf(o.dataDir),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    etcd: o.etcdVersion,
    zookeeper: o.zooKeeperVersion,
    skvCommit:
      head === null
        ? 'unknown'
        : `${head}${dirty !== null && dirty !== '' ? ' (with local changes)' : ''}`,
  };
}
