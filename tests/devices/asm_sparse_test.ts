/**
 * The WASM device's zero-skipping and implicit paths give the dense
 * kernels' results bit for bit: the sparse GEMM (`gemmSparseRows`,
 * `gemmSparseTransA`) against the dense `gemm` export, the implicit
 * convolution (`convGemm`) against `im2col`, `gemm` and `rowsToNchw`, and the fused
 * input gradient (`sparseCol2im`) against `gemm` then `col2im`; a
 * non-finite `B` takes the dense path.
 */

import assert from "node:assert/strict";
import { createWasmDevice, type WasmDevice } from "../../asm/device.ts";
import { allFinite, zeroFraction } from "../../asm/kernels_sparse.ts";
import type { ConvGeometry, GemmShape } from "../../core/kernels.ts";
import { convGeometry } from "../../core/ops/conv2d.ts";
import type { Tensor } from "../../core/tensor.ts";
import { assertBitwise, randomValues } from "../_fixtures.ts";

/** Values in [-1, 1) of which about `zeros` are +0 or -0 (alternately). */
function sparseValues(seed: number, count: number, zeros: number) {
  const x = randomValues(seed, count);
  const pick = randomValues(seed + 1, count, 0, 1);
  let sign = 1;
  for (let i = 0; i < count; i++) {
    if (pick[i] < zeros) x[i] = (sign = -sign) > 0 ? 0 : -0;
  }
  return x;
}

/** `C = op(A) op(B)` by the dense `gemm` export on one thread. */
function denseGemm(dev: WasmDevice, s: GemmShape, a: Tensor, b: Tensor) {
  const { m, n, k } = s;
  const c = dev.alloc([m, n]);
  const bytes = dev.call("gemmScratchBytes", { k, cols: n });
  dev.withScratch([bytes], ([scratch]) =>
    dev.call("gemm", {
      a: dev.offset(a),
      b: dev.offset(b),
      c: dev.offset(c),
      m,
      n,
      k,
      lda: s.transA ? m : k,
      ldb: s.transB ? k : n,
      ldc: n,
      flags: (s.transA ? 1 : 0) | (s.transB ? 2 : 0),
      i0: 0,
      i1: m,
      j0: 0,
      j1: n,
      scratch,
    }));
  return c;
}

Deno.test("the sparse GEMM is the dense GEMM bit for bit, zeros of either sign skipped", async () => {
  using dev = await createWasmDevice({ threads: 2, parallelThreshold: 1 });
  // k 300 and 600 make two and three k-blocks; n 37 a column tail.
  const shapes: [number, number, number][] = [
    [64, 800, 300],
    [37, 37, 600],
    [128, 64, 1],
    [5, 32, 64],
    [300, 40, 77],
  ];
  let seed = 1;
  for (const [m, n, k] of shapes) {
    for (const transA of [false, true]) {
      const s = { m, n, k, transA, transB: false };
      const a = dev.upload(sparseValues(seed++, m * k, 0.85), [m * k]);
      const b = dev.upload(randomValues(seed++, k * n), [k * n]);
      assert.ok(zeroFraction(dev, dev.offset(a), m * k) > 0.8);
      const want = denseGemm(dev, s, a, b).toFloat32Array();
      assertBitwise(
        dev.kernels.gemm(a, b, s).toFloat32Array(),
        want,
        JSON.stringify(s),
      );
    }
  }
});

Deno.test("the sparse GEMM keeps a NaN of A and zero rows, and leaves a non-finite B to the dense GEMM", async () => {
  using dev = await createWasmDevice({ threads: 1 });
  const m = 4, n = 32, k = 8;
  const a = new Float32Array(m * k); // row 3 all zeros
  a[0] = NaN;
  a[k + 2] = 2;
  a[2 * k + 5] = -0.5;
  const b = randomValues(9, k * n);
  const got = dev.kernels.gemm(dev.upload(a, [m * k]), dev.upload(b, [k * n]), {
    m,
    n,
    k,
    transA: false,
    transB: false,
  }).toFloat32Array();
  for (let j = 0; j < n; j++) {
    assert.ok(Number.isNaN(got[j]));
    assert.equal(got[n + j], Math.fround(2 * b[2 * n + j]));
    assert.equal(got[2 * n + j], Math.fround(-0.5 * b[5 * n + j]));
    assert.ok(Object.is(got[3 * n + j], 0));
  }
  // 0 * Infinity is NaN: skipping the zero would lose it.
  b[7 * n + 1] = Infinity;
  const tb = dev.upload(b, [k * n]);
  assert.equal(allFinite(dev, dev.offset(tb), k * n), false);
  const c = dev.kernels.gemm(dev.upload(a, [m * k]), tb, {
    m,
    n,
    k,
    transA: false,
    transB: false,
  })
    .toFloat32Array();
  assert.ok(Number.isNaN(c[3 * n + 1]), "a zero row times Infinity is NaN");
});

/** The forward convolution by `im2col`, the dense `gemm` export and `rowsToNchw`. */
function convByColumns(
  dev: WasmDevice,
  t: { x: Tensor; w: Tensor; bias: Tensor | null },
  g: ConvGeometry,
): Float32Array {
  const p = g.oh * g.ow;
  const k = g.c * g.kh * g.kw;
  const cols = dev.alloc([g.n * p * k]);
  dev.call("im2col", {
    x: dev.offset(t.x),
    cols: dev.offset(cols),
    rowBegin: 0,
    rowEnd: g.n * p,
    ...geometryArgs(g),
  });
  const rows = denseGemm(
    dev,
    { m: g.n * p, n: g.o, k, transB: true, transA: false },
    cols,
    t.w,
  );
  const y = dev.alloc([g.n * g.o * p]);
  dev.call("rowsToNchw", {
    rows: dev.offset(rows),
    y: dev.offset(y),
    bias: t.bias ? dev.offset(t.bias) : 0,
    hasBias: t.bias ? 1 : 0,
    sBegin: 0,
    sEnd: g.n,
    p,
    o: g.o,
  });
  return y.toFloat32Array();
}

function geometryArgs(g: ConvGeometry) {
  const { c, h, w, kh, kw, oh, ow, stride, padding } = g;
  return { c, h, w, kh, kw, oh, ow, stride, padding };
}

/** The forward convolution by the implicit `convGemm` export, one thread. */
function convImplicit(
  dev: WasmDevice,
  t: { x: Tensor; w: Tensor; bias: Tensor | null },
  g: ConvGeometry,
): Float32Array {
  const k = g.c * g.kh * g.kw;
  const y = dev.alloc([g.n * g.o * g.oh * g.ow]);
  const bytes = dev.call("convGemmScratchBytes", { k, cols: g.o });
  dev.withScratch([bytes], ([scratch]) =>
    dev.call("convGemm", {
      x: dev.offset(t.x),
      w: dev.offset(t.w),
      bias: t.bias ? dev.offset(t.bias) : 0,
      hasBias: t.bias ? 1 : 0,
      y: dev.offset(y),
      ch: g.c,
      h: g.h,
      wd: g.w,
      o: g.o,
      kh: g.kh,
      kw: g.kw,
      oh: g.oh,
      ow: g.ow,
      i0: 0,
      i1: g.n * g.oh * g.ow,
      scratch,
    }));
  return y.toFloat32Array();
}

Deno.test("the implicit convolution GEMM is im2col, gemm and rowsToNchw, bit for bit", async () => {
  using dev = await createWasmDevice({ threads: 1 });
  // [x shape, w shape]: LeNet-5's two (k 25 and 800: one and four
  // k-blocks), odd channel counts, 1x1, a tall kernel.
  const cases: [number[], number[]][] = [
    [[2, 1, 28, 28], [32, 1, 5, 5]],
    [[2, 32, 12, 12], [64, 32, 5, 5]],
    [[3, 5, 11, 10], [13, 5, 3, 3]],
    [[2, 3, 9, 8], [7, 3, 1, 1]],
    [[1, 2, 13, 12], [29, 2, 5, 5]],
  ];
  cases.forEach(([xs, ws], i) => {
    const g = convGeometry(xs, ws, {});
    const t = {
      x: dev.upload(sparseValues(40 + i, g.n * g.c * g.h * g.w, 0.4), xs),
      w: dev.upload(randomValues(50 + i, g.o * g.c * g.kh * g.kw), ws),
      bias: i % 2 === 0 ? dev.upload(randomValues(60 + i, g.o), [g.o]) : null,
    };
    assertBitwise(
      convImplicit(dev, t, g),
      convByColumns(dev, t, g),
      `x [${xs}] w [${ws}]${t.bias ? " with bias" : ""}`,
    );
  });
});

/** `dx = col2im(rows(dy) w)` by the dense `gemm` export and `col2im`. */
function inputGradDense(
  dev: WasmDevice,
  dyRows: Tensor,
  w: Tensor,
  g: ConvGeometry,
): Float32Array {
  const rows = g.n * g.oh * g.ow;
  const taps = g.c * g.kh * g.kw;
  const dcols = denseGemm(
    dev,
    { m: rows, n: taps, k: g.o, transA: false, transB: false },
    dyRows,
    w,
  );
  const dx = dev.alloc([g.n * g.c * g.h * g.w]);
  dev.call("col2im", {
    cols: dev.offset(dcols),
    x: dev.offset(dx),
    sampleBegin: 0,
    sampleEnd: g.n,
    ...geometryArgs(g),
  });
  return dx.toFloat32Array();
}

Deno.test("sparseCol2im is gemm then col2im, bit for bit", async () => {
  using dev = await createWasmDevice({ threads: 1 });
  const cases: [number[], number[], { stride?: number; padding?: number }][] = [
    [[3, 32, 12, 12], [64, 32, 5, 5], {}],
    [[2, 3, 7, 9], [6, 3, 3, 3], { stride: 2, padding: 1 }],
  ];
  let seed = 70;
  for (const [xs, ws, options] of cases) {
    const g = convGeometry(xs, ws, options);
    const p = g.oh * g.ow;
    const taps = g.c * g.kh * g.kw;
    const dy = dev.upload(sparseValues(seed++, g.n * p * g.o, 0.85), [
      g.n * p,
      g.o,
    ]);
    const w = dev.upload(randomValues(seed++, g.o * taps), [g.o, taps]);
    const dx = dev.alloc([g.n * g.c * g.h * g.w]);
    const bytes = dev.call("sparseCol2imScratchBytes", { p, taps, o: g.o });
    dev.withScratch([bytes], ([scratch]) =>
      dev.call("sparseCol2im", {
        ...geometryArgs(g),
        dy: dev.offset(dy),
        w: dev.offset(w),
        x: dev.offset(dx),
        sampleBegin: 0,
        sampleEnd: g.n,
        o: g.o,
        wd: g.w,
        scratch,
      }));
    assertBitwise(
      dx.toFloat32Array(),
      inputGradDense(dev, dy, w, g),
      `x [${xs}] w [${ws}] ${JSON.stringify(options)}`,
    );
  }
});

Deno.test("the convolution kernels give the same bits on one thread and on two", async () => {
  using one = await createWasmDevice({ threads: 1 });
  using two = await createWasmDevice({ threads: 2, parallelThreshold: 1 });
  const g = convGeometry([8, 32, 12, 12], [64, 32, 5, 5], {});
  const x = sparseValues(90, g.n * g.c * g.h * g.w, 0.5);
  const w = randomValues(91, g.o * g.c * g.kh * g.kw);
  const dy = sparseValues(92, g.n * g.o * g.oh * g.ow, 0.85);
  const run = (dev: WasmDevice) => {
    const t = {
      x: dev.upload(x, [g.n, g.c, g.h, g.w]),
      w: dev.upload(w, [g.o, g.c, g.kh, g.kw]),
      dy: dev.upload(dy, [g.n, g.o, g.oh, g.ow]),
    };
    const y = dev.kernels.conv2d(t.x, t.w, null, g);
    const r = dev.kernels.conv2dBackward(t.x, t.w, t.dy, g, true, true);
    return [y, r.dx!, r.dw, r.db!].map((v) => v.toFloat32Array());
  };
  const [a, b] = [run(one), run(two)];
  ["y", "dx", "dw", "db"].forEach((name, i) => assertBitwise(b[i], a[i], name));
});

Deno.test("the forward convolution skips the zeros of x, bit for bit the dense GEMM", async () => {
  using dev = await createWasmDevice({ threads: 2, parallelThreshold: 1 });
  // [x shape, w shape, stride, padding]: LeNet-5's conv2 (k 800: four
  // k-blocks), k 150, 37 channels (a column tail), padding and stride
  // (no implicit GEMM).
  const cases: [number[], number[], number, number][] = [
    [[3, 32, 12, 12], [64, 32, 5, 5], 1, 0],
    [[2, 6, 12, 12], [32, 6, 5, 5], 1, 0],
    [[2, 3, 9, 11], [37, 3, 3, 3], 1, 1],
    [[2, 5, 17, 16], [33, 5, 3, 3], 2, 2],
  ];
  cases.forEach(([xs, ws, stride, padding], i) => {
    const g = convGeometry(xs, ws, { stride, padding });
    const x = sparseValues(70 + i, g.n * g.c * g.h * g.w, 0.8);
    x.fill(i % 2 === 0 ? 0 : -0, 0, g.h * g.w); // a dead input channel
    const tx = dev.upload(x, xs);
    assert.ok(zeroFraction(dev, dev.offset(tx), x.length) > 0.6);
    const w = randomValues(80 + i, g.o * g.c * g.kh * g.kw);
    for (const poison of [null, NaN, -Infinity]) {
      if (poison !== null) w[0] = poison; // times input channel 0's zeros
      const t = {
        x: tx,
        w: dev.upload(w, ws),
        bias: i % 2 === 0 ? dev.upload(randomValues(90 + i, g.o), [g.o]) : null,
      };
      const y = dev.kernels.conv2d(t.x, t.w, t.bias, g).toFloat32Array();
      const what = `x [${xs}] w [${ws}] stride ${stride} padding ${padding}`;
      assertBitwise(y, convByColumns(dev, t, g), `${what}, w[0] ${poison}`);
      if (poison !== null) {
        assert.ok(y.some((v) => Number.isNaN(v)), `${what}: ${poison} * 0`);
      }
    }
  });
});

Deno.test("A B^T skips the zeros of A, bit for bit the dense GEMM", async () => {
  using dev = await createWasmDevice({ threads: 2, parallelThreshold: 1 });
  // [m, n, k]: LeNet-5's fc1, two and three k-blocks, column tails.
  const shapes: [number, number, number][] = [
    [50, 512, 1024],
    [37, 33, 300],
    [40, 37, 600],
    [7, 32, 5],
  ];
  shapes.forEach(([m, n, k], i) => {
    const s = { m, n, k, transB: true, transA: false };
    const a = sparseValues(120 + i, m * k, 0.8);
    a.fill(i % 2 === 0 ? 0 : -0, 0, k); // a zero row of C
    const ta = dev.upload(a, [m * k]);
    assert.ok(zeroFraction(dev, dev.offset(ta), m * k) > 0.6);
    const w = randomValues(130 + i, n * k);
    for (const poison of [null, Infinity, NaN]) {
      if (poison !== null) w[2] = poison; // times row 0's zeros
      const tw = dev.upload(w, [n * k]);
      const got = dev.kernels.gemm(ta, tw, s).toFloat32Array();
      const want = denseGemm(dev, s, ta, tw).toFloat32Array();
      assertBitwise(got, want, `${JSON.stringify(s)}, B ${poison}`);
      if (poison !== null) {
        assert.ok(Number.isNaN(got[0]), `${poison} times a zero input`);
      }
    }
  });
});

Deno.test("A B^T skips the zeros and zero rows of B, bit for bit the dense GEMM", async () => {
  using dev = await createWasmDevice({ threads: 2, parallelThreshold: 1 });
  // [m, n, k]: LeNet-5's fc1 at batch 64, two and three k-blocks, tails.
  const shapes: [number, number, number][] = [
    [64, 120, 256],
    [37, 33, 300],
    [40, 7, 600],
    [33, 37, 5],
  ];
  shapes.forEach(([m, n, k], i) => {
    const s = { m, n, k, transB: true, transA: false };
    const w = sparseValues(100 + i, n * k, 0.76);
    w.fill(i % 2 === 0 ? 0 : -0, 0, k); // a pruned output
    const a = sparseValues(110 + i, m * k, 0.3);
    const tw = dev.upload(w, [n * k]);
    assert.ok(zeroFraction(dev, dev.offset(tw), n * k) > 0.6);
    for (const poison of [null, -Infinity, NaN]) {
      if (poison !== null) a[k + 3] = poison;
      const ta = dev.upload(a, [m * k]);
      const got = dev.kernels.gemm(ta, tw, s).toFloat32Array();
      const want = denseGemm(dev, s, ta, tw).toFloat32Array();
      assertBitwise(got, want, `${JSON.stringify(s)}, A ${poison}`);
      if (poison !== null) {
        assert.ok(Number.isNaN(got[n]), `${poison} times a zero weight`);
      }
    }
  });
});
