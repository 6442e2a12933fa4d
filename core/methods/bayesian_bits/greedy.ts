/**
 * A greedy post-training baseline on Bayesian Bits' grids: start with every
 * quantizer at 8 bits, then lower one quantizer at a time (8 -> 4 -> 2
 * bits), each time the one whose step costs the least accuracy on a
 * calibration set (ties: the one that saves the most BOPs), until the model
 * is within a relative-GBOPs target. Nothing is trained; each step is one
 * point on the accuracy/GBOPs axes, so the whole path is a curve to compare
 * learned methods with.
 *
 * @module
 */

import type { Dataset } from "../../data.ts";
import { evaluateFrozen, withFrozen } from "../../frozen.ts";
import type { Frozen } from "../../method.ts";
import { planBops } from "../../plan_bops.ts";
import type { Tensor } from "../../tensor.ts";
import { freezeGated } from "./method.ts";
import type { GatedModel, GatedState, QuantizerInfo } from "./model.ts";

/** The chain logits that hold a quantizer at a bit width (2, 4 or 8). */
const CHAIN_AT: Readonly<Record<number, readonly number[]>> = {
  8: [6, 6, -6, -6],
  4: [6, -6, -6, -6],
  2: [-6, -6, -6, -6],
};

/** One point of the greedy path. */
export interface GreedyStep {
  /** The quantizer lowered at this step (`null` for the all-8-bit start). */
  readonly lowered: string | null;
  /** Bits per quantizer after the step. */
  readonly bits: Readonly<Record<string, number>>;
  /** Accuracy on the calibration set, in [0, 1]. */
  readonly calibrationAccuracy: number;
  /** Relative GBOPs in percent. */
  readonly relativeGbops: number;
}

/** Options of {@link greedyBaseline}. */
export interface GreedyOptions {
  /** Stop once the model costs at most this many relative GBOPs (percent). */
  readonly targetGbops: number;
  /** Evaluation batch size (default 1000). */
  readonly batchSize?: number;
  /** Called after every step. */
  readonly onStep?: (step: GreedyStep) => void;
}

/** The state with every quantizer's chain logits set for `bits`. */
function stateAt(
  gated: GatedModel,
  state: GatedState,
  bits: Readonly<Record<string, number>>,
): GatedState {
  const dev = Object.values(state.params)[0].device;
  const params: Record<string, Tensor> = { ...state.params };
  for (const q of gated.quantizers) {
    params[q.logitsParam] = dev.upload(CHAIN_AT[bits[q.name]], [4]);
  }
  return { ...state, params };
}

/** Accuracy and cost of the state at `bits`, frozen and evaluated. */
async function measure(
  gated: GatedModel,
  state: GatedState,
  bits: Readonly<Record<string, number>>,
  calibration: Dataset,
  batchSize: number,
): Promise<{ accuracy: number; relativeGbops: number }> {
  const at = stateAt(gated, state, bits);
  const dev = Object.values(state.params)[0].device;
  try {
    return await withFrozen(
      at.params,
      () => freezeGated(gated, at),
      async (f) => ({
        accuracy: await evaluateFrozen(f, calibration, { batchSize }),
        relativeGbops: planBops(f.model, f.plan).relativeGbops,
      }),
    );
  } finally {
    dev.free(...gated.quantizers.map((q) => at.params[q.logitsParam]));
  }
}

/**
 * Runs the greedy baseline from a gated state (e.g. `initGated` of a float
 * model: ranges from the data, pruning gates on). Lowers one quantizer per
 * step as the module documentation says; stops at the target, or when
 * every quantizer is at 2 bits.
 *
 * @param gated The gated model.
 * @param state Its state (weights, ranges; the chain logits are replaced).
 * @param calibration The calibration set the choices are made on.
 * @param options The target and callbacks.
 * @returns Every step (the start first), the last step frozen (the plan's
 *   method named `"greedy"`), and whether it reached the target (at 2 bits
 *   everywhere it may still be above it).
 * @throws {RangeError} On a target that is not positive.
 */
export async function greedyBaseline(
  gated: GatedModel,
  state: GatedState,
  calibration: Dataset,
  options: GreedyOptions,
): Promise<{ steps: GreedyStep[]; frozen: Frozen; reached: boolean }> {
  if (!(options.targetGbops > 0)) {
    throw new RangeError(
      `The greedy baseline's target must be positive relative GBOPs, got ${options.targetGbops}`,
    );
  }
  const batchSize = options.batchSize ?? 1000;
  let bits: Record<string, number> = Object.fromEntries(
    gated.quantizers.map((q) => [q.name, 8]),
  );
  const start = await measure(gated, state, bits, calibration, batchSize);
  const steps: GreedyStep[] = [{
    lowered: null,
    bits,
    calibrationAccuracy: start.accuracy,
    relativeGbops: start.relativeGbops,
  }];
  options.onStep?.(steps[0]);
  let current = start;
  while (current.relativeGbops > options.targetGbops) {
    const candidates = gated.quantizers.filter((q) => bits[q.name] > 2);
    if (candidates.length === 0) break;
    let best:
      | { q: QuantizerInfo; accuracy: number; relativeGbops: number }
      | null = null;
    for (const q of candidates) {
      const trial = { ...bits, [q.name]: bits[q.name] / 2 };
      const m = await measure(gated, state, trial, calibration, batchSize);
      if (
        !best || m.accuracy > best.accuracy ||
        (m.accuracy === best.accuracy && m.relativeGbops < best.relativeGbops)
      ) best = { q, ...m };
    }
    bits = { ...bits, [best!.q.name]: bits[best!.q.name] / 2 };
    current = best!;
    const step = {
      lowered: best!.q.name,
      bits,
      calibrationAccuracy: current.accuracy,
      relativeGbops: current.relativeGbops,
    };
    steps.push(step);
    options.onStep?.(step);
  }
  const final = stateAt(gated, state, bits);
  const frozen = freezeGated(gated, final);
  return {
    steps,
    frozen: { ...frozen, plan: { ...frozen.plan, method: "greedy" } },
    reached: current.relativeGbops <= options.targetGbops,
  };
}
