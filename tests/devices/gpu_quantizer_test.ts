/**
 * The WebGPU quantizer kernels against the reference device.
 *
 * On the fallback adapter (llvmpipe, what CI has) the forward output, the
 * pooled output and `dx` must match bit for bit; on a real GPU a few ulps
 * are allowed (its division may be less exact). The reductions (`dxmax`,
 * `dgates`, `dz2`) are float32 tree sums on the device: they must match to
 * a relative 1e-5 of the sum of the magnitudes of their terms. These tests
 * need an adapter and fail, not skip, without one.
 */

import assert from "node:assert/strict";
import type { Device } from "../../core/device.ts";
import { quantizerConstants } from "../../core/reference/quantizer.ts";
import { referenceDevice } from "../../core/reference/device.ts";
import { uniform } from "../../core/rng.ts";
import { Tensor } from "../../core/tensor.ts";
import type { GpuDevice } from "../../gpu/mod.ts";
import {
  assertClose,
  assertForwardMatches,
  assertSameBits,
  type Case,
  checkCase,
  type Gates,
  gpuDevice,
  plain,
  poolGeometry,
  poolOn,
  randomValues,
  runOn,
} from "./_gpu_helpers.ts";

/** Gate patterns for 1 to 5 levels, and fractional ones (float32 values). */
const GATE_PATTERNS: Gates[] = [
  [0, 0, 0, 0],
  [1, 0, 0, 0],
  [1, 1, 0, 0],
  [1, 1, 1, 0],
  [1, 1, 1, 1],
  [0.5, 0, 0, 0],
  [Math.fround(0.3), Math.fround(0.7), 0.5, Math.fround(0.9)],
  [1, Math.fround(0.2), 0, 0],
  [0, 1, 1, 1], // a zero gate below ones: the ones above get no gradient
];

const ALL_RANGES = [
  { xmax: 1, signed: true },
  { xmax: 1, signed: false },
  { xmax: 0.0371, signed: true },
  { xmax: 123.5, signed: false },
  { xmax: 1e30, signed: true },
  { xmax: 1e-30, signed: false },
];

/**
 * The ranges to test on `dev`. At `xmax = 1e-30` the scale `s32` (about
 * `4.6e-10 xmax`) is subnormal, which WGSL lets a device flush to zero
 * (llvmpipe does not): on other adapters only ranges whose five scales are
 * normal float32 numbers are compared.
 */
function rangesFor(dev: GpuDevice) {
  return ALL_RANGES.filter(({ xmax, signed }) =>
    dev.adapterInfo.isFallbackAdapter ||
    quantizerConstants(Math.fround(xmax), signed, [1, 1, 1, 1]).scales[4] >=
      2 ** -126
  );
}

const describe = (xmax: number, signed: boolean, gates: Gates) =>
  `xmax ${xmax} ${signed ? "signed" : "unsigned"} gates ${gates}`;

Deno.test("the WebGPU quantizer matches the reference on random inputs, every range and gate pattern", async () => {
  const dev = await gpuDevice();
  let seed = 100;
  for (const { xmax, signed } of rangesFor(dev)) {
    for (const gates of GATE_PATTERNS) {
      for (const length of [257, 1000]) {
        const lo = signed ? -1.3 * xmax : -0.3 * xmax;
        const x = randomValues(seed++, length, lo, 1.3 * xmax);
        const dy = randomValues(seed++, length);
        await checkCase(
          dev,
          plain(x, dy, xmax, signed, gates),
          `${describe(xmax, signed, gates)} length ${length}`,
        );
      }
    }
  }
});

Deno.test("the WebGPU quantizer handles lengths that are not multiples of 4 or of the workgroup size", async () => {
  const dev = await gpuDevice();
  let seed = 500;
  for (const length of [1, 3, 5, 63, 65, 257, 1000]) {
    for (const gates of [[1, 1, 0, 0], [1, 1, 1, 1]] as Gates[]) {
      const x = randomValues(seed++, length, -1.2, 1.2);
      const dy = randomValues(seed++, length);
      await checkCase(dev, plain(x, dy, 1, true, gates), `length ${length}`);
    }
  }
});

Deno.test("the WebGPU quantizer handles several channels with odd sizes, with and without z2", async () => {
  const dev = await gpuDevice();
  const shapes = [
    [7, 13],
    [3, 1025], // more than one tile per channel
    [2, 2049],
    [2, 70_001], // more than 64 tiles per channel: two reduction passes
    [1000, 1],
    [5, 257],
    [4, 3],
  ];
  let seed = 900;
  for (const [channels, per] of shapes) {
    const length = channels * per;
    const x = randomValues(seed++, length, -0.7, 0.7);
    const dy = randomValues(seed++, length);
    const z2 = new Float32Array(channels).map((_, c) =>
      [1, 0, 0.5, Math.fround(0.25)][c % 4]
    );
    for (
      const gates of [[1, 0, 0, 0], [1, 1, 1, 1], [0.5, 0.5, 0, 0]] as Gates[]
    ) {
      const what = `${channels} channels of ${per}, gates ${gates}`;
      const c = plain(x, dy, 0.6, true, gates);
      await checkCase(dev, { ...c, z2 }, `${what} with z2`);
      await checkCase(dev, c, `${what} without z2`);
    }
  }
});

Deno.test("the WebGPU quantizer rounds exact ties to even like the reference", async () => {
  const dev = await gpuDevice();
  const cases: { xmax: number; signed: boolean; x: number[] }[] = [];
  // The spec's example: xmax = 1, x = -0.6 at 8 bits is a tie of a coarser level.
  cases.push({ xmax: 1, signed: true, x: [-0.6, 0.6, -0.2, 0.2] });
  for (const { xmax, signed } of rangesFor(dev)) {
    const s = quantizerConstants(Math.fround(xmax), signed, [1, 1, 1, 1])
      .scales;
    const x: number[] = [];
    // Multiples of half a step of each of the first three levels.
    for (let l = 0; l < 3; l++) {
      for (let k = -9; k <= 9; k++) x.push(Math.fround((k * s[l]) / 2));
      for (let k = 0; k < 5; k++) x.push(Math.fround(s[0] * k + s[l] / 2));
    }
    cases.push({ xmax, signed, x });
  }
  let seed = 1300;
  for (const { xmax, signed, x } of cases) {
    const data = Float32Array.from(x);
    const dy = randomValues(seed++, data.length);
    for (const gates of GATE_PATTERNS.slice(0, 5)) {
      await checkCase(
        dev,
        plain(data, dy, xmax, signed, gates),
        `ties, ${describe(xmax, signed, gates)}`,
      );
    }
  }
});

Deno.test("the WebGPU quantizer matches the reference at the clip bounds, zeros and extreme values", async () => {
  const dev = await gpuDevice();
  let seed = 1700;
  for (const { xmax, signed } of rangesFor(dev)) {
    const c = quantizerConstants(Math.fround(xmax), signed, [1, 1, 1, 1]);
    const up = (v: number) => Math.fround(v * (1 + 2 ** -22));
    const x = Float32Array.from([
      c.hi,
      c.lo,
      0,
      -0,
      xmax,
      -xmax,
      up(c.hi),
      up(xmax),
      -up(xmax),
      Math.fround(c.hi * (1 - 2 ** -22)),
      1e30,
      -1e30,
      1e-30,
      -1e-30,
      3e38,
      -3e38,
      2 ** -126,
    ]);
    const dy = randomValues(seed++, x.length);
    for (const gates of GATE_PATTERNS) {
      await checkCase(
        dev,
        plain(x, dy, xmax, signed, gates),
        `bounds, ${describe(xmax, signed, gates)}`,
      );
    }
  }
});

Deno.test("the WebGPU quantizer runs more than 65535 workgroups as a 2-D grid", async () => {
  const dev = await gpuDevice();
  // Backward: one tile per channel, 70000 tiles.
  const channels = 70_000;
  const x = randomValues(1900, channels, -1.2, 1.2);
  const dy = randomValues(1901, channels);
  const z2 = new Float32Array(channels).map((_, c) => c % 3 === 0 ? 0.5 : 1);
  await checkCase(
    dev,
    { ...plain(x, dy, 1, true, [1, 1, 0, 0]), z2 },
    "70000 tiles",
  );
  // Forward: 65535 workgroups of 256 elements and then some. It is
  // elementwise, so the reference only needs the elements past the first row.
  const length = 65_535 * 256 + 1000;
  const big = new Float32Array(length);
  for (let i = 0; i < length; i++) big[i] = ((i * 7919) % 2001 - 1000) / 700;
  const on = (dev: Device, values: Float32Array) => ({
    x: Tensor.from(values, [values.length], dev),
    xmax: Tensor.from([1], [1], dev),
    gates: Tensor.from([1, 1, 0, 0], [4], dev),
  });
  const g = on(dev, big);
  const xq = await dev.kernels.residualQuantize(
    g.x,
    g.xmax,
    g.gates,
    null,
    true,
  )
    .read() as Float32Array;
  dev.free(g.x);
  const tail = length - 65_535 * 256 + 256;
  const r = on(referenceDevice, big.subarray(length - tail));
  const expected = referenceDevice.kernels.residualQuantize(
    r.x,
    r.xmax,
    r.gates,
    null,
    true,
  );
  assertForwardMatches(
    dev,
    xq.subarray(length - tail),
    await expected.read() as Float32Array,
    { xmax: 1, signed: true, gates: [1, 1, 0, 0] },
    "forward past 65535 workgroups",
  );
});
Deno.test("residualQuantizePool on the GPU is the reference's max-pool of the quantized input", async () => {
  const dev = await gpuDevice();
  const geometries = [
    poolGeometry(2, 3, 7, 9, 2, 2, 0),
    poolGeometry(2, 3, 7, 9, 3, 2, 1),
    poolGeometry(1, 2, 5, 5, 3, 1, 1),
    poolGeometry(1, 2, 8, 7, 2, 3, 0),
    poolGeometry(1, 1, 4, 4, 1, 2, 1), // windows wholly in the padding: -inf
    poolGeometry(4, 8, 16, 16, 2, 2, 0), // 2048 outputs: several workgroups
  ];
  let seed = 2500;
  for (const g of geometries) {
    for (const { xmax, signed } of rangesFor(dev)) {
      // Coarse values so that windows hold ties of the quantized values.
      const x = randomValues(seed++, g.n * g.c * g.h * g.w, -1.3, 1.3)
        .map((v) => Math.fround(Math.round(v * 8) / 8 * xmax));
      for (
        const gates of [[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]] as Gates[]
      ) {
        const c = { xmax, signed, gates };
        const what = `pool ${JSON.stringify(g)}, ${
          describe(xmax, signed, gates)
        }`;
        const [actual, expected] = await Promise.all([
          poolOn(dev, x, c, g),
          poolOn(referenceDevice, x, c, g),
        ]);
        assertForwardMatches(dev, actual, expected, c, what);
      }
    }
  }
});

/** Quantizes, re-quantizes and differentiates with device-made gates, in a scope. */
function chain(dev: Device) {
  return dev.scope(() => {
    const k = dev.kernels;
    const x = Tensor.from(randomValues(3100, 3 * 345, -1, 1), [3, 345], dev);
    // Gates and z2 produced on the device: nothing is read in between.
    const gates = k.uniform([7, 11], 4, 0);
    const z2 = k.uniform([7, 11], 3, 4);
    const xmax = Tensor.from([0.9], [1], dev);
    const xq = k.residualQuantize(x, xmax, gates, z2, true);
    const again = k.residualQuantize(xq, xmax, gates, z2, true);
    const grads = k.residualQuantizeBackward(xq, xmax, gates, z2, true, again);
    return { xq, again, ...grads };
  });
}

Deno.test("the WebGPU kernels chain on resident tensors, with device-made gates, inside a scope", async () => {
  const dev = await gpuDevice();
  const gpu = chain(dev);
  const ref = chain(referenceDevice);
  const read = async (t: Tensor | null) => await t!.read() as Float32Array;
  const gates = Array.from(uniform([7, 11], 4, 0)) as Gates;
  const grid = { xmax: 0.9, signed: true, gates };
  for (const name of ["xq", "again", "dx"] as const) {
    assertForwardMatches(
      dev,
      await read(gpu[name]),
      await read(ref[name]),
      grid,
      name,
    );
  }
  for (const name of ["dxmax", "dgates", "dz2"] as const) {
    const [a, e] = [await read(gpu[name]), await read(ref[name])];
    assert.equal(a.length, e.length, `${name} length`);
    a.forEach((v, i) => assertClose(v, e[i], 1e-5, 1e-5, `${name}[${i}]`));
  }
  // The same inputs give the same bits when run again.
  assertSameBits(await read(chain(dev).again), await read(gpu.again), "rerun");
});

Deno.test("the WebGPU quantizer gives empty outputs and zero reductions for empty inputs", async () => {
  const dev = await gpuDevice();
  const c: Case = {
    x: new Float32Array(0),
    dy: new Float32Array(0),
    xmax: 1,
    signed: true,
    gates: [1, 0, 0, 0],
    z2: Float32Array.from([1, 1]),
  };
  const [gpu, ref] = await Promise.all([
    runOn(dev, c),
    runOn(referenceDevice, c),
  ]);
  assert.equal(gpu.xq.length, 0);
  assert.deepEqual(gpu.grads, ref.grads);
  assert.deepEqual([...gpu.grads.dgates], [0, 0, 0, 0]);
  assert.deepEqual([...gpu.grads.dz2!], [0, 0]);
  const g = poolGeometry(1, 2, 0, 0, 2, 2, 0);
  assert.equal((await poolOn(dev, c.x, c, g)).length, 0);
});

Deno.test("the WebGPU quantizer rejects inputs that do not fit, naming the value", async () => {
  const dev = await gpuDevice();
  const k = dev.kernels;
  const t = (values: number[]) => dev.upload(values, [values.length]);
  const x4 = t([0, 0, 0, 0]);
  const [xmax, gates, z2] = [t([1]), t([1, 0, 0, 0]), t([1, 1])];
  const range = (message: string) => (e: Error) =>
    e instanceof RangeError && e.message.includes(message);
  assert.throws(
    () => k.residualQuantize(t([0, 0, 0, 0, 0]), xmax, gates, z2, true),
    range("x has 5 elements, not a multiple of the 2 channels"),
  );
  assert.throws(
    () => k.residualQuantizeBackward(x4, xmax, gates, z2, true, t([0, 0, 0])),
    range("dy has 3"),
  );
  assert.throws(
    () => k.residualQuantize(x4, t([1, 2]), gates, null, true),
    range("xmax has 2"),
  );
  assert.throws(
    () => k.residualQuantize(x4, xmax, t([1, 0, 0]), null, true),
    range("gates has 3"),
  );
  assert.throws(
    () =>
      k.residualQuantizePool(
        x4,
        xmax,
        gates,
        true,
        poolGeometry(1, 1, 3, 3, 2, 2, 0),
      ),
    range("x has 4 elements, the geometry needs 1 x 1 x 3 x 3"),
  );
  assert.throws(
    () =>
      k.residualQuantize(
        dev.upload(new Int32Array(4), [4]),
        xmax,
        gates,
        null,
        true,
      ),
    (e: Error) => e instanceof TypeError && e.message.includes("int32"),
  );
  assert.throws(
    () =>
      k.residualQuantize(Tensor.from([0, 0, 0, 0]), xmax, gates, null, true),
    range("was given to the webgpu"),
  );
});

Deno.test("the GPU device of the quantizer tests can be disposed", async () => {
  const dev = await gpuDevice();
  const t = (values: number[]) => dev.upload(values, [values.length]);
  const [x, xmax, gates] = [t([0.5]), t([1]), t([1, 0, 0, 0])];
  dev.dispose();
  assert.throws(
    () => dev.kernels.residualQuantize(x, xmax, gates, null, true),
    /disposed/,
  );
});
