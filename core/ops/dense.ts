/**
 * Dense (fully connected) layer: `y = x W^T + b`.
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import { Tensor, tensorStorage } from "../tensor.ts";
import { currentGemm, gemmReference } from "./gemm.ts";
import { currentKernels } from "./kernels.ts";

/**
 * A dense layer. `x` is `[N, I]`, `w` is `[O, I]` (rows are output
 * channels, as in the spec's pruning convention), `b` is `[O]`.
 *
 * The three products run on the GEMM of the enclosing `withGemm` scope
 * (captured when the op runs, so the VJP uses the same one), else on
 * {@link gemmReference}; the bias add and bias gradient on the `addBias`
 * and `biasGrad` kernels of the enclosing `withKernels` scope, if any.
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
  const kernels = currentKernels();
  const biasGrad = kernels?.biasGrad ?? biasGradReference;
  let y = gemm(
    { m: n, n: outputs, k: inputs, transB: true },
    xs,
    ws,
  );
  if (b) {
    y = (kernels?.addBias ?? addBiasReference)(y, outputs, tensorStorage(b));
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
    return b ? [dx, dw, biasGrad(g, outputs)] : [dx, dw];
  });
}

/**
 * The reference of the bias add (`OpKernels.addBias`): `a[r, j] + bias[j]`
 * over a row-major `[rows, cols]` matrix, into a new array.
 */
export function addBiasReference(
  a: Float32Array,
  cols: number,
  bias: Float32Array,
): Float32Array {
  const out = new Float32Array(a.length);
  const rows = cols > 0 ? a.length / cols : 0;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      out[r * cols + j] = a[r * cols + j] + bias[j];
    }
  }
  return out;
}

/**
 * The reference of the bias gradient (`OpKernels.biasGrad`): column sums
 * of a row-major `[rows, cols]` matrix, accumulated in float32 row by row.
 */
export function biasGradReference(
  a: Float32Array,
  cols: number,
): Float32Array {
  const db = new Float32Array(cols);
  const rows = cols > 0 ? a.length / cols : 0;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) db[j] += a[r * cols + j];
  }
  return db;
}
