/**
 * BSQ's gradients against central finite differences in float64 (spec
 * `bsq.md` section 10, case 9). The straight-through estimator is the exact
 * gradient of a surrogate in which `round(|wc| m) / m` is replaced by
 * `wt + c`, the offset `c` frozen at the point of evaluation; the surrogate
 * and the regulariser are written here independently, in float64, and
 * differentiated numerically. Through a whole network, the planes'
 * gradients follow section 1's formula from the weights' gradient.
 */

import { valueAndGrad } from "../../core/autodiff.ts";
import { initGraph, type ModelGraph, runGraph } from "../../core/graph.ts";
import { softmaxCrossEntropy } from "../../core/ops/loss.ts";
import { mul, sum } from "../../core/ops/elementwise.ts";
import { roundHalfEven } from "../../core/round.ts";
import { randomKey } from "../../core/rng.ts";
import { Tensor } from "../../core/tensor.ts";
import {
  bsq,
  bsqRunHooks,
  bsqWeight,
  groupLassoOp,
  initBsq,
  planeSumOp,
  unitQuantizeOp,
} from "../../core/methods/bsq/mod.ts";
import { assertClose, randomValues } from "../_fixtures.ts";

const N = 3;
const SIZE = 12;
const M = 2 ** N - 1;

/** `wt` in float64 from float64 planes (plane-major). */
function planeSum(pos: Float64Array, neg: Float64Array): Float64Array {
  const wt = new Float64Array(SIZE);
  for (let b = 0; b < N; b++) {
    for (let i = 0; i < SIZE; i++) {
      wt[i] += (pos[b * SIZE + i] - neg[b * SIZE + i]) * 2 ** (N - 1 - b) / M;
    }
  }
  return wt;
}

/** Central difference of `f` along element `i` of `x` (step 1e-6). */
function central(f: () => number, x: Float64Array, i: number): number {
  const h = 1e-6;
  const keep = x[i];
  x[i] = keep + h;
  const up = f();
  x[i] = keep - h;
  const down = f();
  x[i] = keep;
  return (up - down) / (2 * h);
}

Deno.test("the straight-through gradients of planes and scale equal the surrogate's central differences", () => {
  const pos32 = randomValues(1, N * SIZE, 0, 2);
  const neg32 = randomValues(2, N * SIZE, 0, 2);
  const dy32 = randomValues(3, SIZE, -1, 1);
  const scale = [0.4];
  const pos = Float64Array.from(pos32);
  const neg = Float64Array.from(neg32);
  const dy = Float64Array.from(dy32);
  // Offsets frozen at the evaluation point: q = sign(wc) round(|wc| m) / m.
  const offsets = Array.from(planeSum(pos, neg), (v) => {
    const k = roundHalfEven(Math.min(Math.abs(v), 1) * M);
    return (v < 0 ? -k : k) / M - v;
  });
  const surrogate = () =>
    planeSum(pos, neg).reduce(
      (a, v, i) => a + dy[i] * scale[0] * (v + offsets[i]),
      0,
    );
  const params = {
    pos: Tensor.from(pos32, [N, SIZE]),
    neg: Tensor.from(neg32, [N, SIZE]),
    s: Tensor.from(scale),
  };
  const { grads } = valueAndGrad((p: typeof params) =>
    sum(
      mul(unitQuantizeOp(planeSumOp(p.pos, p.neg), p.s, M), Tensor.from(dy32)),
    )
  )(params);
  const [dpos, dneg] = [grads.pos.toFloat32Array(), grads.neg.toFloat32Array()];
  for (let i = 0; i < N * SIZE; i++) {
    assertClose(dpos[i], central(surrogate, pos, i), 1e-5, 1e-6, `dP[${i}]`);
    assertClose(dneg[i], central(surrogate, neg, i), 1e-5, 1e-6, `dNn[${i}]`);
  }
  const s64 = Float64Array.from(scale);
  const bySurrogate = central(
    () => {
      scale[0] = s64[0];
      return surrogate();
    },
    s64,
    0,
  );
  scale[0] = 0.4;
  assertClose(grads.s.get(0), bySurrogate, 1e-5, 1e-6, "ds");
});

Deno.test("the regulariser's gradient equals its central differences (planes away from 0)", () => {
  const pos32 = randomValues(4, N * SIZE, 0.2, 2);
  const neg32 = randomValues(5, N * SIZE, 0.2, 2);
  const [pos, neg] = [Float64Array.from(pos32), Float64Array.from(neg32)];
  const weight = 0.37;
  const r = () => {
    let total = 0;
    for (let b = 0; b < N; b++) {
      let squares = 1e-8;
      for (let i = b * SIZE; i < (b + 1) * SIZE; i++) {
        squares += pos[i] ** 2 + neg[i] ** 2;
      }
      total += Math.sqrt(squares);
    }
    return weight * total;
  };
  const params = {
    pos: Tensor.from(pos32, [N, SIZE]),
    neg: Tensor.from(neg32, [N, SIZE]),
  };
  const { value, grads } = valueAndGrad((p: typeof params) =>
    groupLassoOp(p.pos, p.neg, weight)
  )(params);
  assertClose(value.get(0), r(), 1e-6, 0, "R");
  const [dpos, dneg] = [grads.pos.toFloat32Array(), grads.neg.toFloat32Array()];
  for (let i = 0; i < N * SIZE; i++) {
    assertClose(dpos[i], central(r, pos, i), 1e-5, 1e-7, `dP[${i}]`);
    assertClose(dneg[i], central(r, neg, i), 1e-5, 1e-7, `dNn[${i}]`);
  }
});

const TINY: ModelGraph = {
  name: "tiny",
  inputShape: [1, 2, 3],
  nodes: [
    { op: "flatten", name: "f", input: "input" },
    {
      op: "dense",
      name: "fc1",
      input: "f",
      outFeatures: 5,
      activation: "relu",
    },
    { op: "dense", name: "fc2", input: "fc1", outFeatures: 3 },
  ],
};

Deno.test("through a network, each plane's gradient is dL/dw s 2^(N-1-b) / m (section 1)", async () => {
  const x = Tensor.from(randomValues(6, 4 * 6, 0, 1), [4, 1, 2, 3]);
  const labels = [0, 2, 1, 2];
  const q = bsq(TINY, { activationBits: 4, initialBits: 3, maxBits: 3 });
  const state = await initBsq(q, initGraph(TINY, randomKey(7)), x);
  const loss = (p: typeof state.params) =>
    softmaxCrossEntropy(
      runGraph(TINY, p, x, {
        mode: "train",
        ...bsqRunHooks(q, { ...state, params: p }),
      }).output,
      labels,
    );
  const { grads } = valueAndGrad(loss)(state.params);
  // The same network with the quantized weights as plain parameters.
  const hooks = bsqRunHooks(q, state);
  const frozen = { ...state.params };
  for (const l of q.layers) {
    frozen[`${l.info.name}.weight`] = bsqWeight(state, l.info.name);
  }
  const plain = valueAndGrad((p: typeof frozen) =>
    softmaxCrossEntropy(
      runGraph(TINY, p, x, { mode: "train", activation: hooks.activation })
        .output,
      labels,
    )
  )(frozen);
  for (const l of q.layers) {
    const name = l.info.name;
    const n = state.bits[name];
    const m = 2 ** n - 1;
    const s = state.params[`${name}.weight.scale`].get(0);
    const dw = plain.grads[`${name}.weight`].toFloat32Array();
    const dpos = grads[`${name}.weight.pos`].toFloat32Array();
    const dneg = grads[`${name}.weight.neg`].toFloat32Array();
    for (let b = 0; b < n; b++) {
      for (let i = 0; i < dw.length; i++) {
        const want = dw[i] * s * 2 ** (n - 1 - b) / m;
        assertClose(
          dpos[b * dw.length + i],
          want,
          1e-5,
          1e-8,
          `${name} dP[${b}, ${i}]`,
        );
        assertClose(
          dneg[b * dw.length + i],
          -want,
          1e-5,
          1e-8,
          `${name} dNn[${b}, ${i}]`,
        );
      }
    }
    // dL/ds = sum_i dL/dw_i k_i / m, the codes read off the quantized weights.
    const w = frozen[`${name}.weight`].toFloat32Array();
    const step = Math.fround(s / m);
    const ds = dw.reduce((a, g, i) => a + g * Math.round(w[i] / step) / m, 0);
    assertClose(
      grads[`${name}.weight.scale`].get(0),
      ds,
      1e-5,
      1e-8,
      `${name} ds`,
    );
  }
});
