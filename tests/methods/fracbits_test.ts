/**
 * FracBits' hand-computed cases (spec `fracbits.md` section 10): integer
 * widths are the plain quantizers, the weight and activation vectors, the
 * width's gradient, the cost identity, continuity and 0-bit kernels, the
 * bisection traces (including the one that does not converge), the BOP
 * accounting, and bad options rejected with clear errors.
 */

import assert from "node:assert/strict";
import { lenet5 } from "../../core/models.ts";
import {
  assignWidths,
  bisectOffset,
  fracBits,
  fracBitsRecipe,
  widthBops,
} from "../../core/methods/fracbits/mod.ts";
import {
  doReFaCode,
  doReFaScale,
  fracWeightBackwardReference,
  fracWeightReference,
  pactBackwardReference,
  pactReference,
  widthCostBackwardReference,
  widthCostReference,
} from "../../core/reference/fracbits.ts";
import { roundHalfEven } from "../../core/round.ts";
import { assertAllClose, assertBitwise, randomValues } from "../_fixtures.ts";

const RANGE = { minBits: 1, maxBits: 8 };
const W = Float32Array.from([0, 0.5, -1, 2]);
const X = Float32Array.from([-1, 0.5, 1, 3, 7, 9]);
const weights = (w: Float32Array, bits: number, minBits = 1) =>
  fracWeightReference(w, Float32Array.from([bits]), {
    minBits,
    maxBits: 8,
    fanOut: null,
  }).y;
const acts = (bits: number) => pactReference(X, 8, bits, RANGE);

/** The plain k-bit DoReFa weights, written out from spec section 2. */
function plainWeights(w: Float32Array, k: number): number[] {
  const t = Array.from(w, Math.tanh);
  const m = Math.max(...t.map(Math.abs));
  const levels = 2 ** k - 1;
  return t.map((v) => {
    const q = roundHalfEven(levels * (v / m + 1) / 2) / levels;
    return Math.fround(2 * q - 1);
  });
}

/** The plain k-bit PACT activations of spec section 2. */
function plainActivations(x: Float32Array, alpha: number, k: number) {
  const levels = 2 ** k - 1;
  return Array.from(x, (v) => {
    const u = Math.min(Math.max(v, 0), alpha) / alpha;
    return Math.fround(alpha * roundHalfEven(levels * u) / levels);
  });
}

Deno.test("an integer width is the plain quantizer, and k ± 1e-6 moves by at most 1e-6 of the step", () => {
  const w = randomValues(3, 64, -2, 2);
  const x = randomValues(4, 64, -1, 9);
  for (let k = 1; k <= 8; k++) {
    assertAllClose(
      weights(w, k),
      plainWeights(w, k),
      `weights at ${k}`,
      0,
      1e-6,
    );
    assertAllClose(
      pactReference(x, 8, k, RANGE),
      plainActivations(x, 8, k),
      `activations at ${k}`,
      0,
      1e-5,
    );
    for (const d of [1e-6, -1e-6]) {
      const l = Math.fround(k + d);
      if (l < 1 || l > 8) continue;
      const near = k + Math.sign(d);
      const [a, b] = [weights(w, l), weights(w, k)];
      const c = weights(w, near);
      for (let i = 0; i < w.length; i++) {
        const bound = Math.abs(l - k) * Math.abs(c[i] - b[i]) + 1.2e-7;
        assert.ok(Math.abs(a[i] - b[i]) <= bound, `${l}: element ${i}`);
      }
    }
  }
});

Deno.test("the weight vector of spec test 2, ties to even at 1 bit", () => {
  const f = (v: number[]) => v.map(Math.fround);
  assertBitwise(weights(W, 1), [-1, 1, -1, 1], "1 bit");
  assertBitwise(weights(W, 2), f([1 / 3, 1 / 3, -1, 1]), "2 bits");
  assertAllClose(weights(W, 3), [1 / 7, 3 / 7, -5 / 7, 1], "3 bits");
  assertAllClose(
    weights(W, 2.25),
    [0.2857143, 0.3571429, -0.9285714, 1],
    "2.25 bits",
  );
  assert.equal(doReFaCode(0.5, 1), -1);
});

Deno.test("the width's gradient is the sum of w_3 - w_2 = 4/21 anywhere in (2, 3)", () => {
  const ones = new Float32Array(4).fill(1);
  for (const l of [2.001, 2.25, 2.5, 2.999]) {
    const r = fracWeightBackwardReference(
      W,
      Float32Array.from([l]),
      { ...RANGE, fanOut: null },
      ones,
    );
    assertAllClose(r.dbits, [4 / 21], `at ${l}`, 1e-6);
    const h = 1e-3;
    const sum = (v: number) => weights(W, v).reduce((s, e) => s + e, 0);
    if (l - h > 2 && l + h < 3) {
      assertAllClose(
        [(sum(l + h) - sum(l - h)) / (2 * h)],
        [4 / 21],
        `FD at ${l}`,
        1e-4,
      );
    }
  }
  const at = fracWeightBackwardReference(W, Float32Array.from([2]), {
    ...RANGE,
    fanOut: null,
  }, ones);
  assert.equal(at.dbits[0], 0, "no data gradient at an integer width");
});

Deno.test("the activation vector of spec test 4 and its gradients", () => {
  const f = (v: number[]) => v.map(Math.fround);
  assertBitwise(acts(2), f([0, 0, 0, 8 / 3, 8, 8]), "2 bits");
  assertAllClose(acts(3), [0, 0, 8 / 7, 24 / 7, 48 / 7, 8], "3 bits");
  assertAllClose(
    acts(2.5),
    [0, 0, 4 / 7, 3.0476190, 7.4285714, 8],
    "2.5 bits",
  );
  const ones = new Float32Array(6).fill(1);
  const r = pactBackwardReference(X, 8, 2.5, RANGE, ones);
  assertAllClose([r.dbits], [16 / 21], "dL/dlambda", 2e-6);
  const at2 = pactBackwardReference(X, 8, 2, RANGE, ones);
  assertAllClose([at2.dalpha], [0.8958333], "dL/dalpha at 2 bits");
  assertBitwise(at2.dx, [0, 1, 1, 1, 1, 0], "dL/dx: 1 inside (0, 8)");
  const negative = pactBackwardReference(X, -8, 2, RANGE, ones);
  assertAllClose([negative.dalpha], [-0.8958333], "only |alpha| is used");
  assertBitwise(pactReference(X, -8, 2, RANGE), acts(2), "negative clip");
});

Deno.test("the expected cost is the product of the widths, integers included", () => {
  const r = { min: 1, max: 8 };
  const options = { weightRange: r, inputRange: r, coefficient: 1 };
  assertAllClose(
    [widthCostReference(Float32Array.from([2.3]), 3.6, options)],
    [Math.fround(2.3) * 3.6],
    "2.3 x 3.6",
    1e-12,
  );
  const bw = randomValues(5, 20, 1, 8);
  const ba = randomValues(6, 20, 1, 8);
  for (let i = 0; i < 20; i++) {
    const lw = i % 4 === 0 ? roundHalfEven(bw[i]) : bw[i];
    const la = i % 3 === 0 ? roundHalfEven(ba[i]) : ba[i];
    // The code's four-term expectation over lo and lo + 1.
    const [wl, al] = [Math.floor(lw), Math.floor(la)];
    const [fw, fa] = [lw - wl, la - al];
    let e = 0;
    for (
      const [p, a, b] of [
        [(1 - fw) * (1 - fa), wl, al],
        [(1 - fw) * fa, wl, al + 1],
        [fw * (1 - fa), wl + 1, al],
        [fw * fa, wl + 1, al + 1],
      ]
    ) e += p * a * b;
    const got = widthCostReference(Float32Array.from([lw]), la, options);
    assertAllClose([got], [e], `widths ${lw}, ${la}`, 1e-12);
  }
  const kernels = Float32Array.from([3, 2.5, 9, 0.5]);
  const c = { ...options, coefficient: 10 };
  assertAllClose(
    [widthCostReference(kernels, 4, c)],
    [10 * (3 + 2.5 + 8 + 1) * 4],
    "kernel-wise sum, clamped",
  );
  const g = widthCostBackwardReference(kernels, 4, c, 2);
  assertAllClose(g.dweight, [80, 80, 0, 0], "no gradient outside the range");
  assertAllClose([g.dinput], [2 * 10 * 14.5], "input gradient");
});

Deno.test("the blended weight is continuous at every integer and lambda w_1bit below 1", () => {
  const w = randomValues(7, 50, -3, 3);
  const eps = 1e-4;
  for (let k = 1; k <= 7; k++) {
    const [below, at, above] = [k - eps, k, k + eps].map((l) =>
      weights(w, l, 0)
    );
    const step = Math.abs(2 / (2 ** k - 1)) * 2;
    for (let i = 0; i < w.length; i++) {
      assert.ok(Math.abs(below[i] - at[i]) <= eps * step + 1e-6, `${k}-`);
      assert.ok(Math.abs(above[i] - at[i]) <= eps * step + 1e-6, `${k}+`);
    }
  }
  const one = weights(w, 1, 0);
  for (const l of [0.1, 0.5, 0.9]) {
    assertAllClose(weights(w, l, 0), one.map((v) => l * v), `${l} bits`);
  }
  assertBitwise(weights(w, 0, 0), new Array(50).fill(0), "0 bits");
});

const TOY = {
  biasCount: 0,
  layers: [1000, 3000].map((macs) => ({
    macs: macs * 1e9,
    outChannels: 1,
    weightCount: 1,
    weightRange: { min: 1, max: 8 },
    input: { range: { min: 1, max: 8 } },
    inputConstantBits: 8,
  })),
};
const TOY_WIDTHS = [{ weight: [3.6], input: 3.4 }, {
  weight: [2.7],
  input: 4.5,
}];

Deno.test("the bisection traces of spec test 7, including the one that does not converge", () => {
  const cases = [
    { t: 45000, offsets: [0, -0.5, -0.25, -0.125], w: [3, 3], a: [3, 4] },
    {
      t: 30000,
      offsets: [0, -0.5, -0.75, -0.875, -0.9375],
      w: [3, 2],
      a: [2, 4],
    },
  ];
  for (const c of cases) {
    const r = assignWidths(TOY, TOY_WIDTHS, c.t);
    assert.equal(roundHalfEven(r.fractionalCost), 48690);
    assert.deepEqual(r.trace.map((s) => s.offset), c.offsets, `T ${c.t}`);
    assert.ok(r.converged);
    assert.equal(roundHalfEven(r.cost), c.t);
    assert.deepEqual(r.widths.map((w) => w.weight[0]), c.w);
    assert.deepEqual(r.widths.map((w) => w.input), c.a);
  }
  const miss = assignWidths(TOY, TOY_WIDTHS, 40000);
  assert.equal(miss.trace.length, 11, "ten halvings");
  assert.equal(miss.offset, -0.2001953125);
  assert.equal(roundHalfEven(miss.cost), 33000);
  assert.equal(miss.converged, false);
  assert.equal((1 - miss.cost / 40000).toFixed(3), "0.175");
  const low = bisectOffset(() => 10, 100);
  assert.ok(low.trace.every((s) => s.offset === 0), "it only lowers widths");
  assert.equal(low.converged, false);
  assert.equal(
    roundHalfEven(3.5) + roundHalfEven(4.5) + roundHalfEven(2.5),
    10,
  );
});

Deno.test("the BOPs of spec test 9: layer-wise widths and a kernel-wise conv2 with pruned kernels", () => {
  const fm = fracBits(lenet5(), { targetRelativeGbops: 1 });
  const widths = [[5, 8], [3, 4], [2, 3], [8, 2]].map(([w, a], i) => ({
    weight: [w],
    input: i === 0 ? null : a,
  }));
  const b = widthBops(fm, widths);
  assert.equal(b.bops, 60981248);
  assert.equal(b.relativeGbops.toFixed(4), "1.3956");
  const conv2 = [
    ...new Array(32).fill(3),
    ...new Array(16).fill(2),
    ...new Array(16).fill(0),
  ];
  const kw = widths.map((w, i) => i === 1 ? { ...w, weight: conv2 } : w);
  const k = widthBops(fm, kw);
  assert.equal(k.layers[1], 26214400);
  assert.equal(k.layers[2], 524288 * 2 * 3 * 0.75, "fc1 gets ki = 0.75");
  const uniform = (bits: number) =>
    widthBops(
      fm,
      fm.layers.map((l) => ({ weight: [bits], input: l.input ? bits : null })),
    )
      .relativeGbops.toFixed(4);
  assert.deepEqual([8, 4, 3, 2, 1].map(uniform), [
    "6.2500",
    "1.7312",
    "1.0371",
    "0.5172",
    "0.1715",
  ]);
});

Deno.test("the protocol's targets and initial widths (spec section 11)", () => {
  const targets = [1.7312, 1.0371, 0.5172, 0.36, 0.25].map((t) =>
    fracBitsRecipe(lenet5(), { targetRelativeGbops: t })
  );
  assert.deepEqual(
    targets.map((fm) => fm.options.target.toFixed(6)),
    ["0.075645", "0.045315", "0.022598", "0.015730", "0.010924"],
  );
  assert.deepEqual(targets.map((fm) => fm.options.initBits), [
    4.5,
    3.5,
    2.5,
    2.5,
    2.5,
  ]);
  const code = fracBits(lenet5(), {
    targetRelativeGbops: 1,
    convention: "code",
  });
  assert.deepEqual(code.layers.map((l) => l.weightRange.min), [8, 1, 1, 8]);
});

Deno.test("bad options are rejected with errors naming them", () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ target: 0.3 }, /above the all-8-bit cost/],
    [{ targetRelativeGbops: 6.3 }, /above the all-8-bit cost/],
    [{ target: -1 }, /option target -1/],
    [{}, /exactly one of target/],
    [{ target: 0.01, targetRelativeGbops: 1 }, /exactly one of target/],
    [
      { target: 0.01, kappa: 0 },
      /option kappa 0: it must be a finite number > 0/,
    ],
    [{ target: 0.01, kappa: -1 }, /option kappa -1/],
    [
      { target: 0.01, granularity: "channel" },
      /granularity "channel": it must be "layer" or "kernel"/,
    ],
    [{ target: 0.01, minBits: 0 }, /need granularity "kernel"/],
    [{ target: 0.01, maxBits: 40 }, /maxBits 40/],
    [{ target: 0.01, initBits: 9 }, /initBits 9/],
    [{ target: 0.01, cost: "energy" }, /cost "energy"/],
    [{ target: 0.01, rescale: "some" }, /rescale "some"/],
    [{ target: 0.01, assignAfterEpoch: 0 }, /assignAfterEpoch 0/],
    [{ target: 0.01, initClip: { conv: -8 } }, /initClip.conv -8/],
    [{ targetRelativeGbops: 1, cost: "size" }, /needs cost "bitops"/],
  ];
  for (const [options, message] of bad) {
    assert.throws(
      () => fracBits(lenet5(), options),
      message,
      JSON.stringify(options),
    );
  }
  assert.ok(
    fracBits(lenet5(), { target: 0.273088512 }),
    "the all-8-bit cost itself",
  );
});

Deno.test("the rescaled weights have unbiased std 1 / sqrt(fanOut), and the factor is the grid's", () => {
  const w = randomValues(8, 600, -1, 1);
  for (const bits of [[3], [2.5], [1, 4, 0, 7.5, 2, 3]]) {
    const options = { minBits: 0, maxBits: 8, fanOut: 150 };
    const { y, factor } = fracWeightReference(
      w,
      Float32Array.from(bits),
      options,
    );
    const mean = y.reduce((s, v) => s + v, 0) / y.length;
    const variance = y.reduce((s, v) => s + (v - mean) ** 2, 0) /
      (y.length - 1);
    assertAllClose(
      [Math.sqrt(variance) * Math.sqrt(150)],
      [1],
      `${bits}`,
      1e-5,
    );
    const plain = weights(w, bits[0], 0);
    if (bits.length === 1 && Number.isInteger(bits[0])) {
      const scale = doReFaScale(factor, bits[0]);
      const codes = plain.map((v) => v * (2 ** bits[0] - 1));
      assertBitwise(
        y,
        codes.map((c) => Math.fround(scale * roundHalfEven(c))),
        "scale * code",
      );
    }
  }
});
