/**
 * WGSL kernels of the matrix family: the tiled GEMM (a template that the
 * convolution kernels reuse with implicit operands), its split-K
 * reduction, the bias add and the bias gradient.
 *
 * Contract:
 * - GEMM `C[M x N] = A[M x K] B[K x N]` where `load_a(i, p)` and
 *   `load_b(p, j)` read the operands (a stored matrix, transposed or not,
 *   or an implicit one such as the column matrix of a convolution) and
 *   `store(i, j, v)` writes a result. A workgroup of 256 invocations owns a
 *   {@link TILE} x {@link TILE} output tile, each invocation a 4 x 4
 *   register tile; K advances in slices of {@link TILE_K} staged in
 *   workgroup memory. Any M, N, K: loads past an edge read 0, stores past
 *   an edge are skipped.
 * - Summation: float32, in K order within a split, with `a b + acc`
 *   possibly fused; the reference rounds one float64 sum, so results agree
 *   to about `K 2^-24` relative of the sum of the magnitudes (the GEMM
 *   tolerance of `core/kernels.ts`).
 * - Split-K: when the output has few tiles and K is long, workgroup `t`
 *   of split `s` covers K slice `s` and writes a partial `[M x N]` block;
 *   `gemm_reduce` adds the partials in split order.
 * - `addBias` and `biasGrad` are float32 in the reference's order (one
 *   invocation per column walks the rows): bit for bit.
 *
 * @module
 */

import type { GemmShape, Kernels } from "../../core/kernels.ts";
import type { GpuContext, KernelSource } from "./common.ts";
import { PRELUDE_WGSL } from "./common.ts";

/** Rows and columns of a workgroup's output tile. */
export const TILE = 64;
/** K elements staged per step. */
export const TILE_K = 16;

/** What a GEMM instance supplies to the template. */
export interface GemmParts {
  /** The kernel's name. */
  readonly name: string;
  /** Storage bindings from 1 (`"r"` / `"w"`). */
  readonly bindings: string;
  /** WGSL declarations of the storage bindings and helpers. */
  readonly declarations: string;
  /** `fn load_a(i: u32, p: u32) -> f32` (called with i < M, p < K). */
  readonly loadA: string;
  /** `fn load_b(p: u32, j: u32) -> f32`. */
  readonly loadB: string;
  /** `fn store(i: u32, j: u32, split: u32, v: f32)` (i < M, j < N). */
  readonly store: string;
  /** WGSL boolean: `p` is A's contiguous index (for the staging order). */
  readonly aPFast: string;
  /** WGSL boolean: `j` is B's contiguous index. */
  readonly bJFast: string;
}

/** Writes one thread's row of four results, dropping those outside `[M x N]`. */
const STORE_ROW_WGSL = /* wgsl */ `
fn store_row(i: u32, j: u32, split: u32, v: vec4<f32>) {
  let m = pu(2u);
  let n = pu(3u);
  if (i >= m) { return; }
  if (j < n) { store(i, j, split, v.x); }
  if (j + 1u < n) { store(i, j + 1u, split, v.y); }
  if (j + 2u < n) { store(i, j + 2u, split, v.z); }
  if (j + 3u < n) { store(i, j + 3u, split, v.w); }
}
`;

/**
 * The tiled GEMM kernel of `parts`. Words: 2 M, 3 N, 4 K, 5 tiles per row
 * of tiles, 6 tiles, 7 K per split (a multiple of {@link TILE_K}); the
 * instance's own words from 8.
 */
export function gemmSource(parts: GemmParts): KernelSource {
  return {
    name: parts.name,
    bindings: parts.bindings,
    workgroup: 256,
    code: PRELUDE_WGSL + parts.declarations + parts.loadA + parts.loadB +
      parts.store + /* wgsl */ `
var<workgroup> tile_a: array<f32, ${TILE * TILE_K}>;
var<workgroup> tile_b: array<f32, ${TILE * TILE_K}>;

@compute @workgroup_size(256)
fn ${parts.name}(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let m = pu(2u);
  let n = pu(3u);
  let k = pu(4u);
  let tiles = pu(6u);
  let lin = g.y * pu(0u) + g.x;
  let split = lin / tiles;
  let tile = lin % tiles;
  let chunk = pu(7u);
  if (split * chunk >= max(k, 1u)) { return; }
  let row0 = (tile / pu(5u)) * ${TILE}u;
  let col0 = (tile % pu(5u)) * ${TILE}u;
  let k0 = split * chunk;
  let k1 = min(k, k0 + chunk);
  let tx = l % 16u;
  let ty = l / 16u;
  let a_p_fast = ${parts.aPFast};
  let b_j_fast = ${parts.bJFast};
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  for (var p0 = k0; p0 < k1; p0 += ${TILE_K}u) {
    for (var e = l; e < ${TILE * TILE_K}u; e += 256u) {
      var ii = e % ${TILE}u;
      var pp = e / ${TILE}u;
      if (a_p_fast) {
        pp = e % ${TILE_K}u;
        ii = e / ${TILE_K}u;
      }
      var va = 0.0;
      if (row0 + ii < m && p0 + pp < k1) { va = load_a(row0 + ii, p0 + pp); }
      tile_a[pp * ${TILE}u + ii] = va;
      var jj = e % ${TILE}u;
      var qq = e / ${TILE}u;
      if (!b_j_fast) {
        qq = e % ${TILE_K}u;
        jj = e / ${TILE_K}u;
      }
      var vb = 0.0;
      if (col0 + jj < n && p0 + qq < k1) { vb = load_b(p0 + qq, col0 + jj); }
      tile_b[qq * ${TILE}u + jj] = vb;
    }
    workgroupBarrier();
    for (var pp = 0u; pp < ${TILE_K}u; pp++) {
      let ab = pp * ${TILE}u + ty * 4u;
      let bb = pp * ${TILE}u + tx * 4u;
      let a = vec4<f32>(tile_a[ab], tile_a[ab + 1u], tile_a[ab + 2u], tile_a[ab + 3u]);
      let b = vec4<f32>(tile_b[bb], tile_b[bb + 1u], tile_b[bb + 2u], tile_b[bb + 3u]);
      acc0 += a.x * b;
      acc1 += a.y * b;
      acc2 += a.z * b;
      acc3 += a.w * b;
    }
    workgroupBarrier();
  }
  store_row(row0 + ty * 4u, col0 + tx * 4u, split, acc0);
  store_row(row0 + ty * 4u + 1u, col0 + tx * 4u, split, acc1);
  store_row(row0 + ty * 4u + 2u, col0 + tx * 4u, split, acc2);
  store_row(row0 + ty * 4u + 3u, col0 + tx * 4u, split, acc3);
}
` + STORE_ROW_WGSL,
  };
}

/** Stores of a split-K instance: partial block `split` of `[M x N]`. */
export const SPLIT_STORE = /* wgsl */ `
fn store(i: u32, j: u32, split: u32, v: f32) {
  out[(split * pu(2u) + i) * pu(3u) + j] = v;
}
`;

const PLAIN_GEMM = gemmSource({
  name: "gemm_plain",
  bindings: "rrw",
  declarations: /* wgsl */ `
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
`,
  loadA: /* wgsl */ `
fn load_a(i: u32, p: u32) -> f32 {
  if (pu(8u) == 1u) { return a[p * pu(2u) + i]; }
  return a[i * pu(4u) + p];
}
`,
  loadB: /* wgsl */ `
fn load_b(p: u32, j: u32) -> f32 {
  if (pu(9u) == 1u) { return b[j * pu(4u) + p]; }
  return b[p * pu(3u) + j];
}
`,
  store: SPLIT_STORE,
  aPFast: "pu(8u) == 0u",
  bJFast: "pu(9u) == 0u",
});

/** `out[e] = sum over splits of partial[s][e]`, in split order. */
const GEMM_REDUCE: KernelSource = {
  name: "gemm_reduce",
  bindings: "rw",
  workgroup: 256,
  code: PRELUDE_WGSL + /* wgsl */ `
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn gemm_reduce(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let e = linear(g, l, 256u);
  let len = pu(2u);
  if (e >= len) { return; }
  var s = partial[e];
  for (var k = 1u; k < pu(3u); k++) { s += partial[k * len + e]; }
  out[e] = s;
}
`,
};

const ADD_BIAS: KernelSource = {
  name: "add_bias",
  bindings: "rrw",
  workgroup: 256,
  code: PRELUDE_WGSL + /* wgsl */ `
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn add_bias(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let i = linear(g, l, 256u);
  if (i >= pu(2u)) { return; }
  out[i] = a[i] + bias[i % pu(3u)];
}
`,
};

const BIAS_GRAD: KernelSource = {
  name: "bias_grad",
  bindings: "rw",
  workgroup: 64,
  code: PRELUDE_WGSL + /* wgsl */ `
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn bias_grad(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let j = linear(g, l, 64u);
  let cols = pu(3u);
  if (j >= cols) { return; }
  var s = 0.0;
  for (var r = 0u; r < pu(2u); r++) { s += a[r * cols + j]; }
  out[j] = s;
}
`,
};

/**
 * Records a GEMM instance over `m x n` (k long) into `out`, with split-K
 * when the output has few tiles and K is long.
 *
 * @param ctx The device's context.
 * @param source A {@link gemmSource} instance whose `store` is
 *   {@link SPLIT_STORE} when `splittable`, its last binding the output.
 * @param buffers Its storage buffers without the output.
 * @param out The output buffer (`[m x n]` when splittable).
 * @param size `m`, `n`, `k`.
 * @param words The instance's words from 8.
 * @param splittable Whether the store is plain (then split-K may be used).
 */
export function recordGemm(
  ctx: GpuContext,
  source: KernelSource,
  buffers: readonly GPUBuffer[],
  out: GPUBuffer,
  [m, n, k]: readonly [number, number, number],
  words: readonly number[],
  splittable: boolean,
): void {
  if (m === 0 || n === 0) return;
  const across = Math.ceil(n / TILE);
  const tiles = Math.ceil(m / TILE) * across;
  let splits = 1;
  if (splittable && tiles < 64 && k >= 2048) {
    splits = Math.min(Math.ceil(k / 1024), Math.ceil(128 / tiles));
  }
  const chunk = Math.ceil(k / splits / TILE_K) * TILE_K || TILE_K;
  splits = Math.max(1, Math.ceil(k / chunk));
  const head = [m, n, k, across, tiles, chunk, ...words];
  if (splits === 1) {
    ctx.run(source, [...buffers, out], tiles * 256, head);
    return;
  }
  const partial = ctx.scratch(splits * m * n, "gemm partial sums");
  ctx.run(source, [...buffers, partial], splits * tiles * 256, head);
  ctx.run(GEMM_REDUCE, [partial, out], m * n, [m * n, splits]);
}

/** Throws unless `shape` is a GEMM shape of non-negative integers. */
function checkShape(ctx: GpuContext, shape: GemmShape): void {
  for (const key of ["m", "n", "k"] as const) {
    const v = shape[key];
    if (!Number.isInteger(v) || v < 0) {
      ctx.fail("gemm", `shape.${key} must be a non-negative integer, got ${v}`);
    }
  }
}

/**
 * The matrix kernels of a WebGPU device.
 *
 * @param ctx The device's context.
 * @returns The kernels.
 */
export function matrixKernels(
  ctx: GpuContext,
): Pick<Kernels, "gemm" | "addBias" | "biasGrad"> {
  return {
    gemm: (a, b, shape) => {
      checkShape(ctx, shape);
      const { m, n, k, transA, transB } = shape;
      const ba = ctx.input("gemm", a, "A");
      const bb = ctx.input("gemm", b, "B");
      ctx.size("gemm", a, "A", m * k);
      ctx.size("gemm", b, "B", k * n);
      const out = ctx.alloc([m, n]);
      if (k === 0) {
        ctx.queue.clear(ctx.buf(out));
        return out;
      }
      recordGemm(ctx, PLAIN_GEMM, [ba, bb], ctx.buf(out), [m, n, k], [
        transA ? 1 : 0,
        transB ? 1 : 0,
      ], true);
      return out;
    },
    addBias: (a, bias) => {
      const ba = ctx.input("addBias", a, "a");
      const bb = ctx.input("addBias", bias, "bias");
      if (bias.size === 0 ? a.size !== 0 : a.size % bias.size !== 0) {
        ctx.fail(
          "addBias",
          `a has ${a.size} elements, not rows of the ${bias.size} of bias`,
        );
      }
      const out = ctx.alloc(a.shape);
      ctx.run(ADD_BIAS, [ba, bb, ctx.buf(out)], a.size, [a.size, bias.size]);
      return out;
    },
    biasGrad: (a, cols) => {
      const ba = ctx.input("biasGrad", a, "a");
      if (!Number.isInteger(cols) || cols < 0 || (cols > 0 && a.size % cols)) {
        ctx.fail("biasGrad", `a has ${a.size} elements, not rows of ${cols}`);
      }
      const out = ctx.alloc([cols]);
      const rows = cols > 0 ? a.size / cols : 0;
      ctx.run(BIAS_GRAD, [ba, ctx.buf(out)], cols, [rows, cols]);
      return out;
    },
  };
}
