/**
 * A small Kubernetes API server for controller tests. No real kube-apiserver
 * can be had on these machines (no binary on npm or Debian, no container
 * engine), so this one behaves like the real one where the controller
 * depends on it — and only there:
 *
 * - Experiments (sluice.dev/v1alpha1, namespaced): create, get, replace,
 *   delete, list and watch, with one resourceVersion counter over every
 *   object (as etcd's revision), `metadata.generation` bumped on spec changes
 *   only, optimistic concurrency (a write carrying a stale resourceVersion
 *   gets 409 Conflict), and the status subresource (`/status` writes change
 *   only `status`; writes to the main resource never change it).
 * - Watches: events after the given resourceVersion, BOOKMARK events when
 *   asked (allowWatchBookmarks), and an ERROR event with a 410 Gone Status
 *   for a resourceVersion older than the history kept (`compact()`), as a
 *   real server answers after etcd compaction.
 * - Events (core/v1 and events.k8s.io/v1) and Leases (coordination.k8s.io/v1,
 *   with the same 409 rule).
 *
 * It is not a real API server: no authentication, admission, field
 * selectors, server-side apply, strategic merge or validation by schema.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

type Obj = Record<string, any>;

interface Change {
  readonly rv: number;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly object: Obj;
}

interface Watcher {
  readonly namespace: string | null;
  readonly res: http.ServerResponse;
  readonly bookmarks: boolean;
}

const EXPERIMENTS = /^\/apis\/sluice\.dev\/v1alpha1\/(?:namespaces\/([^/]+)\/)?experiments(?:\/([^/]+))?(\/status)?$/;
const EVENTS = /^\/(?:api\/v1|apis\/events\.k8s\.io\/v1)\/namespaces\/([^/]+)\/events$/;
const LEASES = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?$/;

const clone = <T>(x: T): T => structuredClone(x);

export class FakeKubeApi {
  readonly #server = http.createServer((req, res) => void this.#handle(req, res));
  readonly #experiments = new Map<string, Obj>();
  readonly #leases = new Map<string, Obj>();
  readonly #history: Change[] = [];
  readonly #watchers = new Set<Watcher>();
  #rv = 100;
  /** The oldest resourceVersion a watch may start from (older: 410 Gone). */
  #compactedAt = 0;
  #conflicts = 0;
  #uid = 0;
  /** Every Event created, oldest first. */
  readonly events: Obj[] = [];
  /** Every accepted status write: the object as stored after it. */
  readonly statusWrites: Obj[] = [];
  /** Status writes refused with 409 (stale resourceVersion). */
  conflictsServed = 0;
  /** Watch requests served (a relist-and-rewatch shows up as one more). */
  watchesOpened = 0;
  listsServed = 0;
  url = '';

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    for (const w of this.#watchers) w.res.end();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ------------------------------------------------------------ test controls (what kubectl would do)

  create(namespace: string, name: string, spec: Obj): Obj {
    const key = `${namespace}/${name}`;
    if (this.#experiments.has(key)) throw new Error(`${key} exists`);
    const obj: Obj = {
      apiVersion: 'sluice.dev/v1alpha1',
      kind: 'Experiment',
      metadata: { name, namespace, uid: `uid-${++this.#uid}`, generation: 1, resourceVersion: '', creationTimestamp: new Date().toISOString() },
      spec: clone(spec),
    };
    this.#commit('ADDED', key, obj);
    return clone(obj);
  }

  /** Replaces the spec, as `kubectl apply` of a changed manifest does: generation + 1. */
  updateSpec(namespace: string, name: string, spec: Obj): Obj {
    const key = `${namespace}/${name}`;
    const cur = this.#experiments.get(key);
    if (!cur) throw new Error(`${key} not found`);
    const next: Obj = { ...clone(cur), spec: clone(spec) };
    next.metadata.generation = cur.metadata.generation + 1;
    this.#commit('MODIFIED', key, next);
    return clone(next);
  }

  delete(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    const cur = this.#experiments.get(key);
    if (!cur) throw new Error(`${key} not found`);
    this.#experiments.delete(key);
    this.#commit('DELETED', key, clone(cur), true);
  }

  get(namespace: string, name: string): Obj | null {
    const o = this.#experiments.get(`${namespace}/${name}`);
    return o ? clone(o) : null;
  }

  /** The next `n` status writes get 409 Conflict, as if another writer had just updated the object. */
  failStatusWrites(n: number): void {
    this.#conflicts = n;
  }

  /** Forgets the history (etcd compaction) and ends every watch: the next watch from an old resourceVersion gets 410 Gone. */
  compact(): void {
    // Other objects' writes move the revision on meanwhile: every version a watcher has seen is now too old.
    this.#rv++;
    this.#compactedAt = this.#rv;
    this.#history.length = 0;
    for (const w of this.#watchers) w.res.end();
    this.#watchers.clear();
  }

  /** Sends a bookmark to every watch that asked for them. */
  bookmark(): void {
    for (const w of this.#watchers) {
      if (w.bookmarks) this.#send(w, { type: 'BOOKMARK', object: { kind: 'Experiment', apiVersion: 'sluice.dev/v1alpha1', metadata: { resourceVersion: String(this.#rv) } } });
    }
  }

  lease(namespace: string, name: string): Obj | null {
    const l = this.#leases.get(`${namespace}/${name}`);
    return l ? clone(l) : null;
  }

  // ------------------------------------------------------------ the HTTP side

  #commit(type: Change['type'], key: string, obj: Obj, deleted = false): void {
    this.#rv++;
    obj.metadata.resourceVersion = String(this.#rv);
    if (!deleted) this.#experiments.set(key, obj);
    const change = { rv: this.#rv, type, object: clone(obj) };
    this.#history.push(change);
    for (const w of this.#watchers) {
      if (w.namespace === null || w.namespace === obj.metadata.namespace) this.#send(w, { type, object: change.object });
    }
  }

  #send(w: Watcher, event: Obj): void {
    w.res.write(`${JSON.stringify(event)}\n`);
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const body = await readJson(req);
    const send = (status: number, obj: Obj) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(obj));
    };
    let m = EXPERIMENTS.exec(url.pathname);
    if (m) return this.#experimentsCall(req.method ?? 'GET', m[1] ?? null, m[2] ?? null, m[3] !== undefined, url, body, res, send);
    m = EVENTS.exec(url.pathname);
    if (m && req.method === 'POST') {
      this.events.push({ ...body, metadata: { ...(body?.metadata ?? {}), namespace: m[1], resourceVersion: String(++this.#rv) } });
      return send(201, this.events[this.events.length - 1]!);
    }
    m = LEASES.exec(url.pathname);
    if (m) return this.#leaseCall(req.method ?? 'GET', m[1]!, m[2] ?? null, body, send);
    send(404, status(404, 'NotFound', `no route for ${req.method} ${url.pathname}`));
  }

  #experimentsCall(
    method: string,
    namespace: string | null,
    name: string | null,
    statusPath: boolean,
    url: URL,
    body: Obj | null,
    res: http.ServerResponse,
    send: (status: number, obj: Obj) => void,
  ): void {
    if (name === null) {
      if (method !== 'GET') return send(405, status(405, 'MethodNotAllowed', method));
      if (url.searchParams.get('watch') === 'true' || url.searchParams.get('watch') === '1') return this.#watch(namespace, url, res, send);
      this.listsServed++;
      const items = [...this.#experiments.values()].filter((o) => namespace === null || o.metadata.namespace === namespace).map(clone);
      return send(200, { apiVersion: 'sluice.dev/v1alpha1', kind: 'ExperimentList', metadata: { resourceVersion: String(this.#rv) }, items });
    }
    const key = `${namespace}/${name}`;
    const cur = this.#experiments.get(key);
    if (!cur) return send(404, status(404, 'NotFound', `experiments.sluice.dev "${name}" not found`));
    if (method === 'GET') return send(200, clone(cur));
    if (method === 'PUT' || method === 'PATCH') {
      const merge = method === 'PATCH';
      const rv = body?.metadata?.resourceVersion;
      if (!merge && rv !== cur.metadata.resourceVersion) return send(409, conflict(name, rv, cur));
      if (statusPath && this.#conflicts > 0) {
        this.#conflicts--;
        this.conflictsServed++;
        return send(409, conflict(name, rv, cur));
      }
      const next = clone(cur);
      if (statusPath) next.status = merge ? { ...(cur.status ?? {}), ...(body?.status ?? {}) } : clone(body?.status ?? {});
      else if (JSON.stringify(body?.spec) !== JSON.stringify(cur.spec)) {
        next.spec = clone(body?.spec);
        next.metadata.generation = cur.metadata.generation + 1;
      }
      this.#commit('MODIFIED', key, next);
      if (statusPath) this.statusWrites.push(clone(next));
      return send(200, clone(next));
    }
    if (method === 'DELETE') {
      this.delete(namespace!, name);
      return send(200, status(200, 'Success', 'deleted'));
    }
    send(405, status(405, 'MethodNotAllowed', method));
  }

  #watch(namespace: string | null, url: URL, res: http.ServerResponse, send: (status: number, obj: Obj) => void): void {
    this.watchesOpened++;
    const from = Number(url.searchParams.get('resourceVersion') ?? this.#rv);
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    const w: Watcher = { namespace, res, bookmarks: url.searchParams.get('allowWatchBookmarks') === 'true' };
    if (from < this.#compactedAt) {
      // What kube-apiserver sends for a compacted resourceVersion: 200, one ERROR event, end.
      this.#send(w, { type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${from} (${this.#compactedAt})`) });
      res.end();
      return;
    }
    for (const c of this.#history) {
      if (c.rv > from && (namespace === null || c.object.metadata.namespace === namespace)) this.#send(w, { type: c.type, object: c.object });
    }
    this.#watchers.add(w);
    res.on('close', () => this.#watchers.delete(w));
    const timeout = Number(url.searchParams.get('timeoutSeconds') ?? 0);
    if (timeout > 0) setTimeout(() => res.end(), timeout * 1000).unref();
    void send;
  }

  #leaseCall(method: string, namespace: string, name: string | null, body: Obj | null, send: (status: number, obj: Obj) => void): void {
    if (method === 'POST') {
      const n = body?.metadata?.name as string;
      const key = `${namespace}/${n}`;
      if (this.#leases.has(key)) return send(409, status(409, 'AlreadyExists', `leases "${n}" already exists`));
      const lease = { ...clone(body), metadata: { ...body!.metadata, namespace, resourceVersion: String(++this.#rv) } };
      this.#leases.set(key, lease);
      return send(201, clone(lease));
    }
    const key = `${namespace}/${name}`;
    const cur = this.#leases.get(key);
    if (!cur) return send(404, status(404, 'NotFound', `leases "${name}" not found`));
    if (method === 'GET') return send(200, clone(cur));
    if (method === 'PUT') {
      if (body?.metadata?.resourceVersion !== cur.metadata.resourceVersion) return send(409, conflict(name!, body?.metadata?.resourceVersion, cur));
      const next = { ...clone(body), metadata: { ...body!.metadata, namespace, resourceVersion: String(++this.#rv) } };
      this.#leases.set(key, next);
      return send(200, clone(next));
    }
    send(405, status(405, 'MethodNotAllowed', method));
  }
}

function status(code: number, reason: string, message: string): Obj {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: code < 400 ? 'Success' : 'Failure', message, reason, code };
}

function conflict(name: string, sent: unknown, cur: Obj): Obj {
  return status(409, 'Conflict', `Operation cannot be fulfilled on experiments.sluice.dev "${name}": the object has been modified; please apply your changes to the latest version and try again (sent ${String(sent)}, current ${cur.metadata.resourceVersion})`);
}

async function readJson(req: http.IncomingMessage): Promise<Obj | null> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  if (chunks.length === 0) return null;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return null;
  }
}
