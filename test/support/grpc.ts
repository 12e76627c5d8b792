/**
 * gRPC fixtures: a real grpc-js Echo server (test/fixtures/echo.proto) with
 * seeded fault injection, and a grpc-js client wrapped in promise helpers.
 * Streams carry chunks derived from their seq alone, so either end checks the
 * other by count and sha256 without keeping the data.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export interface Chunk { seq: number; data: Buffer }
export interface SayReply { version: string; text: string }
export interface CollectReply { count: number; sha256: string; bytes: number }
export interface StreamResult { count: number; sha256: string }

const PROTO = fileURLToPath(new URL('../fixtures/echo.proto', import.meta.url));
let loaded: { service: grpc.ServiceDefinition; Client: grpc.ServiceClientConstructor } | undefined;

/** The Echo service definition (for a server) and client constructor, loaded once. */
export function loadEcho(): { service: grpc.ServiceDefinition; Client: grpc.ServiceClientConstructor } {
  if (!loaded) {
    // defaults: proto3 leaves zero values off the wire, and chunk 0's seq must still read as 0.
    const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: true });
    const Client = (grpc.loadPackageDefinition(definition) as any).sluice.test.Echo as grpc.ServiceClientConstructor;
    loaded = { service: Client.service, Client };
  }
  return loaded;
}

/** mulberry32: a tiny seeded PRNG, so a seed fixes which calls fail on every run. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Chunk `seq`'s data: pseudo-random from seq, so no two chunks are alike and a swap changes the hash. */
export function chunkData(seq: number, size: number): Buffer {
  const random = mulberry32(seq);
  const data = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) data[i] = (random() * 256) | 0;
  return data;
}

export function* chunks(count: number, size: number): Generator<Chunk> {
  for (let seq = 0; seq < count; seq++) yield { seq, data: chunkData(seq, size) };
}

/** The sha256 (hex) of chunks 0..count-1 in order: what every stream kind must deliver. */
export function expectedSha(count: number, size: number): string {
  const hash = createHash('sha256');
  for (const c of chunks(count, size)) hash.update(c.data);
  return hash.digest('hex');
}

/** Metadata as a plain object: first value per key, binary (-bin) values in base64. */
export function plainMetadata(md: grpc.Metadata): Record<string, string> {
  return Object.fromEntries(Object.entries(md.getMap()).map(([k, v]) => [k, typeof v === 'string' ? v : v.toString('base64')]));
}

function toMetadata(values: Record<string, string>): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(values)) md.set(k, v);
  return md;
}

/**
 * Writes every chunk, waiting for 'drain' whenever write() says the buffer is
 * full, so 10,000 messages never pile up in the writer's buffer; stops once
 * `ended` settles (a cancelled or failed call never drains).
 */
async function writeAll(stream: Writable, items: Iterable<Chunk>, ended: Promise<void>): Promise<void> {
  let done = false;
  void ended.then(() => (done = true));
  for (const c of items) {
    if (done) return;
    if (!stream.write(c)) await Promise.race([once(stream, 'drain'), ended]);
  }
}

export interface EchoServerOptions {
  version: string;
  credentials?: grpc.ServerCredentials;
  /** Share of Say calls answered with failCode (default UNAVAILABLE), message `injected <code number>`. */
  failRate?: number;
  failCode?: grpc.status;
  /** Share of Say calls never answered (the same draw as failRate decides): they end when the client cancels or its deadline passes. */
  hangRate?: number;
  seed?: number;
  /** Sent as trailer x-sluice-reward on each OK Say reply. */
  rewardTrailer?: string;
  /** Sent as initial metadata x-sluice-reward on each OK Say reply. */
  rewardHeader?: string;
}

export interface EchoServer {
  readonly port: number;
  /** host:port, as grpc-js clients take it. */
  readonly address: string;
  readonly version: string;
  /** Say calls received, answered or not. */
  readonly calls: number;
  /** Say calls held unanswered right now; they leave when cancelled. */
  readonly hanging: number;
  /** The request metadata of the latest Say call. */
  readonly metadataSeen: Record<string, string>;
  close(): Promise<void>;
}

/** A grpc-js Echo server on 127.0.0.1 (cleartext h2c unless given credentials). */
export async function startEchoServer(opts: EchoServerOptions): Promise<EchoServer> {
  const { version, failRate = 0, failCode = grpc.status.UNAVAILABLE, hangRate = 0 } = opts;
  const random = mulberry32(opts.seed ?? 1);
  const hanging = new Set<object>();
  let calls = 0;
  let metadataSeen: Record<string, string> = {};

  const Say: grpc.handleUnaryCall<{ text: string }, SayReply> = (call, callback) => {
    calls++;
    metadataSeen = plainMetadata(call.metadata);
    // One draw per call, in arrival order: the number of failures in N calls is fixed by the seed even when calls race.
    const r = random();
    if (r < failRate) return callback({ code: failCode, details: `injected ${failCode}` });
    if (r < failRate + hangRate) {
      hanging.add(call);
      call.on('cancelled', () => hanging.delete(call));
      return;
    }
    if (opts.rewardHeader !== undefined) call.sendMetadata(toMetadata({ 'x-sluice-reward': opts.rewardHeader }));
    const trailer = opts.rewardTrailer === undefined ? undefined : toMetadata({ 'x-sluice-reward': opts.rewardTrailer });
    callback(null, { version, text: call.request.text }, trailer);
  };
  const Stream: grpc.handleServerStreamingCall<{ count: number; size: number }, Chunk> = (call) => {
    const cancelled = once(call, 'cancelled').then(() => {}, () => {});
    const end = () => call.end();
    writeAll(call, chunks(call.request.count, call.request.size), cancelled).then(end, end);
  };
  const Collect: grpc.handleClientStreamingCall<Chunk, CollectReply> = (call, callback) => {
    const hash = createHash('sha256');
    let count = 0;
    let bytes = 0;
    call.on('data', (c: Chunk) => {
      hash.update(c.data);
      count++;
      bytes += c.data.length;
    });
    call.on('end', () => callback(null, { count, sha256: hash.digest('hex'), bytes }));
  };
  const Chat: grpc.handleBidiStreamingCall<Chunk, Chunk> = (call) => {
    call.on('data', (c: Chunk) => {
      // Stop reading while the echo is backed up: a slow reader then slows the writer instead of growing this buffer.
      if (!call.write(c)) {
        call.pause();
        call.once('drain', () => call.resume());
      }
    });
    call.on('end', () => call.end());
  };

  const server = new grpc.Server();
  server.addService(loadEcho().service, { Say, Stream, Collect, Chat });
  const credentials = opts.credentials ?? grpc.ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    address: `127.0.0.1:${port}`,
    version,
    get calls() { return calls; },
    get hanging() { return hanging.size; },
    get metadataSeen() { return metadataSeen; },
    close: async () => {
      // forceShutdown cancels in-flight calls, hanging ones too: tryShutdown would wait for them forever.
      server.forceShutdown();
      hanging.clear();
    },
  };
}

export interface SayResult extends SayReply {
  status: grpc.StatusObject;
  /** Initial (header) metadata of the reply. */
  metadata: Record<string, string>;
  /** Trailing metadata: status.metadata as a plain object. */
  trailers: Record<string, string>;
}

export interface EchoClient {
  /** The grpc-js client itself, for calls the helpers do not cover (methods are made at runtime: any). */
  readonly raw: any;
  /** Resolves on OK; rejects with the grpc.ServiceError (code, details, metadata) otherwise. */
  say(text: string, metadata?: Record<string, string>, deadlineMs?: number): Promise<SayResult>;
  /** Server streaming: checks seq order, count and hash. */
  streamAll(count: number, size: number): Promise<StreamResult>;
  /** Client streaming, with backpressure: the server's count, hash and byte total. */
  collect(count: number, size: number): Promise<CollectReply>;
  collect(items: Iterable<Chunk>): Promise<CollectReply>;
  /** Bidi: writes while reading the echo, checks it is the chunks sent, in order. */
  chat(count: number, size: number): Promise<StreamResult>;
  close(): void;
}

/** Reads chunks until the call ends OK (both 'end' and an OK status: data can trail the status event). */
function readAll(call: any): Promise<StreamResult> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let count = 0;
    let ended = false;
    let ok = false;
    const settle = () => ended && ok && resolve({ count, sha256: hash.digest('hex') });
    call.on('data', (c: Chunk) => {
      if (c.seq !== count) return void (reject(new Error(`expected chunk ${count}, got seq ${c.seq}`)), call.cancel());
      hash.update(c.data);
      count++;
    });
    call.on('end', () => ((ended = true), settle()));
    call.on('status', (s: grpc.StatusObject) => s.code === grpc.status.OK && ((ok = true), settle()));
    call.on('error', reject);
  });
}

function verified(got: StreamResult, count: number, size: number): StreamResult {
  if (got.count !== count) throw new Error(`expected ${count} chunks, got ${got.count}`);
  if (got.sha256 !== expectedSha(count, size)) throw new Error(`${count} chunks arrived but their data differs`);
  return got;
}

export function echoClient(address: string, opts: { credentials?: grpc.ChannelCredentials; options?: grpc.ChannelOptions } = {}): EchoClient {
  const { Client } = loadEcho();
  const raw: any = new Client(address, opts.credentials ?? grpc.credentials.createInsecure(), opts.options);
  return {
    raw,
    say: (text, metadata = {}, deadlineMs) =>
      new Promise((resolve, reject) => {
        let reply: SayReply | undefined;
        let headers: Record<string, string> = {};
        const options = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
        // grpc-js calls back before it emits 'status', so the reply is there when the trailers are.
        const call = raw.Say({ text }, toMetadata(metadata), options, (err: grpc.ServiceError | null, r?: SayReply) =>
          err ? reject(err) : (reply = r),
        );
        call.on('metadata', (md: grpc.Metadata) => (headers = plainMetadata(md)));
        call.on('status', (status: grpc.StatusObject) => {
          if (reply) resolve({ ...reply, status, metadata: headers, trailers: plainMetadata(status.metadata) });
        });
      }),
    streamAll: async (count, size) => verified(await readAll(raw.Stream({ count, size })), count, size),
    collect: (countOrItems: number | Iterable<Chunk>, size: number = 0) => {
      let call: any;
      const reply = new Promise<CollectReply>((resolve, reject) => {
        call = raw.Collect((err: grpc.ServiceError | null, r: CollectReply) => (err ? reject(err) : resolve(r)));
      });
      const items = typeof countOrItems === 'number' ? chunks(countOrItems, size) : countOrItems;
      const ended = reply.then(() => {}, () => {});
      // A failed write surfaces as the call's status, through `reply`.
      void writeAll(call, items, ended).catch(() => {}).then(() => call.end());
      return reply;
    },
    chat: async (count, size) => {
      const call = raw.Chat();
      const reading = readAll(call);
      await writeAll(call, chunks(count, size), reading.then(() => {}, () => {})).catch(() => {});
      call.end();
      return verified(await reading, count, size);
    },
    close: () => raw.close(),
  };
}
