/** The WASM quantizer kernels against the reference backend. */

import assert from "node:assert/strict";
import { quantizerConstants, type QuantizerPass } from "../core/backend.ts";
import { referenceBackend } from "../core/reference.ts";
import {
  createWasmBackend,
  type WasmBackend,
  wasmBackend,
} from "../asm/backend.ts";
import { assertBitwise, randomValues } from "./helpers.ts";

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

function pass(c: Case, gates: Gates): QuantizerPass {
  return {
    channels: c.channels,
    z2: c.z2,
    gates,
    constants: quantizerConstants(c.xmax, c.signed, gates),
  };
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

function assertSameBits(
  actual: Float32Array,
  expected: Float32Array,
  what: string,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(
    expected.buffer,
    expected.byteOffset,
    expected.length,
  );
  for (let i = 0; i < a.length; i++) {
    if (
      a[i] !== b[i] && !(Number.isNaN(actual[i]) && Number.isNaN(expected[i]))
    ) {
      assert.fail(
        `${what}: element ${i} is ${actual[i]}, expected ${expected[i]}`,
      );
    }
  }
}

/**
 * The kernels sum products in float32 lanes (32 per lane) before float64, so
 * a sum's error is bounded by about 34 float32 roundings (2e-6) of the sum of
 * the magnitudes of its terms. `scale` bounds that: sum |dy| times a bound on
 * |inner_l| (xmax for l = 0, s_{l-1} above) or on |d xc / d xmax|.
 */
function assertSumsClose(
  actual: ReturnType<WasmBackend["backwardResident"]>,
  expected: ReturnType<WasmBackend["backwardResident"]>,
  c: Case,
  p: QuantizerPass,
  what: string,
): void {
  const per = c.x.length / c.channels;
  const rtol = 1e-5;
  let total = 0;
  for (let ch = 0; ch < c.channels; ch++) {
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
  const s = p.constants.scales;
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
    p.constants.xmaxFactors.reduce((a, f) => a + Math.abs(f), 0);
  const err = Math.abs(actual.dxmax - expected.dxmax);
  assert.ok(
    err <= rtol * total * termBound + rtol * Math.abs(expected.dxmax),
    `${what}: dxmax is ${actual.dxmax}, expected ${expected.dxmax}`,
  );
}

function checkAgainstReference(
  backend: {
    quantizeForward: typeof referenceBackend.quantizeForward;
    quantizeBackward: typeof referenceBackend.quantizeBackward;
  },
  label: string,
): void {
  for (const c of cases()) {
    for (const gates of GATE_PATTERNS) {
      const p = pass(c, gates);
      const what = `${label}, ${c.name}, gates [${gates}]`;
      assertSameBits(
        backend.quantizeForward(c.x, p),
        referenceBackend.quantizeForward(c.x, p),
        `${what}: xq`,
      );
      const actual = backend.quantizeBackward(c.x, c.dy, p);
      const expected = referenceBackend.quantizeBackward(c.x, c.dy, p);
      assertSameBits(actual.dx, expected.dx, `${what}: dx`);
      assertSumsClose(actual, expected, c, p, what);
    }
  }
}

Deno.test("wasmBackend matches the reference bit for bit forward and closely backward", () => {
  checkAgainstReference(wasmBackend, "wasmBackend");
});

Deno.test("a one-thread WASM backend matches the reference", async () => {
  using wasm = await createWasmBackend({ threads: 1 });
  checkAgainstReference(wasm, "1 thread");
});

Deno.test("a two-thread WASM backend splitting every call matches the reference", async () => {
  using wasm = await createWasmBackend({ threads: 2, parallelThreshold: 1 });
  assert.equal(wasm.threads, 2);
  checkAgainstReference(wasm, "2 threads");
});

Deno.test("a two-thread WASM backend keeps 1M-element sums accurate", async () => {
  using wasm = await createWasmBackend({ threads: 2 });
  const n = 1 << 20;
  const c = makeCase(
    "1M values in 64 channels",
    randomValues(99, n, -1.2, 1.2),
    {
      channels: 64,
      z2: Float32Array.from({ length: 64 }, (_, i) => (i % 5 === 0 ? 0.5 : 1)),
    },
  );
  const p = pass(c, [1, 1, 0, 0]);
  const actual = wasm.quantizeBackward(c.x, c.dy, p);
  const expected = referenceBackend.quantizeBackward(c.x, c.dy, p);
  assertSameBits(actual.dx, expected.dx, "1M: dx");
  assertSumsClose(actual, expected, c, p, "1M");
  const rel = Math.abs(actual.dxmax - expected.dxmax) /
    Math.abs(expected.dxmax);
  assert.ok(rel < 1e-5, `1M: dxmax relative error ${rel}`);
});

Deno.test("resident buffers give the same results as the copying API", async () => {
  using wasm = await createWasmBackend({ threads: 2, parallelThreshold: 64 });
  const c = makeCase("1000 values", randomValues(5, 1000, -1.3, 1.3), {
    channels: 8,
    z2: Float32Array.from([1, 0.5, 0, 1, 1, 1, 0.25, 1]),
  });
  const p = pass(c, [1, 1, 0, 0]);
  const x = wasm.alloc(1000);
  const dy = wasm.alloc(1000);
  const out = wasm.alloc(1000);
  x.view().set(c.x);
  dy.view().set(c.dy);
  wasm.forwardResident(x, out, p);
  assertSameBits(
    out.view(),
    referenceBackend.quantizeForward(c.x, p),
    "resident xq",
  );
  const grads = wasm.backwardResident(x, dy, out, p);
  const expected = referenceBackend.quantizeBackward(c.x, c.dy, p);
  assertSameBits(out.view(), expected.dx, "resident dx");
  assertSumsClose(grads, expected, c, p, "resident");
});

Deno.test("resident calls reject mismatched, foreign and freed buffers", async () => {
  using wasm = await createWasmBackend({ threads: 1 });
  using other = await createWasmBackend({ threads: 1 });
  const p = pass(makeCase("", [0]), [1, 1, 0, 0]);
  const a = wasm.alloc(8);
  assert.throws(
    () => wasm.forwardResident(a, wasm.alloc(7), p),
    /lengths differ \(8, 7\)/,
  );
  assert.throws(() => wasm.forwardResident(a, other.alloc(8), p), TypeError);
  assert.throws(
    () => wasm.forwardResident(a, a, { ...p, channels: 3 }),
    /Cannot quantize 8 elements in 3 channels/,
  );
  wasm.reset();
  assert.throws(() => a.view(), /freed by reset\(\)/);
  assert.throws(() => wasm.alloc(-1), /Cannot allocate -1 float32 elements/);
});

Deno.test("createWasmBackend rejects a bad thread count", async () => {
  await assert.rejects(
    () => createWasmBackend({ threads: 0 }),
    /with 0 threads/,
  );
  await assert.rejects(
    () => createWasmBackend({ threads: 1.5 }),
    /with 1.5 threads/,
  );
});

Deno.test("the copy kernel copies every bit", async () => {
  for (const threads of [1, 2]) {
    using wasm = await createWasmBackend({ threads, parallelThreshold: 16 });
    for (const n of [0, 1, 3, 17, 1023, 100_003]) {
      const x = wasm.alloc(n);
      const y = wasm.alloc(n);
      const bits = new Uint32Array(x.view().buffer, x.byteOffset, n);
      for (let i = 0; i < n; i++) {
        bits[i] = (Math.imul(i, 2654435761) ^ 0x7fc00001) >>> 0;
      }
      wasm.copyResident(x, y);
      assert.deepEqual(
        new Uint32Array(y.view().buffer, y.byteOffset, n),
        bits,
        `copy of ${n} elements on ${threads} threads`,
      );
    }
  }
});

Deno.test("quantizePoolForward equals the reference max-pool of the reference xq, bit for bit", async () => {
  const { maxPool2dReference } = await import("../core/ops/pool.ts");
  // [n, c, h, w, kernel, stride, padding]: LeNet's 2x2/2 (SIMD path, with
  // a ragged column count), odd sizes, overlap and padding (scalar path).
  const shapes = [
    [2, 3, 24, 24, 2, 2, 0],
    [3, 2, 10, 14, 2, 2, 0],
    [1, 5, 7, 9, 3, 2, 1],
    [1, 1, 5, 5, 2, 1, 0],
    [2, 3, 1, 1, 1, 1, 0],
  ];
  for (const threads of [1, 2]) {
    using wasm = await createWasmBackend({ threads, parallelThreshold: 1 });
    for (const [n, c, h, w, kernel, stride, padding] of shapes) {
      const oh = Math.floor((h + 2 * padding - kernel) / stride) + 1;
      const ow = Math.floor((w + 2 * padding - kernel) / stride) + 1;
      const g = { n, c, h, w, oh, ow, kernel, stride, padding };
      const x = randomValues(n * h + w, n * c * h * w, -1, 2);
      // Values the ReLU-free clip must handle as the ReLU would, and ties.
      x.set([NaN, -Infinity, -0, 0, 0.65, 0.65], 0);
      for (const gates of GATE_PATTERNS) {
        for (const xmax of [1.3, 0.2]) {
          const p: QuantizerPass = {
            channels: 1,
            z2: null,
            gates,
            constants: quantizerConstants(xmax, false, gates),
          };
          const expected =
            maxPool2dReference(referenceBackend.quantizeForward(x, p), g).y;
          assertBitwise(
            wasm.quantizePoolForward(x, p, g),
            expected,
            `${threads} thread(s), [${n},${c},${h},${w}] ${kernel}/${stride}/${padding}, gates ${gates}, xmax ${xmax}`,
          );
        }
      }
    }
  }
});

Deno.test("quantizePoolForward refuses z2 gates and a wrong length", () => {
  const gates = [1, 0, 0, 0] as const;
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
  const p: QuantizerPass = {
    channels: 1,
    z2: null,
    gates,
    constants: quantizerConstants(1, false, gates),
  };
  assert.throws(
    () =>
      wasmBackend.quantizePoolForward!(new Float32Array(4), {
        ...p,
        z2: new Float32Array([1]),
      }, g),
    /pruning gates z2/,
  );
  assert.throws(
    () => wasmBackend.quantizePoolForward!(new Float32Array(5), p, g),
    /has 5 elements, expected 4/,
  );
});
