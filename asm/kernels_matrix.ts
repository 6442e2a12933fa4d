/**
 * The WASM device's matrix and convolution kernels: the blocked SIMD GEMM of
 * `asm/src/gemm.ts` split by rows or columns over the threads, the bias add
 * and bias gradient, and the convolution (groups 1) as im2col, GEMM and a
 * transpose to NCHW, its column matrices in scratch memory. Grouped
 * convolutions run the reference's direct loop on views of the memory.
 *
 * @module
 */

import type { ConvGeometry, GemmShape, Kernels } from "../core/kernels.ts";
import type { Tensor } from "../core/tensor.ts";
import type { WasmDevice } from "./device.ts";
import { splitGemm, splitUnits } from "./pool.ts";
import { expectSize, onReference } from "./reference_views.ts";

/**
 * `C = op(A) op(B)` on operands in the memory (byte offsets `a`, `b`, `c`),
 * split over the threads, with per-thread packing scratch. Sizes are
 * trusted.
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
  const jobs = splitGemm(dev, m, n, k);
  const byRows = m >= n;
  const scratch = jobs.map((job) =>
    dev.call("gemmScratchBytes", { k, cols: byRows ? n : job.end - job.begin })
  );
  const flags = (transA ? 1 : 0) | (transB ? 2 : 0);
  dev.withScratch(scratch, (offsets) =>
    dev.run(
      "gemm",
      jobs.map((job, t) => ({
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
        scratch: offsets[t],
      })),
    ));
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
  gemmAt(dev, shape, pa, pb, dev.offset(c));
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
  dev.run(
    "im2col",
    splitUnits(dev, rows, g.c * g.kh * g.kw).map((job) => ({
      x,
      cols,
      rowBegin: job.begin,
      rowEnd: job.end,
      ...geometry,
    })),
  );
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
  dev.withScratch([rows * taps * 4, rows * g.o * 4], ([pcols, pRows]) => {
    im2colAt(dev, px, pcols, g);
    gemmAt(dev, { m: rows, n: g.o, k: taps, transB: true }, pcols, pw, pRows);
    dev.run(
      "rowsToNchw",
      splitUnits(dev, g.n, p * g.o).map((job) => ({
        rows: pRows,
        y: py,
        bias: pb,
        hasBias: bias ? 1 : 0,
        sBegin: job.begin,
        sEnd: job.end,
        p,
        o: g.o,
      })),
    );
  });
  return y;
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
  const scratch = [rows * g.o * 4, rows * taps * 4];
  if (needInput) scratch.push(rows * taps * 4);
  dev.withScratch(scratch, ([pRows, pcols, pdcols]) => {
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
    const m = { m: g.o, n: taps, k: rows, transA: true };
    gemmAt(dev, m, pRows, pcols, dev.offset(dw));
    if (!dx) return;
    gemmAt(dev, { m: rows, n: taps, k: g.o }, pRows, pw, pdcols);
    const pdx = dev.offset(dx);
    const geometry = convArgs(g);
    dev.run(
      "col2im",
      splitUnits(dev, g.n, p * taps).map((job) => ({
        cols: pdcols,
        x: pdx,
        sampleBegin: job.begin,
        sampleEnd: job.end,
        ...geometry,
      })),
    );
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
