/**
 * Pluggable kernels of the training ops. Every op in `core/ops/` (and the
 * Adam update in `core/optim.ts`) has a plain-TypeScript reference; an
 * {@link OpKernels} set supplies faster versions of any of them (e.g. the
 * WASM SIMD ones, `wasmKernels` or a `WasmBackend`'s `kernels`), scoped
 * with {@link withKernels} the way `withGemm` scopes the matrix multiply.
 *
 * A kernel is a pure function on arrays: it never writes its inputs and
 * returns new arrays, with the contract of the reference it replaces (the
 * `...Reference` function beside each op). The WASM kernels match their
 * references bit for bit wherever the summation order is the reference's,
 * which is everywhere but two places where only the float64 rounding could
 * differ: `batchNormStatistics` squares with `d * d` where the reference
 * writes `d ** 2`, and softmax cross-entropy uses AssemblyScript's `exp`
 * and `log` (`tests/ops_kernels_test.ts` allows 1e-12 and 1e-13 relative
 * there; they agree bit for bit on every case it tries). The fused conv
 * kernels replace the scoped GEMM with their own (see
 * {@link OpKernels.conv2dGemmForward}).
 *
 * @module
 */

import type { ConvGeometry } from "./im2col.ts";

export type { ConvGeometry } from "./im2col.ts";

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

/** The inputs of one Adam update of one parameter (see `adam` in `core/optim.ts`). */
export interface AdamStep {
  /** The parameter. */
  readonly theta: Float32Array;
  /** Its gradient. */
  readonly grad: Float32Array;
  /** First moment before the step. */
  readonly m: Float32Array;
  /** Second moment before the step. */
  readonly v: Float32Array;
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

/** What an Adam update kernel returns: the new parameter and moments. */
export interface AdamResult {
  /** The updated parameter. */
  readonly theta: Float32Array;
  /** The new first moment. */
  readonly m: Float32Array;
  /** The new second moment. */
  readonly v: Float32Array;
}

/**
 * Kernels for the training ops, every member optional: an op whose member
 * is missing runs its reference. Inputs are never written; outputs are new
 * arrays. Flat arrays are row-major (NCHW for images).
 */
export interface OpKernels {
  /** `relu` forward: `x > 0 ? x : 0`. */
  readonly relu?: (x: Float32Array) => Float32Array;
  /** `relu` backward: `x > 0 ? dy : 0`. */
  readonly reluBackward?: (x: Float32Array, dy: Float32Array) => Float32Array;
  /** `relu6` forward: `min(max(x, 0), 6)` (NaN gives 0). */
  readonly relu6?: (x: Float32Array) => Float32Array;
  /** `relu6` backward: `0 < x < 6 ? dy : 0`. */
  readonly relu6Backward?: (x: Float32Array, dy: Float32Array) => Float32Array;
  /**
   * `maxPool2d` forward: the maxima and, per output, the flat index into
   * `x` of its window's first maximum.
   */
  readonly maxPool2d?: (
    x: Float32Array,
    geometry: PoolGeometry,
  ) => { y: Float32Array; argmax: Int32Array };
  /** `maxPool2d` backward: `dx[argmax[o]] += dy[o]` in output order, into zeros. */
  readonly maxPool2dBackward?: (
    dy: Float32Array,
    argmax: Int32Array,
    geometry: PoolGeometry,
  ) => Float32Array;
  /** `globalAvgPool` forward: each plane's float64 sum over `area`, rounded. */
  readonly globalAvgPool?: (
    x: Float32Array,
    planes: number,
    area: number,
  ) => Float32Array;
  /** `globalAvgPool` backward: plane `p` filled with `dy[p] / area`. */
  readonly globalAvgPoolBackward?: (
    dy: Float32Array,
    planes: number,
    area: number,
  ) => Float32Array;
  /** `batchNorm` training statistics: per-channel mean and biased variance (float64). */
  readonly batchNormStatistics?: (
    x: Float32Array,
    layout: ChannelLayout,
  ) => { mean: Float64Array; variance: Float64Array };
  /** `batchNorm` forward: `xhat = (x - mean) invStd` and `y = gamma xhat + beta`. */
  readonly batchNormNormalize?: (
    x: Float32Array,
    layout: ChannelLayout,
    mean: Float64Array,
    invStd: Float64Array,
    gamma: Float32Array,
    beta: Float32Array,
  ) => { xhat: Float32Array; y: Float32Array };
  /** `batchNorm` backward (train mode through the batch statistics, or eval mode). */
  readonly batchNormBackward?: (
    dy: Float32Array,
    xhat: Float32Array,
    layout: ChannelLayout,
    gamma: Float32Array,
    invStd: Float64Array,
    train: boolean,
  ) => { dx: Float32Array; dgamma: Float32Array; dbeta: Float32Array };
  /**
   * `softmaxCrossEntropy` forward over `[labels.length, k]` logits: the
   * summed (not averaged) loss and the softmax. Labels are checked by the op.
   */
  readonly softmaxCrossEntropy?: (
    logits: Float32Array,
    labels: Int32Array,
    k: number,
  ) => { total: number; probs: Float32Array };
  /** `softmaxCrossEntropy` backward: `scale (probs - onehot) / N`. */
  readonly softmaxCrossEntropyBackward?: (
    probs: Float32Array,
    labels: Int32Array,
    k: number,
    scale: number,
  ) => Float32Array;
  /**
   * `conv2d`'s whole GEMM path forward (groups 1): im2col, `cols W^T` on
   * the kernel set's own GEMM, then NCHW plus bias, with the column matrix
   * kept inside the kernel. With {@link OpKernels.conv2dGemmBackward} it
   * replaces the pieces of that path (im2col, the scoped GEMM, the
   * transposes, col2im, the bias gradient) whenever `conv2d` takes it,
   * i.e. inside a `withGemm` scope. Bit for bit the pieced path run with
   * the same GEMM.
   */
  readonly conv2dGemmForward?: (
    x: Float32Array,
    w: Float32Array,
    bias: Float32Array | null,
    geometry: ConvGeometry,
  ) => Float32Array;
  /**
   * `conv2d`'s whole GEMM path backward from the output gradient `dy`
   * (NCHW): `dx` (when `needInput`, else null), `dw`, and `db` (when
   * `needBias`, else null); see {@link OpKernels.conv2dGemmForward}.
   */
  readonly conv2dGemmBackward?: (
    x: Float32Array,
    w: Float32Array,
    dy: Float32Array,
    geometry: ConvGeometry,
    needInput: boolean,
    needBias: boolean,
  ) => { dx: Float32Array | null; dw: Float32Array; db: Float32Array | null };
  /** The column matrix `[N OH OW, C KH KW]` of a conv input (`conv2d`'s GEMM path). */
  readonly im2col?: (x: Float32Array, geometry: ConvGeometry) => Float32Array;
  /** The adjoint of `im2col`: column entries summed back into `[N, C, H, W]`. */
  readonly col2im?: (
    cols: Float32Array,
    geometry: ConvGeometry,
  ) => Float32Array;
  /** Pixel rows `[N, P, O]` to NCHW `[N, O, P]`, plus a bias per channel. */
  readonly rowsToNchw?: (
    rows: Float32Array,
    n: number,
    p: number,
    o: number,
    bias: Float32Array | null,
  ) => Float32Array;
  /** NCHW `[N, O, P]` to pixel rows `[N, P, O]`. */
  readonly nchwToRows?: (
    y: Float32Array,
    n: number,
    p: number,
    o: number,
  ) => Float32Array;
  /** `a[r, j] + bias[j]` over a `[rows, cols]` matrix (`dense`'s bias). */
  readonly addBias?: (
    a: Float32Array,
    cols: number,
    bias: Float32Array,
  ) => Float32Array;
  /**
   * Column sums of a `[rows, cols]` matrix in float32, rows in order (the
   * bias gradients of `dense` and `conv2d`).
   */
  readonly biasGrad?: (a: Float32Array, cols: number) => Float32Array;
  /** One Adam update of one parameter (used by `adam`'s `update`). */
  readonly adamUpdate?: (step: AdamStep) => AdamResult;
}

let active: OpKernels | null = null;

/**
 * The kernels the ops use now: those of the innermost {@link withKernels}
 * scope, or `null` outside every scope (every op runs its reference).
 *
 * @returns The scoped kernels, or `null`.
 *
 * @example
 * ```ts
 * import { currentKernels, type OpKernels, withKernels } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const kernels: OpKernels = {};
 * assert.equal(currentKernels(), null);
 * withKernels(kernels, () => assert.equal(currentKernels(), kernels));
 * ```
 */
export function currentKernels(): OpKernels | null {
  return active;
}

/**
 * Runs `body` with `kernels` as the implementations of the training ops
 * (relu/relu6, max and average pools, batch norm, softmax cross-entropy,
 * the conv GEMM path's im2col/col2im and transposes, bias add and bias
 * gradients, the Adam update); ops without a kernel in the set run their
 * references. Scoped like `withGemm`: scopes nest, the innermost wins, the
 * previous set is restored when `body` returns or throws, and an op
 * captures the kernels when it runs forward, so its backward pass uses the
 * same ones. `body` must be synchronous.
 *
 * @param kernels The kernels (e.g. `wasmKernels`, or a `WasmBackend`'s
 *   `kernels`), or `null` for the references.
 * @param body The computation (forward, a whole `valueAndGrad` call, or an
 *   optimizer update).
 * @returns What `body` returns.
 *
 * @example ReLU on the WASM SIMD kernels
 * ```ts
 * import { relu, Tensor, wasmKernels, withKernels } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const y = withKernels(wasmKernels, () => relu(Tensor.from([-1, 0.5, 2])));
 * assert.deepEqual([...y.toFloat32Array()], [0, 0.5, 2]);
 * ```
 */
export function withKernels<T>(kernels: OpKernels | null, body: () => T): T {
  const outer = active;
  active = kernels;
  try {
    return body();
  } finally {
    active = outer;
  }
}
