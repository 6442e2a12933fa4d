/**
 * The reference GEMM: `C = op(A) * op(B)` in plain TypeScript, float64
 * accumulation rounded once to float32. The three products a dense layer's
 * training step needs are forward (`x * W^T`), grad-input (`dy * W`) and
 * grad-weight (`dy^T * x`); all are this one routine with transposes.
 *
 * @module
 */

/** Shape and layout of one GEMM; matrices are row-major. */
export interface GemmShape {
  /** Rows of `op(A)` and `C`. */
  readonly m: number;
  /** Columns of `op(B)` and `C`. */
  readonly n: number;
  /** Columns of `op(A)` = rows of `op(B)`. */
  readonly k: number;
  /** `A` is stored `k x m` and used transposed. */
  readonly transA?: boolean;
  /** `B` is stored `n x k` and used transposed. */
  readonly transB?: boolean;
}

/**
 * `C[m x n] = op(A) * op(B)` (plain loops, the oracle of every fast GEMM).
 *
 * @param shape Sizes and transposes.
 * @param a `A`, `m x k` (or `k x m` with `transA`).
 * @param b `B`, `k x n` (or `n x k` with `transB`).
 * @returns A new `m x n` Float32Array.
 * @throws {RangeError} If an array's length does not match the shape.
 *
 * @example
 * ```ts
 * import { gemmReference } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const c = gemmReference({ m: 1, n: 2, k: 2 }, new Float32Array([1, 2]), new Float32Array([1, 2, 3, 4]));
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
