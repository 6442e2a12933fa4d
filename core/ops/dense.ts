/**
 * Dense (fully connected) layer: `y = x W^T + b`.
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import type { Tensor } from "../tensor.ts";

/**
 * A dense layer. `x` is `[N, I]`, `w` is `[O, I]` (rows are output
 * channels, as in the spec's pruning convention), `b` is `[O]`. The three
 * products (forward `x W^T`, grad-input `dY W`, grad-weight `dY^T x`) run on
 * the device's GEMM, the bias on its `addBias` and `biasGrad`.
 *
 * @param x Input batch.
 * @param w Weights.
 * @param b Bias (optional).
 * @returns `[N, O]`.
 * @throws {RangeError} On mismatched shapes or devices.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { dense } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * const y = dense(Tensor.from([1, 2], [1, 2]), Tensor.from([1, 1, 0, 1], [2, 2]), Tensor.from([0, 10]));
 * assert.deepEqual([...y.toFloat32Array()], [3, 12]);
 * ```
 */
export function dense(x: Tensor, w: Tensor, b?: Tensor): Tensor {
  if (
    x.shape.length !== 2 || w.shape.length !== 2 || x.shape[1] !== w.shape[1]
  ) {
    throw new RangeError(
      `dense: x [${x.shape.join(", ")}] and w [${
        w.shape.join(", ")
      }] do not fit (expected [N, I] and [O, I])`,
    );
  }
  const [n, inputs] = x.shape;
  const outputs = w.shape[0];
  if (b && (b.shape.length !== 1 || b.shape[0] !== outputs)) {
    throw new RangeError(
      `dense: bias has shape [${b.shape.join(", ")}], expected [${outputs}]`,
    );
  }
  const k = x.device.kernels;
  let y = k.gemm(x, w, {
    m: n,
    n: outputs,
    k: inputs,
    transB: true,
    transA: false,
  });
  if (b) y = k.addBias(y, b);
  const inputsList = b ? [x, w, b] : [x, w];
  return recordOp(y, inputsList, (g, needsGrad) => {
    const dx = needsGrad[0]
      ? k.gemm(g, w, {
        m: n,
        n: inputs,
        k: outputs,
        transA: false,
        transB: false,
      })
      : null;
    const dw = k.gemm(g, x, {
      m: outputs,
      n: inputs,
      k: n,
      transA: true,
      transB: false,
    });
    return b ? [dx, dw, k.biasGrad(g, outputs)] : [dx, dw];
  });
}
