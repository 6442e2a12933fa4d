/**
 * Kernel cases of the layer families: convolution, pooling, batch norm,
 * loss and metrics (part of the table in `_kernel_cases.ts`).
 */

import type { PoolGeometry } from "../core/kernels.ts";
import { convGeometry } from "../core/ops/conv2d.ts";
import { poolGeometry } from "../core/ops/pool.ts";
import { softmaxCrossEntropyReference } from "../core/reference/loss.ts";
import { maxPool2dReference } from "../core/reference/pool.ts";
import type { Shape } from "../core/tensor.ts";
import { awkwardValues, randomValues } from "./_fixtures.ts";
import {
  EXACT,
  FLOAT32_ULPS,
  floats,
  GEMM,
  given,
  type KernelCase,
  kernelCase,
  mostlyZeros,
  REDUCTION,
} from "./_kernel_case.ts";

const CONVS: [
  Shape,
  Shape,
  { stride?: number; padding?: number; groups?: number },
][] = [
  [[1, 1, 5, 5], [1, 1, 5, 5], {}],
  [[2, 1, 28, 28], [6, 1, 5, 5], {}], // LeNet-5 conv1
  [[1, 3, 12, 12], [5, 3, 5, 5], {}],
  [[2, 3, 7, 9], [4, 3, 3, 3], { stride: 2, padding: 1 }],
  [[1, 2, 6, 5], [3, 2, 3, 3], { padding: 2 }],
  [[3, 2, 4, 4], [7, 2, 1, 1], {}],
  [[2, 4, 5, 5], [6, 2, 3, 3], { stride: 2, padding: 1, groups: 2 }],
  [[2, 3, 6, 7], [3, 1, 3, 3], { padding: 1, groups: 3 }], // depthwise
  [[1, 4, 9, 9], [8, 1, 3, 3], { stride: 2, groups: 4 }], // depthwise, multiplier 2
];

/** 50 taps and a gradient of mostly zeros: the WASM device's sparse path. */
function sparseConvCase(): KernelCase {
  const g = convGeometry([2, 2, 10, 12], [5, 2, 5, 5], {});
  return kernelCase({
    name: "conv2d backward, dy mostly zeros",
    kernel: "conv2dBackward",
    inputs: () => ({
      x: mostlyZeros(103, [2, 2, 10, 12]),
      w: floats(104, [5, 2, 5, 5]),
      dy: mostlyZeros(105, [2, 5, g.oh, g.ow]),
    }),
    call: (k, t) => k.conv2dBackward(t.x, t.w, t.dy, g, true, true),
    tolerance: { dx: GEMM, dw: GEMM, db: GEMM },
  });
}

/** Cases of the conv family. */
export function convCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  CONVS.forEach(([xs, ws, options], i) => {
    const g = convGeometry(xs, ws, options);
    const label = `conv2d x [${xs}] w [${ws}] ${JSON.stringify(options)}`;
    const withBias = i % 2 === 0;
    // Groups > 1 keep the direct loop on every device: bit for bit.
    const forward = g.groups > 1 ? EXACT : GEMM;
    const inputs = () => ({
      x: floats(60 + i, xs),
      w: floats(70 + i, ws),
      bias: floats(80 + i, [ws[0]]),
      dy: floats(90 + i, [g.n, g.o, g.oh, g.ow]),
    });
    cases.push(
      kernelCase({
        name: `${label}${withBias ? " with bias" : ""}`,
        kernel: "conv2d",
        inputs,
        call: (k, t) => ({
          y: k.conv2d(t.x, t.w, withBias ? t.bias : null, g),
        }),
        tolerance: { y: forward },
      }),
      kernelCase({
        name: `${label} backward`,
        kernel: "conv2dBackward",
        inputs,
        call: (k, t) => k.conv2dBackward(t.x, t.w, t.dy, g, true, true),
        tolerance: { dx: GEMM, dw: GEMM, db: GEMM },
      }),
    );
  });
  cases.push(sparseConvCase());
  const g = convGeometry([2, 3, 7, 9], [4, 3, 3, 3], { stride: 2, padding: 1 });
  cases.push(
    kernelCase({
      name: "conv2d backward of the weights alone (no dx, no db)",
      kernel: "conv2dBackward",
      inputs: () => ({
        x: floats(100, [2, 3, 7, 9]),
        w: floats(101, [4, 3, 3, 3]),
        dy: floats(102, [2, 4, g.oh, g.ow]),
      }),
      call: (k, t) => k.conv2dBackward(t.x, t.w, t.dy, g, false, false),
      tolerance: { dw: GEMM },
    }),
    // x = 1..9 in a 3x3 plane, a 2x2 kernel of ones, padding 1, stride 2:
    // window sums [1, 2+3, 4+7, 5+6+8+9].
    kernelCase({
      name: "conv2d with stride and padding by hand",
      kernel: "conv2d",
      inputs: () => ({
        x: given([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 1, 3, 3]),
        w: given([1, 1, 1, 1], [1, 1, 2, 2]),
      }),
      call: (k, t) => ({
        y: k.conv2d(t.x, t.w, null, {
          ...convGeometry([1, 1, 3, 3], [1, 1, 2, 2], {
            stride: 2,
            padding: 1,
          }),
        }),
      }),
      tolerance: { y: GEMM },
      expected: { y: [1, 5, 11, 28] },
    }),
  );
  return cases;
}

const POOLS: [Shape, number, number, number][] = [
  // shape, kernel, stride, padding
  [[1, 1, 2, 2], 2, 2, 0],
  [[1, 3, 9, 11], 2, 2, 0], // odd sizes: the last row and column are unused
  [[2, 2, 16, 20], 2, 2, 0],
  [[3, 2, 7, 7], 3, 2, 1], // padded, overlapping windows
  [[1, 2, 5, 6], 3, 1, 0],
  [[2, 1, 8, 8], 2, 1, 1],
  [[4, 6, 24, 24], 2, 2, 0], // LeNet-5 pool1 shape
];

/** Cases of the pool family. */
export function poolCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  POOLS.forEach(([shape, kernel, stride, padding], i) => {
    const g: PoolGeometry = poolGeometry(shape, kernel, stride, padding);
    const label =
      `[${shape}] window ${kernel} stride ${stride} padding ${padding}`;
    const x = () => awkwardValues(110 + i, shape.reduce((p, d) => p * d, 1));
    cases.push(
      kernelCase({
        name: `maxPool2d ${label}, ties and NaN`,
        kernel: "maxPool2d",
        inputs: () => ({ x: given(x(), shape) }),
        call: (k, t) => k.maxPool2d(t.x, g),
        tolerance: { y: EXACT, argmax: EXACT },
      }),
      kernelCase({
        name: `maxPool2d backward ${label}`,
        kernel: "maxPool2dBackward",
        inputs: () => ({
          dy: floats(120 + i, [g.n, g.c, g.oh, g.ow]),
          argmax: given(maxPool2dReference(x(), g).argmax, [
            g.n,
            g.c,
            g.oh,
            g.ow,
          ]),
        }),
        call: (k, t) => ({ dx: k.maxPool2dBackward(t.dy, t.argmax, g) }),
        tolerance: { dx: EXACT },
      }),
    );
  });
  const hand = poolGeometry([1, 1, 4, 4], 2, 2, 0);
  cases.push(kernelCase({
    name: "maxPool2d and globalAvgPool by hand",
    kernel: "maxPool2d",
    inputs: () => ({
      x: given(
        [1, 2, 5, 6, 3, 4, 7, 8, 9, 10, 13, 14, 11, 12, 15, 16],
        [1, 1, 4, 4],
      ),
    }),
    call: (k, t) => ({
      ...k.maxPool2d(t.x, hand),
      mean: k.globalAvgPool(t.x, 1, 16),
    }),
    tolerance: { y: EXACT, argmax: EXACT, mean: REDUCTION },
    expected: { y: [4, 8, 12, 16], argmax: [5, 7, 13, 15], mean: [8.5] },
  }));
  for (const [planes, area] of [[1, 1], [3, 7], [10, 49], [2, 64], [64, 25]]) {
    cases.push(
      kernelCase({
        name: `globalAvgPool of ${planes} planes of ${area}`,
        kernel: "globalAvgPool",
        inputs: () => ({ x: floats(planes * area, [planes * area]) }),
        call: (k, t) => ({ y: k.globalAvgPool(t.x, planes, area) }),
        tolerance: { y: REDUCTION },
      }),
      kernelCase({
        name: `globalAvgPool backward of ${planes} planes of ${area}`,
        kernel: "globalAvgPoolBackward",
        inputs: () => ({ dy: floats(planes, [planes]) }),
        call: (k, t) => ({ dx: k.globalAvgPoolBackward(t.dy, planes, area) }),
        tolerance: { dx: EXACT },
      }),
    );
  }
  return cases;
}

const LAYOUTS: [number, number, number][] = [
  [1, 1, 1],
  [5, 4, 1],
  [1, 3, 25],
  [3, 5, 9],
  [16, 6, 64],
];

/**
 * Batch norm in float32 (WebGPU): `invStd` within a few units in the last
 * place, so `xhat` too (relative), and `y = gamma xhat + beta` within
 * `gamma` times that of `|xhat| <= 3` with `gamma <= 2`: 4 units of 2^-24
 * of 8 absolute.
 */
const BATCH_NORM_FLOAT32 = {
  invStd: FLOAT32_ULPS,
  xhat: { rtol: 1e-6, atol: 1e-7 },
  y: { rtol: 1e-6, atol: 4 * 2 ** -24 * 8 },
};

/** Cases of the batchNorm family. */
export function batchNormCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  LAYOUTS.forEach(([n, c, area], i) => {
    const layout = { n, c, area };
    const inputs = () => ({
      x: floats(130 + i, [n, c, area], -2, 3),
      gamma: floats(140 + i, [c], 0.5, 2),
      beta: floats(150 + i, [c]),
      mean: floats(160 + i, [c]),
      variance: floats(170 + i, [c], 0.5, 2),
      dy: floats(180 + i, [n, c, area]),
      xhat: floats(190 + i, [n, c, area], -2, 2),
      invStd: floats(200 + i, [c], 0.5, 3),
    });
    for (const train of [true, false]) {
      const mode = train ? "training" : "evaluation";
      // Training output goes through float64 statistics a device may split.
      const tol = train ? REDUCTION : EXACT;
      cases.push(
        kernelCase({
          name: `batchNorm ${mode}, ${JSON.stringify(layout)}`,
          kernel: "batchNorm",
          inputs,
          call: (k, t) => {
            const r = k.batchNorm(
              t.x,
              t.gamma,
              t.beta,
              { mean: t.mean, variance: t.variance },
              { layout, train, momentum: 0.1, eps: 1e-5 },
            );
            return {
              y: r.y,
              xhat: r.xhat,
              invStd: r.invStd,
              runningMean: r.running?.mean ?? null,
              runningVariance: r.running?.variance ?? null,
            };
          },
          tolerance: {
            y: tol,
            xhat: tol,
            invStd: tol,
            runningMean: REDUCTION,
            runningVariance: REDUCTION,
          },
          float32: BATCH_NORM_FLOAT32,
        }),
        kernelCase({
          name: `batchNorm backward, ${mode}, ${JSON.stringify(layout)}`,
          kernel: "batchNormBackward",
          inputs,
          call: (k, t) =>
            k.batchNormBackward(t.dy, t.xhat, t.gamma, t.invStd, layout, train),
          tolerance: {
            dx: train ? { rtol: 1e-5, atol: 1e-6 } : EXACT,
            dgamma: REDUCTION,
            dbeta: REDUCTION,
          },
        }),
      );
    }
  });
  return [...cases, ...moreBatchNormCases()];
}

/** Batch norm without running statistics, and running statistics by hand. */
function moreBatchNormCases(): KernelCase[] {
  return [
    kernelCase({
      name: "batchNorm training without running statistics",
      kernel: "batchNorm",
      inputs: () => ({
        x: floats(210, [4, 3, 5], -1, 2),
        gamma: floats(211, [3]),
        beta: floats(212, [3]),
      }),
      call: (k, t) => {
        const r = k.batchNorm(t.x, t.gamma, t.beta, null, {
          layout: { n: 4, c: 3, area: 5 },
          train: true,
          momentum: 0.1,
          eps: 1e-5,
        });
        return { y: r.y, xhat: r.xhat, invStd: r.invStd, running: null };
      },
      tolerance: { y: REDUCTION, xhat: REDUCTION, invStd: REDUCTION },
    }),
    // x = {1, 3}: mean 2, biased variance 1 (eps 0), unbiased variance 2;
    // running: 0.9 * 0 + 0.1 * 2 and 0.9 * 1 + 0.1 * 2.
    kernelCase({
      name:
        "batchNorm running statistics by hand (PyTorch momentum, unbiased variance)",
      kernel: "batchNorm",
      inputs: () => ({
        x: given([1, 3], [2, 1]),
        one: given([1]),
        zero: given([0]),
      }),
      call: (k, t) => {
        const r = k.batchNorm(t.x, t.one, t.zero, {
          mean: t.zero,
          variance: t.one,
        }, {
          layout: { n: 2, c: 1, area: 1 },
          train: true,
          momentum: 0.1,
          eps: 0,
        });
        return { y: r.y, mean: r.running!.mean, variance: r.running!.variance };
      },
      tolerance: { y: REDUCTION, mean: REDUCTION, variance: REDUCTION },
      expected: { y: [-1, 1], mean: [0.2], variance: [1.1] },
    }),
  ];
}

/** Cases of the loss family. */
export function lossCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  for (const [n, classes] of [[1, 1], [1, 10], [7, 3], [128, 10]]) {
    const logits = () => floats(n * classes, [n, classes], -20, 20);
    const labels = () =>
      given(
        Int32Array.from(randomValues(n + 7, n, 0, classes), Math.floor),
        [n],
      );
    cases.push(
      kernelCase({
        name: `softmaxCrossEntropy ${n} x ${classes}`,
        kernel: "softmaxCrossEntropy",
        inputs: () => ({ z: logits(), labels: labels() }),
        call: (k, t) => k.softmaxCrossEntropy(t.z, t.labels),
        tolerance: { loss: REDUCTION, probs: { rtol: 1e-6, atol: 1e-30 } },
      }),
      kernelCase({
        name: `softmaxCrossEntropy backward ${n} x ${classes}`,
        kernel: "softmaxCrossEntropyBackward",
        inputs: () => {
          const z = logits();
          const y = labels();
          const { probs } = softmaxCrossEntropyReference(
            z.values as Float32Array,
            y.values as Int32Array,
            classes,
          );
          return {
            probs: given(probs, z.shape),
            labels: y,
            dloss: given([0.75]),
          };
        },
        call: (k, t) => ({
          dz: k.softmaxCrossEntropyBackward(t.probs, t.labels, t.dloss),
        }),
        tolerance: { dz: EXACT },
      }),
      kernelCase({
        name: `countCorrect ${n} x ${classes}`,
        kernel: "countCorrect",
        inputs: () => ({ z: logits(), labels: labels() }),
        call: (k, t) => ({ correct: k.countCorrect(t.z, t.labels) }),
        tolerance: { correct: EXACT },
      }),
    );
  }
  return [...cases, ...handLossCases()];
}

/** Softmax cross-entropy and the count of correct rows by hand. */
function handLossCases(): KernelCase[] {
  return [
    // logits [2, 0, -1], label 0: loss = log(e^2 + 1 + e^-1) - 2.
    kernelCase({
      name: "softmaxCrossEntropy by hand",
      kernel: "softmaxCrossEntropy",
      inputs: () => ({
        z: given([2, 0, -1], [1, 3]),
        labels: given(new Int32Array([0])),
      }),
      call: (k, t) => k.softmaxCrossEntropy(t.z, t.labels),
      tolerance: { loss: REDUCTION, probs: { rtol: 1e-6, atol: 1e-30 } },
      expected: {
        loss: [Math.log(Math.exp(2) + 1 + Math.exp(-1)) - 2],
        probs: [2, 0, -1].map((v) =>
          Math.exp(v) / (Math.exp(2) + 1 + Math.exp(-1))
        ),
      },
    }),
    // Rows' first maxima at 1, 0 (a three-way tie) and 0: labels 1, 0, 2.
    kernelCase({
      name: "countCorrect by hand, ties going to the first maximum",
      kernel: "countCorrect",
      inputs: () => ({
        z: given([1, 3, 3, 0, 0, 0, 5, 1, 2], [3, 3]),
        labels: given(new Int32Array([1, 0, 2])),
      }),
      call: (k, t) => ({ correct: k.countCorrect(t.z, t.labels) }),
      tolerance: { correct: EXACT },
      expected: { correct: [2] },
    }),
  ];
}
