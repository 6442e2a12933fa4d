/**
 * Every FracBits gradient against central finite differences in float64:
 * the weights through tanh and its maximum (the straight-through surrogate
 * written out on the host), the widths of weights and activations (the
 * quantizers are linear in the width between integers), the clip and the
 * input (the quantization-error form), the cost and the penalty, and the
 * ops' wiring through `valueAndGrad`.
 */

import assert from "node:assert/strict";
import { valueAndGrad } from "../../core/autodiff.ts";
import { initGraph } from "../../core/graph.ts";
import { lenet5 } from "../../core/models.ts";
import {
  fracBits,
  fracBitsPenalty,
  fracWeightOp,
  initFracBits,
  nativeCost,
  pactOp,
  readWidths,
} from "../../core/methods/fracbits/mod.ts";
import { add, mul, sum } from "../../core/ops/elementwise.ts";
import {
  fracWeightBackwardReference,
  fracWeightFactor,
  fracWeightReference,
  pactBackwardReference,
  pactReference,
  widthBlend,
  widthCostBackwardReference,
  widthCostReference,
} from "../../core/reference/fracbits.ts";
import { randomKey } from "../../core/rng.ts";
import { Tensor } from "../../core/tensor.ts";
import { assertBitwise, assertClose, randomValues } from "../_fixtures.ts";

/** Central differences of `f` at `x` along coordinate `i`. */
function fd(
  f: (x: Float64Array) => number,
  x: Float64Array,
  i: number,
  h: number,
) {
  const up = Float64Array.from(x);
  const down = Float64Array.from(x);
  up[i] += h;
  down[i] -= h;
  return (f(up) - f(down)) / (2 * h);
}

const dot = (r: ArrayLike<number>, y: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < r.length; i++) s += r[i] * y[i];
  return s;
};

const WEIGHT_CASES = [
  { label: "layer-wise 3.3 bits", bits: [3.3], min: 1, fanOut: null },
  { label: "layer-wise 5.6 bits, rescaled", bits: [5.6], min: 1, fanOut: 60 },
  {
    label: "kernel-wise 0..8 (0, 0.3, 1.7, 6.5), rescaled",
    bits: [0, 0.3, 1.7, 6.5],
    min: 0,
    fanOut: 36,
  },
];

Deno.test("dL/dW matches finite differences of the straight-through surrogate", () => {
  for (const c of WEIGHT_CASES) {
    const options = { minBits: c.min, maxBits: 8, fanOut: c.fanOut };
    const w = randomValues(11, 36, -1.5, 1.5);
    const bits = Float32Array.from(c.bits);
    const r = randomValues(12, 36);
    const factor = fracWeightFactor(w, bits, options);
    const per = 36 / bits.length;
    // The surrogate: the rounding is the identity, the factor a constant,
    // so w = factor * slope * tanh(W) / max|tanh(W)| per channel.
    const slope = Array.from(bits, (l) => {
      const b = widthBlend(l, { min: c.min, max: 8 });
      return b.f * (b.hi >= 1 ? 1 : 0) + (1 - b.f) * (b.lo >= 1 ? 1 : 0);
    });
    const surrogate = (x: Float64Array) => {
      const t = Array.from(x, Math.tanh);
      const m = Math.max(...t.map(Math.abs));
      return dot(
        r,
        t.map((v, i) => factor * slope[Math.floor(i / per)] * v / m),
      );
    };
    const g = fracWeightBackwardReference(w, bits, options, r).dw;
    const x = Float64Array.from(w);
    for (let i = 0; i < 36; i++) {
      assertClose(
        g[i],
        fd(surrogate, x, i, 1e-6),
        1e-4,
        1e-6,
        `${c.label} dW[${i}]`,
      );
    }
  }
});

Deno.test("dL/dlambda of the weights matches finite differences, per layer and per kernel", () => {
  for (const c of WEIGHT_CASES) {
    const options = { minBits: c.min, maxBits: 8, fanOut: c.fanOut };
    const w = randomValues(13, 36, -1.5, 1.5);
    const r = randomValues(14, 36);
    const bits = Float32Array.from(c.bits);
    const factor = fracWeightFactor(w, bits, options);
    // The factor is a constant of the step (not differentiated).
    const loss = (l: Float64Array) => {
      const y = fracWeightReference(w, Float32Array.from(l), {
        ...options,
        fanOut: null,
      }).y;
      return dot(r, y) * factor;
    };
    const g = fracWeightBackwardReference(w, bits, options, r).dbits;
    for (let o = 0; o < bits.length; o++) {
      const learns = widthBlend(bits[o], { min: c.min, max: 8 }).learns;
      const want = learns ? fd(loss, Float64Array.from(bits), o, 0.25) : 0;
      assertClose(g[o], want, 1e-4, 1e-6, `${c.label} dbits[${o}]`);
    }
  }
});

Deno.test("PACT: dL/dx, dL/dalpha and dL/dlambda match finite differences", () => {
  const x = randomValues(15, 200, -2, 10);
  const r = randomValues(16, 200);
  const range = { minBits: 1, maxBits: 8 };
  for (const [alpha, bits] of [[6, 2.4], [-6, 3.5], [2.5, 5]]) {
    const a = Math.abs(alpha);
    const got = pactBackwardReference(x, alpha, bits, range, r);
    const y = pactReference(x, alpha, bits, range);
    // Quantization error held constant: y = min(relu(x), |alpha|) + |alpha| e.
    const e = Array.from(
      x,
      (v, i) => y[i] / a - Math.min(Math.max(v, 0), a) / a,
    );
    const surrogate = (p: Float64Array) => {
      const aa = Math.abs(p[0]);
      return dot(
        r,
        Array.from(x, (v, i) => Math.min(Math.max(v, 0), aa) + aa * e[i]),
      );
    };
    assertClose(
      got.dalpha,
      fd(surrogate, Float64Array.from([alpha]), 0, 1e-7),
      1e-5,
      1e-5,
      `dalpha at ${alpha}`,
    );
    const dxWant = Array.from(x, (v, i) => v > 0 && v < a ? r[i] : 0);
    for (let i = 0; i < x.length; i++) {
      assertClose(got.dx[i], dxWant[i], 0, 1e-7, `dx[${i}]`);
    }
    const loss = (l: Float64Array) =>
      dot(r, pactReference(x, alpha, l[0], range));
    const want = Number.isInteger(bits)
      ? 0
      : fd(loss, Float64Array.from([bits]), 0, 0.25);
    assertClose(got.dbits, want, 1e-4, 1e-5, `dbits at ${bits}`);
  }
});

Deno.test("the cost's gradients match finite differences", () => {
  const range = { min: 1, max: 8 };
  const options = { weightRange: range, inputRange: range, coefficient: 3e-3 };
  const bw = Float64Array.from(Float32Array.from([1.5, 2.25, 7.9, 4.1]));
  const ba = Math.fround(3.3);
  const cost = (v: Float64Array) =>
    widthCostReference(Float32Array.from(v.subarray(0, 4)), v[4], options);
  const g = widthCostBackwardReference(Float32Array.from(bw), ba, options, 1);
  const point = Float64Array.from([...bw, ba]);
  for (let i = 0; i < 4; i++) {
    assertClose(
      g.dweight[i],
      fd(cost, point, i, 2 ** -10),
      1e-5,
      1e-9,
      `dbw[${i}]`,
    );
  }
  assertClose(g.dinput, fd(cost, point, 4, 2 ** -10), 1e-5, 1e-9, "dba");
});

Deno.test("the penalty's gradient on LeNet-5 is kappa sign(C - T) 1e-9 MACs ba, as finite differences say", () => {
  const fm = fracBits(lenet5(), {
    targetRelativeGbops: 1.0371,
    kappa: 7,
    initBits: 4.5,
  });
  const state = initFracBits(fm, initGraph(lenet5(), randomKey(0)));
  const names = fm.layers.flatMap((
    l,
  ) => [l.weightBits, ...(l.input ? [l.input.bits] : [])]);
  const widths = Object.fromEntries(names.map((n) => [n, state.params[n]]));
  const { value, grads } = valueAndGrad((p: Record<string, Tensor>) =>
    fracBitsPenalty(fm, { ...state, params: { ...state.params, ...p } })!.value
  )(widths);
  const host = (v: Float64Array) => {
    const params = { ...state.params };
    names.forEach((n, i) => params[n] = Tensor.from([v[i]]));
    return 7 *
      Math.abs(
        nativeCost(fm, readWidths(fm.layers, params)) - fm.options.target,
      );
  };
  const point = Float64Array.from(names.map((n) => state.params[n].get(0)));
  assertClose(value.get(0), host(point), 1e-6, 0, "penalty value");
  names.forEach((n, i) => {
    assertClose(grads[n].get(0), fd(host, point, i, 2 ** -10), 1e-5, 1e-12, n);
  });
  // conv2's weight width: kappa * sign * 1e-9 * MACs * its input width.
  assertClose(
    grads["conv2.weight.bits"].get(0),
    7 * 1e-9 * 3276800 * 4.5,
    1e-6,
    0,
    "closed form",
  );
});

Deno.test("the ops pass the kernels' gradients to every input", () => {
  const wv = randomValues(17, 24, -1, 1);
  const xv = randomValues(18, 30, -1, 9);
  const rw = randomValues(19, 24);
  const rx = randomValues(20, 30);
  const options = { minBits: 0, maxBits: 8, fanOut: 24 };
  const act = { minBits: 1, maxBits: 8 };
  const bitsv = Float32Array.from([0.5, 2.5, 3.25, 8]);
  const params = {
    w: Tensor.from(wv, [4, 6]),
    bits: Tensor.from(bitsv),
    x: Tensor.from(xv, [5, 6]),
    clip: Tensor.from([5]),
    abits: Tensor.from([3.7]),
  };
  const { grads } = valueAndGrad((p: typeof params) => {
    const q = fracWeightOp(p.w, p.bits, options);
    const a = pactOp(p.x, p.clip, p.abits, act);
    return add(
      sum(mul(q, Tensor.from(rw, [4, 6]))),
      sum(mul(a, Tensor.from(rx, [5, 6]))),
    );
  })(params);
  const gw = fracWeightBackwardReference(wv, bitsv, options, rw);
  const ga = pactBackwardReference(xv, 5, Math.fround(3.7), act, rx);
  assertBitwise(grads.w.toFloat32Array(), gw.dw, "dw");
  assertBitwise(grads.bits.toFloat32Array(), gw.dbits, "dbits");
  assertBitwise(grads.x.toFloat32Array(), ga.dx, "dx");
  assertBitwise(grads.clip.toFloat32Array(), [Math.fround(ga.dalpha)], "dclip");
  assertBitwise(
    grads.abits.toFloat32Array(),
    [Math.fround(ga.dbits)],
    "dabits",
  );
  assert.throws(
    () => fracWeightOp(params.w, Tensor.from([1, 2]), options, "fc.weight"),
    /"fc.weight": 2 widths for 4 output channels/,
  );
  assert.throws(
    () => pactOp(params.x, Tensor.from([0]), Tensor.from([2]), act, "fc.input"),
    /"fc.input": the clip must be finite and not 0, got 0/,
  );
});

Deno.test("the model-size cost: weight megabytes plus 32-bit biases, activations in float", () => {
  assert.throws(
    () => fracBits(lenet5(), { cost: "size", target: 0.6 }),
    /above the all-8-bit cost of the model \(0.58388 MB\)/,
  );
  const fm = fracBits(lenet5(), { cost: "size", target: 0.2, initBits: 4 });
  assert.ok(fm.layers.every((l) => l.input === null));
  const state = initFracBits(fm, initGraph(lenet5(), randomKey(1)));
  const names = fm.layers.map((l) => l.weightBits);
  const { value, grads } = valueAndGrad((p: Record<string, Tensor>) =>
    fracBitsPenalty(fm, { ...state, params: { ...state.params, ...p } })!.value
  )(Object.fromEntries(names.map((n) => [n, state.params[n]])));
  const size = (581408 * 4) / 8e6 + 4e-6 * 618;
  assertClose(value.get(0), size - 0.2, 1e-6, 0, "penalty");
  const weights = [800, 51200, 524288, 5120];
  names.forEach((n, i) => {
    assertClose(grads[n].get(0), weights[i] / 8e6, 1e-6, 0, n);
  });
});
