/**
 * BSQ's kernels (spec bsq.md sections 1, 3, 4c and 5): members of the closed
 * `Kernels` set of `core/kernels.ts`, kept in their own interface so each
 * family's contract reads on its own.
 *
 * @module
 */

import type { Tensor } from "./tensor.ts";

/** BSQ's bit-plane kernels; every device implements them (see `Kernels`). */
export interface BitPlaneKernels {
  /**
   * `[...pos.shape.slice(1)]`: `sum_b (pos[b] - neg[b]) 2^(N-1-b) / (2^N - 1)`
   * over planes `pos`, `neg` `[N, ...]` (plane 0 the most significant), a
   * float64 sum MSB first, divided, rounded once.
   */
  bitPlaneSum(pos: Tensor, neg: Tensor): Tensor;
  /**
   * `[planes, ...dy.shape]` each: `dpos[b, i] = dy[i] 2^(N-1-b) / (2^N - 1)`
   * and `dneg = -dpos`, float64, rounded once.
   */
  bitPlaneSumBackward(
    dy: Tensor,
    planes: number,
  ): { dpos: Tensor; dneg: Tensor };
  /**
   * `y = sign(x) fround(fround(scale / levels) k)`, `k = roundHalfEven(
   * |clamp(x, -1, 1)| levels)` (float64 product): the symmetric grid of
   * `2 levels + 1` values; `sign(0) = +0`; NaN gives NaN. `scale` `[1]`.
   */
  unitQuantize(x: Tensor, scale: Tensor, levels: number): Tensor;
  /**
   * Straight-through (round and clamp pass the gradient): `dx = dy scale`
   * rounded once; `dscale` `[1]` the float64 sum of `dy_i k_i / levels`
   * rounded once (a device splitting it over threads agrees to ~1e-6).
   */
  unitQuantizeBackward(
    x: Tensor,
    scale: Tensor,
    levels: number,
    dy: Tensor,
  ): { dx: Tensor; dscale: Tensor };
  /**
   * `[1]`: `weight sum_b sqrt(1e-8 + sum_i pos[b, i]^2 + neg[b, i]^2)` over
   * planes `[N, ...]`, float64 sums in element order, rounded once.
   */
  bitGroupLasso(pos: Tensor, neg: Tensor, weight: number): Tensor;
  /**
   * `dpos = dr[0] weight pos / norm_b`, `dneg` likewise, with `norm_b` the
   * plane's float64 root of {@link Kernels.bitGroupLasso}; rounded once.
   */
  bitGroupLassoBackward(
    pos: Tensor,
    neg: Tensor,
    weight: number,
    dr: Tensor,
  ): { dpos: Tensor; dneg: Tensor };
  /**
   * BSQ's activation quantizer: `maxAbs` `[1]` = `S = max |x|` over the
   * whole tensor (NaN if any element is), `step = fround(S / levels)`,
   * `y = sign(x) fround(step min(roundHalfEven(fround(|x| / step)),
   * levels))`, `sign(0) = +0`; `S = 0` gives zeros.
   */
  maxAbsQuantize(x: Tensor, levels: number): { y: Tensor; maxAbs: Tensor };
  /** `min(max(x, lo), hi)` elementwise (`lo`, `hi` float32 values); NaN stays NaN. */
  clip(x: Tensor, lo: number, hi: number): Tensor;
}
