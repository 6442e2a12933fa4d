/**
 * BSQ's hand-computed cases and identities (spec `bsq.md` section 10):
 * conversion, rounding, the regulariser, the forward pass and its
 * straight-through gradients, growth, plane drops, idempotent
 * re-quantization, the activation quantizer, BOP accounting and options.
 */

import assert from "node:assert/strict";
import { valueAndGrad } from "../../core/autodiff.ts";
import { lenet5 } from "../../core/models.ts";
import { sum } from "../../core/ops/elementwise.ts";
import { planeLevels } from "../../core/reference/bitplanes.ts";
import { Tensor } from "../../core/tensor.ts";
import {
  bsq,
  bsqCost,
  codesFromFloat,
  codesFromPlanes,
  dropZeroPlanes,
  groupLassoOp,
  growOrSaturate,
  type LayerCodes,
  maxAbsQuantizeOp,
  planesFromCodes,
  planeSumOp,
  requantizePlanes,
  unitQuantizeOp,
} from "../../core/methods/bsq/mod.ts";
import { randomValues } from "../_fixtures.ts";

/** The forward pass of exact planes: `unitQuantize(planeSum(P, Nn), s, m)`. */
function forward(
  codes: Int32Array,
  planes: number,
  scale: number,
): Float32Array {
  const { pos, neg } = planesFromCodes(codes, planes);
  const shape = [planes, codes.length];
  const wt = planeSumOp(Tensor.from(pos, shape), Tensor.from(neg, shape));
  return unitQuantizeOp(wt, Tensor.from([scale]), planeLevels(planes))
    .toFloat32Array();
}

/** Dequantized values `fround(s / m) k` of a layer. */
function values(layer: LayerCodes): number[] {
  const step = Math.fround(layer.scale / planeLevels(layer.planes));
  return [...layer.codes].map((k) => Math.fround(step * k));
}

Deno.test("converting to N planes and back is a uniform quantizer, for N = 1..8", () => {
  const w = randomValues(14, 500, -0.3, 0.2);
  for (let n = 1; n <= 8; n++) {
    const m = planeLevels(n);
    const r = codesFromFloat(w, n);
    const { pos, neg } = planesFromCodes(r.codes, n);
    assert.ok(pos.every((v, i) => (v === 0 || v === 1) && v * neg[i] === 0));
    assert.ok(neg.every((v) => v === 0 || v === 1));
    const s = w.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
    assert.equal(r.scale, s);
    const got = forward(r.codes, n, r.scale);
    for (let i = 0; i < w.length; i++) {
      const k = Math.round(Math.fround(Math.fround(Math.abs(w[i]) * m) / s));
      const sign = Math.sign(w[i]);
      // Bit for bit in our order (step times code) ...
      // (sign(0) = 0: a zero code gives +0, so compare with ===.)
      const ours = sign * Math.fround(Math.fround(s / m) * k);
      assert.ok(got[i] === ours, `N = ${n}, weight ${i}: ${got[i]} vs ${ours}`);
      // ... and within one float32 ulp of the spec's (k / m) * s.
      const spec = sign * Math.fround(Math.fround(k / m) * s);
      assert.ok(
        Math.abs(got[i] - spec) <= Math.abs(spec) * 2 ** -23,
        `N = ${n}, weight ${i}`,
      );
    }
  }
});

Deno.test("conversion rounds ties to even (spec case 2)", () => {
  const r = codesFromFloat(new Float32Array([3, 2.5, 0.5, -1.5, 0, -3]), 2);
  assert.equal(r.scale, 3);
  assert.deepEqual([...r.codes], [3, 2, 0, -2, 0, -3]);
  const { pos, neg } = planesFromCodes(r.codes, 2);
  // Plane-major: MSB plane, then LSB plane.
  assert.deepEqual([...pos], [1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]);
  assert.deepEqual([...neg], [0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1]);
  assert.deepEqual([...forward(r.codes, 2, 3)], [3, 2, 0, -2, 0, -3]);
});

Deno.test("the regulariser of the spec's layer is 2 (2 + sqrt 2), gradients 1 and sqrt 2 (case 3)", () => {
  const { pos, neg } = planesFromCodes(new Int32Array([3, 2, 0, -2, 0, -3]), 2);
  const p = { pos: Tensor.from(pos, [2, 6]), neg: Tensor.from(neg, [2, 6]) };
  // n N / TP = 6 * 2 / 6.
  const { value, grads } = valueAndGrad((t: typeof p) =>
    groupLassoOp(t.pos, t.neg, 2)
  )(p);
  assert.ok(Math.abs(value.get(0) - 6.8284271) < 1e-6);
  const [dpos, dneg] = [grads.pos.toFloat32Array(), grads.neg.toFloat32Array()];
  assert.equal(dpos[0], 1);
  assert.equal(dpos[6], Math.fround(Math.SQRT2));
  assert.equal(dneg[5], 1);
});

Deno.test("the forward pass and its straight-through gradients (case 4)", () => {
  const run = (p: number[], nn: number[]) => {
    const params = {
      pos: Tensor.from(p, [2, 1]),
      neg: Tensor.from(nn, [2, 1]),
      s: Tensor.from([3]),
    };
    return valueAndGrad((t: typeof params) =>
      sum(unitQuantizeOp(planeSumOp(t.pos, t.neg), t.s, 3))
    )(params);
  };
  const a = run([0.9, 0.4], [0.1, 0]);
  assert.equal(a.value.get(0), 2);
  assert.deepEqual([...a.grads.pos.toFloat32Array()], [2, 1]);
  assert.deepEqual([...a.grads.neg.toFloat32Array()], [-2, -1]);
  assert.equal(a.grads.s.get(0), Math.fround(2 / 3));
  const b = run([2, 0], [0, 0]);
  assert.equal(b.value.get(0), 3); // wt = 4/3, clamped
  assert.deepEqual([...b.grads.pos.toFloat32Array()], [2, 1]); // no clipping mask
});

Deno.test("an overflowing layer grows one plane with the scale corrected; at maxBits it saturates (case 5)", () => {
  const pos = new Float32Array([2, 0]);
  const neg = new Float32Array([0, 0]);
  const codes = codesFromPlanes(pos, neg, 2);
  const grown = growOrSaturate({ codes, planes: 2, scale: 3 }, 8);
  assert.deepEqual([grown.planes, grown.scale, ...grown.codes], [3, 7, 4]);
  assert.deepEqual([...planesFromCodes(grown.codes, 3).pos], [1, 0, 0]);
  assert.deepEqual([...forward(new Int32Array([3]), 2, 3)], [3]); // before: clamped
  assert.deepEqual([...forward(grown.codes, 3, 7)], [4]); // after: the value it held
  // Step 4b then drops the two zero LSB planes of code 4: one plane, s = 4.
  const adjusted = requantizePlanes(pos, neg, 2, 3, 8);
  assert.deepEqual([adjusted.planes, adjusted.scale, ...adjusted.codes], [
    1,
    4,
    1,
  ]);
  const saturated = growOrSaturate({ codes, planes: 2, scale: 3 }, 2);
  assert.deepEqual([saturated.planes, saturated.scale, ...saturated.codes], [
    2,
    3,
    3,
  ]);
});

Deno.test("all-zero MSB and LSB planes drop with the exact scale correction (case 6)", () => {
  const cases: [number, number, number[], number, number, number[]][] = [
    [3, 7, [3, -1, 2, 0], 2, 3, [3, -1, 2, 0]], // MSB
    [3, 7, [6, -2, 4, 0], 2, 6, [3, -1, 2, 0]], // LSB
    [4, 15, [6, -2, 4, 0], 2, 6, [3, -1, 2, 0]], // both
    [5, 31, [0, 0, 0, 0], 1, 31 / 31, [0, 0, 0, 0]], // all zero: one plane left
  ];
  for (const [n, s, codes, wantN, wantS, wantCodes] of cases) {
    const before = { codes: new Int32Array(codes), planes: n, scale: s };
    const after = dropZeroPlanes(before);
    assert.deepEqual([after.planes, after.scale, ...after.codes], [
      wantN,
      Math.fround(wantS),
      ...wantCodes,
    ]);
    assert.deepEqual(values(after), values(before));
  }
});

Deno.test("re-quantization is idempotent on exact planes and keeps every value (case 7)", () => {
  for (let trial = 0; trial < 40; trial++) {
    const n = 1 + (trial % 8);
    const m = planeLevels(n);
    const u = randomValues(100 + trial, 64, -1, 1);
    // Sparse in some planes: codes that are multiples of 4 when trial is odd.
    const codes = Int32Array.from(u, (v) => {
      const k = Math.round(v * m);
      return trial % 2 && n > 2 ? 4 * Math.trunc(k / 4) : k;
    });
    const scale = Math.fround(0.05 + trial / 100);
    const { pos, neg } = planesFromCodes(codes, n);
    assert.deepEqual([...codesFromPlanes(pos, neg, n)], [...codes]);
    const once = requantizePlanes(pos, neg, n, scale, 8);
    const again = planesFromCodes(once.codes, once.planes);
    const twice = requantizePlanes(
      again.pos,
      again.neg,
      once.planes,
      once.scale,
      8,
    );
    assert.deepEqual(twice, once);
    const [a, b] = [values(once), values({ codes, planes: n, scale })];
    a.forEach((v, i) =>
      assert.ok(
        Math.abs(v - b[i]) <= Math.abs(b[i]) * 2 ** -22,
        `trial ${trial}`,
      )
    );
  }
});

Deno.test("the activation quantizer: [0, 1, 2.5, 6] at 2 bits is [0, 0, 2, 6], gradient the identity (case 8)", () => {
  const x = Tensor.from([0, 1, 2.5, 6]);
  const { value, grads } = valueAndGrad((p: { x: Tensor }) =>
    sum(maxAbsQuantizeOp(p.x, 3).y)
  )({ x });
  assert.equal(value.get(0), 8);
  assert.deepEqual([...grads.x.toFloat32Array()], [1, 1, 1, 1]);
  assert.deepEqual([...maxAbsQuantizeOp(x, 3).y.toFloat32Array()], [
    0,
    0,
    2,
    6,
  ]);
});

Deno.test("BOPs of LeNet-5: the spec's case 10 and the floors of section 7", () => {
  const q4 = bsq(lenet5(), { activationBits: 4 });
  const c = bsqCost(q4, { conv1: 3, conv2: 2, fc1: 2, fc2: 4 });
  assert.equal(c.bops, 60461056);
  assert.equal(c.relativeGbops.toFixed(4), "1.3837");
  assert.equal(c.relativeGbopsPaper.toFixed(4), "0.9509");
  assert.equal(c.relativeGbopsPaper * 4369416192 / 100, 41549824);
  const ones = { conv1: 1, conv2: 1, fc1: 1, fc2: 1 };
  const floors = [[8, "1.5625", "0.7813"], [4, "0.8656", "0.4328"], [
    2,
    "0.5172",
    "0.2586",
  ]];
  for (const [a, primary, paper] of floors) {
    const cost = bsqCost(bsq(lenet5(), { activationBits: a as number }), ones);
    assert.equal(cost.relativeGbops.toFixed(4), primary, `a = ${a}`);
    assert.equal(cost.relativeGbopsPaper.toFixed(4), paper, `a = ${a}`);
  }
  const eights = { conv1: 8, conv2: 8, fc1: 8, fc2: 8 };
  const start = bsqCost(bsq(lenet5(), { activationBits: 8 }), eights);
  assert.equal(start.relativeGbops.toFixed(2), "7.03");
  // Executable: 9 bits run as 16, 8-bit activations as 8.
  assert.equal(start.relativeGbopsExecutable, 100 * 8 * 16 / 1024);
  assert.equal(start.compression, 32 * 582026 / (8 * 581408));
});

Deno.test("bsq() rejects bad options, naming them", () => {
  const bad: [Record<string, number>, RegExp][] = [
    [{ alpha: -0.1 }, /alpha -0\.1: it must be a finite number >= 0/],
    [{ alpha: NaN }, /alpha NaN/],
    [{ maxBits: 0 }, /maxBits 0: it must be an integer in 1\.\.16/],
    [{ maxBits: 17 }, /maxBits 17/],
    [
      { maxBits: 4, initialBits: 8 },
      /initialBits 8: it must be an integer in 1\.\.maxBits \(4\)/,
    ],
    [{ initialBits: 2.5 }, /initialBits 2\.5/],
    [{ activationBits: 17 }, /activationBits 17/],
    [{ activationBits: -1 }, /activationBits -1/],
  ];
  for (const [options, message] of bad) {
    assert.throws(
      () => bsq(lenet5(), options),
      (e) => e instanceof RangeError && message.test(e.message),
    );
  }
});
