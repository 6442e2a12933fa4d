/** The WASM device's GEMM kernel on one thread against `gemmReference`. */

import assert from "node:assert/strict";
import { createWasmDevice, type WasmDevice } from "../../asm/device.ts";
import type { GemmShape } from "../../core/kernels.ts";
import { gemmReference } from "../../core/reference/matrix.ts";

/** Deterministic uniform [-1, 1) values (xorshift32). */
function random(n: number, seed: number): Float32Array {
  const x = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    x[i] = s / 2 ** 31 - 1;
  }
  return x;
}

/** `C = op(A) op(B)` on the device, read back. */
async function gemmOn(
  dev: WasmDevice,
  shape: GemmShape,
  a: Float32Array,
  b: Float32Array,
): Promise<Float32Array> {
  const c = dev.kernels.gemm(
    dev.upload(a, [a.length]),
    dev.upload(b, [b.length]),
    shape,
  );
  assert.deepEqual(c.shape, [shape.m, shape.n]);
  return await c.read() as Float32Array;
}

/**
 * Checks the device's GEMM against `gemmReference` elementwise with a
 * relative tolerance of 1e-5 against the scale `sum_p |a_ip b_pj|` (float32
 * blocked accumulation, FMA or not, stays well inside it).
 */
async function check(
  dev: WasmDevice,
  shape: GemmShape,
  seed: number,
): Promise<void> {
  const { m, n, k } = shape;
  const a = random(m * k, seed);
  const b = random(k * n, seed + 7919);
  const got = await gemmOn(dev, shape, a, b);
  const want = gemmReference(shape, a, b);
  const absA = a.map(Math.abs);
  const absB = b.map(Math.abs);
  const scale = gemmReference(shape, absA, absB);
  assert.equal(got.length, m * n);
  for (let i = 0; i < m * n; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= 1e-5 * scale[i] + 1e-30)) {
      assert.fail(
        `${JSON.stringify(shape)}: C[${Math.floor(i / n)}, ${i % n}] = ${
          got[i]
        }, expected ${want[i]} (scale ${scale[i]})`,
      );
    }
  }
}

const variants: readonly { name: string; transA: boolean; transB: boolean }[] =
  [
    { name: "plain (grad-input)", transA: false, transB: false },
    { name: "transB (forward)", transA: false, transB: true },
    { name: "transA (grad-weight)", transA: true, transB: false },
    { name: "transA and transB", transA: true, transB: true },
  ];

Deno.test("gemm matches gemmReference on small and odd shapes", async () => {
  using dev = await createWasmDevice({ threads: 1 });
  const sizes = [1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 16, 17, 24, 25, 31];
  let seed = 1;
  for (const v of variants) {
    for (const m of [1, 3, 4, 5, 13]) {
      for (const n of sizes) {
        for (const k of [1, 2, 5, 12]) {
          await check(
            dev,
            { m, n, k, transA: v.transA, transB: v.transB },
            seed++,
          );
        }
      }
    }
  }
});

Deno.test("gemm matches gemmReference on random shapes", async () => {
  using dev = await createWasmDevice({ threads: 1 });
  let s = 12345;
  const next = (max: number) => {
    s = (s * 1103515245 + 12345) >>> 0;
    return 1 + (s >>> 8) % max;
  };
  for (let t = 0; t < 60; t++) {
    const v = variants[t % variants.length];
    await check(dev, {
      m: next(70),
      n: next(70),
      k: next(600),
      transA: v.transA,
      transB: v.transB,
    }, 100 + t);
  }
});

Deno.test("gemm handles k above one k-block and n above one column block", async () => {
  using dev = await createWasmDevice({ threads: 1 });
  // k = 513 gives three balanced k-blocks; n = 1040 > 1032 gives two column blocks.
  for (const v of variants) {
    await check(dev, {
      m: 6,
      n: 13,
      k: 513,
      transA: v.transA,
      transB: v.transB,
    }, 7);
    await check(dev, {
      m: 5,
      n: 1040,
      k: 9,
      transA: v.transA,
      transB: v.transB,
    }, 8);
  }
});

Deno.test("gemm on the LeNet-5 training products, scaled down", async () => {
  using dev = await createWasmDevice({ threads: 1 });
  // Batch 2 instead of 128: conv1 (im2col 24x24 positions, K 25, 32 channels),
  // conv2 (8x8 positions, K 800, 64 channels), fc1 (1024 -> 512), fc2 (512 -> 10).
  const layers = [
    { rows: 2 * 24 * 24, inF: 25, outF: 32 },
    { rows: 2 * 8 * 8, inF: 800, outF: 64 },
    { rows: 2, inF: 1024, outF: 512 },
    { rows: 2, inF: 512, outF: 10 },
  ];
  let seed = 1000;
  for (const { rows, inF, outF } of layers) {
    // forward Y = X W^T, grad-input dX = dY W, grad-weight dW = dY^T X
    await check(
      dev,
      { m: rows, n: outF, k: inF, transB: true, transA: false },
      seed++,
    );
    await check(
      dev,
      { m: rows, n: inF, k: outF, transA: false, transB: false },
      seed++,
    );
    await check(
      dev,
      { m: outF, n: inF, k: rows, transA: true, transB: false },
      seed++,
    );
  }
});

Deno.test("gemm edge cases: zero sizes, k = 0, length errors, special values", async () => {
  using dev = await createWasmDevice({ threads: 1 });
  const none = new Float32Array(0);
  assert.deepEqual(
    [
      ...await gemmOn(
        dev,
        { m: 2, n: 2, k: 0, transA: false, transB: false },
        none,
        none,
      ),
    ],
    [0, 0, 0, 0],
  );
  assert.equal(
    (await gemmOn(
      dev,
      { m: 0, n: 3, k: 2, transA: false, transB: false },
      none,
      new Float32Array(6),
    ))
      .length,
    0,
  );
  await assert.rejects(
    () =>
      gemmOn(
        dev,
        { m: 2, n: 2, k: 2, transA: false, transB: false },
        new Float32Array(3),
        new Float32Array(4),
      ),
    RangeError,
  );
  // Special values propagate like the reference.
  const c = await gemmOn(
    dev,
    { m: 1, n: 2, k: 1, transA: false, transB: false },
    new Float32Array([Infinity]),
    new Float32Array([1, 0]),
  );
  assert.equal(c[0], Infinity);
  assert.ok(Number.isNaN(c[1]));
});
