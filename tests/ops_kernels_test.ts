/**
 * The WASM SIMD training-op kernels (`asm/src/ops.ts`, behind
 * `WasmBackend.kernels` and `wasmKernels`) against their plain-TypeScript
 * references, on random shapes with odd sizes and batch 1, forward and
 * backward, with 1 and 2 threads (and a split threshold of 1, so that two
 * threads split even the smallest case); then the ops, the Adam update and
 * a training run inside `withKernels` against the same without.
 */

import assert from "node:assert/strict";
import {
  adam,
  batchNorm,
  type BatchNormStats,
  conv2d,
  createWasmBackend,
  currentKernels,
  dense,
  globalAvgPool,
  initGraph,
  makeDataset,
  maxPool2d,
  type ModelGraph,
  mul,
  type OpKernels,
  type OptimizerUpdate,
  randomKey,
  relu,
  relu6,
  softmaxCrossEntropy,
  sum,
  Tensor,
  trainFloat,
  valueAndGrad,
  type WasmBackend,
  wasmGemm,
  wasmKernels,
  withGemm,
  withKernels,
} from "../mod.ts";
import {
  relu6BackwardReference,
  relu6Reference,
  reluBackwardReference,
  reluReference,
} from "../core/ops/elementwise.ts";
import {
  globalAvgPoolBackwardReference,
  globalAvgPoolReference,
  maxPool2dBackwardReference,
  maxPool2dReference,
} from "../core/ops/pool.ts";
import {
  batchNormBackwardReference,
  batchNormNormalizeReference,
  batchNormStatisticsReference,
} from "../core/ops/batchnorm.ts";
import {
  softmaxCrossEntropyBackwardReference,
  softmaxCrossEntropyReference,
} from "../core/ops/loss.ts";
import {
  col2im,
  type ConvGeometry,
  im2col,
  nchwToRows,
  rowsToNchw,
} from "../core/ops/im2col.ts";
import { addBiasReference, biasGradReference } from "../core/ops/dense.ts";
import { adamUpdateReference } from "../core/optim.ts";
import { convOutputSize } from "../core/ops/conv2d.ts";
import { assertBitwise, assertClose, randomValues } from "./helpers.ts";

/** Random values with ties, zeros of both signs, and a NaN when `special`. */
function awkwardValues(seed: number, count: number, special = true) {
  const x = randomValues(seed, count, -8, 8);
  for (let i = 0; i < count; i++) {
    if (i % 7 === 3) x[i] = Math.round(x[i]); // ties in pools, 0 and 6 exactly
    if (special && i % 29 === 5) x[i] = -0;
    if (special && i % 31 === 11) x[i] = 6;
  }
  if (special && count > 4) x[count - 2] = NaN;
  return x;
}

/** The kernel sets under test: 1 and 2 threads splitting everything, and `wasmKernels`. */
async function withBackends(
  body: (kernels: Required<OpKernels>, label: string) => void,
): Promise<void> {
  for (const threads of [1, 2]) {
    const wasm: WasmBackend = await createWasmBackend({
      threads,
      parallelThreshold: 1,
    });
    try {
      body(wasm.kernels, `${threads} thread(s)`);
    } finally {
      wasm.dispose();
    }
  }
  body(wasmKernels, "wasmKernels");
}

const ELEMENT_COUNTS = [0, 1, 3, 4, 5, 17, 64, 1001];

Deno.test("relu and relu6 kernels match the references bit for bit, forward and backward", async () => {
  await withBackends((k, label) => {
    for (const count of ELEMENT_COUNTS) {
      const x = awkwardValues(count + 1, count);
      const dy = randomValues(count + 2, count);
      const what = `${label}, ${count} elements`;
      assertBitwise(k.relu(x), reluReference(x), `relu ${what}`);
      assertBitwise(
        k.reluBackward(x, dy),
        reluBackwardReference(x, dy),
        `relu backward ${what}`,
      );
      assertBitwise(k.relu6(x), relu6Reference(x), `relu6 ${what}`);
      assertBitwise(
        k.relu6Backward(x, dy),
        relu6BackwardReference(x, dy),
        `relu6 backward ${what}`,
      );
    }
  });
});

const POOLS = [
  // n, c, h, w, kernel, stride, padding
  [1, 1, 2, 2, 2, 2, 0],
  [1, 3, 9, 11, 2, 2, 0], // odd sizes: the last row and column are unused
  [2, 2, 16, 20, 2, 2, 0], // 4-wide SIMD path and a tail
  [3, 2, 7, 7, 3, 2, 1], // padded, overlapping windows
  [1, 2, 5, 6, 3, 1, 0],
  [2, 1, 8, 8, 2, 1, 1],
] as const;

Deno.test("maxPool2d kernels match the references bit for bit, ties, NaN and padding included", async () => {
  await withBackends((k, label) => {
    POOLS.forEach(([n, c, h, w, kernel, stride, padding], index) => {
      const oh = convOutputSize(h, kernel, stride, padding);
      const ow = convOutputSize(w, kernel, stride, padding);
      const g = { n, c, h, w, oh, ow, kernel, stride, padding };
      const x = awkwardValues(100 + index, n * c * h * w);
      const what = `${label}, ${JSON.stringify(g)}`;
      const got = k.maxPool2d(x, g);
      const want = maxPool2dReference(x, g);
      assertBitwise(got.y, want.y, `maxPool2d y ${what}`);
      assertBitwise(got.argmax, want.argmax, `maxPool2d argmax ${what}`);
      const dy = randomValues(200 + index, want.y.length);
      assertBitwise(
        k.maxPool2dBackward(dy, want.argmax, g),
        maxPool2dBackwardReference(dy, want.argmax, g),
        `maxPool2d backward ${what}`,
      );
    });
  });
});

Deno.test("globalAvgPool kernels match the references bit for bit", async () => {
  await withBackends((k, label) => {
    for (const [planes, area] of [[1, 1], [3, 7], [10, 49], [2, 64]]) {
      const x = randomValues(planes * area, planes * area);
      const dy = randomValues(planes, planes);
      const what = `${label}, ${planes} planes of ${area}`;
      assertBitwise(
        k.globalAvgPool(x, planes, area),
        globalAvgPoolReference(x, planes, area),
        `globalAvgPool ${what}`,
      );
      assertBitwise(
        k.globalAvgPoolBackward(dy, planes, area),
        globalAvgPoolBackwardReference(dy, planes, area),
        `globalAvgPool backward ${what}`,
      );
    }
  });
});

Deno.test("batch-norm kernels match the references (statistics to 1e-12, the rest bit for bit given them)", async () => {
  await withBackends((k, label) => {
    for (const [n, c, area] of [[1, 1, 1], [1, 3, 25], [5, 4, 1], [3, 5, 9]]) {
      const layout = { n, c, area };
      const x = randomValues(n + c + area, n * c * area, -2, 3);
      const what = `${label}, ${JSON.stringify(layout)}`;
      const got = k.batchNormStatistics(x, layout);
      const want = batchNormStatisticsReference(x, layout);
      for (let ch = 0; ch < c; ch++) {
        assertClose(got.mean[ch], want.mean[ch], 1e-12, 1e-15, `mean ${what}`);
        assertClose(
          got.variance[ch],
          want.variance[ch],
          1e-12,
          1e-15,
          `variance ${what}`,
        );
      }
      const invStd = want.variance.map((v) => 1 / Math.sqrt(v + 1e-5));
      const gamma = randomValues(7, c, 0.5, 2);
      const beta = randomValues(8, c);
      const norm = k.batchNormNormalize(
        x,
        layout,
        want.mean,
        invStd,
        gamma,
        beta,
      );
      const normRef = batchNormNormalizeReference(
        x,
        layout,
        want.mean,
        invStd,
        gamma,
        beta,
      );
      assertBitwise(norm.xhat, normRef.xhat, `xhat ${what}`);
      assertBitwise(norm.y, normRef.y, `y ${what}`);
      const dy = randomValues(9, x.length);
      for (const train of [true, false]) {
        const back = k.batchNormBackward(
          dy,
          normRef.xhat,
          layout,
          gamma,
          invStd,
          train,
        );
        const backRef = batchNormBackwardReference(
          dy,
          normRef.xhat,
          layout,
          gamma,
          invStd,
          train,
        );
        const mode = `${what}, ${train ? "train" : "eval"}`;
        assertBitwise(back.dx, backRef.dx, `dx ${mode}`);
        assertBitwise(back.dgamma, backRef.dgamma, `dgamma ${mode}`);
        assertBitwise(back.dbeta, backRef.dbeta, `dbeta ${mode}`);
      }
    }
  });
});

Deno.test("softmax cross-entropy kernels match the references to float64 exp/log accuracy", async () => {
  await withBackends((k, label) => {
    for (const [n, classes] of [[1, 1], [1, 10], [7, 3], [128, 10]]) {
      const z = randomValues(n * classes, n * classes, -20, 20);
      const labels = Int32Array.from(
        randomValues(n, n, 0, classes),
        Math.floor,
      );
      const what = `${label}, ${n} x ${classes}`;
      const got = k.softmaxCrossEntropy(z, labels, classes);
      const want = softmaxCrossEntropyReference(z, labels, classes);
      assertClose(got.total, want.total, 1e-13, 1e-13, `loss ${what}`);
      for (let i = 0; i < z.length; i++) {
        assertClose(got.probs[i], want.probs[i], 1e-6, 1e-30, `probs ${what}`);
      }
      // Backward from the same probabilities is exact.
      assertBitwise(
        k.softmaxCrossEntropyBackward(want.probs, labels, classes, 0.75),
        softmaxCrossEntropyBackwardReference(want.probs, labels, classes, 0.75),
        `backward ${what}`,
      );
    }
  });
});

const CONVS = [
  // n, c, h, w, kernel, stride, padding
  [1, 1, 5, 5, 5, 1, 0],
  [2, 1, 28, 28, 5, 1, 0], // LeNet-5 conv1, small batch
  [1, 3, 12, 12, 5, 1, 0], // LeNet-5 conv2 shape, 3 channels
  [2, 3, 7, 9, 3, 2, 1], // odd, padded, strided
  [1, 2, 6, 5, 3, 1, 2],
  [3, 2, 4, 4, 1, 1, 0],
] as const;

Deno.test("im2col, col2im and the layout transposes match the references bit for bit", async () => {
  await withBackends((k, label) => {
    CONVS.forEach(([n, c, h, w, kernel, stride, padding], index) => {
      const g: ConvGeometry = {
        n,
        c,
        h,
        w,
        kh: kernel,
        kw: kernel,
        oh: convOutputSize(h, kernel, stride, padding),
        ow: convOutputSize(w, kernel, stride, padding),
        stride,
        padding,
      };
      const what = `${label}, ${JSON.stringify(g)}`;
      const x = awkwardValues(300 + index, n * c * h * w);
      assertBitwise(k.im2col(x, g), im2col(x, g), `im2col ${what}`);
      const cols = randomValues(
        400 + index,
        n * g.oh * g.ow * c * kernel * kernel,
      );
      assertBitwise(k.col2im(cols, g), col2im(cols, g), `col2im ${what}`);
    });
    for (
      const [n, p, o] of [[1, 1, 1], [2, 5, 3], [1, 64, 64], [3, 9, 13], [
        2,
        576,
        32,
      ]]
    ) {
      const what = `${label}, n ${n}, p ${p}, o ${o}`;
      const rows = awkwardValues(n * p + o, n * p * o);
      const bias = randomValues(o, o);
      assertBitwise(
        k.rowsToNchw(rows, n, p, o, bias),
        rowsToNchw(rows, n, p, o, bias),
        `rowsToNchw ${what}`,
      );
      assertBitwise(
        k.rowsToNchw(rows, n, p, o, null),
        rowsToNchw(rows, n, p, o, null),
        `rowsToNchw without bias ${what}`,
      );
      assertBitwise(
        k.nchwToRows(rows, n, p, o),
        nchwToRows(rows, n, p, o),
        `nchwToRows ${what}`,
      );
    }
  });
});

Deno.test("the fused conv2d GEMM-path kernels match the pieced path on the same GEMM bit for bit", async () => {
  await withBackends((k, label) => {
    CONVS.forEach(([n, c, h, w, kernel, stride, padding], index) => {
      const g: ConvGeometry = {
        n,
        c,
        h,
        w,
        kh: kernel,
        kw: kernel,
        oh: convOutputSize(h, kernel, stride, padding),
        ow: convOutputSize(w, kernel, stride, padding),
        stride,
        padding,
      };
      const o = 5 + index;
      const taps = c * kernel * kernel;
      const p = g.oh * g.ow;
      const rows = n * p;
      const x = randomValues(500 + index, n * c * h * w);
      const weights = randomValues(600 + index, o * taps);
      const bias = randomValues(700 + index, o);
      const dy = randomValues(800 + index, rows * o);
      const what = `${label}, ${o} outputs, ${JSON.stringify(g)}`;
      // The pieced path of conv2d, on the single-threaded WASM GEMM.
      const cols = im2col(x, g);
      const want = rowsToNchw(
        wasmGemm({ m: rows, n: o, k: taps, transB: true }, cols, weights),
        n,
        p,
        o,
        bias,
      );
      assertBitwise(
        k.conv2dGemmForward(x, weights, bias, g),
        want,
        `forward ${what}`,
      );
      assertBitwise(
        k.conv2dGemmForward(x, weights, null, g),
        rowsToNchw(
          wasmGemm({ m: rows, n: o, k: taps, transB: true }, cols, weights),
          n,
          p,
          o,
          null,
        ),
        `forward without bias ${what}`,
      );
      const dyRows = nchwToRows(dy, n, p, o);
      const grads = k.conv2dGemmBackward(x, weights, dy, g, true, true);
      assertBitwise(
        grads.dx!,
        col2im(wasmGemm({ m: rows, n: taps, k: o }, dyRows, weights), g),
        `dx ${what}`,
      );
      assertBitwise(
        grads.dw,
        wasmGemm({ m: o, n: taps, k: rows, transA: true }, dyRows, cols),
        `dw ${what}`,
      );
      assertBitwise(grads.db!, biasGradReference(dyRows, o), `db ${what}`);
      const only = k.conv2dGemmBackward(x, weights, dy, g, false, false);
      assert.equal(only.dx, null);
      assert.equal(only.db, null);
      assertBitwise(only.dw, grads.dw, `dw alone ${what}`);
    });
  });
});

Deno.test("bias add and bias gradient kernels match the references bit for bit", async () => {
  await withBackends((k, label) => {
    for (
      const [rows, cols] of [[1, 1], [1, 10], [5, 3], [128, 10], [37, 33], [
        300,
        32,
      ]]
    ) {
      const a = randomValues(rows + cols, rows * cols, -100, 100);
      const bias = randomValues(cols, cols);
      const what = `${label}, ${rows} x ${cols}`;
      assertBitwise(
        k.addBias(a, cols, bias),
        addBiasReference(a, cols, bias),
        `addBias ${what}`,
      );
      assertBitwise(
        k.biasGrad(a, cols),
        biasGradReference(a, cols),
        `biasGrad ${what}`,
      );
    }
  });
});

Deno.test("the Adam kernel matches the reference bit for bit", async () => {
  await withBackends((k, label) => {
    for (const count of [1, 2, 3, 17, 1000]) {
      const step = {
        theta: randomValues(count, count),
        grad: randomValues(count + 1, count, -0.1, 0.1),
        m: randomValues(count + 2, count, -0.01, 0.01),
        v: randomValues(count + 3, count, 0, 1e-4),
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: count % 2 === 0 ? 0 : 5e-4,
        stepSize: 1e-3 / (1 - 0.9 ** 3),
        sqrtCorrection2: Math.sqrt(1 - 0.999 ** 3),
      };
      const got = k.adamUpdate(step);
      const want = adamUpdateReference(step);
      const what = `${label}, ${count} elements`;
      assertBitwise(got.theta, want.theta, `theta ${what}`);
      assertBitwise(got.m, want.m, `m ${what}`);
      assertBitwise(got.v, want.v, `v ${what}`);
    }
  });
});

Deno.test("the kernels reject arrays that do not fit the sizes", () => {
  assert.throws(
    () => wasmKernels.reluBackward(new Float32Array(3), new Float32Array(2)),
    RangeError,
  );
  assert.throws(
    () => wasmKernels.biasGrad(new Float32Array(5), 2),
    RangeError,
  );
  assert.throws(
    () =>
      wasmKernels.im2col(new Float32Array(10), {
        n: 1,
        c: 1,
        h: 4,
        w: 4,
        kh: 3,
        kw: 3,
        oh: 2,
        ow: 2,
        stride: 1,
        padding: 0,
      }),
    RangeError,
  );
});

// --- the ops inside withKernels -------------------------------------------

/** Forward output and every input gradient of `sum(f(params) * g)`. */
function outputAndGrads(
  f: (p: Record<string, Tensor>) => Tensor,
  params: Record<string, Tensor>,
  seed: number,
): Float32Array[] {
  let y: Tensor | undefined;
  const { grads } = valueAndGrad((p: Record<string, Tensor>) => {
    y = f(p);
    return sum(mul(y, Tensor.from(randomValues(seed, y.size), y.shape)));
  })(params);
  return [
    y!.toFloat32Array(),
    ...Object.keys(params).map((key) => grads[key].toFloat32Array()),
  ];
}

const tensor = (seed: number, shape: number[], lo = -1, hi = 1) =>
  Tensor.from(
    randomValues(seed, shape.reduce((a, b) => a * b, 1), lo, hi),
    shape,
  );

const OPS: readonly {
  name: string;
  params: Record<string, Tensor>;
  f: (p: Record<string, Tensor>) => Tensor;
}[] = [
  { name: "relu", params: { x: tensor(1, [3, 5]) }, f: (p) => relu(p.x) },
  {
    name: "relu6",
    params: { x: tensor(2, [2, 9], -8, 8) },
    f: (p) => relu6(p.x),
  },
  {
    name: "maxPool2d",
    params: { x: tensor(3, [2, 3, 9, 8]) },
    f: (p) => maxPool2d(p.x, 2),
  },
  {
    name: "globalAvgPool",
    params: { x: tensor(4, [1, 3, 5, 5]) },
    f: (p) => globalAvgPool(p.x),
  },
  {
    name: "batchNorm (train)",
    params: {
      x: tensor(5, [3, 4, 3, 3]),
      g: tensor(6, [4], 0.5, 2),
      b: tensor(7, [4]),
    },
    f: (p) => batchNorm(p.x, p.g, p.b, { mode: "train" }).output,
  },
  {
    name: "softmaxCrossEntropy",
    params: { z: tensor(8, [5, 7], -4, 4) },
    f: (p) => softmaxCrossEntropy(p.z, [0, 6, 3, 3, 1]),
  },
  {
    name: "dense with bias",
    params: { x: tensor(9, [3, 7]), w: tensor(10, [5, 7]), b: tensor(11, [5]) },
    f: (p) => dense(p.x, p.w, p.b),
  },
  {
    name: "conv2d (GEMM path) with bias",
    params: {
      x: tensor(12, [2, 3, 8, 7]),
      w: tensor(13, [4, 3, 3, 3]),
      b: tensor(14, [4]),
    },
    f: (p) => conv2d(p.x, p.w, p.b, { stride: 2, padding: 1 }),
  },
];

Deno.test("every op gives the same output and gradients inside withKernels as without", async () => {
  const wasm = await createWasmBackend({ threads: 2, parallelThreshold: 1 });
  try {
    for (const { name, params, f } of OPS) {
      // The WASM GEMM on both sides (the fused conv kernels use it too),
      // so that only the op kernels differ.
      const want = withGemm(wasmGemm, () => outputAndGrads(f, params, 99));
      for (const kernels of [wasm.kernels, wasmKernels]) {
        const got = withKernels(
          kernels,
          () => withGemm(wasmGemm, () => outputAndGrads(f, params, 99)),
        );
        assert.equal(got.length, want.length);
        got.forEach((values, i) => {
          const what = `${name}, ${i === 0 ? "output" : `gradient ${i}`}`;
          if (name === "softmaxCrossEntropy" && i === 0) {
            assertClose(values[0], want[i][0], 1e-7, 0, what);
          } else if (name === "softmaxCrossEntropy") {
            for (let j = 0; j < values.length; j++) {
              assertClose(values[j], want[i][j], 1e-6, 1e-9, what);
            }
          } else {
            assertBitwise(values, want[i], what);
          }
        });
      }
    }
  } finally {
    wasm.dispose();
  }
});

Deno.test("ops call the scoped kernels, forward and backward, and fall back outside the scope", () => {
  const calls: string[] = [];
  const spy: OpKernels = {
    relu: (x) => {
      calls.push("relu");
      return reluReference(x);
    },
    reluBackward: (x, dy) => {
      calls.push("reluBackward");
      return reluBackwardReference(x, dy);
    },
  };
  const f = valueAndGrad((p: { x: Tensor }) => sum(relu(p.x)));
  const { grads } = withKernels(spy, () => {
    assert.equal(currentKernels(), spy);
    return f({ x: Tensor.from([-1, 2]) });
  });
  assert.deepEqual(calls, ["relu", "reluBackward"]);
  assert.deepEqual([...grads.x.toFloat32Array()], [0, 1]);
  assert.equal(currentKernels(), null);
  relu(Tensor.from([1]));
  assert.deepEqual(calls, ["relu", "reluBackward"]);
});

Deno.test("adam's update inside withKernels gives the reference's bits", () => {
  const optimizer = adam({ lr: 1e-2, weightDecay: 1e-3 });
  const params = { w: randomValues(1, 37), b: randomValues(2, 5) };
  const grads = { w: randomValues(3, 37), b: randomValues(4, 5) };
  let state = optimizer.init(params);
  let plain: OptimizerUpdate = { params, state };
  let fast: OptimizerUpdate = { params, state };
  for (let step = 0; step < 3; step++) {
    plain = optimizer.update(plain.params, grads, plain.state);
    fast = withKernels(
      wasmKernels,
      () => optimizer.update(fast.params, grads, fast.state),
    );
    state = fast.state;
    for (const name of ["w", "b"] as const) {
      assertBitwise(
        fast.params[name],
        plain.params[name],
        `${name} step ${step}`,
      );
      assertBitwise(
        state.slots[name].m,
        plain.state.slots[name].m,
        `m ${step}`,
      );
      assertBitwise(
        state.slots[name].v,
        plain.state.slots[name].v,
        `v ${step}`,
      );
    }
  }
});

Deno.test("trainFloat with the wasm kernels reproduces the run with the references on the same GEMM", async () => {
  const model: ModelGraph = {
    name: "small conv net",
    inputShape: [1, 8, 8],
    nodes: [
      {
        op: "conv",
        name: "c1",
        input: "input",
        outChannels: 3,
        kernel: 3,
        batchNorm: true,
        activation: "relu",
      },
      { op: "maxpool", name: "p1", input: "c1", kernel: 2 },
      { op: "flatten", name: "f", input: "p1" },
      {
        op: "dense",
        name: "fc",
        input: "f",
        outFeatures: 4,
        activation: "relu6",
      },
    ],
  };
  const images = randomValues(5, 6 * 64);
  const labels = new Int32Array([0, 1, 2, 3, 1, 2]);
  const data = makeDataset(images, labels, [1, 8, 8]);
  const wasm = await createWasmBackend({ threads: 2, parallelThreshold: 1 });
  try {
    const run = (kernels?: OpKernels) =>
      trainFloat(model, initGraph(model, randomKey(0)), {
        train: data,
        test: data,
      }, {
        epochs: 2,
        batchSize: 4,
        key: randomKey(1),
        gemm: wasm.gemm,
        kernels,
      });
    const want = run();
    const got = run(wasm.kernels);
    for (const name of Object.keys(want.params)) {
      assertBitwise(
        got.params[name].toFloat32Array(),
        want.params[name].toFloat32Array(),
        name,
      );
    }
    const stats = (s: Readonly<Record<string, BatchNormStats>>) =>
      s.c1.variance.toFloat32Array();
    const [a, b] = [stats(got.stats), stats(want.stats)];
    for (let i = 0; i < a.length; i++) {
      assertClose(a[i], b[i], 1e-6, 0, "running variance");
    }
    assert.deepEqual(
      got.history.map((h) => h.testAccuracy),
      want.history.map((h) => h.testAccuracy),
    );
  } finally {
    wasm.dispose();
  }
});
