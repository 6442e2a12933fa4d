/**
 * The WebGPU quantizer against the reference backend.
 *
 * On the fallback adapter (llvmpipe, what CI has) the forward output and
 * `dx` must match bit for bit; on a real GPU a few ulps are allowed (its
 * division may be less exact). Reductions are float32 tree sums per tile:
 * they must match to a relative 1e-4 of the sum of the magnitudes of their
 * terms. These tests need an adapter and fail, not skip, without one.
 */

import assert from "node:assert/strict";
import {
  quantizerConstants,
  type QuantizerGrads,
  type QuantizerPass,
  referenceBackend,
} from "../mod.ts";
import { GpuUnavailableError, requestGpuDevice } from "../gpu/mod.ts";
import { assertBitwise, assertClose, randomValues } from "./helpers.ts";
import { backend, onFallbackAdapter } from "./gpu_helpers.ts";

type Gates = [number, number, number, number];

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
 * The ranges to test on this adapter. At `xmax = 1e-30` the scale `s32`
 * (about `4.6e-10 xmax`) is subnormal, which WGSL lets a device flush to
 * zero (llvmpipe does not): on other adapters only ranges whose five scales
 * are normal float32 numbers are compared.
 */
const RANGES = ALL_RANGES.filter(({ xmax, signed }) =>
  onFallbackAdapter() ||
  quantizerConstants(xmax, signed, [1, 1, 1, 1]).scales[4] >= 2 ** -126
);

const LENGTHS = [1, 3, 5, 63, 65, 257, 1000];

function makePass(
  xmax: number,
  signed: boolean,
  gates: Gates,
  z2: Float32Array | null = null,
): QuantizerPass {
  return {
    channels: z2 ? z2.length : 1,
    z2,
    gates,
    constants: quantizerConstants(xmax, signed, gates),
  };
}

/** The finest scale the forward pass computes. */
function finestScale(pass: QuantizerPass): number {
  return pass.constants.scales[pass.constants.levelsForward - 1];
}

/** Bit-for-bit equality, telling -0 from +0 (stricter than assertBitwise). */
function assertSameBits(
  actual: Float32Array,
  expected: Float32Array,
  what: string,
): void {
  assertBitwise(actual, expected, what);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(
    expected.buffer,
    expected.byteOffset,
    expected.length,
  );
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) {
      assert.fail(
        `${what}: element ${i} has bits 0x${a[i].toString(16)} (${
          actual[i]
        }), expected 0x${e[i].toString(16)} (${expected[i]})`,
      );
    }
  }
}

function assertForwardMatches(
  actual: Float32Array,
  expected: Float32Array,
  pass: QuantizerPass,
  what: string,
): void {
  if (backend().adapterInfo.isFallbackAdapter) {
    assertSameBits(actual, expected, what);
    return;
  }
  assert.equal(actual.length, expected.length, `${what}: length`);
  // A real GPU's division may be a few ulps off and move a rounding tie by
  // one step of the finest computed level.
  const atol = finestScale(pass) + 4 * 2 ** -23 * pass.constants.xmax;
  for (let i = 0; i < actual.length; i++) {
    assertClose(actual[i], expected[i], 4 * 2 ** -23, atol, `${what} [${i}]`);
  }
}

/** Sum of |dy| over the elements of channel `c` (all channels when -1). */
function absSum(dy: Float32Array, pass: QuantizerPass, c = -1): number {
  const per = dy.length / pass.channels;
  const [start, end] = c < 0 ? [0, dy.length] : [c * per, (c + 1) * per];
  let sum = 0;
  for (let i = start; i < end; i++) sum += Math.abs(dy[i]);
  return sum;
}

/**
 * Reductions are float32 tree sums per tile, so their error is a small
 * multiple of 2^-24 times the sum of the magnitudes of their terms, whatever
 * the cancellation. The terms are bounded by |dy| times: |inner_0| <= xmax
 * (dz2), |inner_l| <= s_{l-1} (dgates[l-1]) and |d xc / d xmax| <= 2 (dxmax).
 */
const REDUCTION_TOLERANCE = 1e-5;

function assertGradsMatch(
  actual: QuantizerGrads,
  expected: QuantizerGrads,
  dy: Float32Array,
  pass: QuantizerPass,
  what: string,
): void {
  assertForwardMatches(actual.dx, expected.dx, pass, `${what} dx`);
  const c = pass.constants;
  const total = absSum(dy, pass);
  const tol = REDUCTION_TOLERANCE;
  assertClose(
    actual.dxmax,
    expected.dxmax,
    1e-4,
    tol * 2 * total,
    `${what} dxmax`,
  );
  for (let l = 0; l < 4; l++) {
    assertClose(
      actual.dgates[l],
      expected.dgates[l],
      1e-4,
      tol * c.scales[l] * total,
      `${what} dgates[${l}]`,
    );
  }
  if (expected.dz2 === null) {
    assert.equal(actual.dz2, null, `${what} dz2`);
  } else {
    assert.ok(actual.dz2 !== null, `${what}: dz2 is null`);
    assert.equal(actual.dz2.length, expected.dz2.length, `${what} dz2 length`);
    for (let ch = 0; ch < expected.dz2.length; ch++) {
      assertClose(
        actual.dz2[ch],
        expected.dz2[ch],
        1e-4,
        tol * c.xmax * absSum(dy, pass, ch),
        `${what} dz2[${ch}]`,
      );
    }
  }
}

async function checkCase(
  x: Float32Array,
  dy: Float32Array,
  pass: QuantizerPass,
  what: string,
): Promise<void> {
  const gpu = backend();
  assertForwardMatches(
    await gpu.quantizeForward(x, pass),
    referenceBackend.quantizeForward(x, pass),
    pass,
    `${what} forward`,
  );
  assertGradsMatch(
    await gpu.quantizeBackward(x, dy, pass),
    referenceBackend.quantizeBackward(x, dy, pass),
    dy,
    pass,
    `${what} backward`,
  );
}

Deno.test("the WebGPU tests have an adapter to run on", () => {
  const info = backend().adapterInfo;
  assert.equal(backend().name, "webgpu");
  assert.equal(typeof info.isFallbackAdapter, "boolean");
  assert.ok(info.maxStorageBufferBindingSize >= 2 ** 27);
});

Deno.test("requestGpuDevice() throws GpuUnavailableError when navigator.gpu is missing", async () => {
  Object.defineProperty(navigator, "gpu", {
    value: undefined,
    configurable: true,
  });
  try {
    await assert.rejects(
      () => requestGpuDevice(),
      (e: Error) =>
        e instanceof GpuUnavailableError &&
        e.message.includes("navigator.gpu is undefined"),
    );
  } finally {
    // Uncovers the getter on Navigator.prototype again.
    delete (navigator as { gpu?: unknown }).gpu;
  }
  assert.ok(navigator.gpu, "navigator.gpu is restored");
});

Deno.test("the WebGPU quantizer matches the reference on random inputs, every range and gate pattern", async () => {
  let seed = 100;
  for (const { xmax, signed } of RANGES) {
    for (const gates of GATE_PATTERNS) {
      for (const length of [257, 1000]) {
        const lo = signed ? -1.3 * xmax : -0.3 * xmax;
        const x = randomValues(seed++, length, lo, 1.3 * xmax);
        const dy = randomValues(seed++, length);
        await checkCase(
          x,
          dy,
          makePass(xmax, signed, gates),
          `xmax ${xmax} ${
            signed ? "signed" : "unsigned"
          } gates ${gates} length ${length}`,
        );
      }
    }
  }
});

Deno.test("the WebGPU quantizer handles lengths that are not multiples of 4 or of the workgroup size", async () => {
  let seed = 500;
  for (const length of LENGTHS) {
    for (const gates of [[1, 1, 0, 0], [1, 1, 1, 1]] as Gates[]) {
      const x = randomValues(seed++, length, -1.2, 1.2);
      const dy = randomValues(seed++, length);
      await checkCase(x, dy, makePass(1, true, gates), `length ${length}`);
    }
  }
});

Deno.test("the WebGPU quantizer handles several channels with odd sizes, with and without z2", async () => {
  const shapes = [
    [7, 13],
    [3, 1025], // more than one tile per channel
    [2, 2049],
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
      await checkCase(x, dy, makePass(0.6, true, gates, z2), `${what} with z2`);
      // Channels without z2: one block per channel, z2 counts as 1.
      const pass = { ...makePass(0.6, true, gates), channels };
      await checkCase(x, dy, pass, `${what} without z2`);
    }
  }
});

Deno.test("the WebGPU quantizer rounds exact ties to even like the reference", async () => {
  const cases: { xmax: number; signed: boolean; x: number[] }[] = [];
  // The spec's example: xmax = 1, x = -0.6 at 8 bits is a tie of a coarser level.
  cases.push({ xmax: 1, signed: true, x: [-0.6, 0.6, -0.2, 0.2] });
  for (const { xmax, signed } of RANGES) {
    const c = quantizerConstants(xmax, signed, [1, 1, 1, 1]);
    const x: number[] = [];
    // Multiples of half a step of each of the first three levels.
    for (let l = 0; l < 3; l++) {
      const s = c.scales[l];
      for (let k = -9; k <= 9; k++) x.push(Math.fround((k * s) / 2));
      for (let k = 0; k < 5; k++) {
        x.push(Math.fround(c.scales[0] * k + s / 2));
      }
    }
    cases.push({ xmax, signed, x });
  }
  let seed = 1300;
  for (const { xmax, signed, x } of cases) {
    const data = Float32Array.from(x);
    const dy = randomValues(seed++, data.length);
    for (const gates of GATE_PATTERNS.slice(0, 5)) {
      await checkCase(
        data,
        dy,
        makePass(xmax, signed, gates),
        `ties, xmax ${xmax} ${signed ? "signed" : "unsigned"} gates ${gates}`,
      );
    }
  }
});

Deno.test("the WebGPU quantizer matches the reference at the clip bounds, zeros and extreme values", async () => {
  let seed = 1700;
  for (const { xmax, signed } of RANGES) {
    const c = quantizerConstants(xmax, signed, [1, 1, 1, 1]);
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
        x,
        dy,
        makePass(xmax, signed, gates),
        `bounds, xmax ${xmax} ${signed ? "signed" : "unsigned"} gates ${gates}`,
      );
    }
  }
});

Deno.test("the WebGPU quantizer runs more than 65535 workgroups as a 2-D grid", async () => {
  const gpu = backend();
  // Backward: one tile per channel, 70000 tiles.
  const channels = 70_000;
  const x = randomValues(1900, channels, -1.2, 1.2);
  const dy = randomValues(1901, channels);
  const z2 = new Float32Array(channels).map((_, c) => c % 3 === 0 ? 0.5 : 1);
  await checkCase(x, dy, makePass(1, true, [1, 1, 0, 0], z2), "70000 tiles");
  // Forward: 65535 workgroups of 256 elements and then some. It is
  // elementwise, so the reference only needs the elements past the first row.
  const length = 65_535 * 256 + 1000;
  const big = new Float32Array(length);
  for (let i = 0; i < length; i++) big[i] = ((i * 7919) % 2001 - 1000) / 700;
  const pass = makePass(1, true, [1, 1, 0, 0]);
  const xq = await gpu.quantizeForward(big, pass);
  const tail = length - 65_535 * 256 + 256;
  assertForwardMatches(
    xq.subarray(length - tail),
    referenceBackend.quantizeForward(big.subarray(length - tail), pass),
    pass,
    "forward past 65535 workgroups",
  );
});

Deno.test("the resident API gives the same results as the one-shot calls", async () => {
  const gpu = backend();
  const z2 = Float32Array.from([1, 0.5, 0]);
  const pass = makePass(0.9, true, [1, 1, 0, 0], z2);
  const x = randomValues(2001, 3 * 345, -1, 1);
  const dy = randomValues(2002, 3 * 345);
  const xb = gpu.upload(x);
  const dyb = gpu.upload(dy);
  const out = gpu.allocate(x.length);
  const dx = gpu.allocate(x.length);
  try {
    gpu.forwardResident(xb, out, pass);
    gpu.forwardResident(xb, out, pass); // back-to-back submissions are fine
    await gpu.sync();
    assertBitwise(
      await gpu.read(out),
      await gpu.quantizeForward(x, pass),
      "xq",
    );
    const rest = await gpu.backwardResident(xb, dyb, dx, pass);
    const full = await gpu.quantizeBackward(x, dy, pass);
    assertBitwise(await gpu.read(dx), full.dx, "dx");
    assert.equal(rest.dxmax, full.dxmax);
    assert.deepEqual(rest.dgates, full.dgates);
    assert.deepEqual(rest.dz2, full.dz2);
  } finally {
    for (const b of [xb, dyb, out, dx]) b.destroy();
  }
});

Deno.test("the WebGPU quantizer returns empty results for empty inputs", async () => {
  const gpu = backend();
  const pass = makePass(1, true, [1, 0, 0, 0], Float32Array.from([1, 1]));
  const empty = new Float32Array(0);
  assert.deepEqual(await gpu.quantizeForward(empty, pass), empty);
  const grads = await gpu.quantizeBackward(empty, empty, pass);
  assert.deepEqual(
    grads,
    referenceBackend.quantizeBackward(empty, empty, pass),
  );
});

Deno.test("the WebGPU quantizer rejects inputs that do not fit the pass or the device, naming the value", async () => {
  const gpu = backend();
  const pass = makePass(1, true, [1, 0, 0, 0], Float32Array.from([1, 1]));
  await assert.rejects(
    () => gpu.quantizeForward(new Float32Array(5), pass),
    (e: Error) => e instanceof RangeError && e.message.includes("length 5"),
  );
  await assert.rejects(
    () => gpu.quantizeBackward(new Float32Array(4), new Float32Array(3), pass),
    (e: Error) => e instanceof RangeError && e.message.includes("dy has 3"),
  );
  const bad = { ...pass, z2: Float32Array.from([1, 1, 1]) };
  await assert.rejects(
    () => gpu.quantizeForward(new Float32Array(4), bad),
    (e: Error) => e instanceof RangeError && e.message.includes("z2 has 3"),
  );
  const limit = gpu.adapterInfo.maxStorageBufferBindingSize;
  const tooMany = Math.floor(limit / 4) + 1;
  assert.throws(
    () => gpu.allocate(tooMany),
    (e: Error) =>
      e instanceof RangeError && e.message.includes(`${tooMany} elements`),
  );
  const xb = gpu.allocate(4);
  const out = gpu.allocate(3);
  try {
    assert.throws(
      () => gpu.forwardResident(xb, out, pass),
      (e: Error) => e instanceof RangeError && e.message.includes("3 elements"),
    );
  } finally {
    xb.destroy();
    out.destroy();
  }
});

Deno.test("a destroyed WebGPU backend refuses to run", async () => {
  const gpu = backend();
  gpu.destroy();
  await assert.rejects(
    () =>
      gpu.quantizeForward(new Float32Array(1), makePass(1, true, [0, 0, 0, 0])),
    /destroyed/,
  );
});
