/**
 * The WASM device's matrix and convolution kernels: the blocked SIMD GEMM of
 * `asm/src/gemm.ts` split by rows or columns into chunks the threads claim
 * as they come free, the bias add and bias gradient, and the convolution
 * (groups 1) as a GEMM and a transpose to NCHW.
 *
 * Every path gives the plain GEMM's sums bit for bit; the choice of path is
 * only about speed:
 * - forward, input mostly zeros (after a ReLU, a max-pool and a
 *   quantizer) and weights finite: `im2col`, then the sparse GEMM that
 *   skips them (`asm/kernels_sparse.ts`); else, stride 1 without padding:
 *   the implicit GEMM (`convGemm`), which reads the column matrix from the
 *   input instead of writing it; otherwise `im2col`, then the GEMM;
 * - `gemm` with `op(B) = B^T` (a dense layer's forward pass): the sparse
 *   GEMM on `B^T` copied out when `A` is mostly zeros, or on
 *   `C^T = B A^T` when `B` (frozen weights, pruned rows) is, the other
 *   operand being finite;
 * - backward: the output gradient of a layer followed by a ReLU and a
 *   max-pool is mostly zeros, so the weight gradient and the column
 *   gradient skip them (`asm/kernels_sparse.ts`), the column gradient
 *   going sample by sample through the cache into `col2im`
 *   (`sparseCol2im`); a dense gradient takes the dense GEMM.
 *
 * Grouped convolutions run the reference's direct loop on views of the
 * memory.
 *
 * @module
 */

import type { ConvGeometry, GemmShape, Kernels } from "../core/kernels.ts";
import type { Tensor } from "../core/tensor.ts";
import type { WasmDevice } from "./device.ts";
import {
  GEMM_COL_GRAIN,
  GEMM_ROW_GRAIN,
  splitChunks,
  splitGemm,
  splitUnits,
} from "./pool.ts";
import { expectSize, onReference } from "./reference_views.ts";
import {
  allFinite,
  SPARSE_MIN_COLUMNS,
  SPARSE_MIN_ZEROS,
  sparseGemmAt,
  sparseWins,
  zeroFraction,
} from "./kernels_sparse.ts";

/**
 * `C = op(A) op(B)` on operands in the memory (byte offsets `a`, `b`, `c`),
 * by the dense kernel, in chunks over the threads, with per-thread packing
 * scratch. Sizes are trusted.
 */
function gemmAt(
  dev: WasmDevice,
  shape: GemmShape,
  a: number,
  b: number,
  c: number,
): void {
  const { m, n, k } = shape;
  if (m * n === 0) return;
  const transA = shape.transA === true;
  const transB = shape.transB === true;
  const byRows = m >= n;
  const jobs = splitGemm(dev, m, n, k);
  // A chunk of rows packs all of B again: at least 64 rows per chunk.
  const perThread = byRows
    ? Math.max(1, Math.min(4, Math.floor(m / jobs.length / 64)))
    : 4;
  const chunks = splitChunks(
    jobs,
    byRows ? GEMM_ROW_GRAIN : GEMM_COL_GRAIN,
    perThread,
  );
  const widest = Math.max(...chunks.map((job) => job.end - job.begin));
  const bytes = dev.call("gemmScratchBytes", { k, cols: byRows ? n : widest });
  const flags = (transA ? 1 : 0) | (transB ? 2 : 0);
  dev.runChunks(
    "gemm",
    chunks.map((job) => ({
      a,
      b,
      c,
      m,
      n,
      k,
      lda: transA ? m : k,
      ldb: transB ? k : n,
      ldc: n,
      flags,
      i0: byRows ? job.begin : 0,
      i1: byRows ? job.end : m,
      j0: byRows ? 0 : job.begin,
      j1: byRows ? n : job.end,
      scratch: 0,
    })),
    bytes,
  );
}

/**
 * Whether `C = A B^T` should skip the zeros of `B` (a layer's frozen
 * weights, `[n, k]`): `A` not transposed, enough rows of `C` and `B`
 * mostly zeros.
 */
function sparseB(dev: WasmDevice, shape: GemmShape, b: number): boolean {
  const { m, n, k } = shape;
  return shape.transB === true && shape.transA !== true &&
    m >= SPARSE_MIN_COLUMNS && n * k > 0 &&
    zeroFraction(dev, b, n * k) >= SPARSE_MIN_ZEROS;
}

/** `rows[q, j] = y[j, q]` for `y` `[o, p]` (values as they are, -0 included). */
function transposeAt(
  dev: WasmDevice,
  y: number,
  rows: number,
  o: number,
  p: number,
): void {
  dev.call("nchwToRows", { y, rows, sBegin: 0, sEnd: 1, p, o });
}

/**
 * `C = A B^T` as `C^T = B A^T` by the sparse kernels, which skip the zeros
 * of `B`: each element is the same chain over `k` in the same k-blocks,
 * so the same sums bit for bit while `A` is finite.
 */
function sparseTransposedAt(
  dev: WasmDevice,
  shape: GemmShape,
  a: number,
  b: number,
  c: number,
): void {
  const { m, n, k } = shape;
  dev.withScratch([m * k * 4, m * n * 4], ([pat, pct]) => {
    transposeAt(dev, a, pat, m, k);
    sparseGemmAt(
      dev,
      { m: n, n: m, k, transA: false, transB: false },
      b,
      pat,
      pct,
    );
    transposeAt(dev, pct, c, n, m);
  });
}

function gemm(dev: WasmDevice, a: Tensor, b: Tensor, shape: GemmShape): Tensor {
  const { m, n, k } = shape;
  for (const [name, v] of [["m", m], ["n", n], ["k", k]] as const) {
    if (!Number.isInteger(v) || v < 0) {
      throw new RangeError(
        `gemm: ${name} must be a non-negative integer, got ${v}`,
      );
    }
  }
  if (a.size !== m * k || b.size !== k * n) {
    throw new RangeError(
      `gemm: A has ${a.size} elements (expected ${
        m * k
      }), B has ${b.size} (expected ${k * n})`,
    );
  }
  const pa = dev.offset(a);
  const pb = dev.offset(b);
  if (m * n === 0 || k === 0) return dev.zeros([m, n]);
  const c = dev.alloc([m, n]);
  if (sparseWins(dev, shape, pa) && allFinite(dev, pb, k * n)) {
    sparseGemmAt(dev, shape, pa, pb, dev.offset(c));
  } else if (
    shape.transB === true && sparseWins(dev, { ...shape, transB: false }, pa) &&
    allFinite(dev, pb, k * n)
  ) {
    // A layer's forward pass: most inputs are zeros, B = w is [n, k].
    dev.withScratch([k * n * 4], ([pbt]) => {
      transposeAt(dev, pb, pbt, n, k);
      sparseGemmAt(dev, { ...shape, transB: false }, pa, pbt, dev.offset(c));
    });
  } else if (sparseB(dev, shape, pb) && allFinite(dev, pa, m * k)) {
    sparseTransposedAt(dev, shape, pa, pb, dev.offset(c));
  } else {
    gemmAt(dev, shape, pa, pb, dev.offset(c));
  }
  return c;
}

/** Rows of `a` `[rows, cols]`, checked to be whole. */
function rowsOf(what: string, a: Tensor, cols: number): number {
  const rows = cols === 0 ? 0 : a.size / cols;
  if (!Number.isInteger(rows)) {
    throw new RangeError(
      `${what}: ${a.size} elements do not make rows of ${cols}`,
    );
  }
  return rows;
}

function addBias(dev: WasmDevice, a: Tensor, bias: Tensor): Tensor {
  const cols = bias.size;
  const rows = rowsOf("addBias", a, cols);
  const pa = dev.offset(a);
  const pb = dev.offset(bias);
  const out = dev.alloc(a.shape);
  const pout = dev.offset(out);
  dev.run(
    "addBias",
    splitUnits(dev, rows, cols).map((job) => ({
      a: pa,
      bias: pb,
      out: pout,
      rowBegin: job.begin,
      rowEnd: job.end,
      cols,
    })),
  );
  return out;
}

/** Column sums of `[rows, cols]` at `a` into `out`; threads take groups of 4 columns. */
function columnSumsAt(
  dev: WasmDevice,
  a: number,
  out: number,
  rows: number,
  cols: number,
): void {
  dev.run(
    "columnSums",
    splitUnits(dev, Math.ceil(cols / 4), rows * 4).map((job) => ({
      a,
      out,
      rows,
      cols,
      colBegin: Math.min(cols, job.begin * 4),
      colEnd: Math.min(cols, job.end * 4),
    })),
  );
}

function biasGrad(dev: WasmDevice, a: Tensor, cols: number): Tensor {
  if (!Number.isInteger(cols) || cols < 0) {
    throw new RangeError(
      `biasGrad: cols must be a non-negative integer, got ${cols}`,
    );
  }
  const rows = rowsOf("biasGrad", a, cols);
  const pa = dev.offset(a);
  const out = dev.alloc([cols]);
  columnSumsAt(dev, pa, dev.offset(out), rows, cols);
  return out;
}

/** The geometry arguments of `im2col` and `col2im`. */
function convArgs(g: ConvGeometry) {
  return {
    c: g.c,
    h: g.h,
    w: g.w,
    kh: g.kh,
    kw: g.kw,
    oh: g.oh,
    ow: g.ow,
    stride: g.stride,
    padding: g.padding,
  };
}

/** Writes the column matrix of the input at `x` into `cols`. */
function im2colAt(dev: WasmDevice, x: number, cols: number, g: ConvGeometry) {
  const rows = g.n * g.oh * g.ow;
  const geometry = convArgs(g);
  dev.runChunks(
    "im2col",
    splitChunks(splitUnits(dev, rows, g.c * g.kh * g.kw), 1).map((job) => ({
      x,
      cols,
      rowBegin: job.begin,
      rowEnd: job.end,
      ...geometry,
    })),
  );
}

/**
 * Whether a convolution (groups 1) takes the implicit GEMM, which reads the
 * column matrix from `x` (same sums, bit for bit): stride 1, no padding,
 * output rows in whole tiles of 4, and at least as many rows as channels
 * (the GEMM is split by rows).
 */
function implicitConv(g: ConvGeometry): boolean {
  return g.stride === 1 && g.padding === 0 && g.ow % 4 === 0 &&
    g.n * g.oh * g.ow >= g.o && g.c * g.kh * g.kw > 0;
}

/**
 * The forward convolution into the NCHW output at `y` by the implicit-GEMM
 * export, in chunks of output pixels over the threads.
 */
function convGemmAt(
  dev: WasmDevice,
  at: { x: number; w: number; bias: number; hasBias: boolean },
  y: number,
  g: ConvGeometry,
): void {
  const m = g.n * g.oh * g.ow;
  const k = g.c * g.kh * g.kw;
  if (m === 0 || g.o === 0) return;
  const chunks = splitChunks(splitGemm(dev, m, g.o, k), GEMM_ROW_GRAIN);
  const bytes = dev.call("convGemmScratchBytes", { k, cols: g.o });
  dev.runChunks(
    "convGemm",
    chunks.map((job) => ({
      x: at.x,
      w: at.w,
      bias: at.bias,
      hasBias: at.hasBias ? 1 : 0,
      y,
      ch: g.c,
      h: g.h,
      wd: g.w,
      o: g.o,
      kh: g.kh,
      kw: g.kw,
      oh: g.oh,
      ow: g.ow,
      i0: job.begin,
      i1: job.end,
      scratch: 0,
    })),
    bytes,
  );
}

/**
 * The forward convolution skipping the zeros of `x` (after a ReLU, a
 * max-pool and a quantizer, most of them): `im2col`, the sparse GEMM
 * `cols(x) w^T` (`w` transposed first: the kernels need `B` as stored) and
 * `rowsToNchw`, the same sums bit for bit as the dense paths while `w` is
 * finite.
 */
function sparseConvAt(
  dev: WasmDevice,
  at: { x: number; w: number; bias: number; hasBias: boolean },
  y: number,
  g: ConvGeometry,
): void {
  const p = g.oh * g.ow;
  const rows = g.n * p;
  const taps = g.c * g.kh * g.kw;
  const bytes = [rows * taps * 4, taps * g.o * 4, rows * g.o * 4];
  dev.withScratch(bytes, ([pcols, pwt, pRows]) => {
    im2colAt(dev, at.x, pcols, g);
    transposeAt(dev, at.w, pwt, g.o, taps);
    sparseGemmAt(
      dev,
      { m: rows, n: g.o, k: taps, transA: false, transB: false },
      pcols,
      pwt,
      pRows,
    );
    rowsToNchwAt(
      dev,
      { rows: pRows, y, bias: at.bias, hasBias: at.hasBias },
      g,
    );
  });
}

function checkConv(what: string, x: Tensor, w: Tensor, g: ConvGeometry) {
  expectSize(`${what}: x`, x, g.n * g.c * g.h * g.w);
  expectSize(`${what}: w`, w, g.o * (g.c / g.groups) * g.kh * g.kw);
}

function conv2d(
  dev: WasmDevice,
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  g: ConvGeometry,
): Tensor {
  checkConv("conv2d", x, w, g);
  if (bias) expectSize("conv2d: bias", bias, g.o);
  if (g.groups !== 1) {
    return onReference(
      dev,
      (v, r) => r.conv2d(v(x), v(w), bias ? v(bias) : null, g),
    );
  }
  const p = g.oh * g.ow;
  const rows = g.n * p;
  const taps = g.c * g.kh * g.kw;
  const [px, pw] = [x, w].map((t) => dev.offset(t));
  const pb = bias ? dev.offset(bias) : 0;
  const y = dev.alloc([g.n, g.o, g.oh, g.ow]);
  const py = dev.offset(y);
  const at = { x: px, w: pw, bias: pb, hasBias: bias !== null };
  const sparse = g.o >= SPARSE_MIN_COLUMNS &&
    zeroFraction(dev, px, x.size) >= SPARSE_MIN_ZEROS;
  if (sparse && allFinite(dev, pw, w.size)) {
    sparseConvAt(dev, at, py, g);
  } else if (implicitConv(g)) {
    convGemmAt(dev, at, py, g);
  } else {
    dev.withScratch([rows * taps * 4, rows * g.o * 4], ([pcols, pRows]) => {
      im2colAt(dev, px, pcols, g);
      const shape = { m: rows, n: g.o, k: taps, transB: true, transA: false };
      gemmAt(dev, shape, pcols, pw, pRows);
      rowsToNchwAt(dev, { ...at, rows: pRows, y: py }, g);
    });
  }
  return y;
}

/** `y = rows + bias` from the rows layout `[n, p, o]` to NCHW, over the threads. */
function rowsToNchwAt(
  dev: WasmDevice,
  at: { rows: number; y: number; bias: number; hasBias: boolean },
  g: ConvGeometry,
): void {
  const p = g.oh * g.ow;
  dev.run(
    "rowsToNchw",
    splitUnits(dev, g.n, p * g.o).map((job) => ({
      rows: at.rows,
      y: at.y,
      bias: at.bias,
      hasBias: at.hasBias ? 1 : 0,
      sBegin: job.begin,
      sEnd: job.end,
      p,
      o: g.o,
    })),
  );
}

/** `dw = rows(dy)^T cols(x)`: sparse when `dy` is mostly zeros and `x` finite. */
function weightGradAt(
  dev: WasmDevice,
  g: ConvGeometry,
  sparse: boolean,
  at: { rows: number; cols: number; x: number; xSize: number; dw: number },
): void {
  const taps = g.c * g.kh * g.kw;
  const m = {
    m: g.o,
    n: taps,
    k: g.n * g.oh * g.ow,
    transA: true,
    transB: false,
  };
  if (sparse && allFinite(dev, at.x, at.xSize)) {
    sparseGemmAt(dev, m, at.rows, at.cols, at.dw);
  } else {
    gemmAt(dev, m, at.rows, at.cols, at.dw);
  }
}

/**
 * `dx = col2im(rows(dy) w)`: sample by sample through the cache when `dy`
 * is mostly zeros and `w` finite (`sparseCol2im`), else the dense GEMM into
 * a full column matrix, then `col2im`.
 */
function inputGradAt(
  dev: WasmDevice,
  g: ConvGeometry,
  sparse: boolean,
  at: { rows: number; w: number; wSize: number; dx: number },
): void {
  const p = g.oh * g.ow;
  const taps = g.c * g.kh * g.kw;
  const geometry = convArgs(g);
  const jobs = splitChunks(splitUnits(dev, g.n, p * taps), 1);
  if (sparse && allFinite(dev, at.w, at.wSize)) {
    const bytes = dev.call("sparseCol2imScratchBytes", { p, taps, o: g.o });
    dev.runChunks(
      "sparseCol2im",
      jobs.map((job) => ({
        ...geometry,
        dy: at.rows,
        w: at.w,
        x: at.dx,
        sampleBegin: job.begin,
        sampleEnd: job.end,
        o: g.o,
        wd: g.w,
        scratch: 0,
      })),
      bytes,
    );
    return;
  }
  dev.withScratch([g.n * p * taps * 4], ([pdcols]) => {
    gemmAt(
      dev,
      { m: g.n * p, n: taps, k: g.o, transA: false, transB: false },
      at.rows,
      at.w,
      pdcols,
    );
    dev.runChunks(
      "col2im",
      jobs.map((job) => ({
        cols: pdcols,
        x: at.dx,
        sampleBegin: job.begin,
        sampleEnd: job.end,
        ...geometry,
      })),
    );
  });
}

function conv2dBackward(
  dev: WasmDevice,
  x: Tensor,
  w: Tensor,
  dy: Tensor,
  g: ConvGeometry,
  needInput: boolean,
  needBias: boolean,
): { dx: Tensor | null; dw: Tensor; db: Tensor | null } {
  checkConv("conv2dBackward", x, w, g);
  const p = g.oh * g.ow;
  const rows = g.n * p;
  const taps = g.c * g.kh * g.kw;
  expectSize("conv2dBackward: dy", dy, rows * g.o);
  if (g.groups !== 1) {
    return onReference(
      dev,
      (v, r) => r.conv2dBackward(v(x), v(w), v(dy), g, needInput, needBias),
    );
  }
  const [px, pw, pdy] = [x, w, dy].map((t) => dev.offset(t));
  const db = needBias ? dev.alloc([g.o]) : null;
  const dw = dev.alloc(w.shape);
  const dx = needInput ? dev.alloc(x.shape) : null;
  dev.withScratch([rows * g.o * 4, rows * taps * 4], ([pRows, pcols]) => {
    dev.run(
      "nchwToRows",
      splitUnits(dev, g.n, p * g.o).map((job) => ({
        y: pdy,
        rows: pRows,
        sBegin: job.begin,
        sEnd: job.end,
        p,
        o: g.o,
      })),
    );
    if (db) columnSumsAt(dev, pRows, dev.offset(db), rows, g.o);
    // The column matrix again, from x: cheaper than keeping it since the forward pass.
    im2colAt(dev, px, pcols, g);
    // dy is mostly zeros after a ReLU and a max-pool: the sparse kernels
    // skip them (same sums bit for bit while x and w are finite).
    const sparse = taps >= SPARSE_MIN_COLUMNS &&
      zeroFraction(dev, pRows, rows * g.o) >= SPARSE_MIN_ZEROS;
    const at = { rows: pRows, cols: pcols, x: px, xSize: x.size };
    weightGradAt(dev, g, sparse, { ...at, dw: dev.offset(dw) });
    if (!dx) return;
    const wAt = { rows: pRows, w: pw, wSize: w.size, dx: dev.offset(dx) };
    inputGradAt(dev, g, sparse, wAt);
  });
  return { dx, dw, db };
}

/**
 * The GEMM, bias and convolution kernels of `dev`.
 *
 * @param dev The WASM device.
 * @returns Those members of the kernel set.
 */
export function matrixKernels(
  dev: WasmDevice,
): Pick<
  Kernels,
  "gemm" | "addBias" | "biasGrad" | "conv2d" | "conv2dBackward"
> {
  return {
    gemm: (a, b, shape) => gemm(dev, a, b, shape),
    addBias: (a, bias) => addBias(dev, a, bias),
    biasGrad: (a, cols) => biasGrad(dev, a, cols),
    conv2d: (x, w, bias, g) => conv2d(dev, x, w, bias, g),
    conv2dBackward: (x, w, dy, g, needInput, needBias) =>
      conv2dBackward(dev, x, w, dy, g, needInput, needBias),
  };
}
