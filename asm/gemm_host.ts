/**
 * A single-threaded host for the AssemblyScript GEMM kernel
 * (`asm/src/gemm.ts`): instantiates the shared kernel module
 * (`asm/kernels.generated.ts`) over its own memory, copies the operands in and the product out. Meant for tests
 * and as the reference of how to call the kernel; the multi-threaded backend
 * calls the same `gemm` export over its shared memory.
 *
 * @module
 */

import type { GemmShape } from "../core/ops/gemm.ts";
import { decodeBase64 } from "./base64.ts";
import { KERNELS_WASM_BASE64 } from "./kernels.generated.ts";

export type { GemmShape };

/** Maximum pages of the shared memory the module imports (`--maximumMemory`). */
const GEMM_MAX_PAGES = 65536;

/** The kernel module's exports (see the contract in `asm/src/gemm.ts`). */
interface GemmExports {
  gemm(
    a: number,
    b: number,
    c: number,
    m: number,
    n: number,
    k: number,
    lda: number,
    ldb: number,
    ldc: number,
    flags: number,
    i0: number,
    i1: number,
    j0: number,
    j1: number,
    scratch: number,
  ): void;
  gemmScratchBytes(k: number, cols: number): number;
}

const PAGE = 65536;

let instance: { exports: GemmExports; memory: WebAssembly.Memory } | null =
  null;

function kernel(): { exports: GemmExports; memory: WebAssembly.Memory } {
  if (instance === null) {
    // The module imports a shared memory (the same build serves threads).
    const memory = new WebAssembly.Memory({
      initial: 1,
      maximum: GEMM_MAX_PAGES,
      shared: true,
    });
    const module = new WebAssembly.Module(decodeBase64(KERNELS_WASM_BASE64));
    const exports = new WebAssembly.Instance(module, { env: { memory } })
      .exports as unknown as GemmExports;
    instance = { exports, memory };
  }
  return instance;
}

function align(bytes: number): number {
  return Math.ceil(bytes / 64) * 64;
}

/**
 * `C[m x n] = op(A) * op(B)` with the WASM SIMD kernel, single-threaded
 * (same contract as `gemmReference`; results differ from it only by float32
 * rounding: blocking and float32 accumulation).
 *
 * @param shape Sizes and transposes.
 * @param a `A`, `m x k` (or `k x m` with `transA`).
 * @param b `B`, `k x n` (or `n x k` with `transB`).
 * @returns A new `m x n` Float32Array.
 * @throws {RangeError} If an array's length does not match the shape.
 *
 * @example
 * ```ts
 * import { gemmWasm } from "./gemm_host.ts";
 * import assert from "node:assert/strict";
 *
 * // [1 2] * [[1 2] [3 4]] = [7 10]
 * const c = gemmWasm({ m: 1, n: 2, k: 2 }, new Float32Array([1, 2]), new Float32Array([1, 2, 3, 4]));
 * assert.deepEqual([...c], [7, 10]);
 * // transB: x W^T with W stored [out x in]
 * const y = gemmWasm({ m: 1, n: 2, k: 2, transB: true }, new Float32Array([1, 2]), new Float32Array([1, 3, 2, 4]));
 * assert.deepEqual([...y], [7, 10]);
 * ```
 */
export function gemmWasm(
  shape: GemmShape,
  a: Float32Array,
  b: Float32Array,
): Float32Array {
  const { m, n, k } = shape;
  for (const [name, v] of [["m", m], ["n", n], ["k", k]] as const) {
    if (!Number.isInteger(v) || v < 0) {
      throw new RangeError(
        `gemm: ${name} must be a non-negative integer, got ${v}`,
      );
    }
  }
  if (a.length !== m * k || b.length !== k * n) {
    throw new RangeError(
      `gemm: A has ${a.length} elements (expected ${
        m * k
      }), B has ${b.length} (expected ${k * n})`,
    );
  }
  const c = new Float32Array(m * n);
  if (c.length === 0) return c;
  const { exports, memory } = kernel();
  const transA = shape.transA === true;
  const transB = shape.transB === true;
  const pa = 64;
  const pb = pa + align(a.length * 4);
  const pc = pb + align(b.length * 4);
  const ps = pc + align(c.length * 4);
  const end = ps + align(exports.gemmScratchBytes(k, n));
  const pages = Math.ceil(end / PAGE) - memory.buffer.byteLength / PAGE;
  if (pages > 0) memory.grow(pages);
  const buffer = memory.buffer;
  new Float32Array(buffer, pa, a.length).set(a);
  new Float32Array(buffer, pb, b.length).set(b);
  exports.gemm(
    pa,
    pb,
    pc,
    m,
    n,
    k,
    transA ? m : k,
    transB ? k : n,
    n,
    (transA ? 1 : 0) | (transB ? 2 : 0),
    0,
    m,
    0,
    n,
    ps,
  );
  c.set(new Float32Array(memory.buffer, pc, c.length));
  return c;
}
