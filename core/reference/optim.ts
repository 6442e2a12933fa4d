/**
 * Reference kernels of the optimizer family: one Adam or SGD update of one
 * parameter, float64 per element, each result rounded to float32 as it is
 * stored (the new moments before the parameter uses them).
 *
 * @module
 */

import type { AdamHyper, SgdHyper } from "../kernels.ts";

/** One Adam update (see `Kernels.adamUpdate`). */
export function adamUpdateReference(
  theta: Float32Array,
  grad: Float32Array,
  m0: Float32Array,
  v0: Float32Array,
  hyper: AdamHyper,
): { theta: Float32Array; m: Float32Array; v: Float32Array } {
  const { beta1, beta2, eps, weightDecay, stepSize, sqrtCorrection2 } = hyper;
  const m = new Float32Array(theta.length);
  const v = new Float32Array(theta.length);
  const out = new Float32Array(theta.length);
  for (let i = 0; i < theta.length; i++) {
    const g = grad[i] + weightDecay * theta[i];
    m[i] = beta1 * m0[i] + (1 - beta1) * g;
    v[i] = beta2 * v0[i] + (1 - beta2) * g * g;
    out[i] = theta[i] -
      stepSize * m[i] / (Math.sqrt(v[i]) / sqrtCorrection2 + eps);
  }
  return { theta: out, m, v };
}

/** One SGD update (see `Kernels.sgdUpdate`). */
export function sgdUpdateReference(
  theta: Float32Array,
  grad: Float32Array,
  b0: Float32Array | null,
  hyper: SgdHyper,
): { theta: Float32Array; momentum: Float32Array | null } {
  const { lr, momentum, nesterov, weightDecay } = hyper;
  const out = new Float32Array(theta.length);
  if (b0 === null) {
    for (let i = 0; i < theta.length; i++) {
      out[i] = theta[i] - lr * (grad[i] + weightDecay * theta[i]);
    }
    return { theta: out, momentum: null };
  }
  const b = new Float32Array(theta.length);
  for (let i = 0; i < theta.length; i++) {
    const g = grad[i] + weightDecay * theta[i];
    b[i] = momentum * b0[i] + g;
    const d = nesterov ? g + momentum * b[i] : b[i];
    out[i] = theta[i] - lr * d;
  }
  return { theta: out, momentum: b };
}
