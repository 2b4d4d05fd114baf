// deploy/tools/kustomize-lite.ts: the strategic-merge, image, namespace and component rules it
// copies from kustomize, and (when kubectl is installed) the proof that it renders every
// kustomization under deploy/k8s exactly as `kubectl kustomize` does, i.e. exactly what
// `kubectl apply -k` applies.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import {
  findKustomizations,
  KustomizeLiteError,
  renderKustomization,
  strategicMerge,
} from '../deploy/tools/kustomize-lite.js';

const K8S_DIR = path.join(import.meta.dirname, '..', 'deploy', 'k8s');

const hasKubectl =
  spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore', timeout: 20_000 }).status === 0;

const scratch = mkdtempSync(path.join(os.tmpdir(), 'skv-kustomize-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Writes files (relative path -> text) into a fresh directory and returns it. */
function tree(name: string, files: Record<string, string>): string {
  const root = path.join(scratch, name);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    writeFileSync(path.join(root, rel), text);
  }
  return root;
}

function kubectlKustomize(dir: string): unknown[] {
  const r = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`kubectl kustomize ${dir}: ${r.stderr}`);
  return parseAllDocuments(r.stdout)
    .map((d) => d.toJS() as unknown)
    .filter((d) => d !== null);
}

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  template:
    spec:
      containers:
        - name: a
          image: repo/a:1
          env: [{name: A, value: "1"}, {name: B, value: "2"}, {name: C, value: "3"}]
          ports: [{containerPort: 1, name: p1}, {containerPort: 2, name: p2}]
          args: [x, y]
        - name: b
          image: b
      volumes: [{name: v1, emptyDir: {}}]
`;
const deploymentPatch = `apiVersion: apps/v1
kind: Deployment
metadata: {name: x, labels: {l: "1"}}
spec:
  template:
    spec:
      containers:
        - name: b
          image: b2
        - name: c
          image: c
        - name: a
          env: [{name: D, value: "4"}, {name: B, value: "22"}]
          ports: [{containerPort: 3, name: p3}]
          args: [z]
      volumes: [{name: v2, emptyDir: {}}]
`;

describe('strategic merge', () => {
  it('merges keyed lists with the patch elements first, then the untouched originals', () => {
    const merged = strategicMerge(
      { env: [{ name: 'A' }, { name: 'B', value: '2' }, { name: 'C' }] },
      { env: [{ name: 'D' }, { name: 'B', value: '22' }] },
    );
    expect(merged).toEqual({
      env: [{ name: 'D' }, { name: 'B', value: '22' }, { name: 'A' }, { name: 'C' }],
    });
  });

  it('replaces lists without a merge key (args, volumeClaimTemplates)', () => {
    expect(strategicMerge({ args: ['x', 'y'] }, { args: ['z'] })).toEqual({ args: ['z'] });
    expect(
      strategicMerge(
        { volumeClaimTemplates: [{ metadata: { name: 'data', labels: { a: 'b' } } }] },
        { volumeClaimTemplates: [{ metadata: { name: 'data' } }] },
      ),
    ).toEqual({ volumeClaimTemplates: [{ metadata: { name: 'data' } }] });
  });

  it('merges container ports on containerPort and service ports on port', () => {
    expect(
      strategicMerge(
        { ports: [{ containerPort: 1, name: 'a' }] },
        { ports: [{ containerPort: 1, name: 'b' }] },
      ),
    ).toEqual({ ports: [{ containerPort: 1, name: 'b' }] });
    expect(
      strategicMerge({ ports: [{ port: 80, name: 'a' }] }, { ports: [{ port: 81, name: 'b' }] }),
    ).toEqual({
      ports: [
        { port: 81, name: 'b' },
        { port: 80, name: 'a' },
      ],
    });
  });

  it('deletes a key patched to null', () => {
    expect(strategicMerge({ a: 1, b: { c: 2, d: 3 } }, { b: { c: null } })).toEqual({
      a: 1,
      b: { d: 3 },
    });
  });

  it('refuses $patch directives instead of ignoring them', () => {
    expect(() => strategicMerge({ a: [] }, { $patch: 'replace' })).toThrow(KustomizeLiteError);
  });
});

describe('kustomization', () => {
  it('refuses a field it does not implement (commonLabels)', () => {
    const dir = tree('unsupported', {
      'kustomization.yaml': 'resources: [d.yaml]\ncommonLabels: {a: b}\n',
      'd.yaml': deployment,
    });
    expect(() => renderKustomization(dir)).toThrow(/commonLabels/);
  });

  it('refuses a patch that matches no object', () => {
    const dir = tree('unmatched', {
      'kustomization.yaml': 'resources: [d.yaml]\npatches: [{path: p.yaml}]\n',
      'd.yaml': deployment,
      'p.yaml': 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: y}\n',
    });
    expect(() => renderKustomization(dir)).toThrow(/matches 0 objects/);
  });

  it('sets the namespace on namespaced objects only and rewrites images by name', () => {
    const dir = tree('ns-images', {
      'kustomization.yaml': [
        'namespace: prod',
        'resources: [ns.yaml, d.yaml]',
        'images: [{name: repo/a, newName: reg/a, newTag: "2"}, {name: b, digest: "sha256:00"}]',
        '',
      ].join('\n'),
      'ns.yaml': 'apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n',
      'd.yaml': deployment,
    });
    const [ns, d] = renderKustomization(dir);
    expect(ns?.metadata.namespace).toBeUndefined();
    expect(d?.metadata.namespace).toBe('prod');
    const containers = (d as unknown as { spec: { template: { spec: { containers: unknown } } } })
      .spec.template.spec.containers;
    expect(containers).toMatchObject([{ image: 'reg/a:2' }, { image: 'b@sha256:00' }]);
  });

  it('lets a component patch an object of its parent and add its own', () => {
    const dir = tree('component', {
      'overlay/kustomization.yaml': 'resources: [../base]\ncomponents: [../comp]\n',
      'base/kustomization.yaml': 'resources: [cm.yaml]\n',
      'base/cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: old}\n',
      'comp/kustomization.yaml': [
        'apiVersion: kustomize.config.k8s.io/v1alpha1',
        'kind: Component',
        'resources: [svc.yaml]',
        'patches: [{path: p.yaml}]',
        '',
      ].join('\n'),
      'comp/svc.yaml': 'apiVersion: v1\nkind: Service\nmetadata: {name: s}\n',
      'comp/p.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: new}\n',
    });
    const out = renderKustomization(path.join(dir, 'overlay'));
    expect(out.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual(['ConfigMap/c', 'Service/s']);
    expect(out[0]).toMatchObject({ data: { k: 'new' } });
  });

  it('refuses a leading-zero integer (octal to kubectl, decimal to the yaml package)', () => {
    const secretVolume = (mode: string) =>
      `apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  volumes: [{name: s, secret: {defaultMode: ${mode}}}]\n`;
    const bad = tree('octal', {
      'kustomization.yaml': 'resources: [p.yaml]\n',
      'p.yaml': secretVolume('0440'),
    });
    expect(() => renderKustomization(bad)).toThrow(/leading zero/);
    const inline = tree('octal-inline', {
      'kustomization.yaml': `resources: [p.yaml]\npatches:\n  - patch: |\n${secretVolume('0440')
        .split('\n')
        .map((l) => `      ${l}`)
        .join('\n')}\n`,
      'p.yaml': secretVolume('288'),
    });
    expect(() => renderKustomization(inline)).toThrow(/leading zero/);
    const good = tree('decimal', {
      'kustomization.yaml': 'resources: [p.yaml]\n',
      'p.yaml': secretVolume('288'),
    });
    expect(renderKustomization(good)[0]).toMatchObject({
      spec: { volumes: [{ secret: { defaultMode: 288 } }] },
    });
    if (hasKubectl) expect(renderKustomization(good)).toEqual(kubectlKustomize(good));
  });

  it.skipIf(!hasKubectl)('agrees with kubectl kustomize on a patched deployment', () => {
    const dir = tree('merge-vs-kubectl', {
      'kustomization.yaml': 'resources: [d.yaml]\npatches: [{path: p.yaml}]\n',
      'd.yaml': deployment,
      'p.yaml': deploymentPatch,
    });
    expect(renderKustomization(dir)).toEqual(kubectlKustomize(dir));
  });
});

describe('deploy/k8s', () => {
  const dirs = findKustomizations(K8S_DIR);

  it('has the base and both example overlays', () => {
    const rel = dirs.map((d) => path.relative(K8S_DIR, d));
    expect(rel).toEqual(['base', 'overlays/example', 'overlays/external-zookeeper']);
  });

  it.skipIf(!hasKubectl).each(dirs.map((d) => [path.relative(K8S_DIR, d), d] as const))(
    '%s renders exactly as kubectl kustomize does',
    (_name, dir) => {
      expect(renderKustomization(dir)).toEqual(kubectlKustomize(dir));
    },
  );
});
