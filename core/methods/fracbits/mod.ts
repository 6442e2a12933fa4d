/**
 * FracBits (spec `shared/spec/fracbits.md`; Yang and Jin, AAAI 2021):
 * mixed precision from fractional bit widths. Each layer's weights (per
 * layer or per kernel) and inputs are quantized at the two integer widths
 * around a learned real width and blended, a penalty `kappa |cost - T|`
 * pulls the expected BitOPs (or model size) to a target, and after the
 * protocol's epoch the widths are rounded with a global offset found by
 * bisection and frozen. A model is prepared ({@link fracBits} or
 * {@link fracBitsRecipe}), initialised ({@link initFracBits}), trained
 * ({@link trainFracBits}, or `train(fracBitsMethod(...), ...)`) and frozen
 * to a uniform-grid `QuantizationPlan` ({@link freezeFracBits}).
 *
 * @example
 * ```ts
 * import { initGraph, lenet5, randomKey } from "@bbits/core";
 * import { fracBitsRecipe, initFracBits, fracBitsPlan } from "@bbits/core/fracbits";
 * import assert from "node:assert/strict";
 *
 * const fm = fracBitsRecipe(lenet5(), { targetRelativeGbops: 1.0371 });
 * const state = initFracBits(fm, initGraph(lenet5(), randomKey(0)));
 * const plan = fracBitsPlan(fm, state);
 * assert.equal(plan.layers[1].details.weightBits, 4); // 3.5 rounds to 4
 * assert.equal(plan.layers[0].activation?.bits, 4); // conv2's input width
 * ```
 *
 * @module
 */

export * from "./model.ts";
export * from "./ops.ts";
export * from "./assign.ts";
export * from "./method.ts";
export * from "./train.ts";
export {
  doReFaCode,
  doReFaScale,
  fracWeightFactor,
  fracWeightReference,
  pactReference,
  widthBlend,
  widthCostReference,
} from "../../reference/fracbits.ts";
export type { WidthBlend } from "../../reference/fracbits.ts";
export type {
  FracActivationOptions,
  FracWeightOptions,
  WidthCostOptions,
  WidthRange,
} from "../../kernels.ts";
