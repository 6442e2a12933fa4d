/**
 * Reference kernels of the loss and metrics family: softmax cross-entropy
 * (max-shifted log-sum-exp in float64) and the count of correct argmax
 * predictions.
 *
 * @module
 */

/** Per row the float64 max-shifted log-sum-exp; the summed loss and the softmax. */
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

/** `scale (probs - onehot) / N`. */
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

/** Rows of `[N, K]` logits whose first maximum is at the label. */
export function countCorrectReference(
  logits: Float32Array,
  labels: Int32Array,
  k: number,
): number {
  let correct = 0;
  for (let i = 0; i < labels.length; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) {
      if (logits[i * k + j] > logits[i * k + best]) best = j;
    }
    if (best === labels[i]) correct++;
  }
  return correct;
}
