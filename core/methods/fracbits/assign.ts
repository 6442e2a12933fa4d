/**
 * FracBits on the host: the widths of a state, their cost (spec section 4),
 * the hard assignment by bisection of a global offset (section 5) and the
 * BOPs of integer widths in Bayesian Bits' accounting (section 7).
 *
 * @module
 */

import { roundHalfEven } from "../../round.ts";
import type { ParamRecord } from "../../loop.ts";
import { hostF32 } from "../../tensor.ts";
import type { WidthRange } from "../../kernels.ts";

/** The widths of one layer: weights (one, or one per kernel) and input. */
export interface LayerWidths {
  /** Weight widths: one for the layer, or one per output channel. */
  readonly weight: readonly number[];
  /** The input width, or null when the input is not learned. */
  readonly input: number | null;
}

/** What the cost needs of a layer. */
export interface CostLayer {
  /** MACs per image. */
  readonly macs: number;
  /** Output channels. */
  readonly outChannels: number;
  /** Weight count (for the size cost). */
  readonly weightCount: number;
  /** The weight widths' range. */
  readonly weightRange: WidthRange;
  /** The input width's range, when learned. */
  readonly input: { readonly range: WidthRange } | null;
  /** Input bits counted when the input is not learned. */
  readonly inputConstantBits: number;
}

/** What the cost needs of a model. */
export interface CostModel {
  /** The layers in execution order. */
  readonly layers: readonly CostLayer[];
  /** Bias count. */
  readonly biasCount: number;
}

function clamp(v: number, range: WidthRange): number {
  return Math.min(Math.max(v, range.min), range.max);
}

/**
 * The native cost of widths (each clamped to its range): GBitOPs `1e-9
 * sum_l (MACs_l / C_out) ba_l sum_o bw_l[o]` (a single layer width stands
 * for all `C_out` kernels), or MB `sum_l (params_l / C_out) sum_o bw_l[o] /
 * 8e6 + 4e-6 biases`.
 *
 * @param model Layers and bias count.
 * @param widths Per layer.
 * @param cost Which cost.
 * @returns The cost.
 */
export function nativeCost(
  model: CostModel,
  widths: readonly LayerWidths[],
  cost: "bitops" | "size" = "bitops",
): number {
  let total = cost === "size" ? 4e-6 * model.biasCount : 0;
  model.layers.forEach((l, i) => {
    const w = widths[i];
    const perWidth = l.outChannels / w.weight.length;
    let sumW = 0;
    for (const b of w.weight) sumW += clamp(b, l.weightRange) * perWidth;
    if (cost === "size") {
      total += l.weightCount / l.outChannels * sumW / 8e6;
      return;
    }
    const a = l.input && w.input !== null
      ? clamp(w.input, l.input.range)
      : l.inputConstantBits;
    total += 1e-9 * l.macs / l.outChannels * sumW * a;
  });
  return total;
}

/**
 * Every width `round(lambda + offset)` (half to even), clamped to its range.
 *
 * @param model Layers (for the ranges).
 * @param widths Fractional widths.
 * @param offset The global offset.
 * @returns Integer widths.
 */
export function roundWidths(
  model: CostModel,
  widths: readonly LayerWidths[],
  offset: number,
): LayerWidths[] {
  return model.layers.map((l, i) => ({
    weight: widths[i].weight.map((b) =>
      clamp(roundHalfEven(b + offset), l.weightRange)
    ),
    input: l.input && widths[i].input !== null
      ? clamp(roundHalfEven(widths[i].input! + offset), l.input.range)
      : null,
  }));
}

/** One evaluation of the bisection. */
export interface BisectionStep {
  /** The offset tried. */
  readonly offset: number;
  /** The cost of the widths rounded with it. */
  readonly cost: number;
}

/** The result of {@link bisectOffset}. */
export interface Bisection {
  /** The offset used (the last one tried). */
  readonly offset: number;
  /** Its cost. */
  readonly cost: number;
  /** Whether that cost is within 1 % of the target. */
  readonly converged: boolean;
  /** Every offset tried, in order (the first is 0). */
  readonly trace: readonly BisectionStep[];
}

/**
 * The hard assignment's search (spec section 5): from offset 0 in `[-1,
 * 0]`, halve towards the target until the cost is within 1 % of it, at
 * most 10 halvings; the last offset tried is used even when it misses.
 * It can only lower widths: below `0.99 target` at offset 0 it stays 0.
 *
 * @param profile The cost of the widths rounded with an offset.
 * @param target The target.
 * @returns The offset, its cost and the trace.
 *
 * @example
 * ```ts
 * import { bisectOffset } from "@bbits/core/fracbits";
 * import assert from "node:assert/strict";
 *
 * const r = bisectOffset((off) => 100 + 100 * off, 75);
 * assert.deepEqual(r.trace.map((s) => s.offset), [0, -0.5, -0.25]);
 * assert.ok(r.converged);
 * ```
 */
export function bisectOffset(
  profile: (offset: number) => number,
  target: number,
): Bisection {
  let [lo, hi, offset] = [-1, 0, 0];
  let cost = profile(offset);
  const trace: BisectionStep[] = [{ offset, cost }];
  const within = (c: number) => c <= 1.01 * target && c >= 0.99 * target;
  for (let i = 0; i < 10 && !within(cost); i++) {
    if (cost > 1.01 * target) hi = offset;
    else lo = offset;
    offset = (lo + hi) / 2;
    cost = profile(offset);
    trace.push({ offset, cost });
  }
  return { offset, cost, converged: within(cost), trace };
}

/** What the hard assignment decided (stored in the state as JSON). */
export interface Assignment {
  /** The target (native units). */
  readonly target: number;
  /** The cost of the fractional widths. */
  readonly fractionalCost: number;
  /** The offset found. */
  readonly offset: number;
  /** The cost of the assigned widths. */
  readonly cost: number;
  /** Whether it is within 1 % of the target. */
  readonly converged: boolean;
  /** The search. */
  readonly trace: readonly BisectionStep[];
  /** The fractional widths it rounded. */
  readonly fractional: readonly LayerWidths[];
  /** The assigned integer widths. */
  readonly widths: readonly LayerWidths[];
}

/**
 * The hard assignment of fractional widths.
 *
 * @param model Layers and bias count.
 * @param fractional The fractional widths.
 * @param target The target (native units).
 * @param cost Which cost.
 * @returns The assignment.
 */
export function assignWidths(
  model: CostModel,
  fractional: readonly LayerWidths[],
  target: number,
  cost: "bitops" | "size" = "bitops",
): Assignment {
  const profile = (off: number) =>
    nativeCost(model, roundWidths(model, fractional, off), cost);
  const b = bisectOffset(profile, target);
  return {
    target,
    fractionalCost: nativeCost(model, fractional, cost),
    offset: b.offset,
    cost: b.cost,
    converged: b.converged,
    trace: b.trace,
    fractional,
    widths: roundWidths(model, fractional, b.offset),
  };
}

/**
 * The fractional widths of a state, read on the host.
 *
 * @param layers The layers' width parameters.
 * @param params The parameters.
 * @returns Per layer.
 */
export function readWidths(
  layers: readonly {
    readonly weightBits: string;
    readonly input: { readonly bits: string } | null;
  }[],
  params: ParamRecord,
): LayerWidths[] {
  const need = (name: string) => {
    const t = params[name];
    if (!t) throw new RangeError(`The FracBits state lacks "${name}"`);
    return hostF32(t);
  };
  return layers.map((l) => ({
    weight: Array.from(need(l.weightBits)),
    input: l.input ? need(l.input.bits)[0] : null,
  }));
}

/** BOPs of integer widths in Bayesian Bits' accounting (spec section 7). */
export interface WidthBops {
  /** Per layer BOPs per image (kept channels, input bits, `ki`). */
  readonly layers: readonly number[];
  /** Total BOPs per image. */
  readonly bops: number;
  /** `100 bops / (1024 sum MACs)`. */
  readonly relativeGbops: number;
  /** FracBits' own figure: `1e-9 sum MACs/C_out ba sum_o bw[o]` (no `ki`). */
  readonly nativeGbitops: number;
}

/**
 * BOPs of integer widths: `(MACs / C_out) ba ki sum_{o kept} bw[o]`, a
 * 0-bit kernel a pruned channel, `ki` the kept fraction of the layer before
 * (the one at index `i - 1`, a plain chain), the network input at its
 * constant bits.
 *
 * @param model Layers and bias count.
 * @param widths Integer widths per layer.
 * @returns Per layer and total BOPs, relative GBOPs and native GBitOPs.
 *
 * @example Uniform 4 bits on LeNet-5 (input 8): 1.7312 %
 * ```ts
 * import { lenet5 } from "@bbits/core";
 * import { fracBits, widthBops } from "@bbits/core/fracbits";
 * import assert from "node:assert/strict";
 *
 * const fm = fracBits(lenet5(), { targetRelativeGbops: 1 });
 * const w = fm.layers.map((l) => ({ weight: [4], input: l.input ? 4 : null }));
 * assert.equal(widthBops(fm, w).relativeGbops.toFixed(4), "1.7312");
 * ```
 */
export function widthBops(
  model: CostModel,
  widths: readonly LayerWidths[],
): WidthBops {
  let keptBefore = 1;
  let totalMacs = 0;
  const layers = model.layers.map((l, i) => {
    const w = widths[i];
    const perWidth = l.outChannels / w.weight.length;
    let sum = 0;
    let kept = 0;
    for (const b of w.weight) {
      sum += b * perWidth;
      if (b > 0) kept += perWidth;
    }
    const a = w.input ?? l.inputConstantBits;
    const ki = i === 0 ? 1 : keptBefore;
    keptBefore = kept / l.outChannels;
    totalMacs += l.macs;
    return l.macs / l.outChannels * a * ki * sum;
  });
  const bops = layers.reduce((s, b) => s + b, 0);
  return {
    layers,
    bops,
    relativeGbops: 100 * bops / (1024 * totalMacs),
    nativeGbitops: nativeCost(model, widths),
  };
}
