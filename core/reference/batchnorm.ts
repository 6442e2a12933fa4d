/**
 * Reference kernels of the batch-norm family over `[N, C, area]`: float64
 * statistics (two passes, sample-then-pixel order), normalisation, running
 * statistics (PyTorch's momentum and unbiased variance), and the backward
 * pass in training and evaluation mode.
 *
 * @module
 */

import type { ChannelLayout } from "../kernels.ts";

/** Per-channel mean and biased variance in float64, two passes. */
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
        const d = xs[(s * c + ch) * area + p] - mean[ch];
        s2 += d * d;
      }
    }
    variance[ch] = s2 / count;
  }
  return { mean, variance };
}

/** `xhat = (x - mean) invStd` and `y = gamma xhat + beta` (xhat rounded first). */
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

/** The new running statistics after a training batch (float32 results). */
export function runningStatisticsReference(
  runningMean: Float32Array,
  runningVariance: Float32Array,
  mean: Float64Array,
  variance: Float64Array,
  count: number,
  momentum: number,
): { mean: Float32Array; variance: Float32Array } {
  const unbiased = count > 1 ? count / (count - 1) : 1;
  return {
    mean: runningMean.map((m, ch) => (1 - momentum) * m + momentum * mean[ch]),
    variance: runningVariance.map((v, ch) =>
      (1 - momentum) * v + momentum * variance[ch] * unbiased
    ),
  };
}

/** `1 / sqrt(variance + eps)` per channel, float64. */
export function inverseStd(variance: Float64Array, eps: number): Float64Array {
  return variance.map((v) => 1 / Math.sqrt(v + eps));
}

/** Batch-norm backward (training mode through the batch statistics, or evaluation). */
export function batchNormBackwardReference(
  g: Float32Array,
  xhat: Float32Array,
  layout: ChannelLayout,
  gs: Float32Array,
  invStd: ArrayLike<number>,
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
