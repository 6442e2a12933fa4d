/**
 * Batch normalisation over the channel axis (axis 1) of `[N, C]` or
 * `[N, C, H, W]` tensors: training statistics, running statistics, and
 * folding into the preceding conv / dense layer.
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import type { ChannelLayout } from "../kernels.ts";
import type { Tensor } from "../tensor.ts";

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
 * import { Tensor } from "@bbits/core";
 * import { batchNorm } from "@bbits/core/ops";
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
  for (const [name, t] of [["gamma", gamma], ["beta", beta]] as const) {
    if (t.shape.length !== 1 || t.shape[0] !== channels.c) {
      throw new RangeError(
        `batchNorm: ${name} has shape [${
          t.shape.join(", ")
        }], expected [${channels.c}]`,
      );
    }
  }
  const train = options.mode === "train";
  if (!train && !options.stats) {
    throw new RangeError("batchNorm: eval mode needs running statistics");
  }
  const k = x.device.kernels;
  const r = k.batchNorm(x, gamma, beta, options.stats ?? null, {
    layout: channels,
    train,
    momentum: options.momentum ?? 0.1,
    eps: options.eps ?? 1e-5,
  });
  const output = recordOp(r.y, [x, gamma, beta], (g) => {
    const { dx, dgamma, dbeta } = k.batchNormBackward(
      g,
      r.xhat,
      gamma,
      r.invStd,
      channels,
      train,
    );
    return [dx, dgamma, dbeta];
  });
  return { output, stats: train ? r.running ?? undefined : options.stats };
}

/**
 * Folds an eval-mode batch norm into the preceding conv / dense layer:
 * `w' = w * gamma / sqrt(var + eps)` per output channel (axis 0) and
 * `b' = (b - mean) * gamma / sqrt(var + eps) + beta` (float64, rounded).
 * Reads the tensors back: done once, when a model is prepared.
 *
 * @param w Weights, output channels on axis 0.
 * @param b Bias `[O]`, or undefined for none.
 * @param gamma Batch-norm scale `[O]`.
 * @param beta Batch-norm shift `[O]`.
 * @param stats Running statistics.
 * @param eps Added to the variance (default 1e-5).
 * @returns The folded weights and bias, on `w`'s device.
 * @throws {RangeError} On mismatched channel counts.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { foldBatchNorm } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * const { w, b } = await foldBatchNorm(Tensor.from([2], [1, 1]), undefined, Tensor.from([3]), Tensor.from([1]), {
 *   mean: Tensor.from([0.5]),
 *   variance: Tensor.from([4]),
 * }, 0);
 * assert.equal(w.get(0, 0), 3); // 2 * 3 / 2
 * assert.equal(b.get(0), 0.25); // (0 - 0.5) * 3 / 2 + 1
 * ```
 */
export async function foldBatchNorm(
  w: Tensor,
  b: Tensor | undefined,
  gamma: Tensor,
  beta: Tensor,
  stats: BatchNormStats,
  eps = 1e-5,
): Promise<{ w: Tensor; b: Tensor }> {
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
  const [ws, g, variance, mean, bt, bias0] = await Promise.all([
    w.read(),
    gamma.read(),
    stats.variance.read(),
    stats.mean.read(),
    beta.read(),
    b ? b.read() : Promise.resolve(new Float32Array(o)),
  ]);
  // float32 factors, as the folded weights were always computed.
  const factor = Float32Array.from(
    variance,
    (v, c) => g[c] / Math.sqrt(v + eps),
  );
  const folded = Float32Array.from(
    ws,
    (v, i) => v * factor[Math.floor(i / per)],
  );
  const foldedBias = Float32Array.from(
    bias0,
    (v, c) => (v - mean[c]) * factor[c] + bt[c],
  );
  return {
    w: w.device.upload(folded, w.shape),
    b: w.device.upload(foldedBias, [o]),
  };
}
