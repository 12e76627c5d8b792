/**
 * An experiment's outcome as a gate for the rollout tools teams already run
 * (docs/gates.md): `GET /experiments/NAME/verdict` for Argo Rollouts' `web`
 * metric provider (always 200; the verdict is in the body, read with
 * `jsonPath: "{$.verdict}"`), and `POST /experiments/NAME/gate` for Flagger's
 * webhooks, which judge by status code alone: 200 pass, 412 fail, 425
 * inconclusive, each with the same body.
 *
 * The verdict never runs ahead of Sluice's own decision: it reads the
 * status's state, winner and pending ending, not a single iteration's
 * per-version verdicts (one infeasible look is not a failure to Sluice
 * either: decide.ts `failed`).
 */
import type { FastifyInstance } from 'fastify';
import type { ExperimentRecord } from '../control/ports.js';

export type GateVerdict = 'pass' | 'fail' | 'inconclusive';

export interface GateAnswer {
  readonly experiment: string;
  readonly verdict: GateVerdict;
  /** The status's state (while finish tasks run, still the state before the ending). */
  readonly state: string;
  readonly winner: string | null;
  readonly iteration: number;
  /** Why this verdict, then Sluice's own reason. */
  readonly reason: string;
}

/** The gate's HTTP status per verdict: Flagger halts on anything but 2xx. */
export const GATE_STATUS: Readonly<Record<GateVerdict, number>> = { pass: 200, fail: 412, inconclusive: 425 };

/**
 * The mapping (docs/gates.md):
 *  - Pending, Running, Paused: inconclusive;
 *  - Failed, Aborted: fail — also while finish tasks run towards either
 *    (`ending`), since finish tasks cannot turn them into a success;
 *  - Completed with a candidate as the winner, or with its one version as
 *    the winner (Conformance): pass;
 *  - Completed with the baseline as the winner over candidates: fail;
 *  - Completed without a winner: inconclusive;
 *  - deciding Completed but its finish tasks still running: inconclusive
 *    (a failing finish task turns it into Failed).
 */
export function gateVerdict(r: ExperimentRecord): GateAnswer {
  const s = r.status;
  const answer = (verdict: GateVerdict, reason: string): GateAnswer => ({
    experiment: r.doc.name,
    verdict,
    state: s.state,
    winner: s.winner,
    iteration: s.iteration,
    reason,
  });
  const [baseline, ...candidates] = r.doc.spec.versions.map((v) => v.name);
  if (s.ending) {
    if (s.ending.state !== 'Completed') return answer('fail', `finishing (${s.ending.state}): ${s.ending.reason}`);
    return answer('inconclusive', `decided Completed (winner: ${s.winner ?? 'none'}) but its finish tasks are still running, and a failing one makes it Failed: ${s.ending.reason}`);
  }
  switch (s.state) {
    case 'Pending':
    case 'Running':
    case 'Paused':
      return answer('inconclusive', `${s.state}: ${s.reason}`);
    case 'Failed':
    case 'Aborted':
      return answer('fail', `${s.state}: ${s.reason}`);
    case 'Completed':
      if (s.winner === null) return answer('inconclusive', `Completed without a winner: ${s.reason}`);
      if (candidates.length > 0 && s.winner === baseline) {
        return answer('fail', `Completed with the baseline ${baseline} as the winner over ${candidates.join(', ')}: ${s.reason}`);
      }
      return answer('pass', `Completed with ${s.winner} as the winner: ${s.reason}`);
  }
}

/** Lookups the gate needs (the Scheduler in every mode). */
export interface GateSource {
  get(name: string): Promise<ExperimentRecord>;
}

export function registerGateApi(app: FastifyInstance, experiments: GateSource): void {
  app.get<{ Params: { name: string } }>('/experiments/:name/verdict', async (request, reply) => {
    const answer = gateVerdict(await experiments.get(request.params.name));
    return reply.header('cache-control', 'no-store').send(answer);
  });

  // Encapsulated so that its body parsing is its own: the gate reads no body. Flagger posts
  // { name, namespace, phase, checksum, metadata }, a shell might post a form: all are accepted and
  // ignored, so no caller's payload turns into a 400 or 415 that Flagger would count as a failed check.
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, _body, done) => done(null, null));
    scope.post<{ Params: { name: string } }>('/experiments/:name/gate', async (request, reply) => {
      const answer = gateVerdict(await experiments.get(request.params.name));
      return reply.status(GATE_STATUS[answer.verdict]).header('cache-control', 'no-store').send(answer);
    });
  });
}
