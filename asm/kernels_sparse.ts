/**
 * The sparse path of the WASM device's GEMM (`asm/src/gemm_sparse.ts`):
 * when most of `op(A)` is zero, as in the backward GEMMs of a layer followed
 * by a ReLU and a max-pool and in the forward products of the quantized
 * activations that follow them, the kernels that skip `A`'s zeros replace
 * the dense GEMM. They sum in the dense kernel's order, so the result is the
 * same bit for bit provided `op(B)` is finite; that is checked on every
 * call (by the caller, which may check what `op(B)` is copied from), and a
 * non-finite `op(B)` takes the dense path.
 *
 * The choice only changes the speed: the sparse path is taken when at least
 * {@link SPARSE_MIN_ZEROS} of `A` (estimated on a sample) is zero, `op(B)`
 * is not transposed and `C` has at least {@link SPARSE_MIN_COLUMNS}
 * columns.
 *
 * @module
 */

import type { GemmShape } from "../core/kernels.ts";
import type { WasmDevice } from "./device.ts";
import { splitChunks, splitGemm } from "./pool.ts";

/**
 * The fraction of zeros in `A` from which the sparse kernels win. Each
 * nonzero of `A` costs them about twice what the dense kernel spends per
 * element (a row of `B` is loaded per nonzero instead of once per four
 * rows of `C`, and every WASM load is bounds-checked), measured on the
 * shapes of LeNet-5's backward pass: they are 2-4 times faster at 85 %
 * zeros and about even at 50 %.
 */
export const SPARSE_MIN_ZEROS = 0.6;
/** Fewest columns of `C` for the sparse path (narrower rows waste its chunks). */
export const SPARSE_MIN_COLUMNS = 32;
/** Elements of `A` sampled for its zero fraction (in 16 evenly spaced runs). */
const SAMPLE_ELEMENTS = 1 << 16;
const SAMPLE_RUNS = 16;

/**
 * The fraction of zeros among `count` float32 elements at `ptr`, counted
 * over all of them or, for large arrays, over evenly spaced runs.
 *
 * @param dev The device.
 * @param ptr Byte offset of the elements.
 * @param count Elements.
 * @returns A fraction in [0, 1] (0 for no elements).
 */
export function zeroFraction(
  dev: WasmDevice,
  ptr: number,
  count: number,
): number {
  if (count <= 0) return 0;
  if (count <= SAMPLE_ELEMENTS) {
    const nonzero = dev.call("nonzeroCount", { x: ptr, begin: 0, end: count });
    return 1 - nonzero / count;
  }
  const run = SAMPLE_ELEMENTS / SAMPLE_RUNS;
  const stride = Math.floor((count - run) / (SAMPLE_RUNS - 1));
  let nonzero = 0;
  for (let r = 0; r < SAMPLE_RUNS; r++) {
    const begin = r * stride;
    nonzero += dev.call("nonzeroCount", { x: ptr, begin, end: begin + run });
  }
  return 1 - nonzero / SAMPLE_ELEMENTS;
}

/**
 * Whether all `count` float32 elements at `ptr` are finite.
 *
 * @param dev The device.
 * @param ptr Byte offset of the elements.
 * @param count Elements.
 * @returns True when none is infinite or NaN.
 */
export function allFinite(
  dev: WasmDevice,
  ptr: number,
  count: number,
): boolean {
  return dev.call("nonFiniteCount", { x: ptr, begin: 0, end: count }) === 0;
}

/**
 * Whether a GEMM of `shape` with `A` at `a` should take the sparse path
 * (without the finiteness check of `op(B)`, which the caller makes).
 *
 * @param dev The device.
 * @param shape The GEMM.
 * @param a Byte offset of `A`.
 * @returns True when `op(B)` is not transposed, `C` is wide enough and `A`
 *   mostly zeros.
 */
export function sparseWins(
  dev: WasmDevice,
  shape: GemmShape,
  a: number,
): boolean {
  const { m, n, k } = shape;
  if (shape.transB === true || n < SPARSE_MIN_COLUMNS || m * k === 0) {
    return false;
  }
  return zeroFraction(dev, a, m * k) >= SPARSE_MIN_ZEROS;
}

/**
 * `C = op(A) B` at byte offsets `a`, `b`, `c` by the sparse kernels, split
 * over the threads by rows or columns of `C` like the dense GEMM. `B` must
 * be finite and not transposed (the caller checks). Sizes are trusted.
 *
 * @param dev The device.
 * @param shape The GEMM (`transB` must be false).
 * @param a Byte offset of `A`.
 * @param b Byte offset of `B`.
 * @param c Byte offset of `C`.
 */
export function sparseGemmAt(
  dev: WasmDevice,
  shape: GemmShape,
  a: number,
  b: number,
  c: number,
): void {
  const { m, n, k } = shape;
  if (m * n === 0) return;
  const transA = shape.transA === true;
  const byRows = m >= n;
  // Threads by the work of the nonzeros (about a quarter of the dense flops).
  const jobs = splitGemm(dev, m, n, Math.max(1, Math.ceil(k / 4)));
  // Column chunks each list all of A's nonzeros again: fewer of them.
  const chunks = splitChunks(jobs, 4, byRows ? 4 : 2);
  const bytes = dev.call("gemmSparseScratchBytes", { k });
  dev.runChunks(
    transA ? "gemmSparseTransA" : "gemmSparseRows",
    chunks.map((job) => ({
      a,
      lda: transA ? m : k,
      b,
      ldb: n,
      c,
      ldc: n,
      k,
      i0: byRows ? job.begin : 0,
      i1: byRows ? job.end : m,
      j0: byRows ? 0 : job.begin,
      j1: byRows ? n : job.end,
      scratch: 0,
    })),
    bytes,
  );
}
