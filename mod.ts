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
 * Bayesian Bits itself is also the `@bbits/core/bayesian-bits` subpath; the
 * WebGPU device lives in `@bbits/core/gpu`.
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
export { type DType, type Shape, shapeSize, Tensor } from "./core/tensor.ts";
export {
  CLIP_FACTOR,
  type QuantizerConstants,
  quantizerConstants,
} from "./core/reference/quantizer.ts";
export {
  type Device,
  device,
  type DeviceKind,
  type DeviceOptions,
  UnsupportedKernelError,
} from "./core/device.ts";
export {
  type ReferenceDevice,
  referenceDevice,
} from "./core/reference/device.ts";
export {
  type ActivationKind,
  type AdamHyper,
  type BatchNormKernelOptions,
  type ChannelLayout,
  type ConvGeometry,
  type GatePriorOptions,
  type GemmShape,
  KERNEL_NAMES,
  type Kernels,
  type PoolGeometry,
  type RunningStats,
  type SgdHyper,
} from "./core/kernels.ts";
export {
  BIT_WIDTHS,
  type BitWidth,
  gatesForBits,
  type GateValues,
  initRange,
  quantize,
  quantizeGrad,
  type QuantizeGradResult,
  type QuantizeOptions,
  type QuantizerRange,
  uniformQuantize,
} from "./core/methods/bayesian_bits/quantizer.ts";
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
} from "./core/reference/gates.ts";
export {
  prior,
  type PriorMode,
  type PriorOptions,
  type PriorResult,
} from "./core/reference/prior.ts";
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
  type ValueAndGrad,
  valueAndGrad,
  type ValueAndGradAux,
  type Vjp,
} from "./core/autodiff.ts";

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
  findNonFinite,
  type GradTensors,
  type LearningRate,
  type Optimizer,
  type OptimizerState,
  type OptimizerUpdate,
  type ParamGroup,
  paramGroups,
  type ParamTensors,
  perEpoch,
  type Schedule,
  sgd,
  type SgdOptions,
  stepSchedule,
} from "./core/optim.ts";
export {
  type EpochStats,
  type LoopOptions,
  type LoopProgress,
  type LoopSpec,
  type LoopState,
  type ParamRecord,
  progressRate,
  type StepLoss,
  trainLoop,
} from "./core/loop.ts";
export {
  checkImageShape,
  evaluate,
  evaluateState,
  type TensorParams,
  train,
  type TrainOptions,
  type TrainRun,
} from "./core/train.ts";
export {
  type EpochRecord,
  floatMethod,
  type FloatMethodOptions,
  trainFloat,
  type TrainFloatOptions,
  type TrainProgress,
  type TrainResult,
} from "./core/methods/float.ts";
export type {
  Frozen,
  GridPlan,
  LayerPlan,
  MethodState,
  OptimizerPlan,
  Penalty,
  QuantizationMethod,
  QuantizationPlan,
  StatsRecord,
  StepContext,
  TrainData,
} from "./core/method.ts";
export {
  evaluateFrozen,
  planBops,
  type PlanCost,
  type PlanLayerCost,
  producerOf,
} from "./core/frozen.ts";
export { gridGates } from "./core/ops/grid.ts";
export {
  gatesOp,
  type GateTensors,
  type LogitTensors,
  priorOp,
  quantizerOp,
} from "./core/methods/bayesian_bits/ops.ts";
export {
  type DecodedSafetensors,
  decodeSafetensors,
  encodeSafetensors,
  type SafetensorsDtype,
  type SafetensorsInput,
  type SafetensorsTensor,
} from "./core/safetensors.ts";
export * from "./core/methods/bayesian_bits/mod.ts";
export * from "./core/report.ts";
export * from "./io/report.ts";
export * from "./core/export.ts";
