/**
 * The closed kernel set every device implements.
 *
 * A kernel takes tensors on its device and returns new tensors there; it
 * never writes its inputs. Every member is required: a device that lacks
 * one implements it by throwing `UnsupportedKernelError`, so nothing falls
 * back silently. Per-tensor scalars computed on the device (a range, the
 * gates, a loss gradient) are tensor inputs, so no kernel needs a value read
 * back in the same step. Arguments that are plain numbers are host values:
 * sizes, options, a random key, learning rates.
 *
 * Layouts are row-major (NCHW for images); `float32` unless a contract says
 * `int32`. Each contract below says what the reference device computes
 * (`core/reference/`, one file per family, the oracle); a faster device
 * matches it bit for bit unless the contract names a tolerance (GEMM and
 * convolution sum in another order; reductions may be split over threads).
 *
 * Devices without float64 (WebGPU: WGSL has no `f64`). Where a contract
 * says float64, the WebGPU device uses double-float arithmetic (a float32
 * pair kept exact with TwoSum and Dekker products) for sums, products and
 * the optimizer moments, rounded once: the reference's bits unless the
 * exact value lies within about 2^-44 relative of a float32 rounding
 * boundary. Its reductions (`sum`, global average pool, batch-norm
 * statistics and gradients, the softmax loss, the quantizer's) are
 * double-float trees in another order than the reference's. Transcendental
 * steps are float32 (WGSL `exp`, `log`, `sqrt`): batch norm's `invStd`, the
 * softmax, Adam's step and the gates and prior are within a few units in
 * the last place of the reference (of the log-odds, for the gates); each
 * family's contract in `gpu/kernels/` says exactly where, and the kernel
 * table's `float32` tolerances state the bound the tests hold it to.
 *
 * The families: elementwise, matrix (GEMM and bias), convolution, pooling,
 * batch norm, loss and metrics, the residual quantizer (spec section 1),
 * hard-concrete gates and their prior (spec sections 2 and 3), random
 * numbers, and the optimizer updates.
 *
 * @module
 */

import type { RandomKey } from "./rng.ts";
import type { Shape, Tensor } from "./tensor.ts";
import type { FracBitsKernels } from "./kernels_fracbits.ts";
import type { BitPlaneKernels } from "./kernels_bitplanes.ts";

export type {
  FracActivationOptions,
  FracWeightOptions,
  WidthCostOptions,
  WidthRange,
} from "./kernels_fracbits.ts";
export type { BitPlaneKernels, FracBitsKernels };

/** Shape and layout of one GEMM `C[m x n] = op(A) op(B)`. */
export interface GemmShape {
  /** Rows of `op(A)` and `C`. */
  readonly m: number;
  /** Columns of `op(B)` and `C`. */
  readonly n: number;
  /** Columns of `op(A)` = rows of `op(B)`. */
  readonly k: number;
  /** `A` is stored `k x m` and used transposed. */
  readonly transA: boolean;
  /** `B` is stored `n x k` and used transposed. */
  readonly transB: boolean;
}

/** Sizes of a 2-D convolution of `[N, C, H, W]` by `[O, C / groups, KH, KW]`. */
export interface ConvGeometry {
  /** Samples. */
  readonly n: number;
  /** Input channels. */
  readonly c: number;
  /** Input height. */
  readonly h: number;
  /** Input width. */
  readonly w: number;
  /** Output channels. */
  readonly o: number;
  /** Kernel height. */
  readonly kh: number;
  /** Kernel width. */
  readonly kw: number;
  /** Output height. */
  readonly oh: number;
  /** Output width. */
  readonly ow: number;
  /** Stride in both directions. */
  readonly stride: number;
  /** Zero padding on every side. */
  readonly padding: number;
  /** Channel groups (1; `c` for depthwise). */
  readonly groups: number;
}

/** Sizes of a max-pool over `[N, C, H, W]` with `OH x OW` outputs per plane. */
export interface PoolGeometry {
  /** Samples. */
  readonly n: number;
  /** Channels. */
  readonly c: number;
  /** Input height. */
  readonly h: number;
  /** Input width. */
  readonly w: number;
  /** Output height. */
  readonly oh: number;
  /** Output width. */
  readonly ow: number;
  /** Window size. */
  readonly kernel: number;
  /** Stride. */
  readonly stride: number;
  /** Implicit `-Infinity` padding on each side. */
  readonly padding: number;
}

/** A batch-norm input `[N, C, area]` (area 1 for `[N, C]`). */
export interface ChannelLayout {
  /** Samples. */
  readonly n: number;
  /** Channels (normalised separately). */
  readonly c: number;
  /** Elements per channel per sample (`H * W`, or 1). */
  readonly area: number;
}

/** Options of {@link Kernels.batchNorm}. */
export interface BatchNormKernelOptions {
  /** The input's layout. */
  readonly layout: ChannelLayout;
  /** Normalise with the batch's statistics (true) or the running ones. */
  readonly train: boolean;
  /** Running-average momentum (PyTorch convention). */
  readonly momentum: number;
  /** Added to the variance. */
  readonly eps: number;
}

/** Running statistics of a batch-norm layer: `[C]` each. */
export interface RunningStats {
  /** Running mean. */
  readonly mean: Tensor;
  /** Running (unbiased) variance. */
  readonly variance: Tensor;
}

/** The hyperparameters of one Adam update (host numbers). */
export interface AdamHyper {
  /** Decay of the first moment. */
  readonly beta1: number;
  /** Decay of the second moment. */
  readonly beta2: number;
  /** Added to the denominator. */
  readonly eps: number;
  /** L2 penalty added to the gradient. */
  readonly weightDecay: number;
  /** `lr / (1 - beta1^t)`. */
  readonly stepSize: number;
  /** `sqrt(1 - beta2^t)`. */
  readonly sqrtCorrection2: number;
}

/** The hyperparameters of one SGD update (host numbers). */
export interface SgdHyper {
  /** The learning rate of this step. */
  readonly lr: number;
  /** Momentum factor (0: none). */
  readonly momentum: number;
  /** Nesterov momentum. */
  readonly nesterov: boolean;
  /** L2 penalty added to the gradient. */
  readonly weightDecay: number;
}

/** Options of the gate prior kernels (spec section 3). */
export interface GatePriorOptions {
  /** `M / Mmax` of the quantizer, in (0, 1]. */
  readonly macRatio: number;
  /** `"bop"`: `w(b) = macRatio * b`; `"const"`: `w(b) = 1`. */
  readonly mode: "bop" | "const";
}

/** An elementwise activation. */
export type ActivationKind = "relu" | "relu6";

/** The closed kernel set; see the module documentation for the conventions. */
export interface Kernels extends FracBitsKernels, BitPlaneKernels {
  // --- elementwise ---------------------------------------------------------

  /** `a + b`, same shapes, float32. */
  add(a: Tensor, b: Tensor): Tensor;
  /** `a * b`, same shapes, float32. */
  mul(a: Tensor, b: Tensor): Tensor;
  /** `a * factor`: each float32 element times the float64 `factor`, rounded once. */
  scale(a: Tensor, factor: number): Tensor;
  /** `[1]`: the float64 sum of `a` in element order, rounded to float32. */
  sum(a: Tensor): Tensor;
  /** A tensor of `shape` filled with `scalar[0]` (`scalar` has one element). */
  broadcast(scalar: Tensor, shape: Shape): Tensor;
  /** `relu`: `x > 0 ? x : 0`; `relu6`: `min(max(x, 0), 6)`; NaN gives 0. */
  activation(kind: ActivationKind, x: Tensor): Tensor;
  /** `dy` where the activation's slope is 1 (`x > 0`; `0 < x < 6`), else 0. */
  activationBackward(kind: ActivationKind, x: Tensor, dy: Tensor): Tensor;

  // --- matrix --------------------------------------------------------------

  /**
   * `C [m, n] = op(A) op(B)`. Reference: float64 sums rounded once; other
   * devices sum in float32 blocks (relative tolerance about `k * 2^-24`).
   */
  gemm(a: Tensor, b: Tensor, shape: GemmShape): Tensor;
  /** `a[r, j] + bias[j]` over `a` `[rows, cols]`, `cols = bias.size`. */
  addBias(a: Tensor, bias: Tensor): Tensor;
  /** `[cols]`: column sums of `a` `[rows, cols]`, float32, row after row. */
  biasGrad(a: Tensor, cols: number): Tensor;

  // --- convolution ---------------------------------------------------------

  /**
   * `[N, O, OH, OW]`: the convolution of `x` by `w` plus `bias` per output
   * channel (`bias` may be null). Reference: the direct loop, float32
   * accumulation in (input channel, tap) order; devices may sum in another
   * order for groups 1 (GEMM tolerance), and match the reference bit for
   * bit for groups > 1.
   */
  conv2d(x: Tensor, w: Tensor, bias: Tensor | null, g: ConvGeometry): Tensor;
  /**
   * The convolution's gradients from `dy` `[N, O, OH, OW]`: `dx` (when
   * `needInput`, else null), `dw`, and `db` (when `needBias`, else null).
   */
  conv2dBackward(
    x: Tensor,
    w: Tensor,
    dy: Tensor,
    g: ConvGeometry,
    needInput: boolean,
    needBias: boolean,
  ): { dx: Tensor | null; dw: Tensor; db: Tensor | null };

  // --- pooling -------------------------------------------------------------

  /**
   * Max-pool: `y` `[N, C, OH, OW]` and `argmax` (`int32`, same shape): the
   * flat index into `x` of each window's first maximum (padding never wins).
   */
  maxPool2d(x: Tensor, g: PoolGeometry): { y: Tensor; argmax: Tensor };
  /** `dx[argmax[o]] += dy[o]` in output order, into zeros `[N, C, H, W]`. */
  maxPool2dBackward(dy: Tensor, argmax: Tensor, g: PoolGeometry): Tensor;
  /** `[planes]`: each plane's float64 sum over `area`, divided, rounded. */
  globalAvgPool(x: Tensor, planes: number, area: number): Tensor;
  /** `[planes * area]`: plane `p` filled with `dy[p] / area`. */
  globalAvgPoolBackward(dy: Tensor, planes: number, area: number): Tensor;

  // --- batch norm ----------------------------------------------------------

  /**
   * `y = gamma (x - mean) invStd + beta` per channel, `xhat = (x - mean)
   * invStd`, with float64 statistics (training: the batch's mean and
   * biased variance, two passes in sample-then-pixel order; evaluation: the
   * running ones) and `invStd = 1 / sqrt(var + eps)`. Returns `invStd` as
   * float32 for the backward pass, and in training with `running` given the
   * new running statistics `(1 - momentum) old + momentum batch` (variance
   * unbiased by `count / (count - 1)`), else `running: null`.
   */
  batchNorm(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    running: RunningStats | null,
    options: BatchNormKernelOptions,
  ): { y: Tensor; xhat: Tensor; invStd: Tensor; running: RunningStats | null };
  /**
   * Batch-norm gradients: training mode through the batch statistics
   * (`dx = gamma invStd / count (count dy - sum dy - xhat sum dy xhat)`),
   * evaluation mode `dx = dy gamma invStd`; `dgamma = sum dy xhat`,
   * `dbeta = sum dy` (float64 sums, rounded).
   */
  batchNormBackward(
    dy: Tensor,
    xhat: Tensor,
    gamma: Tensor,
    invStd: Tensor,
    layout: ChannelLayout,
    train: boolean,
  ): { dx: Tensor; dgamma: Tensor; dbeta: Tensor };

  // --- loss and metrics ----------------------------------------------------

  /**
   * Softmax cross-entropy of `[N, K]` logits against `int32` labels in
   * `[0, K)`: `loss` `[1]` is the float64 sum of the rows' max-shifted
   * log-sum-exp minus the label's logit, divided by N, rounded; `probs` the
   * softmax. (Devices with their own `exp`/`log` agree to about 1e-13
   * relative.)
   */
  softmaxCrossEntropy(
    logits: Tensor,
    labels: Tensor,
  ): { loss: Tensor; probs: Tensor };
  /** `dloss[0] (probs - onehot) / N`, float64 arithmetic rounded once. */
  softmaxCrossEntropyBackward(
    probs: Tensor,
    labels: Tensor,
    dloss: Tensor,
  ): Tensor;
  /** `[1]` `int32`: rows of `[N, K]` logits whose first maximum is at the label. */
  countCorrect(logits: Tensor, labels: Tensor): Tensor;

  // --- residual quantizer (spec sections 1 and 7) --------------------------

  /**
   * `xq = z2 (x2 + z4 (e4 + z8 (e8 + z16 (e16 + z32 e32))))` of `x`, whose
   * axis 0 holds `channels = z2.size` channels (1 without `z2`): clip as
   * `hi - relu(span - relu(x - lo))`, scales `s2 = (signed ? 2 : 1) xmax / 3`,
   * `s4 = s2 / 5`, ..., each level `s round(r / s)` with true division and
   * ties to even, residuals subtracted level by level, float32 throughout.
   * `xmax` `[1]`, `gates` `[4]` = `[z4, z8, z16, z32]`, `z2` `[C]` or null.
   */
  residualQuantize(
    x: Tensor,
    xmax: Tensor,
    gates: Tensor,
    z2: Tensor | null,
    signed: boolean,
  ): Tensor;
  /**
   * The straight-through gradients from `dy`: `dx = z2 dy` inside the clip
   * range (else 0), `dxmax` `[1]`, `dgates` `[4]`, `dz2` `[C]` (or null);
   * the reductions are float64 sums rounded to float32 (devices that split
   * them over threads agree to about 1e-6 relative).
   */
  residualQuantizeBackward(
    x: Tensor,
    xmax: Tensor,
    gates: Tensor,
    z2: Tensor | null,
    signed: boolean,
    dy: Tensor,
  ): { dx: Tensor; dxmax: Tensor; dgates: Tensor; dz2: Tensor | null };
  /**
   * Inference: `maxPool2d(residualQuantize(x, ...))` without `z2`, bit for
   * bit, without the full-size `xq` in memory.
   */
  residualQuantizePool(
    x: Tensor,
    xmax: Tensor,
    gates: Tensor,
    signed: boolean,
    g: PoolGeometry,
  ): Tensor;

  // --- uniform grid (every method's frozen plan) ----------------------------

  /**
   * `scale * clamp(round(x / scale), codeMin, codeMax)` elementwise: true
   * division and the product each rounded to float32, ties to even, NaN
   * stays NaN. `scale` `[1]` is positive and finite (the plan guarantees
   * it); `codeMin <= codeMax` are integers within ±2^24 (checked: exact in
   * float32, so every device clamps alike).
   */
  uniformQuantize(
    x: Tensor,
    scale: Tensor,
    codeMin: number,
    codeMax: number,
  ): Tensor;

  // --- hard-concrete gates and their prior (spec sections 2 and 3) ---------

  /**
   * Training samples from `logits` `[4]` (`g4..g32`), `prune` `[C]` (`g2`
   * per channel, or null) and uniforms `noise` `[4 + C]`: `z = clamp(
   * sigmoid((log u - log(1 - u) + g) / beta) (zeta - gamma) + gamma, 0, 1)`
   * in float64, the chain stopping at the first logit `<= -2`; `chain`
   * `[4]`, `z2` `[C]` (or null), rounded to float32.
   */
  hardConcreteSample(
    logits: Tensor,
    prune: Tensor | null,
    noise: Tensor,
  ): { chain: Tensor; z2: Tensor | null };
  /**
   * `dlogits[l] = dchain[l] dz_l/dg_l` (0 past the chain stop and where the
   * sample is clamped), float64 derivative, rounded.
   */
  hardConcreteChainBackward(
    logits: Tensor,
    noise: Tensor,
    dchain: Tensor,
  ): Tensor;
  /** `dprune[c] = dz2[c] dz2_c/dg2_c` with `noise[4 + c]`. */
  hardConcretePruneBackward(
    prune: Tensor,
    noise: Tensor,
    dz2: Tensor,
  ): Tensor;
  /**
   * Evaluation gates: on iff `1 - q(g) < 0.34`, the chain stopping at the
   * first gate that is off or has a logit `<= -2`; 0/1 values.
   */
  hardConcreteGates(
    logits: Tensor,
    prune: Tensor | null,
  ): { chain: Tensor; z2: Tensor | null };
  /** `[1]`: the prior `R` of one quantizer (float64, rounded). */
  gatePrior(
    logits: Tensor,
    prune: Tensor | null,
    options: GatePriorOptions,
  ): Tensor;
  /** `dR/dg` times `dr[0]` for the chain logits and the pruning logits. */
  gatePriorBackward(
    logits: Tensor,
    prune: Tensor | null,
    options: GatePriorOptions,
    dr: Tensor,
  ): { dlogits: Tensor; dprune: Tensor | null };

  // --- random numbers ------------------------------------------------------

  /**
   * `[count]` uniforms in (0, 1): elements `offset ..` of the Threefry-2x32
   * stream of `key` (identical on every device).
   */
  uniform(key: RandomKey, count: number, offset: number): Tensor;

  // --- optimizers ----------------------------------------------------------

  /**
   * One Adam step in float64 per element: `g = grad + wd theta`,
   * `m' = b1 m + (1 - b1) g`, `v' = b2 v + (1 - b2) g^2`,
   * `theta' = theta - stepSize m' / (sqrt(v') / sqrtCorrection2 + eps)`,
   * each result rounded to float32.
   */
  adamUpdate(
    theta: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    hyper: AdamHyper,
  ): { theta: Tensor; m: Tensor; v: Tensor };
  /**
   * One SGD step (PyTorch's, dampening 0) in float64 per element:
   * `g = grad + wd theta`; with momentum `b' = mu b + g` and
   * `theta' = theta - lr (nesterov ? g + mu b' : b')`, else
   * `theta' = theta - lr g`; `momentum` is null without momentum.
   */
  sgdUpdate(
    theta: Tensor,
    grad: Tensor,
    momentum: Tensor | null,
    hyper: SgdHyper,
  ): { theta: Tensor; momentum: Tensor | null };
}

/** The names of every kernel, for tests and errors. */
export const KERNEL_NAMES: readonly (keyof Kernels)[] = Object.freeze(
  [
    "add",
    "mul",
    "scale",
    "sum",
    "broadcast",
    "activation",
    "activationBackward",
    "gemm",
    "addBias",
    "biasGrad",
    "conv2d",
    "conv2dBackward",
    "maxPool2d",
    "maxPool2dBackward",
    "globalAvgPool",
    "globalAvgPoolBackward",
    "batchNorm",
    "batchNormBackward",
    "softmaxCrossEntropy",
    "softmaxCrossEntropyBackward",
    "countCorrect",
    "residualQuantize",
    "residualQuantizeBackward",
    "residualQuantizePool",
    "bitPlaneSum",
    "bitPlaneSumBackward",
    "unitQuantize",
    "unitQuantizeBackward",
    "bitGroupLasso",
    "bitGroupLassoBackward",
    "maxAbsQuantize",
    "clip",
    "uniformQuantize",
    "hardConcreteSample",
    "hardConcreteChainBackward",
    "hardConcretePruneBackward",
    "hardConcreteGates",
    "gatePrior",
    "gatePriorBackward",
    "fracWeightQuantize",
    "fracWeightQuantizeBackward",
    "pactQuantize",
    "pactQuantizeBackward",
    "widthCost",
    "widthCostBackward",
    "targetPenalty",
    "targetPenaltyBackward",
    "uniform",
    "adamUpdate",
    "sgdUpdate",
  ] as const,
);
