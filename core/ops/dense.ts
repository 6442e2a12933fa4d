/**
 * Dense (fully connected) layer: `y = x W^T + b`.
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import { Tensor, tensorStorage } from "../tensor.ts";
import { currentGemm, gemmReference } from "./gemm.ts";

/**
 * A dense layer. `x` is `[N, I]`, `w` is `[O, I]` (rows are output
 * channels, as in the spec's pruning convention), `b` is `[O]`.
 *
 * The three products run on the GEMM of the enclosing `withGemm` scope
 * (captured when the op runs, so the VJP uses the same one), else on
 * {@link gemmReference}.
 *
 * @param x Input batch.
 * @param w Weights.
 * @param b Bias (optional).
 * @returns `[N, O]`.
 * @throws {RangeError} On mismatched shapes.
 *
 * @example
 * ```ts
 * import { dense, Tensor } from "@bbits/core";
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
  const xs = tensorStorage(x);
  const ws = tensorStorage(w);
  const gemm = currentGemm() ?? gemmReference;
  const y = gemm(
    { m: n, n: outputs, k: inputs, transB: true },
    xs,
    ws,
  );
  if (b) {
    const bs = tensorStorage(b);
    for (let i = 0; i < n; i++) {
      for (let o = 0; o < outputs; o++) y[i * outputs + o] += bs[o];
    }
  }
  const inputsList = b ? [x, w, b] : [x, w];
  return recordOp(Tensor.adopt(y, [n, outputs]), inputsList, (g, needsGrad) => {
    const dx = needsGrad[0]
      ? gemm({ m: n, n: inputs, k: outputs }, g, ws)
      : null;
    const dw = gemm(
      { m: outputs, n: inputs, k: n, transA: true },
      g,
      xs,
    );
    if (!b) return [dx, dw];
    const db = new Float32Array(outputs);
    for (let i = 0; i < n; i++) {
      for (let o = 0; o < outputs; o++) db[o] += g[i * outputs + o];
    }
    return [dx, dw, db];
  });
}
