/**
 * Softmax cross-entropy with integer labels.
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import type { Tensor } from "../tensor.ts";

/**
 * Mean softmax cross-entropy of `[N, K]` logits against integer labels,
 * computed stably (max-shifted log-sum-exp in float64).
 *
 * @param logits `[N, K]`.
 * @param labels `N` integers in `[0, K)`: an `int32` tensor on the logits'
 *   device (trusted), or host numbers (checked, then uploaded).
 * @returns A one-element tensor; its gradient is `(softmax - onehot) / N`.
 * @throws {RangeError} On a label count or value that does not fit.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { softmaxCrossEntropy } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * const loss = softmaxCrossEntropy(Tensor.from([0, 0], [1, 2]), [1]);
 * assert.ok(Math.abs(loss.get(0) - Math.log(2)) < 1e-6);
 * ```
 */
export function softmaxCrossEntropy(
  logits: Tensor,
  labels: Tensor | ArrayLike<number>,
): Tensor {
  const count = "shape" in labels ? labels.size : labels.length;
  if (logits.shape.length !== 2 || count !== logits.shape[0]) {
    throw new RangeError(
      `softmaxCrossEntropy: logits [${
        logits.shape.join(", ")
      }] and ${count} labels do not fit`,
    );
  }
  const k = logits.device.kernels;
  const classes = labelTensor(logits, labels);
  const { loss, probs } = k.softmaxCrossEntropy(logits, classes);
  return recordOp(
    loss,
    [logits],
    (g) => [k.softmaxCrossEntropyBackward(probs, classes, g)],
  );
}

/**
 * Labels as an `int32` tensor on the logits' device: a tensor as given, host
 * numbers checked to be integers in `[0, K)`.
 *
 * @param logits `[N, K]` logits.
 * @param labels The labels.
 * @returns The labels tensor.
 * @throws {RangeError} On a label outside `[0, K)` or a float tensor.
 */
export function labelTensor(
  logits: Tensor,
  labels: Tensor | ArrayLike<number>,
): Tensor {
  if ("shape" in labels) {
    if (labels.dtype !== "int32") {
      throw new RangeError(
        `Labels must be an int32 tensor, got ${labels.dtype}`,
      );
    }
    return labels;
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
  return logits.device.upload(Int32Array.from(labels), [n], "int32");
}
