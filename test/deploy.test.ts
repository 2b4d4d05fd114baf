// The Kubernetes manifests and the image definition under deploy/, checked offline (issue #7).
//
// Every kustomization under deploy/k8s is rendered with deploy/tools/kustomize-lite.ts, which
// test/deploy-kustomize.test.ts proves equal to `kubectl kustomize` (what `kubectl apply -k`
// applies). Each rendered object is validated against the Kubernetes schemas of the
// kubernetes-models package, then the things that must agree are checked: the server flags the
// StatefulSet sets (by environment variable) against the server's flag contract, node ids from
// ordinals against the init Job's node list, ports, probes, data path, ZooKeeper address, the
// selectors of the Services and PodDisruptionBudgets, resources and non-root for every container,
// and the Containerfile's entrypoint against the manifests.
//
// kubernetes-models does not reject unknown fields (its schemas allow additional properties),
// so a misspelt optional field is caught only where a check below reads that field.

import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StatefulSet } from 'kubernetes-models/apps/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import {
  ConfigMap,
  type IContainer,
  type IEnvVar,
  type IPodSpec,
  type IProbe,
  Namespace,
  Service,
} from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import {
  findKustomizations,
  type KObject,
  renderKustomization,
} from '../deploy/tools/kustomize-lite.js';

const REPO = path.join(import.meta.dirname, '..');
const K8S_DIR = path.join(REPO, 'deploy', 'k8s');

// ---------------------------------------------------------------------------------------------
// The contract deployed against: `skv server` flags and their environment variables, as the
// built CLI prints them (`node bin/skv.js server --help`, commander's "(env: X)"; needs dist/,
// `npm run build`). Issue #7: every server setting reachable by a flag and an environment
// variable, documented.

interface ServerFlag {
  readonly flag: string;
  /** '' when the help names no environment variable for the flag. */
  readonly env: string;
}
/** Every visible option of a commander help text but --help, with its environment variable. */
function parseServerFlags(help: string): ServerFlag[] {
  const lines = help.split('\n');
  const start = lines.findIndex((l) => l.trim() === 'Options:');
  if (start < 0) return [];
  // An entry starts at "  --flag" or "  -x, --flag"; its description wraps onto deeper lines.
  const entries: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (/^ {2}(?:-\w, )?--[a-z0-9-]+/.test(line)) entries.push(line);
    else if (/^ {3,}\S/.test(line) && entries.length > 0)
      entries[entries.length - 1] += ` ${line.trim()}`;
    else if (line.trim() !== '') break;
  }
  return entries
    .map((e) => ({
      flag: /--[a-z0-9-]+/.exec(e)?.[0] ?? '',
      env: /\benv: ([A-Z][A-Z0-9_]*)\)/.exec(e)?.[1] ?? '',
    }))
    .filter((f) => f.flag !== '--help');
}
const serverHelp = spawnSync(
  process.execPath,
  [path.join(REPO, 'bin', 'skv.js'), 'server', '--help'],
  { encoding: 'utf8', timeout: 30_000 },
);
const SERVER_FLAGS: readonly ServerFlag[] = parseServerFlags(serverHelp.stdout);
/** Environment the pods may set besides the flags: the downward API and Node.js itself. */
const OTHER_POD_ENV = new Set(['POD_NAME', 'NAMESPACE', 'NODE_OPTIONS']);
/** `skv cluster init` exit code for "a range map already exists". */
const INIT_EXIT_ALREADY_EXISTS = 3;
const GRPC_PORT = 7001;
const METRICS_PORT = 9090;
const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** `--id-from-hostname`: StatefulSet pod `<set>-<ordinal>` is node `n<ordinal>`. */
function nodeIdFromHostname(hostname: string): string {
  const m = /-(\d+)$/.exec(hostname);
  if (m === null) throw new Error(`hostname ${hostname} has no ordinal`);
  return `n${Number(m[1])}`;
}

// ---------------------------------------------------------------------------------------------
// Schema validation with kubernetes-models.

type ModelClass = new (data: never) => { validate(): void };
const MODELS: Record<string, ModelClass> = {
  'v1/Namespace': Namespace as unknown as ModelClass,
  'v1/ConfigMap': ConfigMap as unknown as ModelClass,
  'v1/Service': Service as unknown as ModelClass,
  'apps/v1/StatefulSet': StatefulSet as unknown as ModelClass,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget as unknown as ModelClass,
  'batch/v1/Job': Job as unknown as ModelClass,
};

function validateObject(o: KObject): void {
  const Cls = MODELS[`${o.apiVersion}/${o.kind}`];
  if (Cls === undefined) throw new Error(`no schema wired for ${o.apiVersion} ${o.kind}`);
  new Cls(o as never).validate();
}

// ---------------------------------------------------------------------------------------------
// Typed views of the rendered objects.

interface Rendered {
  readonly name: string;
  readonly objects: readonly KObject[];
}

interface StatefulSetView {
  metadata: { name: string; namespace?: string };
  spec: {
    replicas: number;
    serviceName: string;
    podManagementPolicy?: string;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: IPodSpec };
    volumeClaimTemplates?: { metadata: { name: string } }[];
  };
}
interface ServiceView {
  metadata: { name: string };
  spec: {
    clusterIP?: string;
    publishNotReadyAddresses?: boolean;
    selector: Record<string, string>;
    ports: { name?: string; port: number; targetPort?: string | number }[];
  };
}
interface PdbView {
  metadata: { name: string };
  spec: { maxUnavailable?: number | string; selector: { matchLabels: Record<string, string> } };
}
interface JobView {
  metadata: { name: string };
  spec: { template: { metadata: { labels: Record<string, string> }; spec: IPodSpec } };
}
interface ConfigMapView {
  metadata: { name: string };
  data: Record<string, string>;
}

function ofKind<T>(r: Rendered, kind: string): T[] {
  return r.objects.filter((o) => o.kind === kind) as unknown as T[];
}
function one<T>(r: Rendered, kind: string, name: string): T {
  const found = r.objects.filter((o) => o.kind === kind && o.metadata.name === name);
  expect(found, `${r.name}: exactly one ${kind}/${name}`).toHaveLength(1);
  return found[0] as unknown as T;
}
function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}
function onlyContainer(spec: IPodSpec, name: string): IContainer {
  const c = spec.containers.find((x) => x.name === name);
  if (c === undefined) throw new Error(`no container ${name}`);
  return c;
}
function envOf(c: IContainer, name: string): IEnvVar | undefined {
  return (c.env ?? []).find((e) => e.name === name);
}
/** The literal value of an env var, or the ConfigMap value it refers to. */
function resolveEnv(r: Rendered, c: IContainer, name: string): string {
  const e = envOf(c, name);
  if (e === undefined) throw new Error(`${c.name}: env ${name} is not set`);
  if (e.value !== undefined) return e.value;
  const ref = e.valueFrom?.configMapKeyRef;
  if (ref === undefined)
    throw new Error(`${c.name}: env ${name} is neither a value nor a ConfigMap key`);
  const cm = one<ConfigMapView>(r, 'ConfigMap', ref.name ?? '');
  const v = cm.data[ref.key];
  if (v === undefined) throw new Error(`ConfigMap ${ref.name} has no key ${ref.key}`);
  return v;
}
function hostPort(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  return { host: addr.slice(0, i), port: Number(addr.slice(i + 1)) };
}
/** The port a probe targets, resolving a named port against the container. */
function probePort(c: IContainer, p: IProbe | undefined): number | undefined {
  const raw = p?.grpc?.port ?? p?.httpGet?.port ?? p?.tcpSocket?.port;
  if (typeof raw === 'number') return raw;
  return (c.ports ?? []).find((x) => x.name === raw)?.containerPort;
}

// ---------------------------------------------------------------------------------------------

const overlays: Rendered[] = findKustomizations(path.join(K8S_DIR, 'overlays')).map((dir) => ({
  name: path.relative(K8S_DIR, dir),
  objects: renderKustomization(dir),
}));
const base: Rendered = { name: 'base', objects: renderKustomization(path.join(K8S_DIR, 'base')) };
const all: Rendered[] = [base, ...overlays];

describe('every rendered object', () => {
  it('finds the example overlays', () => {
    expect(overlays.map((o) => o.name)).toEqual([
      'overlays/example',
      'overlays/external-zookeeper',
    ]);
  });

  it.each(all.map((r) => [r.name, r] as const))(
    '%s: validates against the Kubernetes schemas',
    (_n, r) => {
      expect(r.objects.length).toBeGreaterThan(0);
      for (const o of r.objects) {
        expect(() => validateObject(o), `${o.kind}/${o.metadata.name}`).not.toThrow();
      }
    },
  );

  it('a broken object fails validation (the validator is live)', () => {
    const sts = structuredClone(
      one<StatefulSetView>(base, 'StatefulSet', 'skv'),
    ) as unknown as KObject;
    (sts.spec as { replicas: unknown }).replicas = 'three';
    expect(() => validateObject(sts)).toThrow(/replicas/);
  });

  it.each(overlays.map((r) => [r.name, r] as const))(
    '%s: puts every namespaced object in one namespace it creates',
    (_n, r) => {
      const namespaces = ofKind<{ metadata: { name: string } }>(r, 'Namespace');
      expect(namespaces).toHaveLength(1);
      const ns = namespaces[0]?.metadata.name;
      for (const o of r.objects) {
        if (o.kind !== 'Namespace')
          expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(ns);
      }
    },
  );

  it('leaves the base namespace-agnostic', () => {
    for (const o of base.objects) expect(o.metadata.namespace).toBeUndefined();
  });

  it.each(all.map((r) => [r.name, r] as const))(
    '%s: every container has resources and runs as non-root',
    (_n, r) => {
      const pods: { owner: string; spec: IPodSpec }[] = [
        ...ofKind<StatefulSetView>(r, 'StatefulSet').map((s) => ({
          owner: s.metadata.name,
          spec: s.spec.template.spec,
        })),
        ...ofKind<JobView>(r, 'Job').map((j) => ({
          owner: j.metadata.name,
          spec: j.spec.template.spec,
        })),
      ];
      expect(pods.length).toBeGreaterThan(0);
      for (const { owner, spec } of pods) {
        for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
          const where = `${owner}/${c.name}`;
          for (const kind of ['requests', 'limits'] as const) {
            expect(c.resources?.[kind]?.cpu, `${where} ${kind}.cpu`).toBeDefined();
            expect(c.resources?.[kind]?.memory, `${where} ${kind}.memory`).toBeDefined();
          }
          const runAsNonRoot =
            c.securityContext?.runAsNonRoot ?? spec.securityContext?.runAsNonRoot;
          const runAsUser = c.securityContext?.runAsUser ?? spec.securityContext?.runAsUser;
          expect(runAsNonRoot, `${where} runAsNonRoot`).toBe(true);
          expect(runAsUser, `${where} runAsUser`).toBeGreaterThan(0);
          expect(c.securityContext?.allowPrivilegeEscalation, `${where}`).toBe(false);
          expect(c.securityContext?.capabilities?.drop, `${where}`).toContain('ALL');
        }
      }
    },
  );

  it.each(all.map((r) => [r.name, r] as const))(
    '%s: every $(VAR) reference is defined before use',
    (_n, r) => {
      const pods = [
        ...ofKind<StatefulSetView>(r, 'StatefulSet').map((s) => s.spec.template.spec),
        ...ofKind<JobView>(r, 'Job').map((j) => j.spec.template.spec),
      ];
      const refs = (s: string) =>
        [...s.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)].map((m) => m[1]);
      for (const spec of pods) {
        for (const c of spec.containers) {
          const env = c.env ?? [];
          // Kubernetes expands $(VAR) in an env value only from variables listed before it.
          env.forEach((e, i) => {
            for (const ref of refs(e.value ?? '')) {
              expect(
                env.slice(0, i).map((x) => x.name),
                `${c.name}: ${e.name} uses $(${ref})`,
              ).toContain(ref);
            }
          });
          for (const arg of [...(c.command ?? []), ...(c.args ?? [])]) {
            for (const ref of refs(arg)) {
              expect(
                env.map((x) => x.name),
                `${c.name}: argument uses $(${ref})`,
              ).toContain(ref);
            }
          }
        }
      }
    },
  );
});

describe.each(all.map((r) => [r.name, r] as const))('%s: the skv StatefulSet', (_n, r) => {
  const sts = one<StatefulSetView>(r, 'StatefulSet', 'skv');
  const pod = sts.spec.template.spec;
  const c = onlyContainer(pod, 'skv');
  const replicas = sts.spec.replicas;

  it('sets only server flags through their environment variables, and the core ones', () => {
    const flagEnv = new Set(SERVER_FLAGS.map((f) => f.env));
    for (const e of c.env ?? []) {
      expect(flagEnv.has(e.name) || OTHER_POD_ENV.has(e.name), `unknown env ${e.name}`).toBe(true);
    }
    expect(c.args).toEqual(['server']);
    for (const env of ['SKV_LISTEN', 'SKV_ADVERTISE', 'SKV_ZK', 'SKV_DATA', 'SKV_CLUSTER']) {
      expect(envOf(c, env), env).toBeDefined();
    }
    expect(LOG_LEVELS.has(resolveEnv(r, c, 'SKV_LOG_LEVEL'))).toBe(true);
  });

  it('gives pod skv-<i> node id n<i> and the init Job exactly those ids', () => {
    expect(resolveEnv(r, c, 'SKV_ID_FROM_HOSTNAME')).toBe('1');
    expect(envOf(c, 'SKV_ID'), 'a fixed SKV_ID would give every pod the same id').toBeUndefined();
    const ids = Array.from({ length: replicas }, (_, i) =>
      nodeIdFromHostname(`${sts.metadata.name}-${i}`),
    );
    expect(ids).toEqual(Array.from({ length: replicas }, (_, i) => `n${i}`));
    const job = onlyContainer(
      one<JobView>(r, 'Job', 'skv-cluster-init').spec.template.spec,
      'cluster-init',
    );
    const args = job.args ?? [];
    const nodesArg = args[args.indexOf('--nodes') + 1] ?? '';
    const nodes = nodesArg.replace(/^\$\((\w+)\)$/, (_m, v: string) => resolveEnv(r, job, v));
    expect(nodes.split(',')).toEqual(ids);
    expect(replicas).toBeGreaterThanOrEqual(3);
  });

  it('listens for gRPC on 7001 and advertises its stable peer name on the same port', () => {
    const listen = hostPort(resolveEnv(r, c, 'SKV_LISTEN'));
    expect(listen).toEqual({ host: '0.0.0.0', port: GRPC_PORT });
    expect(c.ports).toContainEqual({ name: 'grpc', containerPort: GRPC_PORT });
    expect(resolveEnv(r, c, 'SKV_ADVERTISE')).toBe(
      `$(POD_NAME).${sts.spec.serviceName}.$(NAMESPACE).svc.cluster.local:${GRPC_PORT}`,
    );
    expect(envOf(c, 'POD_NAME')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.name');
    expect(envOf(c, 'NAMESPACE')?.valueFrom?.fieldRef?.fieldPath).toBe('metadata.namespace');
  });

  it('serves metrics on the port the pods and the peer Service expose', () => {
    const metrics = hostPort(resolveEnv(r, c, 'SKV_METRICS_LISTEN'));
    expect(metrics).toEqual({ host: '0.0.0.0', port: METRICS_PORT });
    expect(c.ports).toContainEqual({ name: 'metrics', containerPort: METRICS_PORT });
  });

  it('keeps its data directory on the volumeClaimTemplate', () => {
    const data = resolveEnv(r, c, 'SKV_DATA');
    expect(data).toBe('/data');
    const mount = (c.volumeMounts ?? []).find((m) => m.mountPath === data);
    expect(mount).toBeDefined();
    expect((sts.spec.volumeClaimTemplates ?? []).map((v) => v.metadata.name)).toContain(
      mount?.name,
    );
    // With a read-only root filesystem only mounted paths are writable.
    expect(c.securityContext?.readOnlyRootFilesystem).toBe(true);
    expect((c.volumeMounts ?? []).map((m) => m.mountPath)).toContain('/tmp');
  });

  it('probes the gRPC health service on the port the server serves', () => {
    for (const [kind, probe] of [
      ['startup', c.startupProbe],
      ['readiness', c.readinessProbe],
      ['liveness', c.livenessProbe],
    ] as const) {
      expect(probe?.grpc, `${kind} is a gRPC probe`).toBeDefined();
      expect(probePort(c, probe), kind).toBe(hostPort(resolveEnv(r, c, 'SKV_LISTEN')).port);
    }
    expect(c.readinessProbe?.grpc?.service).toBe('skv.v1.KV');
  });

  it('lets the server hand leadership over before the kubelet kills it', () => {
    const preStop = c.lifecycle?.preStop?.exec?.command ?? [];
    expect(preStop[0]).toBe('sleep');
    const preStopMs = Number(preStop[1]) * 1000;
    const graceMs = Number(resolveEnv(r, c, 'SKV_SHUTDOWN_GRACE_MS'));
    expect(graceMs).toBeGreaterThan(0);
    expect((pod.terminationGracePeriodSeconds ?? 30) * 1000).toBeGreaterThan(preStopMs + graceMs);
  });

  it('starts all pods in parallel and spreads them over machines', () => {
    // OrderedReady would start skv-1 only once skv-0 is Ready (range map there, its logs
    // replayed): one pod's start after another, and no range has 2 of 3 nodes until skv-1 is up.
    expect(sts.spec.podManagementPolicy).toBe('Parallel');
    const rules =
      pod.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
    expect(
      rules.some(
        (t) =>
          t.topologyKey === 'kubernetes.io/hostname' &&
          selects(t.labelSelector?.matchLabels ?? {}, sts.spec.template.metadata.labels),
      ),
    ).toBe(true);
  });

  it('selects its own pods, and the Services and the PDB select them too (and not the Job)', () => {
    const labels = sts.spec.template.metadata.labels;
    expect(selects(sts.spec.selector.matchLabels, labels)).toBe(true);
    const jobLabels = one<JobView>(r, 'Job', 'skv-cluster-init').spec.template.metadata.labels;
    const peers = one<ServiceView>(r, 'Service', sts.spec.serviceName);
    expect(peers.metadata.name).toBe('skv-peers');
    expect(peers.spec.clusterIP).toBe('None');
    expect(peers.spec.publishNotReadyAddresses).toBe(true);
    const client = one<ServiceView>(r, 'Service', 'skv');
    for (const svc of [peers, client]) {
      expect(selects(svc.spec.selector, labels), svc.metadata.name).toBe(true);
      expect(selects(svc.spec.selector, jobLabels), svc.metadata.name).toBe(false);
      for (const p of svc.spec.ports) {
        const target = (c.ports ?? []).find(
          (x) => x.name === p.targetPort || x.containerPort === p.targetPort,
        );
        expect(target?.containerPort, `${svc.metadata.name}:${p.port}`).toBe(p.port);
      }
      expect(svc.spec.ports.map((p) => p.port)).toContain(GRPC_PORT);
    }
    const pdb = one<PdbView>(r, 'PodDisruptionBudget', 'skv');
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(selects(pdb.spec.selector.matchLabels, labels)).toBe(true);
    expect(selects(pdb.spec.selector.matchLabels, jobLabels)).toBe(false);
  });
});

describe.each(all.map((r) => [r.name, r] as const))('%s: the cluster init Job', (_n, r) => {
  const job = one<JobView>(r, 'Job', 'skv-cluster-init');
  const c = onlyContainer(job.spec.template.spec, 'cluster-init');
  const sts = one<StatefulSetView>(r, 'StatefulSet', 'skv');
  const server = onlyContainer(sts.spec.template.spec, 'skv');

  it("runs `skv cluster init` with the StatefulSet's ZooKeeper address and cluster name", () => {
    const args = c.args ?? [];
    expect(args.slice(0, 2)).toEqual(['cluster', 'init']);
    const flagValue = (flag: string) => {
      const i = args.indexOf(flag);
      expect(i, flag).toBeGreaterThan(1);
      return (args[i + 1] ?? '').replace(/^\$\((\w+)\)$/, (_m, v: string) => resolveEnv(r, c, v));
    };
    expect(flagValue('--zk')).toBe(resolveEnv(r, server, 'SKV_ZK'));
    expect(flagValue('--cluster')).toBe(resolveEnv(r, server, 'SKV_CLUSTER'));
    expect(Number(flagValue('--ranges'))).toBeGreaterThanOrEqual(1);
    // Same ConfigMap keys, not merely equal values today.
    expect(envOf(c, 'SKV_ZK')?.valueFrom).toEqual(envOf(server, 'SKV_ZK')?.valueFrom);
    expect(envOf(c, 'SKV_CLUSTER')?.valueFrom).toEqual(envOf(server, 'SKV_CLUSTER')?.valueFrom);
    expect(c.image).toBe(server.image);
  });

  it('treats exit 3 (map exists) as success and passes every other exit code through', () => {
    const command = c.command ?? [];
    expect(command.slice(0, 2)).toEqual(['/bin/sh', '-c']);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'skv-init-job-'));
    try {
      const fake = path.join(dir, 'skv');
      writeFileSync(fake, '#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_OUT"\nexit "$FAKE_RC"\n');
      chmodSync(fake, 0o755);
      const args = ['cluster', 'init', '--nodes', 'n0,n1,n2', '--zk', 'a:1,b:2'];
      const run = (rc: number) =>
        spawnSync(command[0] ?? '', [...command.slice(1), ...args], {
          env: {
            PATH: `${dir}:/usr/bin:/bin`,
            FAKE_RC: String(rc),
            ARGS_OUT: path.join(dir, 'args'),
          },
          encoding: 'utf8',
        });
      expect(run(0).status).toBe(0);
      expect(readFileSync(path.join(dir, 'args'), 'utf8').trim().split('\n')).toEqual(args);
      expect(run(INIT_EXIT_ALREADY_EXISTS).status).toBe(0);
      expect(run(1).status).toBe(1);
      expect(run(2).status).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ZooKeeper', () => {
  const bundled = overlays.filter((r) =>
    r.objects.some((o) => o.kind === 'StatefulSet' && o.metadata.name === 'skv-zk'),
  );

  it('is bundled in one example and external in the other', () => {
    expect(bundled.map((r) => r.name)).toEqual(['overlays/example']);
  });

  it.each(all.map((r) => [r.name, r] as const))(
    '%s: every zk-connect host resolves to a rendered object or is fully qualified',
    (_n, r) => {
      const server = onlyContainer(
        one<StatefulSetView>(r, 'StatefulSet', 'skv').spec.template.spec,
        'skv',
      );
      const connect = resolveEnv(r, server, 'SKV_ZK');
      const services = ofKind<ServiceView>(r, 'Service');
      const sets = ofKind<StatefulSetView>(r, 'StatefulSet');
      for (const hp of connect.split(',')) {
        const { host, port } = hostPort(hp);
        expect(port, hp).toBeGreaterThan(0);
        const labels = host.split('.');
        if (labels.length === 1) {
          // A Service in the same namespace. Only the base may leave it to the overlay.
          if (r.name !== 'base')
            expect(
              services.map((s) => s.metadata.name),
              hp,
            ).toContain(host);
        } else if (labels.length === 2) {
          // <statefulset>-<i>.<headless service>: a pod of a rendered StatefulSet.
          const [podName = '', svcName = ''] = labels;
          const set = sets.find(
            (s) => s.spec.serviceName === svcName && podName.startsWith(`${s.metadata.name}-`),
          );
          expect(set, hp).toBeDefined();
          const ordinal = Number(podName.slice((set?.metadata.name.length ?? 0) + 1));
          expect(ordinal, hp).toBeLessThan(set?.spec.replicas ?? 0);
          const svc = one<ServiceView>(r, 'Service', svcName);
          expect(svc.spec.clusterIP).toBe('None');
          expect(svc.spec.publishNotReadyAddresses).toBe(true);
          expect(selects(svc.spec.selector, set?.spec.template.metadata.labels ?? {})).toBe(true);
          const zk = set?.spec.template.spec.containers[0];
          expect(zk?.ports, hp).toContainEqual({ name: 'client', containerPort: port });
        } else {
          expect(host, 'a name outside the namespace is fully qualified').toMatch(
            /\.svc\.cluster\.local$|\.[a-z]{2,}$/,
          );
        }
      }
    },
  );

  describe.each(bundled.map((r) => [r.name, r] as const))('%s: the bundled ensemble', (_n, r) => {
    const zk = one<StatefulSetView>(r, 'StatefulSet', 'skv-zk');
    const c = onlyContainer(zk.spec.template.spec, 'zookeeper');
    const env = (name: string) => resolveEnv(r, c, name);

    it('lists exactly its own pods in ZOO_SERVERS, with myid = ordinal + 1', () => {
      const servers = env('ZOO_SERVERS').split(/\s+/);
      expect(servers).toEqual(
        Array.from(
          { length: zk.spec.replicas },
          (_, i) =>
            `server.${i + 1}=${zk.metadata.name}-${i}.${zk.spec.serviceName}:2888:3888;2181`,
        ),
      );
      expect(zk.spec.replicas % 2, 'an odd ensemble').toBe(1);
      for (let i = 0; i < zk.spec.replicas; i++) {
        const run = runZkCommand(`${zk.metadata.name}-${i}`, null);
        expect(run.status, run.stderr).toBe(0);
        expect(run.entrypoint).toEqual({ zooMyId: String(i + 1), myid: String(i + 1) });
      }
    });

    // The image's entrypoint writes $ZOO_DATA_DIR/myid only when it is missing (docker-library
    // zookeeper), and ZOO_DATA_DIR is the PVC; so the container's command must rewrite it.
    // `fakeEntrypoint` does what the image's does with myid, then reports what it saw.
    const fakeEntrypoint = [
      '#!/bin/bash',
      `if [[ ! -f "$ZOO_DATA_DIR/myid" ]]; then echo "\${ZOO_MY_ID:-1}" > "$ZOO_DATA_DIR/myid"; fi`,
      'printf "%s|%s|%s\\n" "$ZOO_MY_ID" "$(cat "$ZOO_DATA_DIR/myid")" "$*"',
    ].join('\n');
    /** Runs the container's command in `hostname` with a data dir holding `myid` (null: none). */
    function runZkCommand(
      hostname: string,
      myid: string | null,
    ): {
      status: number | null;
      stderr: string;
      entrypoint: { zooMyId: string; myid: string } | null;
      myidAfter: string | null;
    } {
      const command = c.command ?? [];
      expect(command.slice(0, 2)).toEqual(['bash', '-c']);
      const script = command[2] ?? '';
      const real = 'exec /docker-entrypoint.sh zkServer.sh start-foreground';
      expect(script.split(real), 'the command ends by exec-ing the image entrypoint').toHaveLength(
        2,
      );
      const dir = mkdtempSync(path.join(os.tmpdir(), 'skv-zk-myid-'));
      try {
        const dataDir = path.join(dir, 'data');
        mkdirSync(dataDir);
        if (myid !== null) writeFileSync(path.join(dataDir, 'myid'), `${myid}\n`);
        const fake = path.join(dir, 'docker-entrypoint.sh');
        writeFileSync(fake, fakeEntrypoint, { mode: 0o755 });
        const out = spawnSync(
          'bash',
          ['-c', script.replace(real, `exec ${fake} zkServer.sh start-foreground`)],
          {
            env: { HOSTNAME: hostname, ZOO_DATA_DIR: dataDir, PATH: '/usr/bin:/bin' },
            encoding: 'utf8',
          },
        );
        const [zooMyId = '', seen = '', args = ''] = out.stdout.trim().split('|');
        if (out.stdout !== '') expect(args).toBe('zkServer.sh start-foreground');
        const myidFile = path.join(dataDir, 'myid');
        return {
          status: out.status,
          stderr: out.stderr,
          entrypoint: out.stdout === '' ? null : { zooMyId, myid: seen },
          myidAfter: existsSync(myidFile) ? readFileSync(myidFile, 'utf8').trim() : null,
        };
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }

    it('rewrites myid on a volume restored from another server (a wrong myid already there)', () => {
      expect(env('ZOO_DATA_DIR')).toBe('/data');
      // skv-zk-2's volume restored from skv-zk-0's snapshot holds myid 1.
      const run = runZkCommand(`${zk.metadata.name}-2`, '1');
      expect(run.status, run.stderr).toBe(0);
      expect(run.entrypoint).toEqual({ zooMyId: '3', myid: '3' });
      expect(run.myidAfter).toBe('3');
    });

    it('the fake entrypoint alone keeps a wrong myid (so the test above can fail)', () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'skv-zk-myid-'));
      try {
        writeFileSync(path.join(dir, 'myid'), '1\n');
        const fake = path.join(dir, 'docker-entrypoint.sh');
        writeFileSync(fake, fakeEntrypoint, { mode: 0o755 });
        const out = spawnSync(fake, ['zkServer.sh', 'start-foreground'], {
          env: { ZOO_MY_ID: '3', ZOO_DATA_DIR: dir, PATH: '/usr/bin:/bin' },
          encoding: 'utf8',
        });
        expect(out.stdout.trim()).toBe('3|1|zkServer.sh start-foreground');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('refuses a hostname without an ordinal instead of defaulting to myid 1', () => {
      const run = runZkCommand('zookeeper', '2');
      expect(run.status).not.toBe(0);
      expect(run.entrypoint).toBeNull();
      expect(run.myidAfter).toBe('2');
    });

    it("accepts skv's session timeout as asked (2 x tickTime <= timeout <= 20 x tickTime)", () => {
      const tickMs = Number(env('ZOO_TICK_TIME'));
      const server = onlyContainer(
        one<StatefulSetView>(r, 'StatefulSet', 'skv').spec.template.spec,
        'skv',
      );
      const sessionMs = Number(resolveEnv(r, server, 'SKV_SESSION_TIMEOUT_MS'));
      expect(sessionMs).toBeGreaterThanOrEqual(2 * tickMs);
      expect(sessionMs).toBeLessThanOrEqual(20 * tickMs);
    });

    it('keeps its data on its volume, is spread over machines and covered by a PDB', () => {
      expect(env('ZOO_DATA_DIR')).toBe('/data');
      expect(env('ZOO_DATA_LOG_DIR').startsWith('/data/')).toBe(true);
      expect((c.volumeMounts ?? []).find((m) => m.mountPath === '/data')?.name).toBe(
        zk.spec.volumeClaimTemplates?.[0]?.metadata.name,
      );
      expect(zk.spec.podManagementPolicy).toBe('Parallel');
      const pdb = one<PdbView>(r, 'PodDisruptionBudget', 'skv-zk');
      expect(pdb.spec.maxUnavailable).toBe(1);
      expect(selects(pdb.spec.selector.matchLabels, zk.spec.template.metadata.labels)).toBe(true);
      const skvLabels = one<StatefulSetView>(r, 'StatefulSet', 'skv').spec.template.metadata.labels;
      expect(selects(pdb.spec.selector.matchLabels, skvLabels)).toBe(false);
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
        expect(probe).toBeDefined();
        const port = probePort(c, probe);
        if (port !== undefined) expect((c.ports ?? []).map((p) => p.containerPort)).toContain(port);
      }
    });
  });
});

// ---------------------------------------------------------------------------------------------
// The image definition.

interface Instruction {
  readonly op: string;
  readonly args: string;
  readonly stage: number;
}
function parseContainerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  const joined = text.replace(/\\\n/g, ' ');
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (m === null) continue;
    const op = (m[1] ?? '').toUpperCase();
    if (op === 'FROM') stage++;
    out.push({ op, args: (m[2] ?? '').trim(), stage });
  }
  return out;
}

/**
 * A .dockerignore as a predicate on repository-relative file paths: the last pattern that
 * matches the path or one of its parent directories decides (`!` admits). Supports what
 * deploy/Containerfile.dockerignore uses: `*`, `**` and `!`.
 */
function dockerignoreFilter(text: string): (rel: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const admit = l.startsWith('!');
      const glob = admit ? l.slice(1) : l;
      let re = '';
      for (let i = 0; i < glob.length; i++) {
        const ch = glob[i] ?? '';
        if (ch === '*' && glob[i + 1] === '*') {
          const slash = glob[i + 2] === '/';
          re += slash ? '(?:.*/)?' : '.*';
          i += slash ? 2 : 1;
        } else if (ch === '*') re += '[^/]*';
        else re += ch.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
      }
      return { admit, re: new RegExp(`^${re}$`) };
    });
  return (rel) => {
    const parts = rel.split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let admitted = true;
    for (const r of rules) if (prefixes.some((p) => r.re.test(p))) admitted = r.admit;
    return admitted;
  };
}

describe('deploy/Containerfile', () => {
  const instructions = parseContainerfile(
    readFileSync(path.join(REPO, 'deploy', 'Containerfile'), 'utf8'),
  );
  const last = Math.max(...instructions.map((i) => i.stage));
  const final = instructions.filter((i) => i.stage === last);
  const finalOp = (op: string) => final.filter((i) => i.op === op);
  const example = overlays.find((r) => r.name === 'overlays/example') ?? base;
  const server = onlyContainer(
    one<StatefulSetView>(example, 'StatefulSet', 'skv').spec.template.spec,
    'skv',
  );

  it('builds on node:20-bookworm-slim in two stages, production dependencies only at run time', () => {
    expect(instructions.find((i) => i.op === 'ARG')?.args).toBe('NODE_IMAGE=node:20-bookworm-slim');
    expect(instructions.filter((i) => i.op === 'FROM').map((i) => i.args)).toEqual([
      `${'$'}{NODE_IMAGE} AS build`,
      `${'$'}{NODE_IMAGE} AS runtime`,
    ]);
    expect(
      instructions.some((i) => i.stage === 0 && i.op === 'RUN' && /npm run build/.test(i.args)),
    ).toBe(true);
    const runs = finalOp('RUN').map((i) => i.args);
    expect(runs.some((a) => /npm ci --omit=dev/.test(a))).toBe(true);
    expect(finalOp('COPY').map((i) => i.args)).toEqual(
      expect.arrayContaining([
        '--from=build /src/dist/src ./dist/src',
        'bin ./bin',
        'proto ./proto',
      ]),
    );
  });

  it('runs as uid 10001 with `skv server` as entrypoint and command', () => {
    expect(finalOp('USER').map((i) => i.args)).toEqual(['10001:10001']);
    expect(finalOp('ENTRYPOINT').map((i) => JSON.parse(i.args))).toEqual([['skv']]);
    expect(finalOp('CMD').map((i) => JSON.parse(i.args))).toEqual([['server']]);
    // The StatefulSet's user and arguments agree with the image.
    expect(server.command).toBeUndefined();
    expect(server.args).toEqual(['server']);
    const podUser = one<StatefulSetView>(example, 'StatefulSet', 'skv').spec.template.spec
      .securityContext?.runAsUser;
    expect(podUser).toBe(10001);
    expect(
      finalOp('RUN').some((i) => i.args.includes('ln -s /app/bin/skv.js /usr/local/bin/skv')),
    ).toBe(true);
  });

  it('health-checks with `skv health` on the port the server listens on, and declares /data', () => {
    const hc = finalOp('HEALTHCHECK')[0]?.args ?? '';
    const cmd = JSON.parse(hc.slice(hc.indexOf('CMD') + 3).trim()) as string[];
    expect(cmd.slice(0, 3)).toEqual(['skv', 'health', '--addr']);
    expect(hostPort(cmd[3] ?? '').port).toBe(
      hostPort(resolveEnv(example, server, 'SKV_LISTEN')).port,
    );
    expect(finalOp('VOLUME').map((i) => i.args)).toEqual(['["/data"]']);
    expect(finalOp('ENV').some((i) => i.args.includes('SKV_DATA=/data'))).toBe(true);
  });

  it("gives the build stage every file its build compiles (tsconfig.build.json's relative imports)", () => {
    // The build context is what deploy/Containerfile.dockerignore admits; the build stage then
    // COPYs some of it. A file the compiled sources import that is missing from either fails
    // `npm run build` inside the image build only (deploy/tools was, once).
    const admitted = dockerignoreFilter(
      readFileSync(path.join(REPO, 'deploy', 'Containerfile.dockerignore'), 'utf8'),
    );
    const copied = instructions
      .filter((i) => i.stage === 0 && i.op === 'COPY' && !i.args.startsWith('--from'))
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    const generated = readFileSync(path.join(REPO, 'buf.gen.yaml'), 'utf8')
      .split('\n')
      .map((l) => /^\s*out:\s*(\S+)/.exec(l)?.[1])
      .filter((x): x is string => x !== undefined);
    expect(generated.length).toBeGreaterThan(0);
    const inBuild = (rel: string) =>
      generated.some((g) => rel.startsWith(`${g}/`)) ||
      (admitted(rel) && copied.some((c) => rel === c || rel.startsWith(`${c}/`)));
    const buildConfig = JSON.parse(
      readFileSync(path.join(REPO, 'tsconfig.build.json'), 'utf8'),
    ) as { include: string[] };
    const sources = buildConfig.include.flatMap((dir) =>
      (readdirSync(path.join(REPO, dir), { recursive: true }) as string[])
        .map((f) => path.join(dir, f))
        .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && !inGenerated(f)),
    );
    function inGenerated(rel: string): boolean {
      return generated.some((g) => rel.startsWith(`${g}/`));
    }
    expect(sources.length).toBeGreaterThan(50);
    const missing: string[] = [];
    for (const rel of sources) {
      if (!inBuild(rel)) missing.push(rel);
      const text = readFileSync(path.join(REPO, rel), 'utf8');
      for (const m of text.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)) {
        const target = path.join(path.dirname(rel), (m[1] ?? '').replace(/\.js$/, '.ts'));
        if (!inBuild(target)) missing.push(`${target} (imported by ${rel})`);
      }
    }
    expect(missing).toEqual([]);
    // ...and the filter is live: it keeps tests and what the build does not need out.
    expect(admitted('deploy/README.md')).toBe(false);
    expect(admitted('test/support/zookeeper.ts')).toBe(true);
    expect(admitted('test/deploy.test.ts')).toBe(false);
  });

  it('gives the runtime stage every module and package the entrypoint imports', () => {
    // From bin/skv.js, follow relative imports (dist/<p>.js is compiled from <p>.ts) and collect
    // the packages they import. What is reached only through a dynamic import() (the bench's
    // etcd target and its devDependency etcd3) loads on demand, not at start: its files must be
    // in the image, its packages need not be. The runtime stage has the dist directories it COPYs from the
    // build, the production dependencies (npm ci --omit=dev), and the node_modules it COPYs.
    const copiedFromBuild = finalOp('COPY')
      .filter((i) => i.args.startsWith('--from=build /src/'))
      .map((i) => (i.args.split(/\s+/)[1] ?? '').slice('/src/'.length));
    const lock = JSON.parse(readFileSync(path.join(REPO, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; dependencies?: Record<string, string> }>;
    };
    const seen = new Set<string>();
    const seenLazily = new Set<string>();
    const packages = new Set<string>();
    const lazyPackages = new Set<string>();
    const notCopied: string[] = [];
    const visit = (rel: string, from: string, lazy = false) => {
      if (seen.has(rel) || (lazy && seenLazily.has(rel))) return;
      (lazy ? seenLazily : seen).add(rel);
      const compiled = rel === 'bin/skv.js' ? rel : `dist/${rel.replace(/\.ts$/, '.js')}`;
      const inImage =
        rel === 'bin/skv.js' || copiedFromBuild.some((c) => compiled.startsWith(`${c}/`));
      if (!inImage) notCopied.push(`${compiled} (imported by ${from})`);
      const text = readFileSync(path.join(REPO, rel), 'utf8');
      const specs = text.matchAll(
        /^\s*(?:import|export)\s[^'";]*?from\s*'([^']+)'|^\s*import\s*'([^']+)'|import\(\s*'([^']+)'\s*\)/gm,
      );
      for (const m of specs) {
        const spec = m[1] ?? m[2] ?? m[3] ?? '';
        const lazyHere = lazy || m[3] !== undefined;
        if (spec.startsWith('.')) {
          let target = path.normalize(path.join(path.dirname(rel), spec));
          if (target.startsWith('dist/')) target = target.slice('dist/'.length);
          visit(target.replace(/\.js$/, '.ts'), rel, lazyHere);
        } else if (!spec.startsWith('node:')) {
          const parts = spec.split('/');
          const name = (spec.startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)).join('/');
          (lazyHere ? lazyPackages : packages).add(name);
        }
      }
    };
    visit('bin/skv.js', 'the ENTRYPOINT');
    expect(seen.size).toBeGreaterThan(30);
    expect(notCopied).toEqual([]);
    // The etcd target is reached, lazily (a static import would make etcd3 a start-up need).
    expect(lazyPackages.has('etcd3')).toBe(true);
    expect(packages.has('etcd3')).toBe(false);
    // Every package reached at start, with its dependencies from the lock; the dev-only ones
    // must be copied from the build stage, and nothing else is.
    const devReached = new Set<string>();
    const walked = new Set<string>();
    const walk = (name: string) => {
      if (walked.has(name)) return;
      walked.add(name);
      const entry = lock.packages[`node_modules/${name}`];
      expect(entry, `${name} is in package-lock.json`).toBeDefined();
      if (entry?.dev === true) devReached.add(`node_modules/${name}`);
      for (const dep of Object.keys(entry?.dependencies ?? {})) walk(dep);
    };
    for (const p of packages) walk(p);
    // skv's LevelDB build (scripts/build-leveldb.mjs) replaces classic-level's prebuilt binary.
    const leveldbBuild = copiedFromBuild.filter((c) =>
      c.startsWith('node_modules/classic-level/build/'),
    );
    expect(leveldbBuild.sort()).toEqual([
      'node_modules/classic-level/build/Release/classic_level.node',
      'node_modules/classic-level/build/skv-leveldb.json',
    ]);
    expect(
      instructions.some(
        (i) => i.stage === 0 && i.op === 'RUN' && i.args.includes('node scripts/build-leveldb.mjs'),
      ),
    ).toBe(true);
    const copiedModules = copiedFromBuild.filter(
      (c) => c.startsWith('node_modules/') && !leveldbBuild.includes(c),
    );
    expect([...copiedModules].sort()).toEqual([...devReached].sort());
  });

  it('copies only paths that exist in the repository', () => {
    for (const i of instructions.filter((x) => x.op === 'COPY' && !x.args.startsWith('--from'))) {
      const sources = i.args.split(/\s+/).slice(0, -1);
      for (const s of sources) expect(existsSync(path.join(REPO, s)), s).toBe(true);
    }
  });

  it('the entrypoint is an executable node script that the built CLI answers', () => {
    const bin = path.join(REPO, 'bin', 'skv.js');
    expect(readFileSync(bin, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    const mode = spawnSync('git', ['ls-files', '-s', 'bin/skv.js'], {
      cwd: REPO,
      encoding: 'utf8',
    });
    expect(mode.stdout.startsWith('100755 ')).toBe(true);
    const built = existsSync(path.join(REPO, 'dist', 'src', 'cli', 'main.js'));
    expect(built, 'dist/ is built (npm run build)').toBe(true);
    const r = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Usage: skv/);
  });

  it('`skv server --help` gives every flag an environment variable', () => {
    expect(serverHelp.status, serverHelp.stderr).toBe(0);
    expect(serverHelp.stdout).toMatch(/^Usage: skv server/);
    // The parser sees the flags the manifests depend on (so an empty parse cannot pass)...
    for (const core of ['--id-from-hostname', '--listen', '--zk', '--data', '--tls-client-auth'])
      expect(SERVER_FLAGS.map((f) => f.flag)).toContain(core);
    // ...and every flag it sees, wrapped descriptions included, has its variable.
    expect(SERVER_FLAGS.length).toBeGreaterThanOrEqual(18);
    expect(SERVER_FLAGS.filter((f) => f.env === '').map((f) => f.flag)).toEqual([]);
    for (const f of SERVER_FLAGS) expect(f.env, f.flag).toMatch(/^SKV_[A-Z0-9_]+$/);
  });
});

describe('deploy/README.md', () => {
  const readme = readFileSync(path.join(REPO, 'deploy', 'README.md'), 'utf8');

  it('has a row naming every flag of `skv server --help` and its environment variable', () => {
    expect(SERVER_FLAGS.length).toBeGreaterThan(0);
    const rows = readme.split('\n').filter((l) => l.startsWith('|'));
    const missing = SERVER_FLAGS.filter(
      (f) =>
        !rows.some((row) => {
          const cells = row.split('|').map((c) => c.trim());
          return (
            new RegExp(`^\`${f.flag}(?: [^\`]*)?\`$`).test(cells[1] ?? '') &&
            cells[2] === `\`${f.env}\``
          );
        }),
    ).map((f) => `${f.flag} / ${f.env}`);
    expect(missing).toEqual([]);
  });

  it('covers install, scale out, rolling upgrade, rescheduling, lost volumes and backup', () => {
    for (const heading of [
      '## Install',
      '## Scale out',
      '## Rolling upgrade',
      '## Rescheduled pods and lost volumes',
      '## Backup and restore',
    ]) {
      expect(readme).toContain(heading);
    }
  });
});
