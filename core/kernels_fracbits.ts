/**
 * FracBits' kernels (spec fracbits.md sections 2 to 4) and their options:
 * members of the closed `Kernels` set of `core/kernels.ts`, kept in their
 * own interface so the family's contract reads on its own.
 *
 * @module
 */

import type { Tensor } from "./tensor.ts";

/** A closed range of bit widths `[min, max]` (integers). */
export interface WidthRange {
  /** The smallest width. */
  readonly min: number;
  /** The largest width. */
  readonly max: number;
}

/** Options of the FracBits weight kernels (spec `fracbits.md` sections 2, 3). */
export interface FracWeightOptions {
  /** The smallest width (0 allows 0-bit kernels). */
  readonly minBits: number;
  /** The largest width. */
  readonly maxBits: number;
  /**
   * Rescale by `1 / (sqrt(fanOut) std)` (std unbiased, of the quantized
   * weights, not differentiated); `null`: no rescale.
   */
  readonly fanOut: number | null;
}

/** Options of the FracBits activation kernels. */
export interface FracActivationOptions {
  /** The smallest width (at least 1). */
  readonly minBits: number;
  /** The largest width. */
  readonly maxBits: number;
}

/** Options of the FracBits cost kernels (spec `fracbits.md` section 4). */
export interface WidthCostOptions {
  /** The weight widths' clamp range. */
  readonly weightRange: WidthRange;
  /** The input width's clamp range. */
  readonly inputRange: WidthRange;
  /** Multiplies the product (e.g. `1e-9 MACs / C_out`). */
  readonly coefficient: number;
}

/** FracBits' kernels; every device implements them (see `Kernels`). */
export interface FracBitsKernels {
  /**
   * Blended DoReFa weights of `w` `[O, ...]` at the fractional widths
   * `bits` (`[1]`, or `[O]` one per output channel), each clamped to
   * `[minBits, maxBits]`: `t = tanh(w) / max|tanh(w)|` (float64), at `k >= 1`
   * bits `fround(fround(c / (2^k - 1)) (2 round((2^k - 1)(t + 1) / 2) -
   * (2^k - 1)))` (ties to even; `c` the rescale or 1), 0 at 0 bits, blended
   * `fround(f w_hi + (1 - f) w_lo)` (`w_lo` itself at an integer width).
   */
  fracWeightQuantize(
    w: Tensor,
    bits: Tensor,
    options: FracWeightOptions,
  ): Tensor;
  /**
   * The straight-through gradients: `dw` through the tanh and its maximum
   * (the first maximal element), `dbits` (shaped like `bits`) the float64
   * sum of `dy (w_hi - w_lo)` over each width's elements, 0 at an integer
   * or clamped width.
   */
  fracWeightQuantizeBackward(
    w: Tensor,
    bits: Tensor,
    options: FracWeightOptions,
    dy: Tensor,
  ): { dw: Tensor; dbits: Tensor };
  /**
   * Blended PACT activations of `x` with `clip` `[1]` (`|clip| > 0`) at the
   * width `bits` `[1]`: at `k >= 1` bits, `s = fround(|clip| / (2^k - 1))`,
   * `fround(s clamp(round(fround(x / s)), 0, 2^k - 1))`, blended as above.
   */
  pactQuantize(
    x: Tensor,
    clip: Tensor,
    bits: Tensor,
    options: FracActivationOptions,
  ): Tensor;
  /**
   * `dx = dy` where `0 < x < |clip|`; `dclip` `[1]` the float64 sum of `dy
   * sign(clip)` where `x >= |clip|` and `dy sign(clip) (y / |clip| - u)`
   * elsewhere; `dbits` `[1]` the sum of `dy (y_hi - y_lo)` (0 at an integer
   * or clamped width).
   */
  pactQuantizeBackward(
    x: Tensor,
    clip: Tensor,
    bits: Tensor,
    options: FracActivationOptions,
    dy: Tensor,
  ): { dx: Tensor; dclip: Tensor; dbits: Tensor };
  /**
   * `[1]`: `coefficient * sum_o clamp(weightBits[o]) * clamp(inputBits)`
   * (`inputBits` `[1]`, or null for 1), float64, rounded.
   */
  widthCost(
    weightBits: Tensor,
    inputBits: Tensor | null,
    options: WidthCostOptions,
  ): Tensor;
  /**
   * Its gradients times `dcost[0]`; a width outside its range (or in a
   * range of one width) gets 0; `dinputBits` null when `inputBits` is.
   */
  widthCostBackward(
    weightBits: Tensor,
    inputBits: Tensor | null,
    options: WidthCostOptions,
    dcost: Tensor,
  ): { dweightBits: Tensor; dinputBits: Tensor | null };
  /** `[1]`: `kappa |cost[0] - target|`, float64, rounded. */
  targetPenalty(cost: Tensor, target: number, kappa: number): Tensor;
  /** `[1]`: `dpenalty[0] kappa sign(cost[0] - target)` (0 at the target). */
  targetPenaltyBackward(
    cost: Tensor,
    target: number,
    kappa: number,
    dpenalty: Tensor,
  ): Tensor;
}
