/**
 * Softmax cross-entropy with integer labels.
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import { Tensor, tensorStorage } from "../tensor.ts";
import { currentKernels } from "./kernels.ts";

/**
 * Mean softmax cross-entropy of `[N, K]` logits against integer labels,
 * computed stably (max-shifted log-sum-exp in float64).
 *
 * @param logits `[N, K]`.
 * @param labels `N` integers in `[0, K)`.
 * @returns A one-element tensor; its gradient is `(softmax - onehot) / N`.
 * @throws {RangeError} On a label count or value that does not fit.
 *
 * @example
 * ```ts
 * import { softmaxCrossEntropy, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const loss = softmaxCrossEntropy(Tensor.from([0, 0], [1, 2]), new Int32Array([1]));
 * assert.ok(Math.abs(loss.get(0) - Math.log(2)) < 1e-6);
 * ```
 */
export function softmaxCrossEntropy(
  logits: Tensor,
  labels: ArrayLike<number>,
): Tensor {
  if (logits.shape.length !== 2 || labels.length !== logits.shape[0]) {
    throw new RangeError(
      `softmaxCrossEntropy: logits [${
        logits.shape.join(", ")
      }] and ${labels.length} labels do not fit`,
    );
  }
  const [n, k] = logits.shape;
  for (let i = 0; i < n; i++) {
    const label = labels[i];
    if (!Number.isInteger(label) || label < 0 || label >= k) {
      throw new RangeError(
        `softmaxCrossEntropy: label ${i} is ${label}, expected 0..${k - 1}`,
      );
    }
  }
  const classes = Int32Array.from(labels);
  const kernels = currentKernels();
  const forward = kernels?.softmaxCrossEntropy ??
    softmaxCrossEntropyReference;
  const backward = kernels?.softmaxCrossEntropyBackward ??
    softmaxCrossEntropyBackwardReference;
  const { total, probs } = forward(tensorStorage(logits), classes, k);
  return recordOp(
    Tensor.from([total / n], [1]),
    [logits],
    (g) => [backward(probs, classes, k, g[0])],
  );
}

/**
 * The reference of `softmaxCrossEntropy`'s forward kernel
 * (`OpKernels.softmaxCrossEntropy`): per row, float64 max-shifted
 * log-sum-exp; returns the summed loss and the softmax.
 */
export function softmaxCrossEntropyReference(
  z: Float32Array,
  labels: Int32Array,
  k: number,
): { total: number; probs: Float32Array } {
  const n = labels.length;
  const probs = new Float32Array(z.length);
  let total = 0;
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let j = 0; j < k; j++) max = Math.max(max, z[i * k + j]);
    let s = 0;
    for (let j = 0; j < k; j++) s += Math.exp(z[i * k + j] - max);
    for (let j = 0; j < k; j++) {
      probs[i * k + j] = Math.exp(z[i * k + j] - max) / s;
    }
    total += Math.log(s) + max - z[i * k + labels[i]];
  }
  return { total, probs };
}

/**
 * The reference of `softmaxCrossEntropy`'s backward kernel
 * (`OpKernels.softmaxCrossEntropyBackward`): `scale (probs - onehot) / N`.
 */
export function softmaxCrossEntropyBackwardReference(
  probs: Float32Array,
  labels: Int32Array,
  k: number,
  scale: number,
): Float32Array {
  const n = labels.length;
  const dz = new Float32Array(probs.length);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) {
      dz[i * k + j] = (scale * (probs[i * k + j] - (j === labels[i] ? 1 : 0))) /
        n;
    }
  }
  return dz;
}
