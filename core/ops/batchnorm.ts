/**
 * Batch normalisation over the channel axis (axis 1) of `[N, C]` or
 * `[N, C, H, W]` tensors: training statistics, running statistics, and
 * folding into the preceding conv / dense layer.
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import { Tensor, tensorStorage } from "../tensor.ts";
import { type ChannelLayout, currentKernels } from "./kernels.ts";

/** Running statistics of a batch-norm layer. */
export interface BatchNormStats {
  /** Running mean per channel. */
  readonly mean: Tensor;
  /** Running (unbiased) variance per channel. */
  readonly variance: Tensor;
}

/** Options of {@link batchNorm}. */
export interface BatchNormOptions {
  /** `"train"` normalises with the batch statistics; `"eval"` with the running ones. */
  readonly mode: "train" | "eval";
  /** Running statistics (required in eval mode; updated in train mode). */
  readonly stats?: BatchNormStats;
  /** Running-average momentum, PyTorch convention (default 0.1). */
  readonly momentum?: number;
  /** Added to the variance (default 1e-5). */
  readonly eps?: number;
}

function layout(x: Tensor, op: string): ChannelLayout {
  if (x.shape.length !== 2 && x.shape.length !== 4) {
    throw new RangeError(
      `${op}: input must be [N, C] or [N, C, H, W], got [${
        x.shape.join(", ")
      }]`,
    );
  }
  const area = x.shape.length === 4 ? x.shape[2] * x.shape[3] : 1;
  return { n: x.shape[0], c: x.shape[1], area };
}

/**
 * Batch normalisation `y = gamma (x - mean) / sqrt(var + eps) + beta`.
 * In train mode the batch mean and biased variance normalise, and the new
 * running statistics (unbiased variance, PyTorch convention) are returned.
 *
 * @param x `[N, C]` or `[N, C, H, W]`.
 * @param gamma Scale `[C]`.
 * @param beta Shift `[C]`.
 * @param options Mode, statistics, momentum, eps.
 * @returns The output and the (new) running statistics.
 * @throws {RangeError} On mismatched shapes, or eval mode without statistics.
 *
 * @example
 * ```ts
 * import { batchNorm, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const { output } = batchNorm(Tensor.from([1, 3], [2, 1]), Tensor.from([1]), Tensor.from([0]), {
 *   mode: "train",
 * });
 * assert.ok(Math.abs(output.get(0, 0) + 1) < 1e-4); // (1 - 2) / 1
 * ```
 */
export function batchNorm(
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  options: BatchNormOptions,
): { output: Tensor; stats: BatchNormStats | undefined } {
  const channels = layout(x, "batchNorm");
  const { n, c, area } = channels;
  for (const [name, t] of [["gamma", gamma], ["beta", beta]] as const) {
    if (t.shape.length !== 1 || t.shape[0] !== c) {
      throw new RangeError(
        `batchNorm: ${name} has shape [${t.shape.join(", ")}], expected [${c}]`,
      );
    }
  }
  const eps = options.eps ?? 1e-5;
  const momentum = options.momentum ?? 0.1;
  const xs = tensorStorage(x);
  const count = n * area;
  const kernels = currentKernels();
  let mean: Float64Array;
  let variance: Float64Array;
  let stats = options.stats;
  if (options.mode === "train") {
    ({ mean, variance } = (kernels?.batchNormStatistics ??
      batchNormStatisticsReference)(xs, channels));
    if (options.stats) {
      const rm = tensorStorage(options.stats.mean);
      const rv = tensorStorage(options.stats.variance);
      const unbiased = count > 1 ? count / (count - 1) : 1;
      stats = {
        mean: Tensor.from(
          rm.map((m, ch) => (1 - momentum) * m + momentum * mean[ch]),
        ),
        variance: Tensor.from(
          rv.map((v, ch) =>
            (1 - momentum) * v + momentum * variance[ch] * unbiased
          ),
        ),
      };
    }
  } else {
    if (!options.stats) {
      throw new RangeError("batchNorm: eval mode needs running statistics");
    }
    mean = Float64Array.from(tensorStorage(options.stats.mean));
    variance = Float64Array.from(tensorStorage(options.stats.variance));
  }
  const invStd = variance.map((v) => 1 / Math.sqrt(v + eps));
  const gs = tensorStorage(gamma);
  const { xhat, y } = (kernels?.batchNormNormalize ??
    batchNormNormalizeReference)(
      xs,
      channels,
      mean,
      invStd,
      gs,
      tensorStorage(beta),
    );
  const train = options.mode === "train";
  const backward = kernels?.batchNormBackward ?? batchNormBackwardReference;
  const output = recordOp(Tensor.adopt(y, x.shape), [x, gamma, beta], (g) => {
    const { dx, dgamma, dbeta } = backward(
      g,
      xhat,
      channels,
      gs,
      invStd,
      train,
    );
    return [dx, dgamma, dbeta];
  });
  return { output, stats };
}

/**
 * The reference of `batchNorm`'s statistics kernel
 * (`OpKernels.batchNormStatistics`): float64 sums in sample-then-pixel
 * order, the variance from the mean in a second pass.
 */
export function batchNormStatisticsReference(
  xs: Float32Array,
  layout: ChannelLayout,
): { mean: Float64Array; variance: Float64Array } {
  const { n, c, area } = layout;
  const count = n * area;
  const mean = new Float64Array(c);
  const variance = new Float64Array(c);
  for (let ch = 0; ch < c; ch++) {
    let s1 = 0;
    for (let s = 0; s < n; s++) {
      for (let p = 0; p < area; p++) s1 += xs[(s * c + ch) * area + p];
    }
    mean[ch] = s1 / count;
    let s2 = 0;
    for (let s = 0; s < n; s++) {
      for (let p = 0; p < area; p++) {
        s2 += (xs[(s * c + ch) * area + p] - mean[ch]) ** 2;
      }
    }
    variance[ch] = s2 / count;
  }
  return { mean, variance };
}

/** The reference of `batchNorm`'s forward kernel (`OpKernels.batchNormNormalize`). */
export function batchNormNormalizeReference(
  xs: Float32Array,
  layout: ChannelLayout,
  mean: Float64Array,
  invStd: Float64Array,
  gs: Float32Array,
  bs: Float32Array,
): { xhat: Float32Array; y: Float32Array } {
  const { n, c, area } = layout;
  const xhat = new Float32Array(xs.length);
  const y = new Float32Array(xs.length);
  for (let s = 0; s < n; s++) {
    for (let ch = 0; ch < c; ch++) {
      for (let p = 0; p < area; p++) {
        const i = (s * c + ch) * area + p;
        xhat[i] = (xs[i] - mean[ch]) * invStd[ch];
        y[i] = gs[ch] * xhat[i] + bs[ch];
      }
    }
  }
  return { xhat, y };
}

/** The reference of `batchNorm`'s backward kernel (`OpKernels.batchNormBackward`). */
export function batchNormBackwardReference(
  g: Float32Array,
  xhat: Float32Array,
  layout: ChannelLayout,
  gs: Float32Array,
  invStd: Float64Array,
  train: boolean,
): { dx: Float32Array; dgamma: Float32Array; dbeta: Float32Array } {
  const { n, c, area } = layout;
  const count = n * area;
  const index = (s: number, ch: number, p: number) => (s * c + ch) * area + p;
  const dgamma = new Float32Array(c);
  const dbeta = new Float32Array(c);
  const dx = new Float32Array(g.length);
  for (let ch = 0; ch < c; ch++) {
    let sg = 0;
    let sgx = 0;
    for (let s = 0; s < n; s++) {
      for (let p = 0; p < area; p++) {
        const i = index(s, ch, p);
        sg += g[i];
        sgx += g[i] * xhat[i];
      }
    }
    dgamma[ch] = sgx;
    dbeta[ch] = sg;
    for (let s = 0; s < n; s++) {
      for (let p = 0; p < area; p++) {
        const i = index(s, ch, p);
        dx[i] = train
          ? (gs[ch] * invStd[ch] / count) *
            (count * g[i] - sg - xhat[i] * sgx)
          : g[i] * gs[ch] * invStd[ch];
      }
    }
  }
  return { dx, dgamma, dbeta };
}

/**
 * Folds an eval-mode batch norm into the preceding conv / dense layer:
 * `w' = w * gamma / sqrt(var + eps)` per output channel (axis 0) and
 * `b' = (b - mean) * gamma / sqrt(var + eps) + beta`.
 *
 * @param w Weights, output channels on axis 0.
 * @param b Bias `[O]`, or undefined for none.
 * @param gamma Batch-norm scale `[O]`.
 * @param beta Batch-norm shift `[O]`.
 * @param stats Running statistics.
 * @param eps Added to the variance (default 1e-5).
 * @returns The folded weights and bias.
 * @throws {RangeError} On mismatched channel counts.
 *
 * @example
 * ```ts
 * import { foldBatchNorm, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const { w, b } = foldBatchNorm(Tensor.from([2], [1, 1]), undefined, Tensor.from([3]), Tensor.from([1]), {
 *   mean: Tensor.from([0.5]),
 *   variance: Tensor.from([4]),
 * }, 0);
 * assert.equal(w.get(0, 0), 3); // 2 * 3 / 2
 * assert.equal(b.get(0), 0.25); // (0 - 0.5) * 3 / 2 + 1
 * ```
 */
export function foldBatchNorm(
  w: Tensor,
  b: Tensor | undefined,
  gamma: Tensor,
  beta: Tensor,
  stats: BatchNormStats,
  eps = 1e-5,
): { w: Tensor; b: Tensor } {
  const o = w.shape[0];
  for (
    const t of [gamma, beta, stats.mean, stats.variance, ...(b ? [b] : [])]
  ) {
    if (t.size !== o) {
      throw new RangeError(
        `foldBatchNorm: ${o} output channels but a vector of ${t.size}`,
      );
    }
  }
  const per = w.size / o;
  const ws = tensorStorage(w);
  const g = tensorStorage(gamma);
  const factor = tensorStorage(stats.variance).map((v, c) =>
    g[c] / Math.sqrt(v + eps)
  );
  const folded = ws.map((v, i) => v * factor[Math.floor(i / per)]);
  const bias0 = b ? tensorStorage(b) : new Float32Array(o);
  const mean = tensorStorage(stats.mean);
  const bt = tensorStorage(beta);
  const foldedBias = bias0.map((v, c) => (v - mean[c]) * factor[c] + bt[c]);
  return { w: Tensor.adopt(folded, w.shape), b: Tensor.adopt(foldedBias, [o]) };
}
