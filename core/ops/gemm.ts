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

/**
 * A GEMM implementation: `C[m x n] = op(A) * op(B)` into a new array, with
 * {@link gemmReference}'s contract (e.g. `wasmGemm` or a `WasmBackend`'s
 * `gemm` from `asm/backend.ts`).
 */
export type GemmFn = (
  shape: GemmShape,
  a: Float32Array,
  b: Float32Array,
) => Float32Array;

let activeGemm: GemmFn | null = null;

/**
 * The GEMM that `dense` and `conv2d` use now: the one of the innermost
 * {@link withGemm} scope, or `null` outside every scope (the ops then run
 * their reference paths: {@link gemmReference} for `dense`, the direct loop
 * for `conv2d`).
 *
 * @returns The scoped GEMM, or `null`.
 *
 * @example
 * ```ts
 * import { currentGemm, gemmReference, withGemm } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * assert.equal(currentGemm(), null);
 * withGemm(gemmReference, () => assert.equal(currentGemm(), gemmReference));
 * ```
 */
export function currentGemm(): GemmFn | null {
  return activeGemm;
}

/**
 * Runs `body` with `gemm` as the matrix backend of `dense` and `conv2d`
 * (scoped like the gradient tape of `valueAndGrad`; scopes nest, the
 * innermost wins, and the previous backend is restored when `body` returns
 * or throws). An op captures the GEMM when it runs forward, and its VJP
 * uses that same GEMM later, even outside the scope. `body` must be
 * synchronous: the scope ends when it returns (a promise it returns is not
 * awaited inside the scope).
 *
 * On the GEMM path `conv2d` (groups 1) is im2col + one GEMM forward, GEMM +
 * col2im for the input gradient and one GEMM for the weight gradient;
 * grouped convolutions keep the direct loop.
 *
 * @param gemm The GEMM to use, e.g. `wasmGemm`, or `null` for the reference paths.
 * @param body The computation (forward, or a whole `valueAndGrad` call).
 * @returns What `body` returns.
 *
 * @example Dense on the WASM SIMD kernel
 * ```ts
 * import { dense, Tensor, wasmGemm, withGemm } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const y = withGemm(wasmGemm, () =>
 *   dense(Tensor.from([1, 2], [1, 2]), Tensor.from([1, 1, 0, 1], [2, 2])));
 * assert.deepEqual([...y.toFloat32Array()], [3, 2]);
 * ```
 */
export function withGemm<T>(gemm: GemmFn | null, body: () => T): T {
  const outer = activeGemm;
  activeGemm = gemm;
  try {
    return body();
  } finally {
    activeGemm = outer;
  }
}
