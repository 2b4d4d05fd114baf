// `npx tsx deploy/tools/render.ts DIR`: prints what `kubectl kustomize DIR` prints (the objects
// `kubectl apply -k DIR` applies), rendered by kustomize-lite for machines without kubectl.

import { stringify } from 'yaml';
import { renderKustomization } from './kustomize-lite.js';

const dir = process.argv[2];
if (dir === undefined) {
  console.error('usage: render.ts KUSTOMIZATION_DIR');
  process.exit(2);
}
process.stdout.write(
  renderKustomization(dir)
    .map((o) => stringify(o, { sortMapEntries: true }))
    .join('---\n'),
);
