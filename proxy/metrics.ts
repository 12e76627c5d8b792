/**
 * Every Prometheus series of the proxy, in one place. The request path only
 * bumps numbers in preallocated arrays (stats.ts); these collectors turn
 * them into series when Prometheus scrapes, so a scrape costs what it costs
 * and a request costs nothing extra.
 */
import type { Registry } from 'prom-client';
import { createBaseRegistry, scraped, type ScrapedMetric, type ScrapedValue } from '../common/scrape.js';
import { GRPC_CODES } from '../common/grpc-status.js';
import type { RoutingTable } from './routing-table.js';
import { CLIENT_ERROR_REASONS, DURATION_BUCKETS, MIRROR_OUTCOMES, RETRY_REASONS, UPSTREAM_ERROR_REASONS, type StatsRegistry } from './stats.js';

type Labels = Record<string, string | number>;
type Value = ScrapedValue;

export function createMetricsRegistry(stats: StatsRegistry, table: () => RoutingTable): Registry {
  const registry = createBaseRegistry();
  const add = (m: ScrapedMetric) => registry.registerMetric(m as never);

  add(
    scraped('sluice_requests_total', 'Requests served, by route, version and status code (499: client closed first).', 'counter', () => {
      const out: Value[] = [];
      for (const s of stats.all()) {
        for (let code = 0; code < s.byStatus.length; code++) {
          const n = s.byStatus[code]!;
          if (n > 0) out.push({ value: n, labels: { route: s.route, version: s.version, code: String(code) } });
        }
      }
      return out;
    }),
  );

  add(
    scraped('sluice_request_duration_seconds', 'Time from the request reaching Sluice to its last byte sent.', 'histogram', () => {
      const out: Value[] = [];
      for (const s of stats.all()) {
        const labels = { route: s.route, version: s.version };
        let cumulative = 0;
        DURATION_BUCKETS.forEach((le, i) => {
          cumulative += s.durationBuckets[i]!;
          out.push({ metricName: 'sluice_request_duration_seconds_bucket', value: cumulative, labels: { ...labels, le } });
        });
        out.push({ metricName: 'sluice_request_duration_seconds_bucket', value: s.requests, labels: { ...labels, le: '+Inf' } });
        out.push({ metricName: 'sluice_request_duration_seconds_sum', value: s.latencySumMs / 1000, labels });
        out.push({ metricName: 'sluice_request_duration_seconds_count', value: s.requests, labels });
      }
      return out;
    }),
  );

  add(
    scraped(
      'sluice_grpc_calls_total',
      'gRPC calls by grpc-status (OK, UNAVAILABLE, …); the statuses in a route\'s grpc.errorCodes are also the version\'s errors.',
      'counter',
      () => {
        const out: Value[] = [];
        for (const s of stats.all()) {
          s.byGrpcStatus.forEach((n, code) => {
            if (n > 0) out.push({ value: n, labels: { route: s.route, version: s.version, grpc_status: GRPC_CODES[code]! } });
          });
        }
        return out;
      },
    ),
  );

  add(
    scraped('sluice_upstream_errors_total', 'Requests the upstream version failed, by reason.', 'counter', () =>
      perName(stats, UPSTREAM_ERROR_REASONS, 'reason', (s) => s.upstreamErrors),
    ),
  );

  add(
    scraped(
      'sluice_upstream_retries_total',
      'Requests sent again, once, on a fresh connection: a reused keep-alive connection was lost before any response byte.',
      'counter',
      () => perName(stats, RETRY_REASONS, 'reason', (s) => s.retries),
    ),
  );

  add(
    scraped(
      'sluice_client_errors_total',
      'Requests refused because of the client\'s own framing (400); never counted as the version\'s requests or errors.',
      'counter',
      () => perName(stats, CLIENT_ERROR_REASONS, 'reason', (s) => s.clientErrors),
    ),
  );

  add(
    scraped('sluice_mirror_requests_total', 'Shadow copies sent to a mirrored version, by outcome.', 'counter', () =>
      perName(stats, MIRROR_OUTCOMES, 'outcome', (s) => s.mirror),
    ),
  );

  add(
    scraped('sluice_rewards_total', 'Reward events attributed to a version.', 'counter', () =>
      [...stats.all()].map((s) => ({ value: s.rewards, labels: { route: s.route, version: s.version } })),
    ),
  );

  add(
    scraped('sluice_conversions_total', 'Requests converted: a reward > 0 was attributed to them (at most one per request).', 'counter', () =>
      [...stats.all()].map((s) => ({ value: s.conversions, labels: { route: s.route, version: s.version } })),
    ),
  );

  add(
    scraped(
      'sluice_rewards_rejected_total',
      'x-sluice-reward values refused: empty, not a number, or beyond rewards.maxValue.',
      'counter',
      () => [...stats.all()].map((s) => ({ value: s.rewardsRejected, labels: { route: s.route, version: s.version } })),
    ),
  );

  // A summary without quantiles: its series are sluice_reward_sum (the contract's name) and
  // sluice_reward_count. Not a counter, because rewards may be negative (refunds) and a
  // counter must never go down; and promtool rejects a `_sum` name on anything else.
  add(
    scraped('sluice_reward', 'Reward values attributed to a version: sum and count.', 'summary', () =>
      [...stats.all()].flatMap((s) => {
        const labels = { route: s.route, version: s.version };
        return [
          { metricName: 'sluice_reward_sum', value: s.rewardSum, labels },
          { metricName: 'sluice_reward_count', value: s.rewards, labels },
        ];
      }),
    ),
  );

  add(
    scraped('sluice_route_weight', 'Percent of keyless traffic a version gets.', 'gauge', () => {
      const out: Value[] = [];
      for (const st of table().states) {
        for (const v of st.route.versions) out.push({ value: st.weights[v.name] ?? 0, labels: { route: st.route.name, version: v.name } });
      }
      return out;
    }),
  );

  return registry;
}

function perName(
  stats: StatsRegistry,
  names: readonly string[],
  label: string,
  values: (s: ReturnType<StatsRegistry['get']>) => Float64Array,
): Value[] {
  const out: Value[] = [];
  for (const s of stats.all()) {
    const arr = values(s);
    names.forEach((n, i) => {
      const labels: Labels = { route: s.route, version: s.version, [label]: n };
      out.push({ value: arr[i]!, labels });
    });
  }
  return out;
}
