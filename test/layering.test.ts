/**
 * The folders' import rules (README.md, Layout; each folder's README.md), read
 * from the sources: the import statements of every .ts file in the repository
 * (a regex over the text, multi-line import lists included), resolved to files.
 *
 * - proxy/ (the data plane) never imports control/, admin/ or cli/;
 * - control/ reaches the data plane only through its adapter, control/in-process.ts;
 * - common/ (shared contracts) imports none of proxy/, control/, admin/, cli/;
 * - config/ imports none of control/, admin/, cli/;
 * - no import circles anywhere (strongly connected components of the graph).
 *
 * `import type` counts as an edge, for the rules and for circles: a type-only
 * edge is still a dependency of meaning (a type-only circle is two modules that
 * cannot be understood apart) and it becomes a runtime edge the day someone
 * needs a value. A dynamic `import()` counts for the rules but not for
 * circles: it is lazy, so it takes no part in module initialisation order
 * (cli/sluice.ts loads demo/ that way, and nothing in demo/ imports cli/).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SKIP_DIRS = new Set(['node_modules', 'dist']);

const STATIC_RE = /^[ \t]*(?:import|export)\s+(?:type\s+)?[^'";]*?\bfrom\s*['"]([^'"]+)['"]/gm;
const SIDE_EFFECT_RE = /^[ \t]*import\s*['"]([^'"]+)['"]/gm;
const DYNAMIC_RE = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

interface Edge {
  readonly from: string;
  readonly to: string;
  readonly dynamic: boolean;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.') || SKIP_DIRS.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** A relative specifier as a repository path (`proxy/stats.ts`); null for packages and non-TypeScript files. */
function resolveSpecifier(fromFile: string, spec: string): string | null {
  if (!spec.startsWith('.')) return null;
  const target = resolve(dirname(fromFile), spec.replace(/\.js$/, '.ts'));
  if (!target.endsWith('.ts') || !existsSync(target)) return null;
  return relative(ROOT, target).split(sep).join('/');
}

function importGraph(): { files: string[]; edges: Edge[] } {
  const files = sourceFiles(ROOT).filter((f) => relative(ROOT, f).includes(sep)); // files in folders, not root scripts
  const edges: Edge[] = [];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const from = relative(ROOT, file).split(sep).join('/');
    const add = (re: RegExp, dynamic: boolean) => {
      for (const m of text.matchAll(re)) {
        const to = resolveSpecifier(file, m[1]!);
        if (to !== null) edges.push({ from, to, dynamic });
      }
    };
    add(STATIC_RE, false);
    add(SIDE_EFFECT_RE, false);
    add(DYNAMIC_RE, true);
  }
  return { files: files.map((f) => relative(ROOT, f).split(sep).join('/')), edges };
}

const folder = (path: string) => path.slice(0, path.indexOf('/'));

/** Which folders a folder may not import, and the files exempt from that. */
const RULES: ReadonlyArray<{ readonly folder: string; readonly forbidden: readonly string[]; readonly except?: readonly string[] }> = [
  { folder: 'proxy', forbidden: ['control', 'admin', 'cli'] },
  { folder: 'control', forbidden: ['proxy'], except: ['control/in-process.ts'] },
  { folder: 'common', forbidden: ['proxy', 'control', 'admin', 'cli'] },
  { folder: 'config', forbidden: ['control', 'admin', 'cli'] },
];

/** Tarjan's strongly connected components with more than one file (or a file importing itself). */
function circles(nodes: readonly string[], edges: readonly Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const n of nodes) next.set(n, []);
  for (const e of edges) if (!e.dynamic) next.get(e.from)?.push(e.to);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  let counter = 0;
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (next.get(v) ?? []).includes(v)) out.push(component.sort());
    }
  };
  for (const n of nodes) if (!index.has(n)) visit(n);
  return out;
}

const graph = importGraph();

test('the import graph is read: every folder, multi-line imports, type-only imports and the adapter edge', () => {
  const has = (from: string, to: string) => graph.edges.some((e) => e.from === from && e.to === to);
  for (const f of ['proxy', 'control', 'common', 'config', 'admin', 'cli', 'sim', 'test']) {
    assert.ok(graph.edges.some((e) => folder(e.from) === f), `no import read from ${f}/`);
  }
  assert.ok(graph.edges.length > 300, `only ${graph.edges.length} imports read`);
  assert.ok(has('control/in-process.ts', 'proxy/proxy-server.ts'), 'the adapter imports the proxy (import type)');
  assert.ok(has('config/process.ts', 'config/types.ts'), 'a multi-line import list is read');
  assert.ok(has('cli/sluice.ts', 'demo/demo.ts'), 'a dynamic import is read');
  // The checks below find what they are meant to find.
  assert.deepEqual(circles(['a', 'b', 'c'], [{ from: 'a', to: 'b', dynamic: false }, { from: 'b', to: 'a', dynamic: true }]), []);
  assert.deepEqual(circles(['a', 'b', 'c'], [{ from: 'a', to: 'b', dynamic: false }, { from: 'b', to: 'c', dynamic: false }, { from: 'c', to: 'a', dynamic: false }]), [['a', 'b', 'c']]);
});

test('folders import only what their layer may', () => {
  const broken: string[] = [];
  for (const e of graph.edges) {
    for (const rule of RULES) {
      if (folder(e.from) !== rule.folder || !rule.forbidden.includes(folder(e.to))) continue;
      if (rule.except?.includes(e.from)) continue;
      broken.push(`${e.from} → ${e.to}${e.dynamic ? ' (dynamic)' : ''}`);
    }
  }
  assert.deepEqual(broken, [], `imports across a layer's wall:\n${broken.join('\n')}`);
});

test('no import circles', () => {
  const found = circles(graph.files, graph.edges);
  assert.deepEqual(found, [], `import circles:\n${found.map((c) => c.join(' ↔ ')).join('\n')}`);
});
