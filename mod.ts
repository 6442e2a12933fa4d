/**
 * # @bbits/core — Bayesian Bits for Deno
 *
 * Learn, by gradient descent, which bit width (0 = pruned, 2, 4, 8, 16, 32)
 * every weight and activation tensor of a network needs, under a
 * bit-operation (BOP) budget (van Baalen et al., "Bayesian Bits", NeurIPS
 * 2020).
 *
 * This module is the core: immutable tensors, the residual quantizer and its
 * straight-through gradients, hard-concrete gates, the BOP-aware prior, BOP
 * accounting and a counter-based random generator, over a reference
 * TypeScript backend and a WASM SIMD backend. The WebGPU backend lives in the
 * `@bbits/core/gpu` subpath so that a plain import never loads GPU code.
 *
 * @example Quantize a weight tensor at 4 bits with one channel pruned
 * ```ts
 * import { initRange, quantize, Tensor, wasmBackend } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const w = Tensor.from([0.3, -0.7, 0.1, 0.9, -0.2, 0.5], [3, 2]);
 * const range = initRange(w); // { xmax: 0.9, signed: true }
 * const gates = { z2: [1, 0, 1], z4: 1, z8: 0, z16: 0, z32: 0 };
 * const wq = quantize(w, range, gates, { backend: wasmBackend });
 * assert.deepEqual([wq.get(1, 0), wq.get(1, 1)], [0, 0]); // channel 1 pruned
 * ```
 *
 * @module
 */

export { roundHalfEven } from "./core/round.ts";
export {
  assertRandomKey,
  bitsToUniform,
  foldIn,
  randomBits,
  type RandomKey,
  randomKey,
  splitKey,
  threefry2x32,
  uniform,
} from "./core/rng.ts";
export { type Shape, shapeSize, Tensor } from "./core/tensor.ts";
export {
  CLIP_FACTOR,
  type QuantizerBackend,
  type QuantizerConstants,
  quantizerConstants,
  type QuantizerGrads,
  type QuantizerPass,
} from "./core/backend.ts";
export { float64ReferenceBackend, referenceBackend } from "./core/reference.ts";
export {
  BIT_WIDTHS,
  type BitWidth,
  gatesForBits,
  type GateValues,
  initRange,
  makeQuantizerPass,
  quantize,
  quantizeGrad,
  type QuantizeGradResult,
  type QuantizeOptions,
  type QuantizerRange,
  uniformQuantize,
} from "./core/quantizer.ts";
export {
  CHAIN_STOP_LOGIT,
  deterministicGates,
  type EffectiveBits,
  effectiveBits,
  EVAL_OFF_PROBABILITY,
  gateIsOn,
  type GateLogits,
  gateNoise,
  gateNoiseCount,
  gateProbability,
  gateProbabilityGrad,
  HARD_CONCRETE,
  type SampledGates,
  sampleGate,
  sampleGateGrad,
  sampleGates,
} from "./core/gates.ts";
export {
  prior,
  type PriorMode,
  type PriorOptions,
  type PriorResult,
} from "./core/prior.ts";
export {
  type BopReport,
  bopReport,
  chainBops,
  type ChainLayer,
  type LayerBops,
  layerBops,
  type LayerBopsInput,
} from "./core/bops.ts";
export {
  type Grads,
  isRecording,
  type Params,
  recordOp,
  valueAndGrad,
  type Vjp,
} from "./core/autodiff.ts";
export {
  currentGemm,
  type GemmFn,
  gemmReference,
  type GemmShape,
  withGemm,
} from "./core/ops/gemm.ts";
export {
  type AdamResult,
  type AdamStep,
  type ChannelLayout,
  type ConvGeometry,
  currentKernels,
  type OpKernels,
  type PoolGeometry,
  withKernels,
} from "./core/ops/kernels.ts";
export {
  add,
  mean,
  mul,
  relu,
  relu6,
  reshape,
  scale,
  sum,
} from "./core/ops/elementwise.ts";
export { dense } from "./core/ops/dense.ts";
export {
  conv2d,
  type Conv2dOptions,
  convOutputSize,
} from "./core/ops/conv2d.ts";
export { globalAvgPool, maxPool2d } from "./core/ops/pool.ts";
export {
  batchNorm,
  type BatchNormOptions,
  type BatchNormStats,
  foldBatchNorm,
} from "./core/ops/batchnorm.ts";
export { softmaxCrossEntropy } from "./core/ops/loss.ts";
export {
  type Activation,
  analyzeGraph,
  type GraphInfo,
  type GraphNode,
  initGraph,
  type LayerInfo,
  type ModelGraph,
  type PoolWindow,
  runGraph,
  type RunOptions,
} from "./core/graph.ts";
export { lenet5, mobilenetV2, resnet18, vgg7 } from "./core/models.ts";
export {
  createWasmBackend,
  type WasmBackend,
  wasmBackend,
  type WasmBackendOptions,
  type WasmF32Buffer,
  wasmGemm,
  wasmKernels,
} from "./asm/backend.ts";
export {
  encodeIdx,
  type IdxArray,
  type IdxArrayOf,
  type IdxDtype,
  type IdxInput,
  parseIdx,
  type ParseIdxOptions,
} from "./core/idx.ts";
export {
  type Batch,
  batchCount,
  batches,
  type BatchOptions,
  type Dataset,
  DEFAULT_NORMALIZATION,
  type ImageShape,
  makeDataset,
  MNIST_MEAN,
  MNIST_STD,
  type Normalization,
  normalizePixels,
  shuffledIndices,
} from "./core/data.ts";
export {
  adam,
  type AdamOptions,
  constantSchedule,
  constantThenLinearSchedule,
  cosineSchedule,
  type GradArrays,
  type LearningRate,
  type Optimizer,
  type OptimizerState,
  type OptimizerUpdate,
  type ParamArrays,
  type ParamGroup,
  paramGroups,
  perEpoch,
  type Schedule,
  sgd,
  type SgdOptions,
  stepSchedule,
} from "./core/optim.ts";
export {
  type EpochRecord,
  evaluate,
  type TensorParams,
  trainFloat,
  type TrainFloatOptions,
  type TrainProgress,
  type TrainResult,
} from "./core/train.ts";
export {
  gatesOp,
  type GateTensors,
  type LogitTensors,
  priorOp,
  quantizerOp,
} from "./core/ops/bayesian.ts";
export {
  type DecodedSafetensors,
  decodeSafetensors,
  encodeSafetensors,
  type SafetensorsDtype,
  type SafetensorsInput,
  type SafetensorsTensor,
} from "./core/safetensors.ts";
export * from "./core/bayesian_bits.ts";
export * from "./core/report.ts";
export * from "./core/export.ts";
