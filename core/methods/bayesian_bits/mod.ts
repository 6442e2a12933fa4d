/**
 * Bayesian Bits (spec `shared/spec/bayesian-bits.md`): learned mixed
 * precision and channel pruning under a BOP budget. A float model becomes a
 * gated one ({@link bayesianBits}), is initialised ({@link initGated}),
 * trained with the paper's recipe ({@link trainBayesianBits}) and measured
 * with deterministic gates ({@link evaluateGated}, {@link gatedReport}).
 *
 * @example
 * ```ts
 * import { bayesianBits, gatedBops, initGated } from "@bbits/core/bayesian-bits";
 * import { initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5());
 * const x = Tensor.from(new Float32Array(784).fill(0.5), [1, 1, 28, 28]);
 * const state = await initGated(gated, initGraph(lenet5(), randomKey(0)), x);
 * assert.equal(gatedBops(gated, state.params).relativeGbops.toFixed(2), "6.25");
 * ```
 *
 * @module
 */

export * from "./model.ts";
export * from "./ops.ts";
export * from "./quantizer.ts";
export * from "./forward.ts";
export * from "./cost.ts";
export * from "./train.ts";
export * from "./method.ts";
export * from "./state_check.ts";
export * from "./greedy.ts";
export * from "../../reference/gates.ts";
export * from "../../reference/prior.ts";
export * from "../../reference/quantizer.ts";
