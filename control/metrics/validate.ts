/**
 * Validation of `spec.metrics`: the fields every metric has here, each
 * source's own in its file (registered in sources.ts). Cross-references
 * (objectives and rewards naming a metric, sampleSize/stdDev names, a rate's
 * sampleSize) are checked in control/spec.ts, which sees the whole document.
 * jq expressions are compiled at apply time (rest-source.ts, through
 * index.ts checkMetricQueries): jq loads asynchronously and this reader is
 * synchronous.
 *
 * Returns one spec per list item, in order, so that spec.ts's
 * `spec.metrics[i]` paths line up; an item too broken to read becomes a
 * placeholder that draws no further problems.
 */
import type { Problems } from '../../common/validation.js';
import { expected, index, isObj, join, mapping, readEnum, readName } from '../../common/validation.js';
import { METRIC_TYPES, type MetricSpec, type MetricType } from './base.js';
import { MOCK_DEFAULTS, type MockMetricSpec } from './mock-source.js';
import { METRIC_SOURCES, metricSource } from './sources.js';
import { METRIC_BASE_KEYS } from '../spec-shape.js';

const MAX_NAME = 63;
const BASE_KEYS = METRIC_BASE_KEYS;

/** Reads `spec.metrics`; every problem is added to `p` by path. */
export function readMetricSpecs(p: Problems, raw: unknown, path: string, versions: readonly string[]): MetricSpec[] {
  if (raw == null) return [];
  if (!Array.isArray(raw)) return expected(p, path, 'a list of metrics', raw, []);
  return raw.map((x, i) => readMetric(p, x, index(path, i), versions));
}

function placeholder(name: string, type: MetricType | null): MockMetricSpec {
  return { name, type: type ?? 'mean', source: 'mock', sampleSize: null, stdDev: null, values: {}, countPerSecond: MOCK_DEFAULTS.countPerSecond };
}

function readMetric(p: Problems, v: unknown, path: string, versions: readonly string[]): MetricSpec {
  if (!isObj(v)) return expected(p, path, 'a mapping (name, type, source, …)', v, placeholder('', null));
  const source =
    v.source == null
      ? p.reject(join(path, 'source'), `required: one of ${METRIC_SOURCES.join(', ')}`, null)
      : readEnum(p, v.source, join(path, 'source'), METRIC_SOURCES, null);
  // Without a known source the allowed fields are unknown: report the source alone.
  const o = source === null ? v : mapping(p, v, path, [...BASE_KEYS, ...metricSource(source).keys])!;
  const name = readName(p, o.name, join(path, 'name'), MAX_NAME);
  const type =
    o.type == null
      ? p.reject(join(path, 'type'), `required: one of ${METRIC_TYPES.join(', ')}`, null)
      : readEnum(p, o.type, join(path, 'type'), METRIC_TYPES, null);
  if (source === null) return placeholder(name, type);
  const base = {
    name,
    type: type ?? 'mean',
    sampleSize: optMetricName(p, o.sampleSize, join(path, 'sampleSize')),
    stdDev: optMetricName(p, o.stdDev, join(path, 'stdDev')),
  };
  return metricSource(source).read({ p, versions, type }, o, path, base);
}

function optMetricName(p: Problems, v: unknown, path: string): string | null {
  if (v == null) return null;
  const name = readName(p, v, path, MAX_NAME);
  return name === '' ? null : name;
}
