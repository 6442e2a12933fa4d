/**
 * The BOP-aware prior (spec section 3): a penalty on the probability that
 * each gate is on, weighted by what turning it on costs.
 *
 * With `q_b = q(g_b)` and `w(b) = (M / Mmax) * b` (`"bop"` mode) or `w(b) = 1`
 * (`"const"` mode):
 *
 * ```
 * with pruning:    R = mean_c q2_c * (w(2) + q4 (w(4) + q8 (w(8) + q16 (w(16) + q32 w(32)))))
 * without pruning: R = 1 + q4 (w(4) + q8 (w(8) + q16 (w(16) + q32 w(32))))
 * ```
 *
 * All four chain logits count, even past a chain stop.
 *
 * @module
 */

import { type GateLogits, gateProbability } from "./gates.ts";

/** How the prior weighs each level. */
export type PriorMode = "bop" | "const";

/** Options of {@link prior}. */
export interface PriorOptions {
  /**
   * `M / Mmax`: the MACs of the layers this quantizer feeds over the largest
   * layer's MACs in the model, in (0, 1]. Ignored in `"const"` mode.
   */
  readonly macRatio: number;
  /** `"bop"` (the paper's results) or `"const"` (`w(b) = 1`). Default `"bop"`. */
  readonly mode?: PriorMode;
}

/** The prior's value and its gradient with respect to every logit. */
export interface PriorResult {
  /** `R`. */
  readonly value: number;
  /** `dR/dg2_c` per channel, or `null` without pruning gates. */
  readonly dg2: Float64Array | null;
  /** `[dR/dg4, dR/dg8, dR/dg16, dR/dg32]`. */
  readonly dg: readonly [number, number, number, number];
}

/**
 * Evaluates the prior `R` of one quantizer and its gradient.
 *
 * @param logits The quantizer's logits (with `g2` when it has pruning gates).
 * @param options MAC ratio and weighting mode.
 * @returns `R` and `dR/dg` for every logit.
 * @throws {RangeError} On a MAC ratio outside (0, 1], an unknown mode or bad logits.
 *
 * @example A quantizer with all gates far off costs only the constant 1
 * ```ts
 * import { prior } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const r = prior({ g4: -50, g8: -50, g16: -50, g32: -50 }, { macRatio: 1 });
 * assert.ok(Math.abs(r.value - 1) < 1e-12);
 * ```
 */
export function prior(logits: GateLogits, options: PriorOptions): PriorResult {
  const mode = options?.mode ?? "bop";
  if (mode !== "bop" && mode !== "const") {
    throw new RangeError(
      `Unknown prior mode "${mode}": expected "bop" or "const"`,
    );
  }
  const ratio = options.macRatio;
  if (
    mode === "bop" && !(typeof ratio === "number" && ratio > 0 && ratio <= 1)
  ) {
    throw new RangeError(
      `The prior's MAC ratio must be in (0, 1], got ${ratio}`,
    );
  }
  const w = (b: number) => (mode === "bop" ? ratio * b : 1);
  const chain = [logits.g4, logits.g8, logits.g16, logits.g32];
  const q = chain.map(gateProbability);
  const dq = q.map((p) => p * (1 - p));
  // Nested brackets from the top: T[l] = w(b_l) + q_{l+1} T[l+1] (T[4] = w(32)).
  const bits = [2, 4, 8, 16, 32];
  const T = new Array<number>(5);
  T[4] = w(32);
  for (let l = 3; l >= 0; l--) T[l] = w(bits[l]) + q[l] * T[l + 1];
  // dT0/dq_l = (product of q below l) * T[l + 1]
  const dT0dq = [0, 0, 0, 0];
  let below = 1;
  for (let l = 0; l < 4; l++) {
    dT0dq[l] = below * T[l + 1];
    below *= q[l];
  }
  if (logits.g2 === undefined) {
    // R = 1 + q4 * T[1]; T[0] - w(2) = q4 * T[1].
    const value = 1 + (T[0] - w(2));
    const dg = dT0dq.map((d, l) => d * dq[l]) as unknown as PriorResult["dg"];
    return { value, dg2: null, dg };
  }
  const channels = logits.g2.length;
  if (channels === 0) throw new RangeError("The pruning logits g2 are empty");
  let meanQ2 = 0;
  const dg2 = new Float64Array(channels);
  for (let c = 0; c < channels; c++) {
    const q2 = gateProbability(logits.g2[c]);
    meanQ2 += q2 / channels;
    dg2[c] = (q2 * (1 - q2) * T[0]) / channels;
  }
  const dg = dT0dq.map((d, l) =>
    meanQ2 * d * dq[l]
  ) as unknown as PriorResult["dg"];
  return { value: meanQ2 * T[0], dg2, dg };
}
