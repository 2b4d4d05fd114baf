// The private network of a Jepsen run (TESTING.md B.1): everything runs inside one `unshare -n`
// namespace with only `lo`, so no rule here can touch the host. Addresses:
//   nodes      127.0.0.11, .12, .13 (port 7000), each node process runs as its own uid
//   ZooKeeper  127.0.0.21:2181
//   proxies    127.0.1.<10*i+j>:7100 — the peer link from node i to node j
//   clients    the runner (root), source 127.0.0.1
//
// Why uids: a node's outgoing connections would all come from 127.0.0.1 (the kernel's source for
// 127/8), so iptables could not tell which node sent a packet. `-m owner --uid-owner` + SNAT
// gives each node's traffic its own source address, and a DNAT in nat/OUTPUT sends node i's
// connections to node j through the fault proxy of link i→j (no server flag needed); the proxy
// connects on from node i's address, so the proxied leg looks exactly like direct i→j traffic.
//
// Partitions are DROP rules in one chain of the raw table, jumped to from PREROUTING and OUTPUT:
// raw runs before conntrack's NAT, so PREROUTING sees a SNATed packet with its node source and
// OUTPUT sees a reply with its node destination (before the reverse NAT rewrites it). A one-way
// cut "a → b" is therefore `-s a -d b -j DROP` in that chain; heal = flush the chain.

import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const NODE_PORT = 7000;
export const ZK_HOST = '127.0.0.21';
export const ZK_PORT = 2181;
export const PROXY_PORT = 7100;
export const NODE_UID_BASE = 10011;
const CHAIN = 'SKV_FAULTS';

export function nodeHost(i: number): string {
  return `127.0.0.${11 + i}`;
}

export function proxyHost(from: number, to: number): string {
  return `127.0.1.${10 * from + to}`;
}

async function ipt(args: string[]): Promise<void> {
  await run('iptables', ['-w', ...args]);
}

/** Null when the network tools work here; otherwise why the suite must be skipped. */
export async function networkProblem(): Promise<string | null> {
  try {
    const { stdout } = await run('ip', ['-o', 'link', 'show']);
    const links = stdout.split('\n').filter((l) => l.trim() !== '');
    if (links.length !== 1 || !/\blo\b/.test(links[0] ?? '')) {
      return `not inside a private network namespace (links: ${links.length})`;
    }
  } catch (err) {
    return `ip link failed: ${String(err)}`;
  }
  try {
    await ipt(['-t', 'raw', '-L', '-n']);
  } catch (err) {
    return `iptables does not work here: ${String(err)}`;
  }
  if (process.getuid?.() !== 0) return 'the runner must be root inside the namespace';
  return null;
}

/** Installs the per-node source addresses, the proxy redirections and the empty fault chain. */
export async function setupNetwork(nodes: number, options: { proxied: boolean }): Promise<void> {
  for (let i = 0; i < nodes; i++) {
    const uid = String(NODE_UID_BASE + i);
    await ipt([
      '-t',
      'nat',
      '-A',
      'POSTROUTING',
      '-m',
      'owner',
      '--uid-owner',
      uid,
      '-j',
      'SNAT',
      '--to-source',
      nodeHost(i),
    ]);
    if (!options.proxied) continue;
    for (let j = 0; j < nodes; j++) {
      if (i === j) continue;
      await ipt([
        '-t',
        'nat',
        '-A',
        'OUTPUT',
        '-m',
        'owner',
        '--uid-owner',
        uid,
        '-p',
        'tcp',
        '-d',
        nodeHost(j),
        '--dport',
        String(NODE_PORT),
        '-j',
        'DNAT',
        '--to-destination',
        `${proxyHost(i, j)}:${PROXY_PORT}`,
      ]);
    }
  }
  await ipt(['-t', 'raw', '-N', CHAIN]);
  await ipt(['-t', 'raw', '-A', 'PREROUTING', '-j', CHAIN]);
  await ipt(['-t', 'raw', '-A', 'OUTPUT', '-j', CHAIN]);
}

/** Drops every packet from `a` to `b` (one way). */
export async function dropOneWay(a: string, b: string): Promise<void> {
  await ipt(['-t', 'raw', '-A', CHAIN, '-s', a, '-d', b, '-j', 'DROP']);
}

export async function dropBothWays(a: string, b: string): Promise<void> {
  await dropOneWay(a, b);
  await dropOneWay(b, a);
}

/** Drops a random share of the packets between a and b (both ways). */
export async function lossy(a: string, b: string, probability: number): Promise<void> {
  for (const [s, d] of [
    [a, b],
    [b, a],
  ] as const) {
    await ipt([
      '-t',
      'raw',
      '-A',
      CHAIN,
      '-s',
      s,
      '-d',
      d,
      '-m',
      'statistic',
      '--mode',
      'random',
      '--probability',
      String(probability),
      '-j',
      'DROP',
    ]);
  }
}

/** Heals every partition. */
export async function healNetwork(): Promise<void> {
  await ipt(['-t', 'raw', '-F', CHAIN]);
}

export async function faultRules(): Promise<string> {
  const { stdout } = await run('iptables', ['-w', '-t', 'raw', '-S', CHAIN]);
  return stdout;
}
