import zookeeper from 'node-zookeeper-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestZooKeeper, type TestZooKeeper } from './support/zookeeper.js';

function connect(connectString: string): Promise<zookeeper.Client> {
  const client = zookeeper.createClient(connectString, { sessionTimeout: 2000 });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('connect timeout')), 10_000);
    client.once('connected', () => {
      clearTimeout(timer);
      resolve(client);
    });
    client.connect();
  });
}

describe('test ZooKeeper', () => {
  let zk: TestZooKeeper;
  beforeAll(async () => {
    zk = await startTestZooKeeper();
  });
  afterAll(async () => {
    await zk?.stop();
  });

  it('serves an ephemeral znode that vanishes with its session', async () => {
    const a = await connect(zk.connectString);
    const created = await new Promise<string>((resolve, reject) =>
      a.create('/probe', Buffer.from('hello'), zookeeper.CreateMode.EPHEMERAL, (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    expect(created).toBe('/probe');

    const b = await connect(zk.connectString);
    const data = await new Promise<Buffer | undefined>((resolve, reject) =>
      b.getData('/probe', (err, d) => (err ? reject(err) : resolve(d))),
    );
    expect(data?.toString()).toBe('hello');

    a.close();
    // The ephemeral znode goes away with a's session.
    const deadline = Date.now() + 10_000;
    let exists = true;
    while (exists && Date.now() < deadline) {
      exists = await new Promise<boolean>((resolve, reject) =>
        b.exists('/probe', (err, stat) =>
          err ? reject(err) : resolve(stat !== null && stat !== undefined),
        ),
      );
      if (exists) await new Promise((r) => setTimeout(r, 50));
    }
    expect(exists).toBe(false);
    b.close();
  });

  it('leaves no JVM behind after stop', async () => {
    const other = await startTestZooKeeper();
    const pid = other.zk.pid;
    expect(pid).toBeGreaterThan(0);
    await other.stop();
    expect(() => process.kill(pid, 0)).toThrow();
  });
});
