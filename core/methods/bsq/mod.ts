/**
 * BSQ (spec `shared/spec/bsq.md`; Yang et al., ICLR 2021): bit-level
 * sparsity quantization. A float model's weights become bit planes
 * ({@link bsq}, {@link initBsq}); a group Lasso over the planes, weighted by
 * each layer's memory, drives whole planes to zero; periodic
 * re-quantization drops the zero planes (and grows a layer whose planes
 * overflow); then the scheme is fixed and fine-tuned ({@link trainBsq}).
 * Activations keep a fixed precision. The frozen model
 * ({@link freezeBsq}) is on uniform grids counted `N + 1` bits wide.
 *
 * @example Convert LeNet-5 and count its cost
 * ```ts
 * import { initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
 * import { bsq, bsqCost, initBsq } from "@bbits/core/bsq";
 * import assert from "node:assert/strict";
 *
 * const q = bsq(lenet5(), { alpha: 0.01, activationBits: 8 });
 * const x = Tensor.from(new Float32Array(784).fill(0.5), [1, 1, 28, 28]);
 * const state = await initBsq(q, initGraph(lenet5(), randomKey(0)), x);
 * assert.deepEqual(Object.values(state.bits), [8, 8, 8, 8]);
 * assert.equal(bsqCost(q, state.bits).relativeGbops.toFixed(2), "7.03");
 * ```
 *
 * @module
 */

export * from "./planes.ts";
export * from "./ops.ts";
export * from "./model.ts";
export * from "./cost.ts";
export * from "./method.ts";
export * from "./train.ts";
