/**
 * Softmax cross-entropy with integer labels.
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import { Tensor, tensorStorage } from "../tensor.ts";

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
  const z = tensorStorage(logits);
  const probs = new Float32Array(z.length);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const label = labels[i];
    if (!Number.isInteger(label) || label < 0 || label >= k) {
      throw new RangeError(
        `softmaxCrossEntropy: label ${i} is ${label}, expected 0..${k - 1}`,
      );
    }
    let max = -Infinity;
    for (let j = 0; j < k; j++) max = Math.max(max, z[i * k + j]);
    let s = 0;
    for (let j = 0; j < k; j++) s += Math.exp(z[i * k + j] - max);
    for (let j = 0; j < k; j++) {
      probs[i * k + j] = Math.exp(z[i * k + j] - max) / s;
    }
    total += Math.log(s) + max - z[i * k + label];
  }
  return recordOp(Tensor.from([total / n], [1]), [logits], (g) => {
    const dz = new Float32Array(z.length);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < k; j++) {
        dz[i * k + j] =
          (g[0] * (probs[i * k + j] - (j === labels[i] ? 1 : 0))) / n;
      }
    }
    return [dz];
  });
}
