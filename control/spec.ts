/**
 * Parses and validates `kind: Experiment` documents into the frozen
 * `ExperimentDoc` (spec-types.ts). Like config/config.ts, every problem is
 * collected by path and reported at once in one SLUICE_EXPERIMENT_INVALID.
 * The rules and defaults are documented in docs/experiments.md.
 */
import { readFileSync } from 'node:fs';
import { parseYaml } from '../common/yaml.js';
import { SluiceError } from '../common/errors.js';
import {
  Problems, deepFreeze, expected, httpUrl, join, mapping, namedList, optList, optMapping,
  osReason, plural, readBool, readEnum, readInt, readName,
} from '../common/validation.js';
import { validateWeights } from '../config/routes.js';
import { readMetricSpecs } from './metrics/validate.js';
import { ALGORITHMS, BUILTIN_METRICS, DEPLOYMENT_PATTERNS, TESTING_PATTERNS } from './spec-types.js';
import { readTaskSpecs } from './tasks/validate.js';
import {
  CONFIDENCE_RANGE, CRITERIA_KEYS, DIRECTIONS, DURATION_KEYS, EXPERIMENT_KEYS, MAX_INTERVAL_SECONDS, MAX_ITERATIONS, MAX_NAME, MAX_SEED,
  OBJECTIVE_KEYS, RELATIVE_TO, REWARD_KEYS, REWARD_METRICS, SPEC_KEYS, VERSION_KEYS, WEIGHTS_KEYS,
} from './spec-shape.js';
import type {
  Criteria,
  DeploymentPattern,
  ExperimentDoc,
  ExperimentSpec,
  ExperimentVersion,
  MetricSpec,
  Objective,
  Reward,
  TestingPattern,
  WeightsSpec,
} from './spec-types.js';

/** Every default in one place (docs/experiments.md lists the same). */
export const EXPERIMENT_DEFAULTS = {
  deploymentPattern: 'Progressive',
  algorithm: 'thompson',
  confidence: 0.95,
  minSamples: 100,
  maxCandidateWeight: 100,
  /** Canary's initial candidate share (capped by maxCandidateWeight). */
  canaryInitialCandidateWeight: 10,
  maxCandidateWeightIncrement: 100,
  /** Canary (not BlueGreen) grows the candidate by at most this much per iteration. */
  canaryMaxCandidateWeightIncrement: 20,
  intervalSeconds: 10,
  maxIterations: 30,
  promote: true,
  preferredDirection: 'High',
} as const;

const RATE_METRICS: readonly string[] = ['error-rate', 'mirror-mismatch-rate', 'conversion-rate'];
const COUNT_METRICS: readonly string[] = ['request-count', 'error-count'];


/** What each testing pattern needs (docs/contract.md, Experiments; docs/experiments.md). */
const PATTERN_RULES: Record<TestingPattern, { min: number; max: number; reward: boolean; objectives: boolean }> = {
  Conformance: { min: 1, max: 1, reward: false, objectives: true },
  Canary: { min: 2, max: 2, reward: false, objectives: true },
  'A/B': { min: 2, max: 2, reward: true, objectives: false },
  'A/B/n': { min: 2, max: Infinity, reward: true, objectives: false },
  Hybrid: { min: 2, max: Infinity, reward: true, objectives: true },
};

// ---------------------------------------------------------------- entry points

/** Parses YAML (or JSON) text and validates it. */
export function parseExperiment(text: string): ExperimentDoc {
  return parseNamed(text, 'experiment');
}

/** Reads, parses and validates an experiment file. */
export function loadExperimentFile(file: string): ExperimentDoc {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SluiceError('SLUICE_CONFIG_READ', `cannot read ${file}: ${osReason(err)}`);
  }
  return parseNamed(text, file);
}

/** Validates an already-parsed document; throws one SLUICE_EXPERIMENT_INVALID listing every problem. */
export function validateExperiment(raw: unknown): ExperimentDoc {
  const p = new Problems();
  const doc = readDoc(p, raw);
  if (p.list.length > 0) {
    throw new SluiceError('SLUICE_EXPERIMENT_INVALID', `experiment has ${plural(p.list.length, 'problem')}`, p.list);
  }
  return deepFreeze(doc);
}

/** The default seed: 32-bit FNV-1a of the name, so an experiment reproduces run after run. */
export function defaultSeed(name: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(name, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function parseNamed(text: string, label: string): ExperimentDoc {
  return validateExperiment(parseYaml(text, 'SLUICE_EXPERIMENT_INVALID', `${label} is not valid YAML or JSON`));
}

// ---------------------------------------------------------------- problems


// ---------------------------------------------------------------- document

/** Never escapes: validation throws whenever it is used. */
const PLACEHOLDER_SPEC: ExperimentSpec = {
  route: '', versions: [], testingPattern: 'Canary', deploymentPattern: 'Progressive', algorithm: 'thompson',
  criteria: { objectives: [], reward: null, confidence: 0.95, minSamples: 100 },
  weights: { initial: {}, maxCandidateWeight: 100, maxCandidateWeightIncrement: 100 },
  duration: { intervalSeconds: 10, maxIterations: 30 }, promote: true, seed: 0,
  metrics: [], tasks: { start: [], loop: [], finish: [] },
};

function readDoc(p: Problems, raw: unknown): ExperimentDoc {
  // An empty document parses to null; treating it as {} yields the useful "required" lines.
  const top = raw == null ? {} : mapping(p, raw, '', EXPERIMENT_KEYS);
  if (!top) return { kind: 'Experiment', name: '', spec: PLACEHOLDER_SPEC };
  if (top.kind == null) p.add('kind', 'required (kind: Experiment)');
  else if (top.kind !== 'Experiment') expected(p, 'kind', '"Experiment"', top.kind, null);
  const name = readName(p, top.name, 'name', MAX_NAME);
  const spec = top.spec == null ? p.reject('spec', 'required', PLACEHOLDER_SPEC) : readSpec(p, top.spec, name);
  return { kind: 'Experiment', name, spec };
}

function readSpec(p: Problems, v: unknown, name: string): ExperimentSpec {
  const o = mapping(p, v, 'spec', SPEC_KEYS);
  if (!o) return PLACEHOLDER_SPEC;
  const route = readName(p, o.route, 'spec.route');
  const versions = readVersions(p, o.versions, 'spec.versions');
  const testingPattern =
    o.testingPattern == null
      ? p.reject('spec.testingPattern', `required: one of ${TESTING_PATTERNS.join(', ')}`, null)
      : readEnum(p, o.testingPattern, 'spec.testingPattern', TESTING_PATTERNS, null);
  const deploymentPattern = readEnum(p, o.deploymentPattern, 'spec.deploymentPattern', DEPLOYMENT_PATTERNS, null);
  const dp = deploymentPattern ?? EXPERIMENT_DEFAULTS.deploymentPattern;
  // An invalid deploymentPattern was reported; rules that depend on it stay quiet.
  const dpKnown = deploymentPattern !== null || o.deploymentPattern == null;
  const algorithm = readEnum(p, o.algorithm, 'spec.algorithm', ALGORITHMS, null);
  if (o.algorithm != null && dpKnown && dp !== 'Progressive') {
    p.add('spec.algorithm', `algorithm applies to Progressive only (deploymentPattern is ${dp})`);
  }
  const versionNames = versions.map((v) => v.name).filter((n) => n !== '');
  const metrics = readMetricSpecs(p, o.metrics, 'spec.metrics', versionNames);
  checkMetricNames(p, metrics);
  const criteria = readCriteria(p, o.criteria, 'spec.criteria', versions.length, metrics);
  checkPattern(p, testingPattern, dpKnown ? dp : null, versions.length, criteria);
  const promote = readBool(p, o.promote, 'spec.promote', EXPERIMENT_DEFAULTS.promote);
  if (promote === false && dpKnown && dp !== 'FixedSplit') {
    p.add('spec.promote', `promote: false applies to FixedSplit only (${dp} always promotes the winner)`);
  }
  const tasks = readTaskSpecs(p, o.tasks, 'spec.tasks', versionNames);
  return {
    route,
    versions,
    testingPattern: testingPattern ?? 'Canary',
    deploymentPattern: dp,
    algorithm: algorithm ?? EXPERIMENT_DEFAULTS.algorithm,
    criteria,
    weights: readWeights(p, o.weights, 'spec.weights', versions, testingPattern, dp),
    duration: readDuration(p, o.duration, 'spec.duration'),
    promote,
    seed: o.seed == null ? defaultSeed(name) : readInt(p, o.seed, 'spec.seed', 0, 0, MAX_SEED),
    metrics,
    tasks,
  };
}

/** The rules that tie the testing and deployment patterns to the versions and criteria. */
function checkPattern(
  p: Problems,
  tp: TestingPattern | null,
  dp: DeploymentPattern | null,
  versionCount: number,
  criteria: Criteria,
): void {
  // No versions means "required" was reported already; counting them would only add noise.
  const counted = versionCount > 0;
  // A criteria that is not a mapping, or a broken reward/objectives list, was reported already.
  const criteriaBroken = p.list.some((d) => d.path === 'spec.criteria');
  if (tp !== null) {
    const rule = PATTERN_RULES[tp];
    if (counted && (versionCount < rule.min || versionCount > rule.max)) {
      const want = rule.min === rule.max ? `exactly ${rule.min}` : `at least ${rule.min}`;
      const what = rule.min === 1 && rule.max === 1 ? 'version' : 'versions (the first is the baseline)';
      p.add('spec.versions', `${tp} needs ${want} ${what}, got ${versionCount}`);
    }
    if (rule.reward && criteria.reward === null && !criteriaBroken && !p.has('spec.criteria.reward')) {
      p.add('spec.criteria.reward', `${tp} needs a reward (the metric that picks the winner)`);
    }
    if (rule.objectives && criteria.objectives.length === 0 && !criteriaBroken && !p.has('spec.criteria.objectives')) {
      p.add('spec.criteria.objectives', `${tp} needs at least one objective (otherwise there is nothing to judge)`);
    }
  }
  if (dp === 'BlueGreen' && counted && versionCount !== 2) {
    p.add('spec.deploymentPattern', `BlueGreen needs exactly 2 versions (blue = baseline, green = candidate), got ${versionCount}`);
  }
}

// ---------------------------------------------------------------- versions

function readVersions(p: Problems, v: unknown, path: string): ExperimentVersion[] {
  const required = 'at least one version is required (the first is the baseline)';
  return namedList(p, v, path, 'version', required, (x, at) => readVersion(p, x, at));
}

function readVersion(p: Problems, v: unknown, path: string): ExperimentVersion {
  const o = mapping(p, v, path, VERSION_KEYS);
  if (!o) return { name: '', url: null };
  return { name: readName(p, o.name, join(path, 'name')), url: readUrl(p, o.url, join(path, 'url')) };
}

/** Validated but stored as written: the proxy's route config normalizes it when the version is added. */
function readUrl(p: Problems, v: unknown, path: string): string | null {
  if (v == null) return null;
  const what = 'an absolute http: or https: URL such as http://127.0.0.1:3002';
  if (typeof v !== 'string') return expected(p, path, what, v, null);
  return httpUrl(p, v, path, what) ? v : null;
}

// ---------------------------------------------------------------- criteria

function readCriteria(p: Problems, v: unknown, path: string, versionCount: number, metrics: readonly MetricSpec[]): Criteria {
  const o = optMapping(p, v, path, CRITERIA_KEYS);
  const objectivesPath = join(path, 'objectives');
  const objectives = optList(p, o.objectives, objectivesPath, 'a list of objectives')
    .map(([x, at]) => readObjective(p, x, at, versionCount, metrics))
    .filter((x): x is Objective => x !== null);
  const confidencePath = join(path, 'confidence');
  let confidence: number = EXPERIMENT_DEFAULTS.confidence;
  if (o.confidence != null) {
    if (typeof o.confidence === 'number' && o.confidence > CONFIDENCE_RANGE[0] && o.confidence < CONFIDENCE_RANGE[1]) confidence = o.confidence;
    else expected(p, confidencePath, 'a number between 0.5 and 1 (exclusive), such as 0.95', o.confidence, null);
  }
  return {
    objectives,
    reward: o.reward == null ? null : readReward(p, o.reward, join(path, 'reward'), metrics),
    confidence,
    minSamples: readInt(p, o.minSamples, join(path, 'minSamples'), EXPERIMENT_DEFAULTS.minSamples, 1, Number.MAX_SAFE_INTEGER),
  };
}

function readObjective(p: Problems, v: unknown, path: string, versionCount: number, metrics: readonly MetricSpec[]): Objective | null {
  const o = mapping(p, v, path, OBJECTIVE_KEYS);
  if (!o) return null;
  const metric = readMetricName(p, o.metric, join(path, 'metric'), metrics);
  let relativeTo: 'baseline' | null = null;
  if (o.relativeTo != null) {
    if (o.relativeTo !== RELATIVE_TO[0]) expected(p, join(path, 'relativeTo'), '"baseline"', o.relativeTo, null);
    else {
      relativeTo = 'baseline';
      if (versionCount === 1) p.add(join(path, 'relativeTo'), 'relativeTo: baseline needs at least 2 versions (a candidate to compare with the baseline)');
    }
  }
  const kind = metric === null ? null : metricKind(metric, metrics);
  const upperLimit = readLimit(p, o.upperLimit, join(path, 'upperLimit'), metric, kind, relativeTo);
  const lowerLimit = readLimit(p, o.lowerLimit, join(path, 'lowerLimit'), metric, kind, relativeTo);
  if (o.upperLimit == null && o.lowerLimit == null) p.add(path, 'needs upperLimit, lowerLimit or both');
  if (upperLimit !== null && lowerLimit !== null && lowerLimit >= upperLimit) {
    p.add(join(path, 'lowerLimit'), `must be less than upperLimit (${upperLimit}), got ${lowerLimit}`);
  }
  return { metric: metric ?? 'error-rate', upperLimit, lowerLimit, relativeTo };
}

/** A built-in metric or one of `spec.metrics`; null (after reporting) otherwise. */
function readMetricName(p: Problems, v: unknown, path: string, metrics: readonly MetricSpec[]): string | null {
  const custom = metrics.map((m) => m.name);
  const known = [...BUILTIN_METRICS, ...custom];
  const what = `one of ${BUILTIN_METRICS.join(', ')}${custom.length > 0 ? ` or a custom metric (${custom.join(', ')})` : ' or the name of one of spec.metrics'}`;
  if (v == null) return p.reject(path, `required: ${what}`, null);
  if (typeof v === 'string' && known.includes(v)) return v;
  return expected(p, path, what, v, null);
}

/** How a metric's limits are checked: rates within 0..1, counts and latencies >= 0. */
function metricKind(name: string, metrics: readonly MetricSpec[]): 'rate' | 'count' | 'latency' | 'other' {
  const custom = metrics.find((m) => m.name === name);
  if (custom !== undefined) return custom.type === 'rate' ? 'rate' : custom.type === 'count' ? 'count' : 'other';
  if (RATE_METRICS.includes(name)) return 'rate';
  if (COUNT_METRICS.includes(name)) return 'count';
  return name.startsWith('latency-') ? 'latency' : 'other';
}

/** Custom metric names must not shadow built-in ones; sampleSize and stdDev must name a metric. */
function checkMetricNames(p: Problems, metrics: readonly MetricSpec[]): void {
  const names = new Set<string>(BUILTIN_METRICS);
  metrics.forEach((m, i) => {
    const at = `spec.metrics[${i}]`;
    if (m.name === '') return; // an invalid name was reported already
    if ((BUILTIN_METRICS as readonly string[]).includes(m.name)) p.add(`${at}.name`, `"${m.name}" is a built-in metric: choose another name`);
    else if (names.has(m.name)) p.add(`${at}.name`, `duplicate metric name ${JSON.stringify(m.name)}`);
    names.add(m.name);
  });
  metrics.forEach((m, i) => {
    const at = `spec.metrics[${i}]`;
    for (const key of ['sampleSize', 'stdDev'] as const) {
      const ref = m[key];
      if (ref === null) continue;
      if (ref === m.name) p.add(`${at}.${key}`, `a metric cannot be its own ${key}`);
      else if (!names.has(ref)) p.add(`${at}.${key}`, `no metric named ${JSON.stringify(ref)} (built-in or in spec.metrics)`);
    }
    if (m.type === 'rate' && m.sampleSize === null && m.source !== 'mock') {
      p.add(`${at}.sampleSize`, 'a rate needs a sampleSize: the metric counting its trials (such as request-count), so the analysis has a posterior');
    }
    if (m.type !== 'mean' && m.stdDev !== null) p.add(`${at}.stdDev`, `stdDev applies to type: mean only (this metric is a ${m.type})`);
  });
}

function readLimit(
  p: Problems,
  v: unknown,
  path: string,
  metric: string | null,
  kind: 'rate' | 'count' | 'latency' | 'other' | null,
  relativeTo: 'baseline' | null,
): number | null {
  if (v == null) return null;
  if (typeof v !== 'number' || !Number.isFinite(v)) return expected(p, path, 'a finite number', v, null);
  if (relativeTo === 'baseline') {
    if (v > 0) return v;
    return p.reject(path, `a limit relative to the baseline is a factor and must be > 0 (1.2 = 20% above the baseline), got ${v}`, null);
  }
  if (kind === 'rate' && (v < 0 || v > 1)) {
    return p.reject(path, `${metric} is a rate: the limit must be within 0..1 (0.01 = 1%), got ${v}`, null);
  }
  if (kind === 'latency' && v < 0) return p.reject(path, `a latency limit is milliseconds >= 0, got ${v}`, null);
  if (kind === 'count' && v < 0) return p.reject(path, `a count limit must be >= 0, got ${v}`, null);
  return v;
}

function readReward(p: Problems, v: unknown, path: string, metrics: readonly MetricSpec[]): Reward | null {
  const o = mapping(p, v, path, REWARD_KEYS);
  if (!o) return null;
  const metricPath = join(path, 'metric');
  // A reward needs a posterior: a rate with its trials, or a mean with its spread (mock sources know both).
  const usable = metrics.filter((m) => m.type === 'rate' || (m.type === 'mean' && (m.source === 'mock' || (m.sampleSize !== null && m.stdDev !== null))));
  const names = [...REWARD_METRICS, ...usable.map((m) => m.name)];
  const what = `one of ${names.join(', ')}`;
  let metric: string | null = null;
  if (o.metric == null) p.add(metricPath, `required: ${what}`);
  else if (typeof o.metric === 'string' && names.includes(o.metric)) metric = o.metric;
  else if (metrics.some((m) => m.name === o.metric)) {
    p.add(metricPath, `custom metric ${JSON.stringify(o.metric)} cannot be a reward: a reward needs a rate (with sampleSize) or a mean with sampleSize and stdDev`);
  } else expected(p, metricPath, what, o.metric, null);
  const preferredDirection = readEnum(p, o.preferredDirection, join(path, 'preferredDirection'), DIRECTIONS, null);
  return metric === null ? null : { metric, preferredDirection: preferredDirection ?? EXPERIMENT_DEFAULTS.preferredDirection };
}

// ---------------------------------------------------------------- weights, duration, unsupported sections

function readWeights(
  p: Problems,
  v: unknown,
  path: string,
  versions: readonly ExperimentVersion[],
  tp: TestingPattern | null,
  dp: DeploymentPattern,
): WeightsSpec {
  const o = optMapping(p, v, path, WEIGHTS_KEYS);
  const maxPath = join(path, 'maxCandidateWeight');
  const maxCandidateWeight = readInt(p, o.maxCandidateWeight, maxPath, EXPERIMENT_DEFAULTS.maxCandidateWeight, 0, 100);
  const incrementDefault =
    tp === 'Canary' && dp !== 'BlueGreen'
      ? EXPERIMENT_DEFAULTS.canaryMaxCandidateWeightIncrement
      : EXPERIMENT_DEFAULTS.maxCandidateWeightIncrement;
  const maxCandidateWeightIncrement = readInt(p, o.maxCandidateWeightIncrement, join(path, 'maxCandidateWeightIncrement'), incrementDefault, 1, 100);
  // Versions with an invalid name were reported already; listing them as "known" would confuse.
  const names = [...new Set(versions.map((x) => x.name).filter((n) => n !== ''))];
  const fallback = defaultInitial(names, tp, dp, maxCandidateWeight);
  const initialPath = join(path, 'initial');
  // Every version is judged on its own traffic (BlueGreen candidates on pinned load instead): a version
  // that starts at 0% is never measured, and nothing moves until every version has minSamples.
  const measured = dp !== 'BlueGreen' && tp !== null && tp !== 'Conformance';
  if (o.initial == null || names.length === 0) {
    if (measured && names.length > 1 && maxCandidateWeight === 0 && !p.has(maxPath)) {
      p.add(maxPath, `maxCandidateWeight 0 gives the candidates no traffic: a ${tp} experiment cannot measure them (use BlueGreen with a load task to judge them on synthetic traffic)`);
    }
    return { initial: fallback, maxCandidateWeight, maxCandidateWeightIncrement };
  }
  // The same check as `PUT /routes/NAME/weights`: known versions, integers 0..100, sum 100, missing = 0.
  const result = validateWeights({ versions: names.map((name) => ({ name, url: '', basePath: '' })) }, o.initial, initialPath);
  if ('errors' in result) {
    for (const e of result.errors) p.add(e.path, e.message);
    return { initial: fallback, maxCandidateWeight, maxCandidateWeightIncrement };
  }
  if (!p.has(maxPath)) {
    for (const name of names.slice(1)) {
      const w = result.weights[name] ?? 0;
      if (w > maxCandidateWeight) p.add(join(initialPath, name), `candidate weight ${w} exceeds maxCandidateWeight (${maxCandidateWeight})`);
    }
  }
  if (measured) {
    for (const name of names) {
      if ((result.weights[name] ?? 0) === 0) {
        p.add(join(initialPath, name), `${name} starts with 0% of the traffic and would never be measured: give it at least 1 (or use BlueGreen with a load task)`);
      }
    }
  }
  return { initial: result.weights, maxCandidateWeight, maxCandidateWeightIncrement };
}

/**
 * Conformance and BlueGreen: all to the baseline. Canary: 10 to the candidate.
 * A/B, A/B/n, Hybrid: an equal split, the remainder to the baseline (34/33/33).
 * A candidate never gets more than maxCandidateWeight; the rest goes to the baseline.
 */
function defaultInitial(names: readonly string[], tp: TestingPattern | null, dp: DeploymentPattern, max: number): Record<string, number> {
  const n = names.length;
  let share = 0;
  if (dp === 'BlueGreen' || tp === null || tp === 'Conformance') share = 0;
  else if (tp === 'Canary') share = EXPERIMENT_DEFAULTS.canaryInitialCandidateWeight;
  else share = Math.floor(100 / Math.max(n, 1));
  share = Math.min(share, max);
  const out: Record<string, number> = {};
  names.forEach((name, i) => {
    out[name] = i === 0 ? 100 - share * (n - 1) : share;
  });
  return out;
}

function readDuration(p: Problems, v: unknown, path: string): ExperimentSpec['duration'] {
  const o = optMapping(p, v, path, DURATION_KEYS);
  const intervalPath = join(path, 'intervalSeconds');
  let intervalSeconds: number = EXPERIMENT_DEFAULTS.intervalSeconds;
  if (o.intervalSeconds != null) {
    const s = o.intervalSeconds;
    if (typeof s === 'number' && s > 0 && s <= MAX_INTERVAL_SECONDS) intervalSeconds = s;
    else expected(p, intervalPath, `a number of seconds > 0 and <= ${MAX_INTERVAL_SECONDS} (fractions allowed)`, s, null);
  }
  return {
    intervalSeconds,
    maxIterations: readInt(p, o.maxIterations, join(path, 'maxIterations'), EXPERIMENT_DEFAULTS.maxIterations, 1, MAX_ITERATIONS),
  };
}
