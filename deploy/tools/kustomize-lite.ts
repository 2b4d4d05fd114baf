// kustomize-lite: renders the subset of kustomize that deploy/k8s uses, for machines without
// kubectl. Owns: reading kustomization.yaml / Component trees and producing the object list that
// `kubectl kustomize DIR` (and so `kubectl apply -k DIR`) produces.
//
// Supported fields: resources (files and directories), components, namespace, images
// (name/newName/newTag/digest), patches (strategic merge from `path` or inline `patch`, matched by
// kind + name). Anything else in a kustomization is rejected with an error rather than ignored,
// so a feature the renderer lacks can never be silently dropped.
//
// Semantics copied from kustomize v5 (and checked against `kubectl kustomize` by
// test/deploy.test.ts whenever kubectl is installed):
// - order of work in one kustomization: resources, then each component (its resources are
//   added, then its own patches run over everything so far), then patches, namespace, images;
// - strategic merge: maps merge, `null` deletes a key; lists with a Kubernetes merge key
//   (containers by name, env by name, ports by containerPort or port, ...) merge element-wise,
//   the patch's elements first in patch order, then the untouched original elements; every other
//   list is replaced;
// - output order: kustomize's legacy kind order, then apiVersion/kind, namespace, name.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments, visit } from 'yaml';

export type KObject = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: Record<string, unknown> & { name: string; namespace?: string };
};

export class KustomizeLiteError extends Error {
  override readonly name = 'KustomizeLiteError';
}

/** Fields a kustomization may have here; the rest are refused (see header). */
const SUPPORTED_FIELDS = new Set([
  'apiVersion',
  'kind',
  'resources',
  'components',
  'namespace',
  'images',
  'patches',
]);

const KUSTOMIZATION_FILE_NAMES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'];

/** Bounds: a runaway include graph is a mistake, not a workload. */
const DEPTH_MAX = 16;
const OBJECTS_MAX = 1000;

/** Kinds without a namespace (the ones a deployment of this kind may plausibly contain). */
const CLUSTER_SCOPED_KINDS = new Set([
  'Namespace',
  'ClusterRole',
  'ClusterRoleBinding',
  'CustomResourceDefinition',
  'PersistentVolume',
  'StorageClass',
  'PriorityClass',
  'MutatingWebhookConfiguration',
  'ValidatingWebhookConfiguration',
]);

// kustomize api/resid: the legacy output order.
const ORDER_FIRST = [
  'Namespace',
  'ResourceQuota',
  'StorageClass',
  'CustomResourceDefinition',
  'ServiceAccount',
  'PodSecurityPolicy',
  'Role',
  'ClusterRole',
  'RoleBinding',
  'ClusterRoleBinding',
  'ConfigMap',
  'Secret',
  'Endpoints',
  'Service',
  'LimitRange',
  'PriorityClass',
  'PersistentVolume',
  'PersistentVolumeClaim',
  'Deployment',
  'StatefulSet',
  'CronJob',
  'PodDisruptionBudget',
];
const ORDER_LAST = ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'];

/** Strategic-merge keys of the list fields used here (Kubernetes' patchMergeKey). */
function mergeKeyFor(field: string, elements: readonly unknown[]): string | undefined {
  switch (field) {
    case 'containers':
    case 'initContainers':
    case 'ephemeralContainers':
    case 'env':
    case 'volumes':
    case 'imagePullSecrets':
      return 'name';
    case 'volumeMounts':
    case 'volumeDevices':
      return 'mountPath';
    case 'ports':
      // Container ports merge on containerPort, Service ports on port.
      return elements.some((e) => isMap(e) && 'containerPort' in e) ? 'containerPort' : 'port';
    default:
      return undefined;
  }
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Strategic merge of `patch` onto `base` (neither is modified). */
export function strategicMerge(base: unknown, patch: unknown, field = ''): unknown {
  if (isMap(patch)) {
    for (const directive of ['$patch', '$retainKeys', '$setElementOrder']) {
      if (directive in patch) {
        throw new KustomizeLiteError(`unsupported strategic-merge directive ${directive}`);
      }
    }
    if (!isMap(base)) return stripNulls(patch);
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) delete out[k];
      else out[k] = k in base ? strategicMerge(base[k], v, k) : stripNulls(v);
    }
    return out;
  }
  if (Array.isArray(patch) && Array.isArray(base)) {
    const key = mergeKeyFor(field, [...base, ...patch]);
    if (key === undefined) return stripNulls(patch);
    const keyOf = (e: unknown): unknown => (isMap(e) ? e[key] : undefined);
    const patched = patch.map((p) => {
      const k = keyOf(p);
      if (k === undefined) throw new KustomizeLiteError(`${field}: patch element without ${key}`);
      const original = base.find((b) => keyOf(b) === k);
      return original === undefined ? stripNulls(p) : strategicMerge(original, p, '');
    });
    const patchedKeys = new Set(patch.map(keyOf));
    return [...patched, ...base.filter((b) => !patchedKeys.has(keyOf(b)))];
  }
  return stripNulls(patch);
}

function stripNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripNulls);
  if (!isMap(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) if (x !== null) out[k] = stripNulls(x);
  return out;
}

function readYamlDocuments(file: string): unknown[] {
  return parseYamlDocuments(readFileSync(file, 'utf8'), file);
}

/**
 * Parses YAML as `yaml` (1.2 core schema) does, refusing what kubectl reads differently: a plain
 * integer with a leading zero (`defaultMode: 0440`) is octal to kubectl's YAML 1.1 reader (288)
 * and decimal here (440), so it is an error rather than a silent disagreement.
 */
function parseYamlDocuments(text: string, where: string): unknown[] {
  const out: unknown[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) {
      throw new KustomizeLiteError(`${where}: ${doc.errors.map((e) => e.message).join('; ')}`);
    }
    visit(doc, {
      Scalar(_key, node) {
        if (node.type === 'PLAIN' && typeof node.value === 'number') {
          const source = String((node as { source?: unknown }).source ?? '');
          if (/^[-+]?0[0-9]/.test(source)) {
            throw new KustomizeLiteError(
              `${where}: ${source} has a leading zero, octal to kubectl and decimal here; ` +
                'write the decimal value (0440 = 288) or quote it',
            );
          }
        }
      },
    });
    const value: unknown = doc.toJS();
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

function asObject(v: unknown, where: string): KObject {
  if (
    !isMap(v) ||
    typeof v.apiVersion !== 'string' ||
    typeof v.kind !== 'string' ||
    !isMap(v.metadata) ||
    typeof v.metadata.name !== 'string'
  ) {
    throw new KustomizeLiteError(
      `${where}: not a Kubernetes object (apiVersion, kind, metadata.name)`,
    );
  }
  return v as KObject;
}

function findKustomizationFile(dir: string): string {
  for (const name of KUSTOMIZATION_FILE_NAMES) {
    const file = path.join(dir, name);
    try {
      if (statSync(file).isFile()) return file;
    } catch {
      // not this name
    }
  }
  throw new KustomizeLiteError(
    `${dir}: no kustomization file (${KUSTOMIZATION_FILE_NAMES.join(', ')})`,
  );
}

function stringList(v: unknown, where: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    throw new KustomizeLiteError(`${where}: expected a list of strings`);
  }
  return v;
}

function idOf(o: KObject): string {
  return `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
}

function addAll(into: KObject[], objects: readonly KObject[], where: string): void {
  for (const o of objects) {
    if (into.some((x) => idOf(x) === idOf(o))) {
      throw new KustomizeLiteError(`${where}: ${idOf(o)} is defined twice`);
    }
    into.push(o);
    if (into.length > OBJECTS_MAX) throw new KustomizeLiteError(`more than ${OBJECTS_MAX} objects`);
  }
}

interface ImageRule {
  name: string;
  newName?: string;
  newTag?: string;
  digest?: string;
}

function parseImages(v: unknown, where: string): ImageRule[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw new KustomizeLiteError(`${where}: images must be a list`);
  return v.map((x) => {
    if (!isMap(x) || typeof x.name !== 'string') {
      throw new KustomizeLiteError(`${where}: an image needs a name`);
    }
    for (const k of Object.keys(x)) {
      if (!['name', 'newName', 'newTag', 'digest'].includes(k)) {
        throw new KustomizeLiteError(`${where}: unsupported image field ${k}`);
      }
    }
    return x as unknown as ImageRule;
  });
}

/** Splits `registry/name:tag@digest` into the name and the rest (kustomize's image.Split). */
function splitImage(image: string): { name: string; tag: string; digest: string } {
  let rest = image;
  let digest = '';
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
  }
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  let tag = '';
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
  }
  return { name: rest, tag, digest };
}

function applyImages(objects: KObject[], rules: readonly ImageRule[]): KObject[] {
  if (rules.length === 0) return objects;
  const rewrite = (v: unknown, field: string): unknown => {
    if (Array.isArray(v)) {
      if (field === 'containers' || field === 'initContainers') {
        return v.map((c) => {
          if (!isMap(c) || typeof c.image !== 'string') return c;
          const parts = splitImage(c.image);
          const rule = rules.find((r) => r.name === parts.name);
          if (rule === undefined) return c;
          const name = rule.newName ?? parts.name;
          let image = name;
          if (rule.digest !== undefined) image = `${name}@${rule.digest}`;
          else if (rule.newTag !== undefined) image = `${name}:${rule.newTag}`;
          else {
            if (parts.tag !== '') image += `:${parts.tag}`;
            if (parts.digest !== '') image += `@${parts.digest}`;
          }
          return rewrite({ ...c, image }, '');
        });
      }
      return v.map((x) => rewrite(x, ''));
    }
    if (!isMap(v)) return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = rewrite(x, k);
    return out;
  };
  return objects.map((o) => rewrite(o, '') as KObject);
}

function applyNamespace(objects: KObject[], namespace: string | undefined): KObject[] {
  if (namespace === undefined) return objects;
  return objects.map((o) =>
    CLUSTER_SCOPED_KINDS.has(o.kind) ? o : { ...o, metadata: { ...o.metadata, namespace } },
  );
}

function applyPatches(objects: KObject[], patches: unknown, dir: string): KObject[] {
  if (patches === undefined) return objects;
  if (!Array.isArray(patches)) throw new KustomizeLiteError(`${dir}: patches must be a list`);
  let out = objects;
  for (const p of patches) {
    if (!isMap(p)) throw new KustomizeLiteError(`${dir}: a patch must be a map`);
    for (const k of Object.keys(p)) {
      if (k !== 'path' && k !== 'patch') {
        throw new KustomizeLiteError(`${dir}: unsupported patch field ${k} (target, options)`);
      }
    }
    let docs: unknown[];
    if (typeof p.path === 'string') docs = readYamlDocuments(path.join(dir, p.path));
    else if (typeof p.patch === 'string') docs = parseYamlDocuments(p.patch, `${dir}: patch`);
    else throw new KustomizeLiteError(`${dir}: a patch needs path or patch`);
    for (const doc of docs) {
      const patch = asObject(doc, `${dir}: patch`);
      const matches = out.filter(
        (o) =>
          o.kind === patch.kind &&
          o.metadata.name === patch.metadata.name &&
          (patch.metadata.namespace === undefined ||
            o.metadata.namespace === patch.metadata.namespace),
      );
      if (matches.length !== 1) {
        throw new KustomizeLiteError(
          `${dir}: patch for ${patch.kind}/${patch.metadata.name} matches ${matches.length} objects`,
        );
      }
      const target = matches[0];
      out = out.map((o) => (o === target ? (strategicMerge(o, patch) as KObject) : o));
    }
  }
  return out;
}

/**
 * Builds one kustomization. A Component is built over its parent's objects so far (`inherited`):
 * its resources join them and its transformers run over all of them, as in kustomize.
 */
function build(
  dir: string,
  expectKind: 'Kustomization' | 'Component',
  depth: number,
  inherited: readonly KObject[],
): KObject[] {
  if (depth > DEPTH_MAX) throw new KustomizeLiteError(`${dir}: nested deeper than ${DEPTH_MAX}`);
  const file = findKustomizationFile(dir);
  const docs = readYamlDocuments(file);
  const k = docs[0];
  if (docs.length !== 1 || !isMap(k)) throw new KustomizeLiteError(`${file}: expected one map`);
  for (const field of Object.keys(k)) {
    if (!SUPPORTED_FIELDS.has(field)) {
      throw new KustomizeLiteError(`${file}: kustomize field '${field}' is not supported here`);
    }
  }
  const kind = k.kind ?? 'Kustomization';
  if (kind !== expectKind)
    throw new KustomizeLiteError(`${file}: kind ${String(kind)}, expected ${expectKind}`);

  let objects: KObject[] = [...inherited];
  for (const r of stringList(k.resources, `${file}: resources`)) {
    const target = path.join(dir, r);
    if (statSync(target).isDirectory()) {
      addAll(objects, build(target, 'Kustomization', depth + 1, []), file);
    } else {
      addAll(
        objects,
        readYamlDocuments(target).map((d, i) => asObject(d, `${target}#${i}`)),
        file,
      );
    }
  }
  for (const c of stringList(k.components, `${file}: components`)) {
    objects = build(path.join(dir, c), 'Component', depth + 1, objects);
  }
  objects = applyPatches(objects, k.patches, dir);
  if (k.namespace !== undefined && typeof k.namespace !== 'string') {
    throw new KustomizeLiteError(`${file}: namespace must be a string`);
  }
  objects = applyNamespace(objects, k.namespace);
  objects = applyImages(objects, parseImages(k.images, file));
  return objects;
}

function kindRank(kind: string): number {
  const first = ORDER_FIRST.indexOf(kind);
  if (first >= 0) return first;
  const last = ORDER_LAST.indexOf(kind);
  if (last >= 0) return ORDER_FIRST.length + 1 + last;
  return ORDER_FIRST.length;
}

function compareObjects(a: KObject, b: KObject): number {
  const byRank = kindRank(a.kind) - kindRank(b.kind);
  if (byRank !== 0) return byRank;
  const keys = (o: KObject) => [
    `${o.apiVersion}/${o.kind}`,
    o.metadata.namespace ?? '',
    o.metadata.name,
  ];
  const ka = keys(a);
  const kb = keys(b);
  for (let i = 0; i < ka.length; i++) {
    const x = ka[i] ?? '';
    const y = kb[i] ?? '';
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

/** What `kubectl kustomize dir` prints, as objects, in the same order. */
export function renderKustomization(dir: string): KObject[] {
  return build(path.resolve(dir), 'Kustomization', 0, []).sort(compareObjects);
}

/** Every kustomization directory under `root` that is a Kustomization (not a Component). */
export function findKustomizations(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > DEPTH_MAX) return;
    const entries = readdirSync(dir, { withFileTypes: true });
    if (entries.some((e) => e.isFile() && KUSTOMIZATION_FILE_NAMES.includes(e.name))) {
      const k = readYamlDocuments(findKustomizationFile(dir))[0];
      if (isMap(k) && k.kind !== 'Component') out.push(dir);
    }
    for (const e of entries) if (e.isDirectory()) walk(path.join(dir, e.name), depth + 1);
  };
  walk(root, 0);
  return out.sort();
}
