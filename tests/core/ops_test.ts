import assert from "node:assert/strict";
import { recordOp, valueAndGrad } from "../../core/autodiff.ts";
import { batchNorm, foldBatchNorm } from "../../core/ops/batchnorm.ts";
import { conv2d } from "../../core/ops/conv2d.ts";
import { dense } from "../../core/ops/dense.ts";
import {
  add,
  mean,
  mul,
  relu,
  relu6,
  reshape,
  scale,
  sum,
} from "../../core/ops/elementwise.ts";
import { softmaxCrossEntropy } from "../../core/ops/loss.ts";
import { globalAvgPool, maxPool2d } from "../../core/ops/pool.ts";
import { gemmReference } from "../../core/reference/matrix.ts";
import { Tensor } from "../../core/tensor.ts";
import { assertClose, randomTensor, randomValues } from "../_fixtures.ts";

type Fn = (p: Record<string, Tensor>) => Tensor;

/**
 * Checks valueAndGrad of `sum(f(p) * r)` (r a fixed random tensor) against
 * central differences of the same quantity computed in float64 outside autodiff.
 */
function checkGradients(
  f: Fn,
  params: Record<string, Tensor>,
  seed: number,
  h = 1e-2,
  rtol = 2e-2,
) {
  const y0 = f(params);
  const r = Tensor.from(randomValues(seed, y0.size), y0.shape);
  const rs = r.toFloat32Array();
  const loss = (p: Record<string, Tensor>) => {
    const y = f(p).toFloat32Array();
    let s = 0;
    for (let i = 0; i < y.length; i++) s += y[i] * rs[i];
    return s;
  };
  const { grads } = valueAndGrad((p: Record<string, Tensor>) =>
    sum(mul(f(p), r))
  )(params);
  for (const [name, t] of Object.entries(params)) {
    const data = t.toFloat32Array();
    const g = grads[name].toFloat32Array();
    const step = Math.max(1, Math.floor(data.length / 25));
    for (let i = 0; i < data.length; i += step) {
      const shifted = (d: number) => {
        const copy = data.slice();
        copy[i] += d;
        return { ...params, [name]: Tensor.from(copy, t.shape) };
      };
      const numeric = (loss(shifted(h)) - loss(shifted(-h))) / (2 * h);
      assertClose(g[i], numeric, rtol, 2e-3, `d/d${name}[${i}]`);
    }
  }
}

Deno.test("gemmReference() computes all transposes of a hand-checked product", () => {
  // A = [[1, 2, 3], [4, 5, 6]], B = [[1, 0], [0, 1], [1, 1]] -> A B = [[4, 5], [10, 11]]
  const a = new Float32Array([1, 2, 3, 4, 5, 6]);
  const b = new Float32Array([1, 0, 0, 1, 1, 1]);
  assert.deepEqual([
    ...gemmReference({ m: 2, n: 2, k: 3, transA: false, transB: false }, a, b),
  ], [
    4,
    5,
    10,
    11,
  ]);
  const aT = new Float32Array([1, 4, 2, 5, 3, 6]);
  const bT = new Float32Array([1, 0, 1, 0, 1, 1]);
  assert.deepEqual([
    ...gemmReference({ m: 2, n: 2, k: 3, transA: true, transB: false }, aT, b),
  ], [4, 5, 10, 11]);
  assert.deepEqual([
    ...gemmReference({ m: 2, n: 2, k: 3, transB: true, transA: false }, a, bT),
  ], [4, 5, 10, 11]);
  assert.throws(
    () =>
      gemmReference({ m: 2, n: 2, k: 2, transA: false, transB: false }, a, b),
    /A has 6 elements \(expected 4\)/,
  );
});

Deno.test("dense() VJPs match finite differences (batch 1 and odd sizes)", () => {
  for (const [n, i, o] of [[1, 3, 2], [5, 7, 3]]) {
    checkGradients(
      (p) => dense(p.x, p.w, p.b),
      {
        x: randomTensor(1, [n, i]),
        w: randomTensor(2, [o, i]),
        b: randomTensor(3, [o]),
      },
      4,
    );
  }
});

Deno.test("conv2d() equals dense() when the kernel covers the whole input", () => {
  const x = randomTensor(5, [3, 2, 4, 4]);
  const w = randomTensor(6, [5, 2, 4, 4]);
  const b = randomTensor(7, [5]);
  const viaConv = conv2d(x, w, b).toFloat32Array();
  const viaDense = dense(reshape(x, [3, -1]), reshape(w, [5, -1]), b)
    .toFloat32Array();
  for (let i = 0; i < viaDense.length; i++) {
    assertClose(viaConv[i], viaDense[i], 1e-5, 1e-6);
  }
});

Deno.test("conv2d() with stride and padding matches a hand-computed 3x3 example", () => {
  // x = 1..9 in a 3x3 plane, 2x2 kernel of ones, padding 1, stride 2 -> 2x2 output of
  // window sums: [1, 2+3, 4+7, 5+6+8+9] = [1, 5, 11, 28].
  const x = Tensor.from([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 1, 3, 3]);
  const y = conv2d(x, Tensor.from([1, 1, 1, 1], [1, 1, 2, 2]), undefined, {
    stride: 2,
    padding: 1,
  });
  assert.deepEqual(y.shape, [1, 1, 2, 2]);
  assert.deepEqual([...y.toFloat32Array()], [1, 5, 11, 28]);
});

Deno.test("conv2d() depthwise (groups = channels) convolves each channel on its own", () => {
  const x = randomTensor(8, [2, 3, 5, 5]);
  const w = randomTensor(9, [3, 1, 3, 3]);
  const y = conv2d(x, w, undefined, { groups: 3, padding: 1 }).toFloat32Array();
  for (let ch = 0; ch < 3; ch++) {
    const xc = Tensor.from(
      [0, 1].flatMap((
        s,
      ) => [
        ...x.toFloat32Array().slice((s * 3 + ch) * 25, (s * 3 + ch + 1) * 25),
      ]),
      [2, 1, 5, 5],
    );
    const wc = Tensor.from(w.toFloat32Array().slice(ch * 9, ch * 9 + 9), [
      1,
      1,
      3,
      3,
    ]);
    const yc = conv2d(xc, wc, undefined, { padding: 1 }).toFloat32Array();
    for (let s = 0; s < 2; s++) {
      for (let p = 0; p < 25; p++) {
        assertClose(y[(s * 3 + ch) * 25 + p], yc[s * 25 + p], 1e-6, 1e-7);
      }
    }
  }
});

Deno.test("conv2d() VJPs match finite differences (stride, padding, groups)", () => {
  const cases: [
    number[],
    number[],
    { stride?: number; padding?: number; groups?: number },
  ][] = [
    [[1, 1, 6, 6], [2, 1, 3, 3], {}],
    [[2, 4, 5, 5], [4, 2, 3, 3], { stride: 2, padding: 1, groups: 2 }],
    [[1, 3, 4, 4], [3, 1, 3, 3], { padding: 1, groups: 3 }],
  ];
  cases.forEach(([xs, ws, options], k) => {
    checkGradients(
      (p) => conv2d(p.x, p.w, p.b, options),
      {
        x: randomTensor(10 + k, xs),
        w: randomTensor(20 + k, ws),
        b: randomTensor(30 + k, [ws[0]]),
      },
      40 + k,
    );
  });
});

Deno.test("relu, relu6, add, scale, reshape and the pools have correct VJPs", () => {
  const x = randomTensor(50, [2, 3, 4, 4], -2, 8);
  checkGradients((p) => relu(p.x), { x }, 51, 1e-3);
  checkGradients((p) => relu6(p.x), { x }, 52, 1e-3);
  checkGradients((p) => add(p.x, scale(p.x, 3)), { x }, 53);
  checkGradients((p) => reshape(p.x, [6, -1]), { x }, 54);
  checkGradients((p) => maxPool2d(p.x, 2), { x }, 55, 1e-3);
  checkGradients((p) => globalAvgPool(p.x), { x }, 56);
  checkGradients((p) => mean(p.x), { x }, 57);
});

Deno.test("maxPool2d() and globalAvgPool() forward match hand values", () => {
  const x = Tensor.from(
    [1, 2, 5, 6, 3, 4, 7, 8, 9, 10, 13, 14, 11, 12, 15, 16],
    [1, 1, 4, 4],
  );
  assert.deepEqual([...maxPool2d(x, 2).toFloat32Array()], [4, 8, 12, 16]);
  assert.deepEqual([...globalAvgPool(x).toFloat32Array()], [8.5]);
});

Deno.test("batchNorm() normalises with batch statistics and its VJPs match finite differences", () => {
  const x = randomTensor(60, [4, 3, 2, 2], -1, 3);
  const gamma = randomTensor(61, [3], 0.5, 1.5);
  const beta = randomTensor(62, [3]);
  const { output } = batchNorm(x, gamma, beta, { mode: "train", eps: 0 });
  const y = output.toFloat32Array();
  // Each channel of (y - beta) / gamma has mean 0 and (biased) variance 1.
  for (let ch = 0; ch < 3; ch++) {
    const vals: number[] = [];
    for (let s = 0; s < 4; s++) {
      for (let p = 0; p < 4; p++) {
        vals.push((y[(s * 3 + ch) * 4 + p] - beta.get(ch)) / gamma.get(ch));
      }
    }
    const m = vals.reduce((a, b) => a + b) / vals.length;
    const v = vals.reduce((a, b) => a + (b - m) ** 2, 0) / vals.length;
    assertClose(m, 0, 0, 1e-5);
    assertClose(v, 1, 1e-4);
  }
  for (const mode of ["train", "eval"] as const) {
    const stats = {
      mean: randomTensor(63, [3]),
      variance: randomTensor(64, [3], 0.5, 2),
    };
    checkGradients(
      (p) => batchNorm(p.x, p.gamma, p.beta, { mode, stats }).output,
      { x, gamma, beta },
      65,
      1e-2,
      3e-2,
    );
  }
});

Deno.test("batchNorm() updates running statistics with PyTorch's momentum and unbiased variance", () => {
  const x = Tensor.from([1, 3], [2, 1]);
  const { stats } = batchNorm(x, Tensor.from([1]), Tensor.from([0]), {
    mode: "train",
    stats: { mean: Tensor.from([0]), variance: Tensor.from([1]) },
  });
  assertClose(stats!.mean.get(0), 0.2, 1e-6); // 0.9 * 0 + 0.1 * 2
  assertClose(stats!.variance.get(0), 1.1, 1e-6); // 0.9 * 1 + 0.1 * 2 (unbiased of {1, 3})
});

Deno.test("foldBatchNorm() gives a conv whose output equals conv then eval batch norm", async () => {
  const x = randomTensor(70, [2, 2, 5, 5]);
  const w = randomTensor(71, [3, 2, 3, 3]);
  const b = randomTensor(72, [3]);
  const gamma = randomTensor(73, [3], 0.5, 1.5);
  const beta = randomTensor(74, [3]);
  const stats = {
    mean: randomTensor(75, [3]),
    variance: randomTensor(76, [3], 0.5, 2),
  };
  const reference = batchNorm(conv2d(x, w, b), gamma, beta, {
    mode: "eval",
    stats,
  }).output
    .toFloat32Array();
  const folded = await foldBatchNorm(w, b, gamma, beta, stats);
  const y = conv2d(x, folded.w, folded.b).toFloat32Array();
  for (let i = 0; i < y.length; i++) {
    assertClose(y[i], reference[i], 1e-5, 1e-5);
  }
});

Deno.test("softmaxCrossEntropy() matches a hand value and finite differences", () => {
  // logits [2, 0, -1], label 0: loss = log(e^2 + 1 + e^-1) - 2
  const loss = softmaxCrossEntropy(Tensor.from([2, 0, -1], [1, 3]), [0]).get(0);
  assertClose(loss, Math.log(Math.exp(2) + 1 + Math.exp(-1)) - 2, 1e-6);
  const labels = new Int32Array([0, 3, 2, 3, 1]);
  checkGradients(
    (p) => softmaxCrossEntropy(p.z, labels),
    { z: randomTensor(80, [5, 4], -3, 3) },
    81,
    1e-2,
  );
  assert.throws(
    () => softmaxCrossEntropy(Tensor.zeros([2, 3]), [0, 3]),
    /label 1 is 3, expected 0..2/,
  );
});

Deno.test("valueAndGrad() accumulates through reused tensors and zero-fills unused params", () => {
  const f = valueAndGrad((p: { a: Tensor; b: Tensor }) =>
    sum(add(mul(p.a, p.a), p.a))
  );
  const { value, grads } = f({ a: Tensor.from([2, -1]), b: Tensor.from([5]) });
  assert.equal(value.get(0), 6 + 0); // (4 + 2) + (1 - 1)
  assert.deepEqual([...grads.a.toFloat32Array()], [5, -1]); // 2a + 1
  assert.deepEqual([...grads.b.toFloat32Array()], [0]);
  assert.throws(
    () => valueAndGrad((p: { a: Tensor }) => p.a)({ a: Tensor.zeros([2]) }),
    /one-element Tensor/,
  );
});

Deno.test("ops reject mismatched shapes with clear errors", () => {
  assert.throws(
    () => dense(Tensor.zeros([2, 3]), Tensor.zeros([4, 2])),
    /dense: x \[2, 3\] and w \[4, 2\]/,
  );
  assert.throws(
    () => conv2d(Tensor.zeros([1, 3, 5, 5]), Tensor.zeros([4, 2, 3, 3])),
    /3 input channels/,
  );
  assert.throws(
    () => conv2d(Tensor.zeros([1, 1, 2, 2]), Tensor.zeros([1, 1, 3, 3])),
    /does not fit a 2x2 input/,
  );
  assert.throws(
    () => add(Tensor.zeros([2]), Tensor.zeros([3])),
    /shapes \[2\] and \[3\] differ/,
  );
  assert.throws(() => maxPool2d(Tensor.zeros([2, 2]), 2), /must be 4-D/);
});

Deno.test("valueAndGrad() skips the backward pass of inputs that do not depend on a parameter", () => {
  const x = Tensor.from(randomValues(90, 6), [2, 3]);
  const needs: boolean[][] = [];
  const { grads } = valueAndGrad((p: { w: Tensor }) => {
    const y = dense(x, p.w);
    return sum(recordOp(Tensor.from([0], [1]), [x, y], (g, n) => {
      needs.push([...n]);
      return [null, g.device.kernels.broadcast(g, y.shape)];
    }));
  })({ w: Tensor.from(randomValues(91, 12), [4, 3]) });
  assert.deepEqual(needs, [[false, true]]);
  // d/dw of sum(x w^T) = column sums of x, repeated per output row
  const xs = x.toFloat32Array();
  for (let o = 0; o < 4; o++) {
    for (let i = 0; i < 3; i++) {
      assertClose(grads.w.get(o, i), xs[i] + xs[3 + i], 1e-6, 1e-7);
    }
  }
});
