/**
 * A hard cost budget: find the strength of a method's regulariser (Bayesian
 * Bits' `mu`, BSQ's `alpha`) whose frozen model lands within a tolerance
 * below a target of relative GBOPs, never above it.
 *
 * The search is a bisection on the logarithm of the knob over short runs
 * the caller supplies (post-training on a calibration set takes seconds):
 * a run's cost falls as the knob grows, so a cost above the target raises
 * the lower end and a cost below the window lowers the upper end. The
 * bracket first widens (the upper end doubles, 8 times at most) until a
 * run lands at or below the target. Costs are step functions of the knob
 * (bit widths and channels are discrete), so a window may hold no run: the
 * search then returns the cheapest run found that is not above the target,
 * the costliest of those, and says that it missed the window.
 *
 * @module
 */

/** One run of a search. */
export interface KnobTrial<R> {
  /** The knob's value. */
  readonly knob: number;
  /** The frozen model's relative GBOPs, in percent. */
  readonly relativeGbops: number;
  /** What the run returned (e.g. its frozen state and report). */
  readonly result: R;
}

/** Options of {@link searchKnob}. */
export interface KnobSearchOptions<R> {
  /** The target, relative GBOPs in percent (positive). */
  readonly targetGbops: number;
  /** The window below the target, as a fraction of it (default 0.01). */
  readonly tolerance?: number;
  /** The bracket's lower end (default 1e-4). */
  readonly low?: number;
  /** The bracket's upper end (default 10). */
  readonly high?: number;
  /** Runs at most (default 16). */
  readonly maxRuns?: number;
  /** One short run at a knob value: its cost and result. */
  run(knob: number): Promise<{ relativeGbops: number; result: R }>;
  /** Called after every run. */
  readonly onTrial?: (trial: KnobTrial<R>, index: number) => void;
}

/** What {@link searchKnob} found. */
export interface KnobSearchResult<R> {
  /** The run chosen: in the window if one landed there, else the costliest below the target. */
  readonly best: KnobTrial<R>;
  /** Whether `best` is in the window `[target * (1 - tolerance), target]`. */
  readonly withinTolerance: boolean;
  /** Every run, in order. */
  readonly trials: readonly KnobTrial<R>[];
}

function checkOptions<R>(o: KnobSearchOptions<R>): Required<
  Pick<KnobSearchOptions<R>, "tolerance" | "low" | "high" | "maxRuns">
> {
  const tolerance = o.tolerance ?? 0.01;
  const low = o.low ?? 1e-4;
  const high = o.high ?? 10;
  const maxRuns = o.maxRuns ?? 16;
  if (!(Number.isFinite(o.targetGbops) && o.targetGbops > 0)) {
    throw new RangeError(
      `The target must be positive relative GBOPs (percent), got ${o.targetGbops}`,
    );
  }
  if (!(tolerance > 0 && tolerance < 1)) {
    throw new RangeError(`The tolerance must be in (0, 1), got ${tolerance}`);
  }
  if (!(low > 0 && high > low && Number.isFinite(high))) {
    throw new RangeError(
      `The bracket must satisfy 0 < low < high < Infinity, got [${low}, ${high}]`,
    );
  }
  if (!(Number.isInteger(maxRuns) && maxRuns >= 1)) {
    throw new RangeError(`maxRuns must be a positive integer, got ${maxRuns}`);
  }
  return { tolerance, low, high, maxRuns };
}

/**
 * Searches a knob whose run lands within `tolerance` below a relative-GBOPs
 * target (see the module documentation).
 *
 * @param options The target, the bracket, the run, and a callback.
 * @returns The chosen run, whether it is in the window, and every run.
 * @throws {RangeError} On bad options, or when no run within `maxRuns`
 *   lands at or below the target (the message gives the cheapest cost
 *   found and its knob: raise `high`).
 *
 * @example A toy cost that halves per decade of the knob
 * ```ts
 * import { searchKnob } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const found = await searchKnob({
 *   targetGbops: 1,
 *   run: (mu) => Promise.resolve({ relativeGbops: 2 / (1 + Math.log10(mu / 1e-4)), result: mu }),
 * });
 * assert.ok(found.withinTolerance);
 * assert.ok(found.best.relativeGbops <= 1 && found.best.relativeGbops >= 0.99);
 * ```
 */
export async function searchKnob<R>(
  options: KnobSearchOptions<R>,
): Promise<KnobSearchResult<R>> {
  const { tolerance, maxRuns } = checkOptions(options);
  let { low, high } = checkOptions(options);
  const target = options.targetGbops;
  const floor = target * (1 - tolerance);
  const trials: KnobTrial<R>[] = [];
  const attempt = async (knob: number) => {
    const { relativeGbops, result } = await options.run(knob);
    const trial = { knob, relativeGbops, result };
    trials.push(trial);
    options.onTrial?.(trial, trials.length - 1);
    return trial;
  };
  const feasible = () => trials.filter((t) => t.relativeGbops <= target);
  const inWindow = (t: KnobTrial<R>) => t.relativeGbops >= floor;
  // Widen the bracket until its upper end is at or below the target.
  let top = await attempt(high);
  for (let i = 0; top.relativeGbops > target && i < 8; i++) {
    if (trials.length >= maxRuns) break;
    low = high;
    high *= 2;
    top = await attempt(high);
  }
  if (feasible().length === 0) {
    throw new RangeError(
      `No run reached the target ${target} %: the cheapest was ${top.relativeGbops} % at ${top.knob}; raise the bracket's upper end`,
    );
  }
  while (!inWindow(top) && trials.length < maxRuns) {
    const mid = Math.sqrt(low * high);
    const t = await attempt(mid);
    if (t.relativeGbops > target) low = mid;
    else {
      high = mid;
      top = t;
    }
  }
  const best = feasible().reduce((a, b) =>
    b.relativeGbops > a.relativeGbops ? b : a
  );
  return { best, withinTolerance: inWindow(best), trials };
}
