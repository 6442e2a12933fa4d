/**
 * Reference kernels of the matrix family: the GEMM (float64 accumulation
 * rounded once to float32, the oracle of every fast GEMM), the bias add and
 * the bias gradient.
 *
 * @module
 */

import type { GemmShape } from "../kernels.ts";

/**
 * `C[m x n] = op(A) * op(B)` in plain loops.
 *
 * @param shape Sizes and transposes.
 * @param a `A`, `m x k` (or `k x m` with `transA`).
 * @param b `B`, `k x n` (or `n x k` with `transB`).
 * @returns A new `m x n` Float32Array.
 * @throws {RangeError} If an array's length does not match the shape.
 *
 * @example
 * ```ts
 * import { gemmReference } from "./matrix.ts";
 * import assert from "node:assert/strict";
 *
 * const c = gemmReference({ m: 1, n: 2, k: 2, transA: false, transB: false }, new Float32Array([1, 2]), new Float32Array([1, 2, 3, 4]));
 * assert.deepEqual([...c], [7, 10]);
 * ```
 */
export function gemmReference(
  shape: GemmShape,
  a: Float32Array,
  b: Float32Array,
): Float32Array {
  const { m, n, k } = shape;
  if (a.length !== m * k || b.length !== k * n) {
    throw new RangeError(
      `gemm: A has ${a.length} elements (expected ${
        m * k
      }), B has ${b.length} (expected ${k * n})`,
    );
  }
  const c = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) {
        const av = shape.transA ? a[p * m + i] : a[i * k + p];
        const bv = shape.transB ? b[j * k + p] : b[p * n + j];
        acc += av * bv;
      }
      c[i * n + j] = acc;
    }
  }
  return c;
}

/** `a[r, j] + bias[j]` over a row-major `[rows, cols]` matrix. */
export function addBiasReference(
  a: Float32Array,
  bias: Float32Array,
): Float32Array {
  const cols = bias.length;
  const out = new Float32Array(a.length);
  const rows = cols > 0 ? a.length / cols : 0;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      out[r * cols + j] = a[r * cols + j] + bias[j];
    }
  }
  return out;
}

/** Column sums of a row-major `[rows, cols]` matrix, float32, row by row. */
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
