// Rehearsal support, the pure half: what a Kubernetes node would run for the skv manifests.
//
// Owns: reading the rendered overlay (deploy/tools/kustomize-lite.ts) and the image definition
// (deploy/Containerfile) into the exact argv and environment of each skv pod's container and of
// the init Job's container, the way the kubelet and the container runtime build them:
// - env entries in order; `value` gets $(VAR) expansion against the entries before it (and
//   only those: enableServiceLinks is false, so no Service variables); `valueFrom` is taken as
//   is from the downward API (metadata.name, metadata.namespace) or the rendered ConfigMap;
// - command/args get $(VAR) expansion against the container's whole env; no `command` means
//   the image's ENTRYPOINT, `args` replace the image's CMD;
// - the image's ENV is the base, the container's env overrides it.
//
// Then the substitution: only what a pod on this machine must differ in is replaced, and only
// as whole values (never substrings): the listen/advertise/metrics addresses, the ZooKeeper
// connect string and the data mount path. Every substitution must be used at least once and no
// cluster-only value (a cluster DNS name, 0.0.0.0, the bundled ensemble's hosts, the mount path)
// may survive it: a manifest whose shape changed fails the rehearsal instead of being rehearsed
// with a stale picture. Invariant: apart from those values, argv and env are the manifest's.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { type KObject, renderKustomization } from '../../deploy/tools/kustomize-lite.js';

export const REPO_DIR = path.join(import.meta.dirname, '..', '..');
export const EXAMPLE_OVERLAY_DIR = path.join(REPO_DIR, 'deploy', 'k8s', 'overlays', 'example');
export const CONTAINERFILE = path.join(REPO_DIR, 'deploy', 'Containerfile');

// ---------------------------------------------------------------------------------------------
// The Kubernetes shapes read here (a loose subset of core/v1; test/deploy.test.ts validates the
// full objects against the schemas).

export interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: {
    readonly fieldRef?: { readonly fieldPath: string };
    readonly configMapKeyRef?: { readonly name: string; readonly key: string };
  };
}

export interface Probe {
  readonly grpc?: { readonly port: number; readonly service?: string };
  readonly exec?: { readonly command: readonly string[] };
  readonly initialDelaySeconds?: number;
  readonly periodSeconds?: number;
  readonly timeoutSeconds?: number;
  readonly failureThreshold?: number;
  readonly successThreshold?: number;
}

export interface Container {
  readonly name: string;
  readonly command?: readonly string[];
  readonly args?: readonly string[];
  readonly env?: readonly EnvVar[];
  readonly ports?: readonly { readonly name?: string; readonly containerPort: number }[];
  readonly startupProbe?: Probe;
  readonly readinessProbe?: Probe;
  readonly livenessProbe?: Probe;
  readonly lifecycle?: { readonly preStop?: { readonly exec?: { readonly command: string[] } } };
  readonly volumeMounts?: readonly { readonly name: string; readonly mountPath: string }[];
}

export interface PodSpec {
  readonly containers: readonly Container[];
  readonly terminationGracePeriodSeconds?: number;
  readonly securityContext?: { readonly runAsUser?: number; readonly runAsGroup?: number };
}

export interface StatefulSetSpec {
  readonly replicas: number;
  readonly serviceName: string;
  readonly podManagementPolicy?: string;
  readonly template: {
    readonly metadata?: { readonly annotations?: Readonly<Record<string, string>> };
    readonly spec: PodSpec;
  };
}

// ---------------------------------------------------------------------------------------------
// $(VAR) expansion, as k8s.io/kubernetes third_party/forked/golang/expansion does it.

/**
 * `$(NAME)` becomes NAME's value if NAME is defined, else stays `$(NAME)` verbatim; `$$` becomes
 * `$`; an unclosed `$(` and a `$` before anything else stay as they are.
 */
export function expandK8s(input: string, vars: ReadonlyMap<string, string>): string {
  let out = '';
  let i = 0;
  while (i < input.length) {
    const ch = input[i];
    if (ch !== '$' || i + 1 >= input.length) {
      out += ch;
      i++;
      continue;
    }
    const next = input[i + 1];
    if (next === '$') {
      out += '$';
      i += 2;
    } else if (next === '(') {
      const close = input.indexOf(')', i + 2);
      if (close < 0) {
        // Go's tryReadVariableName: "$(" is returned as literal text, scanning goes on after it.
        out += '$(';
        i += 2;
      } else {
        const name = input.slice(i + 2, close);
        const v = vars.get(name);
        out += v === undefined ? `$(${name})` : v;
        i = close + 1;
      }
    } else {
      out += `$${next}`;
      i += 2;
    }
  }
  return out;
}

export interface PodContext {
  /** metadata.name (the downward API's POD_NAME), e.g. skv-0. */
  readonly podName: string;
  readonly namespace: string;
  /** Rendered ConfigMaps by name. */
  readonly configMaps: ReadonlyMap<string, Readonly<Record<string, string>>>;
}

/** The container's env as the kubelet resolves it (in order; see the header). */
export function resolveEnv(env: readonly EnvVar[], ctx: PodContext): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of env) {
    if (e.value !== undefined) {
      out.set(e.name, expandK8s(e.value, out));
      continue;
    }
    const field = e.valueFrom?.fieldRef?.fieldPath;
    const cm = e.valueFrom?.configMapKeyRef;
    if (field !== undefined) {
      switch (field) {
        case 'metadata.name':
          out.set(e.name, ctx.podName);
          break;
        case 'metadata.namespace':
          out.set(e.name, ctx.namespace);
          break;
        default:
          throw new Error(`env ${e.name}: downward API field ${field} is not simulated`);
      }
    } else if (cm !== undefined) {
      const data = ctx.configMaps.get(cm.name);
      const v = data?.[cm.key];
      // A missing key of a non-optional ref keeps the pod from starting (CreateContainerConfigError).
      if (v === undefined) throw new Error(`env ${e.name}: ConfigMap ${cm.name} has no ${cm.key}`);
      out.set(e.name, v);
    } else {
      // `value` absent and no valueFrom: Kubernetes sets the variable to the empty string.
      out.set(e.name, '');
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The image definition: the runtime stage's ENV, ENTRYPOINT, CMD and USER.

export interface ImageConfig {
  readonly entrypoint: readonly string[];
  readonly cmd: readonly string[];
  readonly env: ReadonlyMap<string, string>;
  readonly user: string;
}

/** Reads the last stage of a Containerfile (exec-form ENTRYPOINT/CMD only, as ours uses). */
export function parseContainerfile(text: string): ImageConfig {
  // Join continuation lines, drop comments.
  const logical: string[] = [];
  let cur = '';
  for (const raw of text.split('\n')) {
    if (cur === '' && /^\s*#/.test(raw)) continue;
    if (raw.endsWith('\\')) {
      cur += `${raw.slice(0, -1)} `;
      continue;
    }
    logical.push(cur + raw);
    cur = '';
  }
  let entrypoint: string[] = [];
  let cmd: string[] = [];
  let env = new Map<string, string>();
  let user = '';
  for (const line of logical) {
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (m === null) continue;
    const instr = (m[1] ?? '').toUpperCase();
    const rest = (m[2] ?? '').trim();
    switch (instr) {
      case 'FROM':
        // A new stage: nothing of the previous one reaches the image (ARGs aside).
        entrypoint = [];
        cmd = [];
        env = new Map();
        user = '';
        break;
      case 'ENTRYPOINT':
        entrypoint = execForm(rest, instr);
        break;
      case 'CMD':
        cmd = execForm(rest, instr);
        break;
      case 'USER':
        user = rest;
        break;
      case 'ENV':
        for (const [k, v] of parseEnvInstruction(rest)) env.set(k, v);
        break;
      default:
        break;
    }
  }
  return { entrypoint, cmd, env, user };
}

function execForm(rest: string, instr: string): string[] {
  const parsed: unknown = JSON.parse(rest);
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string'))
    throw new Error(`${instr} must be in exec form (a JSON array of strings): ${rest}`);
  return parsed;
}

function parseEnvInstruction(rest: string): [string, string][] {
  if (!rest.includes('=')) {
    const sp = rest.indexOf(' ');
    return [[rest.slice(0, sp), rest.slice(sp + 1).trim()]];
  }
  const out: [string, string][] = [];
  for (const m of rest.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    const raw = m[2] ?? '';
    out.push([m[1] ?? '', raw.startsWith('"') ? (JSON.parse(raw) as string) : raw]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The rendered overlay.

export interface Deployment {
  readonly objects: readonly KObject[];
  readonly namespace: string;
  readonly statefulSetName: string;
  readonly statefulSet: StatefulSetSpec;
  readonly server: Container;
  readonly job: { readonly container: Container; readonly podSpec: PodSpec };
  readonly configMaps: ReadonlyMap<string, Readonly<Record<string, string>>>;
  readonly image: ImageConfig;
}

function find(objects: readonly KObject[], kind: string, name: string): KObject {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  if (o === undefined) throw new Error(`rendered overlay has no ${kind} ${name}`);
  return o;
}

export function loadDeployment(
  overlayDir = EXAMPLE_OVERLAY_DIR,
  containerfile = CONTAINERFILE,
): Deployment {
  const objects = renderKustomization(overlayDir);
  const sts = find(objects, 'StatefulSet', 'skv');
  const job = find(objects, 'Job', 'skv-cluster-init');
  const configMaps = new Map<string, Record<string, string>>();
  for (const o of objects) {
    if (o.kind === 'ConfigMap') configMaps.set(o.metadata.name, (o.data ?? {}) as never);
  }
  const stsSpec = sts.spec as StatefulSetSpec;
  const server = stsSpec.template.spec.containers.find((c) => c.name === 'skv');
  if (server === undefined) throw new Error('StatefulSet skv has no container skv');
  const jobPod = (job.spec as { template: { spec: PodSpec } }).template.spec;
  const jobContainer = jobPod.containers[0];
  if (jobContainer === undefined || jobPod.containers.length !== 1)
    throw new Error('Job skv-cluster-init must have exactly one container');
  const namespace = sts.metadata.namespace;
  if (namespace === undefined || job.metadata.namespace !== namespace)
    throw new Error('the StatefulSet and the Job must be in the overlay namespace');
  return {
    objects,
    namespace,
    statefulSetName: sts.metadata.name,
    statefulSet: stsSpec,
    server,
    job: { container: jobContainer, podSpec: jobPod },
    configMaps,
    image: parseContainerfile(readFileSync(containerfile, 'utf8')),
  };
}

/** The container's process: argv and env as the runtime starts it (before substitution). */
export interface ProcessSpec {
  readonly argv: readonly string[];
  readonly env: ReadonlyMap<string, string>;
}

export function containerProcess(
  container: Container,
  image: ImageConfig,
  ctx: PodContext,
): ProcessSpec {
  const own = resolveEnv(container.env ?? [], ctx);
  const expand = (s: string) => expandK8s(s, own);
  const command = container.command?.map(expand) ?? [...image.entrypoint];
  const args = container.args?.map(expand) ?? (container.command === undefined ? image.cmd : []);
  const env = new Map(image.env);
  for (const [k, v] of own) env.set(k, v);
  return { argv: [...command, ...args], env };
}

// ---------------------------------------------------------------------------------------------
// Substitution: what a pod on this machine must differ in.

export interface Substitution {
  /** The whole value the manifest gives (an env value or an argv element). */
  readonly from: string;
  readonly to: string;
  /** Why this value must differ here. */
  readonly why: string;
}

/** Values that must not survive substitution (they only mean something inside a cluster). */
export interface ForbiddenValue {
  readonly test: (value: string) => boolean;
  readonly what: string;
}

export function substitute(
  spec: ProcessSpec,
  substitutions: readonly Substitution[],
  forbidden: readonly ForbiddenValue[],
): ProcessSpec {
  const used = new Set<Substitution>();
  const map = (v: string) => {
    const s = substitutions.find((x) => x.from === v);
    if (s === undefined) return v;
    used.add(s);
    return s.to;
  };
  const argv = spec.argv.map(map);
  const env = new Map<string, string>();
  for (const [k, v] of spec.env) env.set(k, map(v));
  const unused = substitutions.filter((s) => !used.has(s));
  if (unused.length > 0) {
    throw new Error(
      `substitutions not used (the manifest changed?): ${unused.map((s) => `${s.from} (${s.why})`).join(', ')}`,
    );
  }
  const values = [...argv.map((v, i) => [`argv[${i}]`, v]), ...env];
  for (const [where, v] of values) {
    for (const f of forbidden) {
      if (f.test(v ?? '')) throw new Error(`${where} = ${v}: ${f.what} survived the substitution`);
    }
  }
  return { argv, env };
}

/** The named container port (e.g. grpc → 7001). */
export function containerPort(container: Container, name: string): number {
  const p = container.ports?.find((x) => x.name === name);
  if (p === undefined) throw new Error(`container ${container.name} has no port ${name}`);
  return p.containerPort;
}

export function mountPath(container: Container, volume: string): string {
  const m = container.volumeMounts?.find((x) => x.name === volume);
  if (m === undefined) throw new Error(`container ${container.name} mounts no volume ${volume}`);
  return m.mountPath;
}
