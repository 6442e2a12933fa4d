import assert from "node:assert/strict";
import {
  gatesForBits,
  initRange,
  quantize,
  quantizeGrad,
  uniformQuantize,
} from "../../core/methods/bayesian_bits/quantizer.ts";
import {
  quantizeForwardFloat64,
  quantizerPass,
} from "../../core/reference/quantizer.ts";
import { Tensor } from "../../core/tensor.ts";
import { assertClose, randomValues } from "../_fixtures.ts";

const RANGES = [
  { xmax: 1, signed: true },
  { xmax: 1, signed: false },
  { xmax: 0.0371, signed: true },
  { xmax: 123.5, signed: false },
];

/** Distance of v / s to the nearest half-integer, in units of s. */
function tieDistance(v: number, s: number): number {
  const t = v / s;
  return Math.abs(t - Math.floor(t) - 0.5);
}

Deno.test("quantize() with gates on up to b bits equals a plain b-bit quantizer (2, 4, 8 bits)", () => {
  for (const range of RANGES) {
    const lo = range.signed ? -1.2 * range.xmax : -0.2 * range.xmax;
    const x = Tensor.from(randomValues(11, 4000, lo, 1.2 * range.xmax));
    // The grid step of a plain b-bit quantizer: its top level over its level count.
    const stepOf = (b: number) =>
      uniformQuantize(Tensor.from([range.xmax]), range, b).get(0) /
      (range.signed ? 2 ** (b - 1) - 1 : 2 ** b - 1);
    for (const bits of [2, 4, 8]) {
      const decomposed = quantize(x, range, gatesForBits(bits))
        .toFloat32Array();
      const direct = uniformQuantize(x, range, bits).toFloat32Array();
      const grid = stepOf(bits);
      const coarser: number[] = [];
      for (let b = 2; b <= bits; b *= 2) coarser.push(stepOf(b));
      let compared = 0;
      const data = x.toFloat32Array();
      for (let i = 0; i < data.length; i++) {
        // Skip inputs within 1e-3 grid steps of a tie at any coarser level.
        const nearTie = coarser.some((step) =>
          tieDistance(data[i], step) < 1e-3
        );
        if (nearTie) continue;
        compared++;
        assertClose(
          decomposed[i],
          direct[i],
          0,
          1e-3 * grid,
          `${bits} bits, x = ${data[i]}`,
        );
      }
      assert.ok(compared > 3900, `compared ${compared}`);
    }
  }
});

Deno.test("quantize() at 16 bits equals a plain 16-bit quantizer to within one s16 step", () => {
  for (const range of RANGES) {
    const x = Tensor.from(
      randomValues(12, 2000, range.signed ? -range.xmax : 0, range.xmax),
    );
    const decomposed = quantize(x, range, gatesForBits(16)).toFloat32Array();
    const direct = uniformQuantize(x, range, 16).toFloat32Array();
    const s16 = (range.signed ? 2 : 1) * range.xmax / 3 / 5 / 17 / 257;
    for (let i = 0; i < x.size; i++) {
      assertClose(decomposed[i], direct[i], 0, s16 * 1.0001, `x ${i}`);
    }
  }
});

Deno.test("quantize() at 16 bits in float64 equals a float64 16-bit quantizer away from ties", () => {
  const range = { xmax: 1, signed: true };
  const x = randomValues(13, 2000, -1, 1);
  const xq = quantizeForwardFloat64(
    x,
    quantizerPass(range.xmax, range.signed, [1, 1, 1, 0], null),
  );
  const hi = Math.fround(1 - 1e-7);
  const s16 = 2 / 3 / 5 / 17 / 257;
  let compared = 0;
  for (let i = 0; i < x.length; i++) {
    if (tieDistance(x[i], s16) < 1e-3) continue;
    const expected = Math.fround(
      s16 * Math.round(Math.min(hi, Math.max(-hi, x[i])) / s16),
    );
    assert.equal(xq[i], expected, `x = ${x[i]}`);
    compared++;
  }
  assert.ok(compared > 1990);
});

Deno.test("quantize() reproduces the decomposition's tie behaviour (-0.6 at 8 bits, xmax 1)", () => {
  const range = { xmax: 1, signed: true };
  const x = Tensor.from([-0.6]);
  // x / s2 = -0.9 -> -1, x2 = -2/3; residual 0.0667 / s4 = 0.5: a tie, rounds to 0 (even);
  // the 8-bit level then rounds 0.0667 / s8 = 8.5 -> 8 (even): -2/3 + 8 * s8 = -0.6039.
  const xq = quantize(x, range, gatesForBits(8)).get(0);
  assertClose(xq, -0.6039215686, 0, 1e-6, "decomposition");
  const direct = uniformQuantize(x, range, 8).get(0);
  assertClose(direct, -0.5960784314, 0, 1e-6, "direct");
});

Deno.test("quantize() rounds exact ties to even at every level", () => {
  // Unsigned, xmax 3: s2 = 1, s4 = 0.2. Exact ties at the 2-bit level: 0.5, 1.5, 2.5.
  const range = { xmax: 3, signed: false };
  const xq2 = quantize(Tensor.from([0.5, 1.5, 2.5]), range, gatesForBits(2))
    .toFloat32Array();
  assert.deepEqual([...xq2], [0, 2, 2]);
  // 4-bit ties: 0.1 above a 2-bit level is a half step of s4 = 0.2 (in float32 arithmetic).
  const x = Tensor.from([0.5, 1.5]);
  const xq4 = quantize(x, range, gatesForBits(4)).toFloat32Array();
  const s4 = Math.fround(1 / 5);
  // x2 = 0 and 2; residuals 0.5 and -0.5 are 2.5 steps of s4 -> 2 and -2.
  assert.equal(xq4[0], Math.fround(0 + Math.fround(2 * s4)));
  assert.equal(xq4[1], Math.fround(2 + Math.fround(-2 * s4)));
});

Deno.test("quantize() clips to [-hi, hi] (signed) and [0, hi] (unsigned)", () => {
  const xq = quantize(
    Tensor.from([-5, 5, 1, -1]),
    { xmax: 1, signed: true },
    gatesForBits(2),
  )
    .toFloat32Array();
  const s2 = Math.fround(2 / 3);
  assert.deepEqual([...xq], [-s2, s2, s2, -s2]);
  const xu = quantize(
    Tensor.from([-5, 5, 0]),
    { xmax: 1, signed: false },
    gatesForBits(8),
  )
    .toFloat32Array();
  assert.equal(xu[0], 0);
  assert.equal(xu[2], 0);
  assertClose(xu[1], 1, 0, 1e-6, "top of the unsigned 8-bit grid");
});

Deno.test("quantize() applies the pruning gate per output channel (axis 0)", () => {
  const x = Tensor.from([0.5, -0.5, 0.25, -0.25, 0.75, 0.1], [3, 2]);
  const range = { xmax: 1, signed: true };
  const full = quantize(x, range, gatesForBits(8)).toFloat32Array();
  const gated = quantize(x, range, { ...gatesForBits(8), z2: [1, 0, 0.5] })
    .toFloat32Array();
  assert.deepEqual([...gated.slice(0, 2)], [...full.slice(0, 2)]);
  assert.ok(
    gated.slice(2, 4).every((v) => v === 0),
    `pruned channel: ${gated.slice(2, 4)}`,
  );
  assert.deepEqual(
    [...gated.slice(4)],
    [...full.slice(4)].map((v) => Math.fround(0.5 * v)),
  );
});

Deno.test("quantize() with fractional gates interpolates between the levels", () => {
  const x = Tensor.from(randomValues(3, 100));
  const range = { xmax: 1, signed: true };
  const at2 = quantize(x, range, gatesForBits(2)).toFloat32Array();
  const at4 = quantize(x, range, gatesForBits(4)).toFloat32Array();
  const half = quantize(x, range, { z4: 0.25, z8: 0, z16: 0, z32: 0 })
    .toFloat32Array();
  for (let i = 0; i < 100; i++) {
    assertClose(half[i], at2[i] + 0.25 * (at4[i] - at2[i]), 0, 1e-6);
  }
});

Deno.test("initRange() takes the largest value (not magnitude) and the sign of the minimum", () => {
  assert.deepEqual(initRange(Tensor.from([-3, 1, 2])), {
    xmax: 2,
    signed: true,
  });
  assert.deepEqual(initRange(Tensor.from([0, 0.25, 4])), {
    xmax: 4,
    signed: false,
  });
  assert.throws(() => initRange(Tensor.from([-1, -2])), /largest value is -1/);
  assert.throws(() => initRange(Tensor.from([])), /empty/);
});

Deno.test("quantizer functions reject bad input with an error naming the problem and the value", () => {
  const x = Tensor.from([0.1, 0.2, 0.3, 0.4], [2, 2]);
  const g8 = gatesForBits(8);
  const ok = { xmax: 1, signed: true };
  const cases: [() => unknown, RegExp][] = [
    [
      () => quantize(x, { xmax: 0, signed: true }, g8),
      /xmax must be finite and positive, got 0/,
    ],
    [() => quantize(x, { xmax: -1, signed: true }, g8), /got -1/],
    [() => quantize(x, { xmax: NaN, signed: true }, g8), /got NaN/],
    [() => quantize(x, { xmax: Infinity, signed: true }, g8), /got Infinity/],
    [
      () => quantize(x, { xmax: 1e300, signed: true }, g8),
      /not representable in float32/,
    ],
    [() => quantize(Tensor.from([1, NaN]), ok, g8), /element 1 is NaN/],
    [() => quantize(Tensor.from([Infinity]), ok, g8), /element 0 is Infinity/],
    [
      () => quantize(x, ok, { ...g8, z4: 1.5 }),
      /gate z4 must be in \[0, 1\], got 1.5/,
    ],
    [() => quantize(x, ok, { ...g8, z16: -0.1 }), /gate z16 .* got -0.1/],
    [() => quantize(x, ok, { ...g8, z8: NaN }), /gate z8 .* got NaN/],
    [
      () => quantize(x, ok, { ...g8, z2: [1, 2] }),
      /gate z2\[1\] must be in \[0, 1\], got 2/,
    ],
    [
      () => quantize(x, ok, { ...g8, z2: [1, 1, 1] }),
      /z2 has 3 values but .* has 2 output channels/,
    ],
    [
      () => gatesForBits(3),
      /Unsupported bit width 3: bits must be one of 0, 2, 4, 8, 16, 32/,
    ],
    [() => uniformQuantize(x, ok, 0), /Unsupported bit width 0/],
    [
      () => quantizeGrad(x, ok, g8, Tensor.from([1, 2, 3, 4])),
      /dy has shape \[4\] but x has shape \[2, 2\]/,
    ],
    [
      () => quantizeGrad(x, ok, g8, Tensor.from([1, 2, 3, NaN], [2, 2])),
      /dy element 3 is NaN/,
    ],
  ];
  for (const [call, message] of cases) assert.throws(call, message);
  assert.throws(
    () => quantize(x, { xmax: 0, signed: true }, g8, { name: "conv1.weight" }),
    /Cannot quantize "conv1.weight"/,
  );
});

Deno.test("quantize() never mutates its inputs", () => {
  const data = randomValues(4, 64);
  const x = Tensor.from(data, [8, 8]);
  const z2 = new Float32Array(8).fill(0.5);
  quantize(x, { xmax: 0.5, signed: true }, { ...gatesForBits(4), z2 });
  assert.deepEqual(x.toFloat32Array(), data);
  assert.deepEqual([...z2], new Array(8).fill(0.5));
});
