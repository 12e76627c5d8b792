/**
 * A small JSONPath subset, enough to pick one number out of an API's answer.
 * Written here rather than taken from jsonpath-plus: its 11.x needs Node 22,
 * and its filter expressions are evaluated as JavaScript (the source of its
 * 2024 code-execution advisories). Nothing here evaluates code.
 *
 *   $                      the document
 *   .name  ['name']        a member ("name" may contain - and $)
 *   [0]  [-1]              an element (negative: from the end)
 *   [0,2]  ['a','b']       a union
 *   [1:3]  [:2]  [::2]     a slice
 *   .*  [*]                every member or element
 *   ..name  ..*            recursive descent
 *   [?(@.k == 'v')]        a filter: @-paths compared (== != < <= > >=) with
 *                          strings, numbers, true, false, null or other @-paths,
 *                          joined by && or ||; a bare @-path tests existence
 */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

type Selector =
  | { kind: 'member'; names: string[] }
  | { kind: 'index'; indices: number[] }
  | { kind: 'slice'; start: number | null; end: number | null; step: number }
  | { kind: 'wildcard' }
  | { kind: 'filter'; expr: Filter };

interface Segment {
  readonly descend: boolean;
  readonly selector: Selector;
}

type Operand = { kind: 'path'; steps: Array<string | number> } | { kind: 'literal'; value: Json };
type Comparison = { left: Operand; op: CompareOp | null; right: Operand | null };
type Filter = { any: Comparison[][] }; // OR of ANDs
type CompareOp = '==' | '!=' | '<' | '<=' | '>' | '>=';

export class JsonPathSyntaxError extends Error {}

/** Parses a JSONPath; throws JsonPathSyntaxError with the position of the problem. */
export function compileJsonPath(path: string): (doc: Json) => Json[] {
  const segments = new Parser(path).parse();
  return (doc) => evaluate(segments, doc);
}

// ---------------------------------------------------------------- evaluation

function evaluate(segments: readonly Segment[], doc: Json): Json[] {
  let nodes: Json[] = [doc];
  for (const seg of segments) {
    const next: Json[] = [];
    for (const node of nodes) {
      const targets = seg.descend ? descendants(node) : [node];
      for (const t of targets) select(seg.selector, t, next);
    }
    nodes = next;
  }
  return nodes;
}

/** A node and everything under it, document order. */
function descendants(node: Json): Json[] {
  const out: Json[] = [node];
  for (const child of children(node)) out.push(...descendants(child));
  return out;
}

function children(node: Json): Json[] {
  if (Array.isArray(node)) return node;
  if (node !== null && typeof node === 'object') return Object.values(node);
  return [];
}

function select(sel: Selector, node: Json, out: Json[]): void {
  switch (sel.kind) {
    case 'wildcard':
      out.push(...children(node));
      return;
    case 'member':
      if (isObject(node)) for (const n of sel.names) if (Object.hasOwn(node, n)) out.push(node[n]!);
      return;
    case 'index':
      if (Array.isArray(node)) {
        for (const i of sel.indices) {
          const at = i < 0 ? node.length + i : i;
          if (at >= 0 && at < node.length) out.push(node[at]!);
        }
      }
      return;
    case 'slice':
      if (Array.isArray(node)) out.push(...slice(node, sel.start, sel.end, sel.step));
      return;
    case 'filter':
      for (const child of children(node)) if (matches(sel.expr, child)) out.push(child);
      return;
  }
}

function slice(arr: Json[], start: number | null, end: number | null, step: number): Json[] {
  const n = arr.length;
  const norm = (i: number) => (i < 0 ? Math.max(0, n + i) : Math.min(n, i));
  const out: Json[] = [];
  if (step > 0) {
    for (let i = norm(start ?? 0); i < norm(end ?? n); i += step) out.push(arr[i]!);
  } else {
    const s = start === null ? n - 1 : start < 0 ? n + start : Math.min(start, n - 1);
    const e = end === null ? -1 : end < 0 ? n + end : end;
    for (let i = s; i > e && i >= 0; i += step) out.push(arr[i]!);
  }
  return out;
}

function matches(f: Filter, node: Json): boolean {
  return f.any.some((all) => all.every((c) => compare(c, node)));
}

function compare(c: Comparison, node: Json): boolean {
  const left = operand(c.left, node);
  if (c.op === null || c.right === null) return left !== undefined;
  const right = operand(c.right, node);
  if (left === undefined || right === undefined) return c.op === '!=' && left !== right;
  switch (c.op) {
    case '==':
      return equal(left, right);
    case '!=':
      return !equal(left, right);
    default: {
      const ordered = (typeof left === 'number' && typeof right === 'number') || (typeof left === 'string' && typeof right === 'string');
      if (!ordered) return false;
      if (c.op === '<') return left < right;
      if (c.op === '<=') return left <= right;
      if (c.op === '>') return left > right;
      return left >= right;
    }
  }
}

function equal(a: Json, b: Json): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** An operand's value; undefined when an @-path leads nowhere. */
function operand(o: Operand, node: Json): Json | undefined {
  if (o.kind === 'literal') return o.value;
  let cur: Json | undefined = node;
  for (const step of o.steps) {
    if (typeof step === 'number') cur = Array.isArray(cur) ? cur[step < 0 ? cur.length + step : step] : undefined;
    else cur = isObject(cur) && Object.hasOwn(cur, step) ? cur[step] : undefined;
    if (cur === undefined) return undefined;
  }
  return cur;
}

function isObject(v: Json | undefined): v is { [key: string]: Json } {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// ---------------------------------------------------------------- parsing

const NAME = /[A-Za-z0-9_$-]/;

class Parser {
  #i = 0;

  constructor(private readonly s: string) {}

  parse(): Segment[] {
    this.#skipSpace();
    if (this.s[this.#i] !== '$') this.#fail('a JSONPath starts with $');
    this.#i++;
    const out: Segment[] = [];
    for (;;) {
      this.#skipSpace();
      if (this.#i >= this.s.length) return out;
      out.push(this.#segment());
    }
  }

  #segment(): Segment {
    const c = this.s[this.#i];
    if (c === '[') return { descend: false, selector: this.#bracket() };
    if (c !== '.') this.#fail(`expected ".", ".." or "[", got ${JSON.stringify(c)}`);
    this.#i++;
    const descend = this.s[this.#i] === '.';
    if (descend) this.#i++;
    if (this.s[this.#i] === '[') {
      if (!descend) this.#fail('"[" cannot follow "."');
      return { descend, selector: this.#bracket() };
    }
    if (this.s[this.#i] === '*') {
      this.#i++;
      return { descend, selector: { kind: 'wildcard' } };
    }
    return { descend, selector: { kind: 'member', names: [this.#name()] } };
  }

  #name(): string {
    const start = this.#i;
    while (this.#i < this.s.length && NAME.test(this.s[this.#i]!)) this.#i++;
    if (this.#i === start) this.#fail('expected a member name');
    return this.s.slice(start, this.#i);
  }

  #bracket(): Selector {
    this.#expect('[');
    this.#skipSpace();
    let sel: Selector;
    const c = this.s[this.#i];
    if (c === '*') {
      this.#i++;
      sel = { kind: 'wildcard' };
    } else if (c === '?') {
      this.#i++;
      this.#skipSpace();
      this.#expect('(');
      sel = { kind: 'filter', expr: this.#filter() };
      this.#skipSpace();
      this.#expect(')');
    } else if (c === "'" || c === '"') {
      const names = [this.#string()];
      while (this.#peekAfterSpace(',')) {
        this.#i++;
        this.#skipSpace();
        names.push(this.#string());
      }
      sel = { kind: 'member', names };
    } else {
      sel = this.#indexOrSlice();
    }
    this.#skipSpace();
    this.#expect(']');
    return sel;
  }

  #indexOrSlice(): Selector {
    const first = this.#optInt();
    this.#skipSpace();
    if (this.s[this.#i] === ':') {
      this.#i++;
      this.#skipSpace();
      const end = this.#optInt();
      this.#skipSpace();
      let step = 1;
      if (this.s[this.#i] === ':') {
        this.#i++;
        this.#skipSpace();
        step = this.#optInt() ?? 1;
        if (step === 0) this.#fail('a slice step cannot be 0');
      }
      return { kind: 'slice', start: first, end, step };
    }
    if (first === null) this.#fail('expected an index, a quoted name, *, a slice or ?(…)');
    const indices = [first];
    while (this.#peekAfterSpace(',')) {
      this.#i++;
      this.#skipSpace();
      const n = this.#optInt();
      if (n === null) this.#fail('expected an index');
      indices.push(n);
    }
    return { kind: 'index', indices };
  }

  #filter(): Filter {
    const any: Comparison[][] = [[this.#comparison()]];
    for (;;) {
      this.#skipSpace();
      if (this.s.startsWith('&&', this.#i)) {
        this.#i += 2;
        any[any.length - 1]!.push(this.#comparison());
      } else if (this.s.startsWith('||', this.#i)) {
        this.#i += 2;
        any.push([this.#comparison()]);
      } else return { any };
    }
  }

  #comparison(): Comparison {
    this.#skipSpace();
    const left = this.#operand();
    this.#skipSpace();
    const m = /^(==|!=|<=|>=|<|>)/.exec(this.s.slice(this.#i));
    if (!m) return { left, op: null, right: null };
    this.#i += m[1]!.length;
    this.#skipSpace();
    return { left, op: m[1] as CompareOp, right: this.#operand() };
  }

  #operand(): Operand {
    const c = this.s[this.#i];
    if (c === '@') {
      this.#i++;
      const steps: Array<string | number> = [];
      for (;;) {
        if (this.s[this.#i] === '.' && this.s[this.#i + 1] !== '.') {
          this.#i++;
          steps.push(this.#name());
        } else if (this.s[this.#i] === '[') {
          this.#i++;
          this.#skipSpace();
          const q = this.s[this.#i];
          if (q === "'" || q === '"') steps.push(this.#string());
          else {
            const n = this.#optInt();
            if (n === null) this.#fail('expected an index or a quoted name in a filter path');
            steps.push(n);
          }
          this.#skipSpace();
          this.#expect(']');
        } else return { kind: 'path', steps };
      }
    }
    if (c === "'" || c === '"') return { kind: 'literal', value: this.#string() };
    const m = /^(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null)/.exec(this.s.slice(this.#i));
    if (!m) this.#fail('expected @…, a quoted string, a number, true, false or null');
    this.#i += m[1]!.length;
    return { kind: 'literal', value: JSON.parse(m[1]!) as Json };
  }

  #string(): string {
    const quote = this.s[this.#i]!;
    let out = '';
    this.#i++;
    while (this.#i < this.s.length && this.s[this.#i] !== quote) {
      if (this.s[this.#i] === '\\' && this.#i + 1 < this.s.length) this.#i++;
      out += this.s[this.#i];
      this.#i++;
    }
    if (this.#i >= this.s.length) this.#fail('unterminated string');
    this.#i++;
    return out;
  }

  #optInt(): number | null {
    const m = /^-?\d+/.exec(this.s.slice(this.#i));
    if (!m) return null;
    this.#i += m[0].length;
    return Number(m[0]);
  }

  #peekAfterSpace(c: string): boolean {
    this.#skipSpace();
    return this.s[this.#i] === c;
  }

  #expect(c: string): void {
    if (this.s[this.#i] !== c) this.#fail(`expected ${JSON.stringify(c)}`);
    this.#i++;
  }

  #skipSpace(): void {
    while (this.s[this.#i] === ' ') this.#i++;
  }

  #fail(message: string): never {
    throw new JsonPathSyntaxError(`${message} at position ${this.#i + 1}`);
  }
}
