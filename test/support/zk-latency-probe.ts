// Test-only probe: measures node-zookeeper-client reply latencies against a real local ZooKeeper,
// to reproduce and characterise the "withheld reply" (a lone request's reply arriving only with
// the session's next ping). Run: npx tsx test/support/zk-latency-probe.ts [iterations]
// Prints one line per (sessionTimeout, op, concurrency) with p50/p99/max in ms.

import zookeeper from 'node-zookeeper-client';
import { startTestZooKeeper } from './zookeeper.js';

type Op = 'setData' | 'create' | 'getData' | 'exists' | 'multi';

function connect(connectString: string, sessionTimeout: number): Promise<zookeeper.Client> {
  const client = zookeeper.createClient(connectString, { sessionTimeout });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('connect timeout')), 10_000);
    client.once('connected', () => {
      clearTimeout(timer);
      resolve(client);
    });
    client.connect();
  });
}

function run(client: zookeeper.Client, op: Op, path: string, i: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (err: unknown) => (err ? reject(err) : resolve());
    switch (op) {
      case 'setData':
        client.setData(path, Buffer.from(String(i)), -1, done);
        return;
      case 'create':
        client.create(
          `${path}/c-`,
          Buffer.from('x'),
          zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL,
          done,
        );
        return;
      case 'getData':
        client.getData(path, done);
        return;
      case 'exists':
        client.exists(path, done);
        return;
      case 'multi':
        client
          .transaction()
          .check(path)
          .setData(path, Buffer.from(String(i)))
          .commit(done);
        return;
    }
  });
}

function percentile(sorted: number[], p: number): number {
  const idx = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, idx)] ?? Number.NaN;
}

async function main(): Promise<void> {
  const iterations = Number(process.argv[2] ?? '30');
  const tickTimeMs = Number(process.env.PROBE_TICK_MS ?? '250');
  const zk = await startTestZooKeeper({ tickTimeMs });
  try {
    for (const sessionTimeout of (process.env.PROBE_SESSIONS ?? '2000,10000')
      .split(',')
      .map(Number)) {
      const client = await connect(zk.connectString, sessionTimeout);
      const base = `/probe-${sessionTimeout}`;
      await new Promise<void>((resolve, reject) =>
        client.create(base, Buffer.from('0'), (e) => (e ? reject(e) : resolve())),
      );
      // PROBE_WATCHERS=n: n other sessions keep a data and a child watch on the probed znode, as
      // the cohort's members do during an election, so each write also fires notifications.
      const watchers: zookeeper.Client[] = [];
      for (let w = 0; w < Number(process.env.PROBE_WATCHERS ?? '0'); w++) {
        const other = await connect(zk.connectString, sessionTimeout);
        const armData = (): void =>
          other.getData(
            base,
            () => armData(),
            () => {},
          );
        const armChildren = (): void =>
          other.getChildren(
            base,
            () => armChildren(),
            () => {},
          );
        armData();
        armChildren();
        watchers.push(other);
      }
      for (const op of ['setData', 'create', 'getData', 'exists', 'multi'] as const) {
        for (const concurrency of [1, 4]) {
          const latencies: number[] = [];
          for (let i = 0; i < iterations; i++) {
            // Let the connection go idle between requests, as an election's lone setData does.
            await new Promise((r) => setTimeout(r, Number(process.env.PROBE_GAP_MS ?? '20')));
            const t0 = performance.now();
            await Promise.all(
              Array.from({ length: concurrency }, (_, k) => run(client, op, base, i * 10 + k)),
            );
            latencies.push(performance.now() - t0);
          }
          latencies.sort((a, b) => a - b);
          console.log(
            `session=${sessionTimeout} op=${op} concurrency=${concurrency} n=${iterations} ` +
              `p50=${percentile(latencies, 50).toFixed(1)} p99=${percentile(latencies, 99).toFixed(1)} ` +
              `max=${(latencies.at(-1) ?? 0).toFixed(1)}`,
          );
        }
      }
      client.close();
      for (const other of watchers) other.close();
    }
  } finally {
    await zk.stop();
  }
}

await main();
