// The TLS patch of deploy/README.md ("TLS"), checked the way an operator would use it (issue #7:
// probes that reach a port the server really serves; issue #8: TLS on that port).
//
// kubelet's built-in gRPC probes do not speak TLS, so with TLS on the README swaps them for exec
// probes running `skv health`, which reads the server's own SKV_TLS_* variables. Here the README's
// YAML block is added to the example overlay as an overlay of its own (what "add it to the
// overlay's patches" means), rendered with deploy/tools/kustomize-lite.ts, validated against the
// Kubernetes schemas, and checked for shape. Then one pod runs for real: the rendered container's
// argv and env (test/support/rehearsal-manifest.ts: only addresses, the ZooKeeper connect string
// and mount paths substituted) with throw-away certificates in the Secret's layout, in a UTS
// namespace named skv-0 as uid 10001; each probe's exec command must succeed with the pod's env,
// and a plaintext check (what a `grpc:` probe does) and one without a client certificate must fail.
//
// Needs root (unshare -u, setpriv), ZooKeeper installed, openssl and the built CLI (npm run build).

import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { StatefulSet } from 'kubernetes-models/apps/v1';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { renderKustomization } from '../deploy/tools/kustomize-lite.js';
import { freePort } from '../src/devtools/local-zookeeper.js';
import { createTestPki, type TestPki } from './support/certs.js';
import {
  type Container,
  containerPort,
  containerProcess,
  type Deployment,
  EXAMPLE_OVERLAY_DIR,
  loadDeployment,
  mountPath,
  type Probe,
  REPO_DIR,
  substitute,
} from './support/rehearsal-manifest.js';
import { Pod, type RunResult, runAs } from './support/rehearsal-pods.js';
import { startTestZooKeeper, type TestZooKeeper } from './support/zookeeper.js';

const BIN = path.join(REPO_DIR, 'bin', 'skv.js');
const MARKER = '<!-- tls-patch';
/** The image's PATH (node:20-bookworm-slim), after the directory standing in for /usr/local/bin. */
const IMAGE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const READY_TIMEOUT_MS = 45_000;
const PROBE_RUN_TIMEOUT_MS = 15_000;

/** The YAML block that follows the marker comment in deploy/README.md. */
function readmePatch(): string {
  const readme = readFileSync(path.join(REPO_DIR, 'deploy', 'README.md'), 'utf8');
  const at = readme.indexOf(MARKER);
  if (at < 0) throw new Error(`deploy/README.md has no ${MARKER} marker`);
  const m = /```yaml\n([\s\S]*?)\n```/.exec(readme.slice(at));
  if (m === null) throw new Error('no ```yaml block after the TLS marker');
  return `${m[1]}\n`;
}

/** An overlay over the example one with the README's patch; returns its directory. */
function patchedOverlay(root: string): string {
  const dir = path.join(root, 'overlay-tls');
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'skv-tls.yaml'), readmePatch());
  writeFileSync(
    path.join(dir, 'kustomization.yaml'),
    [
      'apiVersion: kustomize.config.k8s.io/v1beta1',
      'kind: Kustomization',
      'resources:',
      `  - ${path.relative(dir, EXAMPLE_OVERLAY_DIR)}`,
      'patches:',
      '  - path: skv-tls.yaml',
      '',
    ].join('\n'),
  );
  return dir;
}

type ProbeKind = 'startupProbe' | 'readinessProbe' | 'livenessProbe';
const PROBES: readonly ProbeKind[] = ['startupProbe', 'readinessProbe', 'livenessProbe'];
function probeOf(c: Container, kind: ProbeKind): Probe {
  const p = c[kind] as Probe | undefined;
  if (p === undefined) throw new Error(`no ${kind}`);
  return p;
}

describe('deploy/README.md, "TLS": the example overlay with the TLS patch', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'skv-deploy-tls-'));
  chmodSync(root, 0o755);
  const dep: Deployment = loadDeployment(patchedOverlay(root));
  const server = dep.server;
  const listenPort = containerPort(server, 'grpc');
  const env = (name: string) => server.env?.find((e) => e.name === name);
  const tlsDir = mountPath(server, 'tls');
  let zk: TestZooKeeper | null = null;
  let pki: TestPki | null = null;
  let pod: Pod | null = null;

  afterAll(async () => {
    await pod?.kill();
    await zk?.stop();
    await pki?.remove();
    rmSync(root, { recursive: true, force: true });
  });

  it('renders to a StatefulSet that validates against the Kubernetes schema', () => {
    const sts = dep.objects.find((o) => o.kind === 'StatefulSet' && o.metadata.name === 'skv');
    expect(() => new StatefulSet(sts as never).validate()).not.toThrow();
    expect(sts?.metadata.namespace).toBe(dep.namespace);
  });

  const hasKubectl =
    spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore', timeout: 20_000 }).status ===
    0;
  it.skipIf(!hasKubectl)('renders exactly as `kubectl kustomize` does', () => {
    const dir = path.join(root, 'overlay-tls');
    const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const objects = parseAllDocuments(r.stdout)
      .map((d) => d.toJS() as unknown)
      .filter((d) => d !== null);
    expect(renderKustomization(dir)).toEqual(objects);
  });

  it('replaces every gRPC probe by exactly one exec handler running `skv health` on the port', () => {
    for (const kind of PROBES) {
      const p = probeOf(server, kind) as Record<string, unknown>;
      const handlers = ['exec', 'grpc', 'httpGet', 'tcpSocket'].filter((h) => p[h] !== undefined);
      expect(handlers, kind).toEqual(['exec']);
      const cmd = probeOf(server, kind).exec?.command ?? [];
      expect(cmd.slice(0, 4), kind).toEqual(['skv', 'health', '--addr', `127.0.0.1:${listenPort}`]);
      const service = cmd.includes('--service') ? cmd[cmd.indexOf('--service') + 1] : '';
      expect(service, kind).toBe(kind === 'readinessProbe' ? 'skv.v1.KV' : '');
    }
  });

  it('points SKV_TLS_* at the Secret volume, per pod, after the variables they use', () => {
    const names = (server.env ?? []).map((e) => e.name);
    for (const v of ['SKV_TLS_CA', 'SKV_TLS_CERT', 'SKV_TLS_KEY']) {
      const value = env(v)?.value ?? '';
      expect(path.dirname(value), v).toBe(tlsDir);
      // Kubernetes expands $(VAR) in an env value only from variables listed before it.
      for (const m of value.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g))
        expect(names.slice(0, names.indexOf(v)), `${v} uses $(${m[1]})`).toContain(m[1]);
    }
    const podSpec = dep.statefulSet.template.spec as unknown as {
      volumes?: { name: string; secret?: { secretName?: string } }[];
    };
    expect(podSpec.volumes?.find((v) => v.name === 'tls')?.secret?.secretName).toBe('skv-tls');
  });

  it('serves TLS with the pod env, and each probe command passes where a plaintext one fails', async () => {
    const uid = dep.statefulSet.template.spec.securityContext?.runAsUser ?? 0;
    const gid = dep.statefulSet.template.spec.securityContext?.runAsGroup ?? uid;
    expect(uid).toBeGreaterThan(0);
    const podName = `${dep.statefulSetName}-0`;

    // The Secret skv-tls as the volume shows it: ca.crt and <pod>.crt/.key, mode 0440, group fsGroup.
    pki = await createTestPki();
    const cert = await pki.ca.issue('n0', { server: true });
    const secretDir = path.join(root, 'secret');
    mkdirSync(secretDir, { mode: 0o755 });
    for (const [from, to] of [
      [pki.ca.certFile, 'ca.crt'],
      [cert.certFile, `${podName}.crt`],
      [cert.keyFile, `${podName}.key`],
    ] as const) {
      copyFileSync(from, path.join(secretDir, to));
      chownSync(path.join(secretDir, to), 0, gid);
      chmodSync(path.join(secretDir, to), 0o440);
    }
    const dataDir = path.join(root, 'data');
    mkdirSync(dataDir, { mode: 0o755 });
    chownSync(dataDir, uid, gid);
    const binDir = path.join(root, 'bin');
    mkdirSync(binDir, { mode: 0o755 });
    symlinkSync(BIN, path.join(binDir, 'skv'));
    const cwd = path.join(root, 'app');
    mkdirSync(cwd, { mode: 0o555 });

    const tickTimeMs = 1000;
    zk = await startTestZooKeeper({ tickTimeMs });
    const zkConnect = dep.configMaps.get('skv-config')?.['zk-connect'] ?? '';
    const cluster = dep.configMaps.get('skv-config')?.cluster ?? '';
    const address = `127.0.0.1:${await freePort()}`;
    const metricsPort = containerPort(server, 'metrics');
    const raw = containerProcess(server, dep.image, {
      podName,
      namespace: dep.namespace,
      configMaps: dep.configMaps,
    });
    const spec = substitute(
      raw,
      [
        {
          from: `${podName}.${dep.statefulSet.serviceName}.${dep.namespace}.svc.cluster.local:${listenPort}`,
          to: address,
          why: 'the advertised peer DNS name',
        },
        { from: `0.0.0.0:${listenPort}`, to: address, why: 'the pod IP and its gRPC port' },
        {
          from: `0.0.0.0:${metricsPort}`,
          to: `127.0.0.1:${await freePort()}`,
          why: 'the metrics port',
        },
        { from: zkConnect, to: zk.connectString, why: 'the ZooKeeper ensemble' },
        { from: mountPath(server, 'data'), to: dataDir, why: 'the data volume' },
        { from: `${tlsDir}/ca.crt`, to: path.join(secretDir, 'ca.crt'), why: 'the Secret' },
        {
          from: `${tlsDir}/${podName}.crt`,
          to: path.join(secretDir, `${podName}.crt`),
          why: 'the Secret',
        },
        {
          from: `${tlsDir}/${podName}.key`,
          to: path.join(secretDir, `${podName}.key`),
          why: 'the Secret',
        },
      ],
      [
        { test: (v) => v.includes('svc.cluster.local'), what: 'a cluster DNS name' },
        { test: (v) => v.includes('0.0.0.0'), what: 'a wildcard bind address' },
        { test: (v) => v.startsWith(`${tlsDir}/`), what: 'the Secret mount path' },
      ],
    );
    expect(spec.env.get('SKV_TLS_CLIENT_AUTH'), 'the patch turns client auth on').toBeDefined();

    // The range map (one range over the example's node ids; n1 and n2 never start: a node is
    // Ready once its own cohorts are started, without peers).
    const nodes = dep.configMaps.get('skv-config')?.['initial-nodes'] ?? '';
    const init = await runAs(
      [
        process.execPath,
        BIN,
        'cluster',
        'init',
        '--zk',
        zk.connectString,
        '--cluster',
        cluster,
        '--nodes',
        nodes,
        '--ranges',
        '1',
      ],
      new Map([['PATH', IMAGE_PATH]]),
      { uid, gid, cwd, timeoutMs: PROBE_RUN_TIMEOUT_MS },
    );
    expect(init.code, init.stderr).toBe(0);

    const podPath = `${binDir}:${IMAGE_PATH}`;
    pod = await Pod.start({
      name: podName,
      spec,
      uid,
      gid,
      cwd,
      logFile: path.join(root, `${podName}.log`),
      path: podPath,
      home: '/nonexistent',
      nodeMarker: path.join(binDir, 'skv'),
    });
    // An exec probe runs in the container: its env, its user, its PATH.
    const probeEnv = new Map([...spec.env, ['PATH', podPath]]);
    // ...and dials 127.0.0.1:<listen port> in the pod's own network namespace, which here is
    // the pod's host port (exactly one argument is that address).
    const probe = (argv: readonly string[], e = probeEnv) => {
      const loopback = `127.0.0.1:${listenPort}`;
      expect(
        argv.filter((a) => a === loopback),
        argv.join(' '),
      ).toHaveLength(1);
      return runAs(
        argv.map((a) => (a === loopback ? address : a)),
        e,
        { uid, gid, cwd, timeoutMs: PROBE_RUN_TIMEOUT_MS },
      );
    };

    const readiness = probeOf(server, 'readinessProbe').exec?.command ?? [];
    const t0 = performance.now();
    let last: RunResult | null = null;
    while (performance.now() - t0 < READY_TIMEOUT_MS) {
      last = await probe(readiness);
      if (last.code === 0) break;
      if (!pod.running) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    if (last?.code !== 0) {
      const startupRun = await probe(probeOf(server, 'startupProbe').exec?.command ?? []);
      throw new Error(
        `readiness never passed (exit ${last?.code}: ${last?.stdout}${last?.stderr}); startup ` +
          `probe exit ${startupRun.code}: ${startupRun.stderr}\n${await pod.logTail(40)}`,
      );
    }
    console.log(
      `[deploy-tls] readiness exec probe passed ${(performance.now() - t0).toFixed(0)} ms after start`,
    );
    for (const kind of PROBES) {
      const r = await probe(probeOf(server, kind).exec?.command ?? []);
      expect(r.code, `${kind}: ${r.stderr}`).toBe(0);
    }

    // What a kubelet gRPC probe does: plaintext, no certificate. It must fail on this port.
    const plain = new Map([...probeEnv].filter(([k]) => !k.startsWith('SKV_TLS_')));
    expect((await probe(readiness, plain)).code, 'plaintext health on a TLS port').toBe(1);
    // The CA but no client certificate: refused under --tls-client-auth.
    const noCert = new Map(
      [...probeEnv].filter(([k]) => k !== 'SKV_TLS_CERT' && k !== 'SKV_TLS_KEY'),
    );
    expect((await probe(readiness, noCert)).code, 'no client certificate').toBe(1);
    // The node is still up and serving (the failures above were the client's).
    expect((await probe(readiness)).code).toBe(0);
  }, 120_000);
});

// parseAllDocuments: the README block must be one YAML document (one patch).
it('the README TLS block is one YAML document', () => {
  const docs = parseAllDocuments(readmePatch());
  expect(docs).toHaveLength(1);
  expect(docs[0]?.errors ?? []).toEqual([]);
});
