/**
 * # @bbits/core — Bayesian Bits for Deno
 *
 * Learn, by gradient descent, which bit width (0 = pruned, 2, 4, 8, 16, 32)
 * every weight and activation tensor of a network needs, under a
 * bit-operation (BOP) budget (van Baalen et al., "Bayesian Bits", NeurIPS
 * 2020).
 *
 * This module is the core: immutable tensors that live on one device (the
 * plain-TypeScript reference, WASM SIMD with threads, or WebGPU: pick it
 * once with {@link device}), the differentiable ops, the residual quantizer
 * and its straight-through gradients, hard-concrete gates, the BOP-aware
 * prior, BOP accounting, a counter-based random generator, and the trainers.
 * This front door holds the names most programs need; the rest is in
 * subpaths: `@bbits/core/bayesian-bits` (the method in full: quantizer,
 * gates, prior, phases), `@bbits/core/ops` (tensors, devices, kernels,
 * differentiable ops), `@bbits/core/training` (the method seam, the loop,
 * optimizers, schedules, data, keys, BOPs), `@bbits/core/report`,
 * `@bbits/core/quantized` (exported models), `@bbits/core/formats`
 * (safetensors, IDX), `@bbits/core/mnist`, `@bbits/core/checkpoint`,
 * `@bbits/core/snapshot` and `@bbits/core/gpu` (the WebGPU device).
 *
 * @example Quantize a weight tensor at 4 bits with one channel pruned, on the WASM device
 * ```ts
 * import { device, initRange, quantize } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * using dev = await device("wasm", { threads: 2 });
 * const w = dev.upload([0.3, -0.7, 0.1, 0.9, -0.2, 0.5], [3, 2]);
 * const range = initRange(w); // { xmax: 0.9, signed: true }
 * const gates = { z2: [1, 0, 1], z4: 1, z8: 0, z16: 0, z32: 0 };
 * const wq = quantize(w, range, gates);
 * assert.deepEqual([wq.get(1, 0), wq.get(1, 1)], [0, 0]); // channel 1 pruned
 * ```
 *
 * @module
 */

export {
  type Device,
  device,
  type DeviceKind,
  UnsupportedKernelError,
} from "./core/device.ts";
export { referenceDevice } from "./core/reference/device.ts";
export { type Shape, Tensor } from "./core/tensor.ts";
export { type RandomKey, randomKey, splitKey } from "./core/rng.ts";
export { initGraph, type ModelGraph, runGraph } from "./core/graph.ts";
export { lenet5, mobilenetV2, resnet18, vgg7 } from "./core/models.ts";
export { batches, type Dataset, makeDataset } from "./core/data.ts";
export { valueAndGrad } from "./core/autodiff.ts";
export { adam, type Optimizer, paramGroups, sgd } from "./core/optim.ts";
export type {
  Frozen,
  MethodState,
  QuantizationMethod,
  QuantizationPlan,
  TrainData,
} from "./core/method.ts";
export {
  evaluate,
  train,
  type TrainOptions,
  type TrainRun,
} from "./core/train.ts";
export { floatMethod, trainFloat } from "./core/methods/float.ts";
export { evaluateFrozen, planBops } from "./core/frozen.ts";
export {
  evaluateQuantized,
  exportFrozen,
  runQuantized,
} from "./core/export.ts";
export {
  bayesianBits,
  type BayesianBitsOptions,
  type GatedModel,
  type GatedState,
  initGated,
} from "./core/methods/bayesian_bits/model.ts";
export {
  bayesianBitsMethod,
  exportQuantized,
} from "./core/methods/bayesian_bits/method.ts";
export { trainBayesianBits } from "./core/methods/bayesian_bits/train.ts";
export { evaluateGated } from "./core/methods/bayesian_bits/forward.ts";
export { gatedReport } from "./core/methods/bayesian_bits/cost.ts";
export { initRange, quantize } from "./core/methods/bayesian_bits/quantizer.ts";
export { frozenReport, type QuantizationReport } from "./core/report.ts";
export { formatReportMarkdown, formatReportTable } from "./io/report.ts";
export { parseReport, reportToJson } from "./io/report_json.ts";
export type { QuantizedModel } from "./core/export_format.ts";
