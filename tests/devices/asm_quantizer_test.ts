/** The WASM device's quantizer kernels against the reference device. */

import assert from "node:assert/strict";
import { createWasmDevice, type WasmDevice } from "../../asm/device.ts";
import { splitElements } from "../../asm/pool.ts";
import type { Device } from "../../core/device.ts";
import type { PoolGeometry } from "../../core/kernels.ts";
import { referenceDevice } from "../../core/reference/device.ts";
import { quantizerConstants } from "../../core/reference/quantizer.ts";
import type { Tensor } from "../../core/tensor.ts";
import { assertBitwise, randomValues } from "../_fixtures.ts";

type Gates = readonly [number, number, number, number];

const GATE_PATTERNS: readonly Gates[] = [
  [0, 0, 0, 0], // 2 bits
  [1, 0, 0, 0], // 4 bits
  [1, 1, 0, 0], // 8 bits
  [1, 1, 1, 0], // 16 bits
  [1, 1, 1, 1], // 32 bits
  [0.5, 0.3, 0.7, 0.2], // fractional (sampled) gates
  [1, 0, 1, 0], // a gap in the chain
  [0.9, 1, 0, 0.25],
];

interface Case {
  name: string;
  x: Float32Array;
  dy: Float32Array;
  channels: number;
  z2: Float32Array | null;
  xmax: number;
  signed: boolean;
}

function makeCase(
  name: string,
  x: ArrayLike<number>,
  options: Partial<Omit<Case, "name" | "x">> = {},
): Case {
  const xs = Float32Array.from(x);
  return {
    name,
    x: xs,
    dy: options.dy ?? randomValues(xs.length + 17, xs.length, -1, 1),
    channels: options.channels ?? 1,
    z2: options.z2 ?? null,
    xmax: options.xmax ?? 1,
    signed: options.signed ?? true,
  };
}

function cases(): Case[] {
  const list: Case[] = [];
  for (const n of [1, 3, 5, 7, 1023]) {
    list.push(makeCase(`${n} random values`, randomValues(n, n, -1.3, 1.3)));
  }
  list.push(
    makeCase("7 channels of 13 with z2", randomValues(91, 91, -1.3, 1.3), {
      channels: 7,
      z2: Float32Array.from([1, 0, 0.5, 1, 0.25, 1, 0.75]),
    }),
  );
  list.push(
    makeCase(
      "5 channels of 211 with z2, unsigned",
      randomValues(5, 1055, -0.2, 2.2),
      {
        channels: 5,
        z2: Float32Array.from([1, 1, 0.3, 0, 1]),
        xmax: 2,
        signed: false,
      },
    ),
  );
  // Without z2 the kernels see one channel; the three are a shape only.
  list.push(
    makeCase("3 channels of 5 without z2", randomValues(3, 15, -1, 1), {
      channels: 3,
    }),
  );
  // xmax = 1 signed, x = -0.6 at 8 bits hits an exact tie in a coarse level.
  list.push(
    makeCase("the documented rounding tie", [-0.6, 0.6, -0.6, 0.6, -0.6]),
  );
  const s2 = quantizerConstants(1, true, [1, 1, 1, 1]).scales;
  const ties: number[] = [];
  for (let k = -3; k <= 3; k++) {
    for (const s of s2) {
      ties.push(k * s / 2, k * s / 2 + s2[0], -k * s / 2 - s2[0] / 2);
    }
  }
  list.push(makeCase("multiples of half a scale", ties));
  const c = quantizerConstants(1, true, [1, 1, 0, 0]);
  const bounds = [
    c.hi,
    c.lo,
    0,
    -0,
    1,
    -1,
    1.5,
    -1.5,
    Infinity,
    -Infinity,
    NaN,
  ];
  list.push(makeCase("values at the clip bounds", bounds));
  list.push(
    makeCase("values at the clip bounds, unsigned", bounds, { signed: false }),
  );
  list.push(
    makeCase("zeros", new Float32Array(9), { dy: new Float32Array(9) }),
  );
  list.push(
    makeCase("a huge range", randomValues(11, 37, -1.2e30, 1.2e30), {
      xmax: 1e30,
    }),
  );
  list.push(
    makeCase("a tiny range", randomValues(12, 37, -1.2e-30, 1.2e-30), {
      xmax: 1e-30,
    }),
  );
  return list;
}

/** The tensors of a case and gate pattern on `dev`. */
function inputs(dev: Device, c: Case, gates: Gates) {
  return {
    x: dev.upload(c.x, [c.x.length]),
    dy: dev.upload(c.dy, [c.dy.length]),
    xmax: dev.upload([c.xmax], [1]),
    gates: dev.upload(gates, [4]),
    z2: c.z2 ? dev.upload(c.z2, [c.z2.length]) : null,
  };
}

interface Grads {
  dx: Float32Array;
  dxmax: number;
  dgates: Float32Array;
  dz2: Float32Array | null;
}

/** Forward output and gradients of one case on `dev`. */
async function run(dev: Device, c: Case, gates: Gates) {
  const t = inputs(dev, c, gates);
  const k = dev.kernels;
  const xq = await k.residualQuantize(t.x, t.xmax, t.gates, t.z2, c.signed)
    .read() as Float32Array;
  const g = k.residualQuantizeBackward(
    t.x,
    t.xmax,
    t.gates,
    t.z2,
    c.signed,
    t.dy,
  );
  const read = async (r: Tensor) => await r.read() as Float32Array;
  const grads: Grads = {
    dx: await read(g.dx),
    dxmax: (await read(g.dxmax))[0],
    dgates: await read(g.dgates),
    dz2: g.dz2 ? await read(g.dz2) : null,
  };
  return { xq, grads };
}

/**
 * The kernels sum products in float32 lanes (32 per lane) before float64, so
 * a sum's error is bounded by about 34 float32 roundings (2e-6) of the sum of
 * the magnitudes of its terms. `scale` bounds that: sum |dy| times a bound on
 * |inner_l| (xmax for l = 0, s_{l-1} above) or on |d xc / d xmax|.
 */
function assertSumsClose(
  actual: Grads,
  expected: Grads,
  c: Case,
  gates: Gates,
  what: string,
): void {
  const constants = quantizerConstants(c.xmax, c.signed, gates);
  const channels = c.z2 ? c.channels : 1;
  const per = c.x.length / channels;
  const rtol = 1e-5;
  let total = 0;
  for (let ch = 0; ch < channels; ch++) {
    let absDy = 0;
    for (let i = ch * per; i < (ch + 1) * per; i++) absDy += Math.abs(c.dy[i]);
    total += absDy * (c.z2 ? Math.abs(c.z2[ch]) : 1);
    if (actual.dz2 && expected.dz2) {
      const atol = rtol * absDy * 2 * c.xmax;
      const err = Math.abs(actual.dz2[ch] - expected.dz2[ch]);
      assert.ok(
        err <= atol + rtol * Math.abs(expected.dz2[ch]),
        `${what}: dz2[${ch}] is ${actual.dz2[ch]}, expected ${
          expected.dz2[ch]
        }`,
      );
    }
  }
  assert.equal(
    actual.dz2 === null,
    expected.dz2 === null,
    `${what}: dz2 presence`,
  );
  const s = constants.scales;
  for (let l = 0; l < 4; l++) {
    const atol = rtol * total * s[l];
    const err = Math.abs(actual.dgates[l] - expected.dgates[l]);
    assert.ok(
      err <= atol + rtol * Math.abs(expected.dgates[l]),
      `${what}: dgates[${l}] is ${actual.dgates[l]}, expected ${
        expected.dgates[l]
      }`,
    );
  }
  const termBound = 1 +
    constants.xmaxFactors.reduce((a, f) => a + Math.abs(f), 0);
  const err = Math.abs(actual.dxmax - expected.dxmax);
  assert.ok(
    err <= rtol * total * termBound + rtol * Math.abs(expected.dxmax),
    `${what}: dxmax is ${actual.dxmax}, expected ${expected.dxmax}`,
  );
}

async function checkAgainstReference(
  dev: WasmDevice,
  label: string,
): Promise<void> {
  for (const c of cases()) {
    for (const gates of GATE_PATTERNS) {
      const what = `${label}, ${c.name}, gates [${gates}]`;
      const actual = await run(dev, c, gates);
      const expected = await run(referenceDevice, c, gates);
      assertBitwise(actual.xq, expected.xq, `${what}: xq`);
      assertBitwise(actual.grads.dx, expected.grads.dx, `${what}: dx`);
      assertSumsClose(actual.grads, expected.grads, c, gates, what);
    }
  }
}

Deno.test("a one-thread WASM device matches the reference bit for bit forward and closely backward", async () => {
  using dev = await createWasmDevice({ threads: 1 });
  await checkAgainstReference(dev, "1 thread");
});

Deno.test("a two-thread WASM device splitting every call matches the reference", async () => {
  using dev = await createWasmDevice({ threads: 2, parallelThreshold: 1 });
  assert.equal(dev.threads, 2);
  await checkAgainstReference(dev, "2 threads");
});

Deno.test("a two-thread WASM device keeps 1M-element sums accurate", async () => {
  using dev = await createWasmDevice({ threads: 2 });
  const n = 1 << 20;
  const c = makeCase(
    "1M values in 64 channels",
    randomValues(99, n, -1.2, 1.2),
    {
      channels: 64,
      z2: Float32Array.from({ length: 64 }, (_, i) => (i % 5 === 0 ? 0.5 : 1)),
    },
  );
  const gates = [1, 1, 0, 0] as const;
  const actual = await run(dev, c, gates);
  const expected = await run(referenceDevice, c, gates);
  assertBitwise(actual.grads.dx, expected.grads.dx, "1M: dx");
  assertSumsClose(actual.grads, expected.grads, c, gates, "1M");
  const rel = Math.abs(actual.grads.dxmax - expected.grads.dxmax) /
    Math.abs(expected.grads.dxmax);
  assert.ok(rel < 1e-5, `1M: dxmax relative error ${rel}`);
});

Deno.test("resident tensors chain: the forward output feeds the backward without leaving the memory", async () => {
  using dev = await createWasmDevice({ threads: 2, parallelThreshold: 64 });
  const c = makeCase("1000 values", randomValues(5, 1000, -1.3, 1.3), {
    channels: 8,
    z2: Float32Array.from([1, 0.5, 0, 1, 1, 1, 0.25, 1]),
  });
  const gates = [1, 1, 0, 0] as const;
  const t = inputs(dev, c, gates);
  const r = inputs(referenceDevice, c, gates);
  const k = dev.kernels;
  const rk = referenceDevice.kernels;
  // Quantize twice (xq is on the grid, so the second pass is exact) and
  // differentiate the second pass at the first's output.
  const xq = k.residualQuantize(t.x, t.xmax, t.gates, t.z2, true);
  const xqRef = rk.residualQuantize(r.x, r.xmax, r.gates, r.z2, true);
  assertBitwise(await xq.read(), await xqRef.read(), "resident xq");
  const grads = k.residualQuantizeBackward(
    xq,
    t.xmax,
    t.gates,
    t.z2,
    true,
    t.dy,
  );
  const expected = rk.residualQuantizeBackward(
    xqRef,
    r.xmax,
    r.gates,
    r.z2,
    true,
    r.dy,
  );
  assertBitwise(await grads.dx.read(), await expected.dx.read(), "resident dx");
  const toGrads = async (g: typeof grads): Promise<Grads> => ({
    dx: await g.dx.read() as Float32Array,
    dxmax: (await g.dxmax.read())[0],
    dgates: await g.dgates.read() as Float32Array,
    dz2: g.dz2 ? await g.dz2.read() as Float32Array : null,
  });
  const shifted = { ...c, x: await xqRef.read() as Float32Array };
  assertSumsClose(
    await toGrads(grads),
    await toGrads(expected),
    shifted,
    gates,
    "resident",
  );
});

Deno.test("quantizer kernels reject mismatched, foreign and freed tensors", async () => {
  using dev = await createWasmDevice({ threads: 1 });
  using other = await createWasmDevice({ threads: 1 });
  const k = dev.kernels;
  const xmax = dev.upload([1], [1]);
  const gates = dev.upload([1, 1, 0, 0], [4]);
  const a = dev.zeros([8]);
  assert.throws(
    () =>
      k.residualQuantizeBackward(a, xmax, gates, null, true, dev.zeros([7])),
    /dy has 7 elements, expected 8/,
  );
  assert.throws(
    () => k.residualQuantize(other.zeros([8]), xmax, gates, null, true),
    /was given to the wasm \(1 thread, simd128\) device/,
  );
  assert.throws(
    () => k.residualQuantize(a, xmax, gates, dev.upload([1, 1, 1], [3]), true),
    /Cannot quantize 8 elements in 3 channels/,
  );
  assert.throws(
    () => k.residualQuantize(a, dev.upload([1, 2], [2]), gates, null, true),
    /xmax has 2 elements, expected 1/,
  );
  dev.free(a);
  assert.throws(
    () => k.residualQuantize(a, xmax, gates, null, true),
    /used after its device scope ended or it was disposed/,
  );
  assert.throws(() => dev.zeros([-1]), /dimension -1/);
});

Deno.test("createWasmDevice rejects a bad thread count or threshold", async () => {
  await assert.rejects(
    () => createWasmDevice({ threads: 0 }),
    /with 0 threads/,
  );
  await assert.rejects(
    () => createWasmDevice({ threads: 1.5 }),
    /with 1.5 threads/,
  );
  await assert.rejects(
    () => createWasmDevice({ threads: 65 }),
    /with 65 threads/,
  );
  await assert.rejects(
    () => createWasmDevice({ threads: 1, parallelThreshold: 0 }),
    /parallelThreshold 0/,
  );
});

Deno.test("the copy kernel copies every bit", async () => {
  for (const threads of [1, 2]) {
    using dev = await createWasmDevice({ threads, parallelThreshold: 16 });
    for (const n of [0, 1, 3, 17, 1023, 100_003]) {
      const bits = new Uint32Array(n);
      for (let i = 0; i < n; i++) {
        bits[i] = (Math.imul(i, 2654435761) ^ 0x7fc00001) >>> 0;
      }
      const x = dev.upload(new Int32Array(bits.buffer), [n]);
      const y = dev.zeros([n], "int32");
      const [px, py] = [dev.offset(x), dev.offset(y)];
      dev.run(
        "copy",
        splitElements(dev, n).map((job) => ({ x: px, y: py, ...job })),
      );
      assert.deepEqual(
        new Uint32Array((await y.read()).buffer),
        bits,
        `copy of ${n} elements on ${threads} threads`,
      );
    }
  }
});

Deno.test("residualQuantizePool equals the reference max-pool of the reference xq, bit for bit", async () => {
  // [n, c, h, w, kernel, stride, padding]: LeNet's 2x2/2 (SIMD path, with
  // a ragged column count), odd sizes, overlap and padding (scalar path).
  const shapes = [
    [2, 3, 24, 24, 2, 2, 0],
    [3, 2, 10, 14, 2, 2, 0],
    [1, 5, 7, 9, 3, 2, 1],
    [1, 1, 5, 5, 2, 1, 0],
    [2, 3, 1, 1, 1, 1, 0],
  ];
  const rk = referenceDevice.kernels;
  for (const threads of [1, 2]) {
    using dev = await createWasmDevice({ threads, parallelThreshold: 1 });
    for (const [n, c, h, w, kernel, stride, padding] of shapes) {
      const oh = Math.floor((h + 2 * padding - kernel) / stride) + 1;
      const ow = Math.floor((w + 2 * padding - kernel) / stride) + 1;
      const g: PoolGeometry = { n, c, h, w, oh, ow, kernel, stride, padding };
      const x = randomValues(n * h + w, n * c * h * w, -1, 2);
      // Values the ReLU-free clip must handle as the ReLU would, and ties.
      x.set([NaN, -Infinity, -0, 0, 0.65, 0.65], 0);
      const shape = [n, c, h, w];
      const xw = dev.upload(x, shape);
      const xr = referenceDevice.upload(x, shape);
      for (const gates of GATE_PATTERNS) {
        for (const xmax of [1.3, 0.2]) {
          const xq = rk.residualQuantize(
            xr,
            referenceDevice.upload([xmax], [1]),
            referenceDevice.upload(gates, [4]),
            null,
            false,
          );
          const expected = rk.maxPool2d(xq, g).y;
          const actual = dev.kernels.residualQuantizePool(
            xw,
            dev.upload([xmax], [1]),
            dev.upload(gates, [4]),
            false,
            g,
          );
          assertBitwise(
            await actual.read(),
            await expected.read(),
            `${threads} thread(s), [${n},${c},${h},${w}] ${kernel}/${stride}/${padding}, gates ${gates}, xmax ${xmax}`,
          );
        }
      }
    }
  }
});

Deno.test("residualQuantizePool refuses a wrong length", async () => {
  using dev = await createWasmDevice({ threads: 1 });
  const g = {
    n: 1,
    c: 1,
    h: 2,
    w: 2,
    oh: 1,
    ow: 1,
    kernel: 2,
    stride: 2,
    padding: 0,
  };
  assert.throws(
    () =>
      dev.kernels.residualQuantizePool(
        dev.zeros([5]),
        dev.upload([1], [1]),
        dev.upload([1, 0, 0, 0], [4]),
        false,
        g,
      ),
    /has 5 elements, expected 4/,
  );
});
