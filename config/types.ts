/**
 * The validated, frozen shape of `sluice.yaml`. Everything downstream of
 * `loadConfig` trusts these types: validation happens once, at load.
 * Durations are milliseconds; weights are integer percents summing to 100.
 */

/** How a rule compares one request attribute. */
export type ValueMatch =
  | { readonly kind: 'exact'; readonly value: string }
  | { readonly kind: 'regex'; readonly regex: RegExp; readonly source: string }
  | { readonly kind: 'present'; readonly present: boolean };

export interface RuleMatch {
  /** Header names are lower-case. */
  readonly headers: ReadonlyArray<readonly [name: string, match: ValueMatch]>;
  readonly cookies: ReadonlyArray<readonly [name: string, match: ValueMatch]>;
  readonly query: ReadonlyArray<readonly [name: string, match: ValueMatch]>;
}

export interface RuleConfig {
  readonly match: RuleMatch;
  readonly version: string;
}

/** How Sluice talks to a version: HTTP/1.1 (cleartext or TLS), h2c (cleartext HTTP/2, prior knowledge) or h2 (HTTP/2 over TLS). */
export type UpstreamProtocol = 'http1' | 'h2c' | 'h2';
export const UPSTREAM_PROTOCOLS: readonly UpstreamProtocol[] = ['http1', 'h2c', 'h2'];

/** TLS towards an https: version. Files are PEM, read when the process starts; null: the default (system CAs, no client certificate). */
export interface UpstreamTlsConfig {
  /** CA bundle that replaces the system CAs for this version (a private CA). */
  readonly ca: string | null;
  /** Client certificate and key (mTLS); both or neither. */
  readonly cert: string | null;
  readonly key: string | null;
  /** Server name sent in SNI and verified against the certificate; null: the URL's host. */
  readonly servername: string | null;
}

export interface VersionConfig {
  readonly name: string;
  /** Origin only (`http://host:port`), normalised by the URL parser. */
  readonly url: string;
  /** Optional path prefix of the upstream URL (`http://h/api` → `/api`), '' when none. */
  readonly basePath: string;
  /** http1 unless set; h2c needs an http: URL, h2 an https: one. */
  readonly protocol: UpstreamProtocol;
  /** Only for https: URLs; null: verify against the system CAs. */
  readonly tls: UpstreamTlsConfig | null;
}

export interface MirrorConfig {
  readonly version: string;
  /** 0–100, may be fractional. */
  readonly percent: number;
  readonly compare: boolean;
  /** Upper-case HTTP methods that are mirrored. */
  readonly methods: ReadonlySet<string>;
  /** Request bodies larger than this are not mirrored (counted as `dropped`). */
  readonly maxBodyBytes: number;
  readonly timeoutMs: number;
  /** Shadow requests in flight at once for this mirror; above it: `dropped`. */
  readonly maxConcurrent: number;
}

export type StickyConfig =
  | { readonly kind: 'header'; readonly name: string }
  | { readonly kind: 'cookie'; readonly name: string };

export interface TimeoutsConfig {
  readonly connectMs: number;
  /** Time allowed for the upstream's response headers, and between body chunks. */
  readonly requestMs: number;
}

export interface RouteConfig {
  readonly name: string;
  /** Lower-case host without port, or null for any host. A leading `*.` matches any subdomain. */
  readonly host: string | null;
  readonly pathPrefix: string;
  readonly versions: readonly VersionConfig[];
  /** Integer percent per version name, every version present, summing to 100. */
  readonly weights: Readonly<Record<string, number>>;
  readonly rules: readonly RuleConfig[];
  readonly sticky: StickyConfig | null;
  readonly mirror: readonly MirrorConfig[];
  readonly timeouts: TimeoutsConfig;
  readonly grpc: GrpcRouteConfig;
}

/** How gRPC calls on a route are judged. */
export interface GrpcRouteConfig {
  /** Bit i set: a call ending with grpc-status i counts as the version's error. */
  readonly errorCodes: number;
  /**
   * A call whose own deadline (grpc-timeout) is shorter than this still ends
   * DEADLINE_EXCEEDED, but is not charged to the version: the deadline is the
   * client's to choose, and a tiny one would let any client fail any version.
   */
  readonly minDeadlineMs: number;
}

/** `admin.dashboard`: the page on the admin API's `GET /` (docs/dashboard.md). */
export type DashboardMode = 'on' | 'read-only' | 'off';

export interface AdminConfig {
  readonly listen: ListenAddress;
  readonly token: string | null;
  /** `read-only` hides the page's actions; the token is what protects the API either way. */
  readonly dashboard: DashboardMode;
}

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** One certificate and its key, PEM files. */
export interface CertificateFiles {
  readonly cert: string;
  readonly key: string;
}

/** A certificate served to clients asking (SNI) for one of `hosts` (lower-case; `*.example.com` matches one label). */
export interface SniCertificate extends CertificateFiles {
  readonly hosts: readonly string[];
}

/** TLS on the traffic listener. */
export interface ListenerTlsConfig extends CertificateFiles {
  /** Chosen by SNI before the default certificate (`cert`/`key`). */
  readonly sni: readonly SniCertificate[];
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
  /** How often the files are checked for a change (Kubernetes rotates mounted secrets in place). */
  readonly reloadMs: number;
}

/** The traffic listener: where, with TLS or not, and whether HTTP/2 (h2 by ALPN, h2c by prior knowledge) is served beside HTTP/1.1. */
export interface TrafficListenConfig extends ListenAddress {
  readonly http2: boolean;
  readonly tls: ListenerTlsConfig | null;
}

export interface ProxyOptions {
  /** Response header naming the version that served; null turns it off. */
  readonly versionHeader: string | null;
  /** Upstream connections per version. */
  readonly connectionsPerVersion: number;
  /** Idle upstream keep-alive, kept below common upstream defaults (Node: 5 s). */
  readonly upstreamKeepAliveMs: number;
  /** Client side: time allowed to receive the request headers. */
  readonly headersTimeoutMs: number;
  /** Client side: time allowed to receive the whole request. */
  readonly requestTimeoutMs: number;
  /** Client side idle keep-alive. */
  readonly keepAliveTimeoutMs: number;
  /** How long SIGTERM waits for in-flight requests before exiting anyway. */
  readonly drainTimeoutMs: number;
  /** One pino line per request (off by default: it costs on the hot path). */
  readonly accessLog: boolean;
  /**
   * Keep the client's X-Forwarded-Proto/-Host and Forwarded (behind a trusted
   * load balancer). Off: Sluice is the ingress and replaces them.
   */
  readonly trustForwarded: boolean;
  /** Upgraded (WebSocket) connections open at once per version; beyond it upgrades get 503. */
  readonly maxUpgradesPerVersion: number;
  /** Request bodies with a Content-Length up to this are read whole before dispatch (slow-clients.ts). */
  readonly requestBufferBytes: number;
  /** Response bytes that may wait in memory for a slow client, so the upstream connection is freed sooner. */
  readonly responseBufferBytes: number;
  /** Process-wide bound on both buffers together; beyond it requests and responses stream. */
  readonly bufferMemoryBytes: number;
  /** Longest pause between two chunks of a request body (0: none). */
  readonly clientBodyTimeoutMs: number;
  /** Longest a client may take no response bytes while some wait for it (0: none). */
  readonly sendTimeoutMs: number;
  /** Requests per version waiting for an upstream connection; beyond it: 503 SLUICE_OVERLOADED. */
  readonly queueLimit: number;
}

export interface StoreConfig {
  readonly redis: string | null;
}

/** Reward events (`x-sluice-reward`, POST /experiments/NAME/rewards) and the sticky-key exposures rewards by key are credited with. */
export interface RewardsConfig {
  /** Largest absolute reward value accepted: beyond it a value is refused, so sums of squares stay finite. */
  readonly maxValue: number;
  /** Sticky keys remembered per route (the least recently seen are forgotten first). */
  readonly exposureKeys: number;
  /** How long after its last request a key's rewards are still credited. */
  readonly exposureRetentionMs: number;
}

/** The `rewards` defaults (also the Redis-mode control plane's, which reads no config file of the proxies). */
export const DEFAULT_EXPOSURE_KEYS = 100_000;
/** Default bound on a reward's absolute value (config `rewards.maxValue`). */
export const DEFAULT_MAX_REWARD = 1e9;
export const DEFAULT_EXPOSURE_RETENTION_MS = 24 * 60 * 60 * 1000;

export interface SluiceConfig {
  readonly listen: TrafficListenConfig;
  readonly admin: AdminConfig;
  readonly store: StoreConfig;
  readonly proxy: ProxyOptions;
  readonly rewards: RewardsConfig;
  readonly routes: readonly RouteConfig[];
  readonly logLevel: string;
}
