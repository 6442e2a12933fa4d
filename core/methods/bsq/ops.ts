/**
 * BSQ's pieces as differentiable ops on the device of their inputs, so the
 * whole loss (cross-entropy + alpha R) is one function for `valueAndGrad`:
 *
 * - {@link planeSumOp}: `wt = sum_b (P - Nn)[b] 2^(N-1-b) / m` (linear);
 * - {@link unitQuantizeOp}: `w = s sign(wt) round(|clamp(wt, -1, 1)| m) / m`
 *   with the straight-through gradient (round and clamp pass it);
 * - {@link groupLassoOp}: one layer's memory-weighted bit-level group Lasso;
 * - {@link maxAbsQuantizeOp}: the batch-max activation quantizer (identity
 *   backward).
 *
 * @module
 */

import { recordOp } from "../../autodiff.ts";
import type { Tensor } from "../../tensor.ts";

function checkLevels(what: string, levels: number): void {
  if (!Number.isInteger(levels) || levels < 1) {
    throw new RangeError(
      `${what}: levels must be a positive integer (2^N - 1), got ${levels}`,
    );
  }
}

/**
 * The normalised weight of planes `pos`, `neg` `[N, ...shape]`.
 *
 * @param pos Positive planes.
 * @param neg Negative planes, shaped like `pos`.
 * @returns `[...shape]`.
 * @throws {RangeError} When the planes' shapes differ.
 *
 * @example Spec section 10, case 4
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { planeSumOp } from "@bbits/core/bsq";
 * import assert from "node:assert/strict";
 *
 * const wt = planeSumOp(Tensor.from([0.9, 0.4], [2, 1]), Tensor.from([0.1, 0], [2, 1]));
 * assert.ok(Math.abs(wt.get(0) - 2 / 3) < 1e-6); // (0.8 * 2 + 0.4) / 3 in float32
 * ```
 */
export function planeSumOp(pos: Tensor, neg: Tensor): Tensor {
  if (pos.shape.join() !== neg.shape.join() || pos.shape.length < 2) {
    throw new RangeError(
      `Bit planes must share a shape [N, ...]: got [${
        pos.shape.join(", ")
      }] and [${neg.shape.join(", ")}]`,
    );
  }
  const k = pos.device.kernels;
  const planes = pos.shape[0];
  return recordOp(k.bitPlaneSum(pos, neg), [pos, neg], (g) => {
    const r = k.bitPlaneSumBackward(g, planes);
    return [r.dpos, r.dneg];
  });
}

/**
 * The unit quantizer: `w = sign(x) fround(fround(s / m) k)` with
 * `k = round(|clamp(x, -1, 1)| m)`; gradients `dx = g s` and
 * `ds = sum g k / m`.
 *
 * @param x Normalised weights.
 * @param scale `[1]`, the layer's scale `s`.
 * @param levels `m = 2^N - 1`.
 * @returns The weights on the grid.
 * @throws {RangeError} On levels that are not a positive integer or a
 *   scale that is not one element.
 */
export function unitQuantizeOp(
  x: Tensor,
  scale: Tensor,
  levels: number,
): Tensor {
  checkLevels("unitQuantizeOp", levels);
  if (scale.size !== 1) {
    throw new RangeError(
      `unitQuantizeOp: the scale must be one element, got ${scale.size}`,
    );
  }
  const k = x.device.kernels;
  return recordOp(k.unitQuantize(x, scale, levels), [x, scale], (g) => {
    const r = k.unitQuantizeBackward(x, scale, levels, g);
    return [r.dx, r.dscale];
  });
}

/**
 * `weight sum_b sqrt(1e-8 + |P[b]|^2 + |Nn[b]|^2)`: one layer's term of
 * the regulariser, with `weight = n_l N_l / TP` (spec section 5).
 *
 * @param pos Positive planes `[N, ...]`.
 * @param neg Negative planes.
 * @param weight The layer's memory weight.
 * @returns `[1]`.
 */
export function groupLassoOp(pos: Tensor, neg: Tensor, weight: number): Tensor {
  const k = pos.device.kernels;
  return recordOp(k.bitGroupLasso(pos, neg, weight), [pos, neg], (g) => {
    const r = k.bitGroupLassoBackward(pos, neg, weight, g);
    return [r.dpos, r.dneg];
  });
}

/**
 * BSQ's activation quantizer on the whole tensor's `S = max |x|`, with the
 * identity as its gradient (`S` gets none).
 *
 * @param x The activations.
 * @param levels `2^a - 1`.
 * @returns The quantized activations and `S` (`[1]`, no gradient).
 */
export function maxAbsQuantizeOp(
  x: Tensor,
  levels: number,
): { y: Tensor; maxAbs: Tensor } {
  checkLevels("maxAbsQuantizeOp", levels);
  const r = x.device.kernels.maxAbsQuantize(x, levels);
  return { y: recordOp(r.y, [x], (g) => [g]), maxAbs: r.maxAbs };
}
