/**
 * Kernel cases on empty tensors (a batch of 0 samples, a matrix with a 0
 * dimension, a quantizer over 0 channels): every device must return the
 * reference device's shapes and values, reductions over nothing included
 * (a sum of 0 elements is 0, a mean of 0 samples is NaN on every device).
 */

import { randomKey } from "../core/rng.ts";
import {
  EXACT,
  floats,
  given,
  type KernelCase,
  kernelCase,
} from "./_kernel_case.ts";

const NONE = given([]);
const RANGE = () => given([1.5]);
const GATES = () => given([1, 1, 0.5, 0]);
const CONV = {
  n: 0,
  c: 2,
  h: 4,
  w: 4,
  o: 3,
  kh: 3,
  kw: 3,
  oh: 2,
  ow: 2,
  stride: 1,
  padding: 0,
  groups: 1,
};
const POOL = {
  n: 0,
  c: 2,
  h: 4,
  w: 4,
  oh: 2,
  ow: 2,
  kernel: 2,
  stride: 2,
  padding: 0,
};

function matrixCases(): KernelCase[] {
  return [
    kernelCase({
      name: "sum of 0 elements",
      kernel: "sum",
      inputs: () => ({ a: NONE }),
      call: (k, t) => ({ y: k.sum(t.a) }),
      tolerance: { y: EXACT },
      expected: { y: [0] },
    }),
    kernelCase({
      name: "broadcast to [0, 3]",
      kernel: "broadcast",
      inputs: () => ({ s: given([2]) }),
      call: (k, t) => ({ y: k.broadcast(t.s, [0, 3]) }),
      tolerance: { y: EXACT },
    }),
    ...[
      { m: 0, n: 2, k: 3 },
      { m: 2, n: 0, k: 3 },
      { m: 2, n: 2, k: 0 },
    ].map(({ m, n, k }) =>
      kernelCase({
        name: `gemm ${m}x${k} by ${k}x${n}`,
        kernel: "gemm",
        inputs: () => ({ a: floats(1, [m, k]), b: floats(2, [k, n]) }),
        call: (kk, t) => ({
          y: kk.gemm(t.a, t.b, { m, n, k, transA: false, transB: false }),
        }),
        tolerance: { y: EXACT },
        expected: { y: new Array(m * n).fill(0) },
      })
    ),
    kernelCase({
      name: "addBias and biasGrad on 0 rows",
      kernel: "addBias",
      inputs: () => ({ a: floats(3, [0, 3]), bias: floats(4, [3]) }),
      call: (k, t) => ({ y: k.addBias(t.a, t.bias), g: k.biasGrad(t.a, 3) }),
      tolerance: { y: EXACT, g: EXACT },
      expected: { y: [], g: [0, 0, 0] },
    }),
    kernelCase({
      name: "biasGrad of 0 rows",
      kernel: "biasGrad",
      inputs: () => ({ a: floats(5, [0, 2]) }),
      call: (k, t) => ({ g: k.biasGrad(t.a, 2) }),
      tolerance: { g: EXACT },
      expected: { g: [0, 0] },
    }),
  ];
}

function layerCases(): KernelCase[] {
  return [
    kernelCase({
      name: "conv2d on a batch of 0",
      kernel: "conv2d",
      inputs: () => ({
        x: floats(6, [0, 2, 4, 4]),
        w: floats(7, [3, 2, 3, 3]),
        b: floats(8, [3]),
      }),
      call: (k, t) => ({ y: k.conv2d(t.x, t.w, t.b, CONV) }),
      tolerance: { y: EXACT },
    }),
    kernelCase({
      name: "conv2dBackward on a batch of 0",
      kernel: "conv2dBackward",
      inputs: () => ({
        x: floats(9, [0, 2, 4, 4]),
        w: floats(10, [3, 2, 3, 3]),
        dy: floats(11, [0, 3, 2, 2]),
      }),
      call: (k, t) => k.conv2dBackward(t.x, t.w, t.dy, CONV, true, true),
      tolerance: { dx: EXACT, dw: EXACT, db: EXACT },
      expected: { dw: new Array(54).fill(0), db: [0, 0, 0] },
    }),
    kernelCase({
      name: "maxPool2d and its backward on a batch of 0",
      kernel: "maxPool2d",
      inputs: () => ({
        x: floats(12, [0, 2, 4, 4]),
        dy: floats(13, [0, 2, 2, 2]),
      }),
      call: (k, t) => {
        const { y, argmax } = k.maxPool2d(t.x, POOL);
        return { y, argmax, dx: k.maxPool2dBackward(t.dy, argmax, POOL) };
      },
      tolerance: { y: EXACT, argmax: EXACT, dx: EXACT },
    }),
    kernelCase({
      name: "maxPool2dBackward on a batch of 0",
      kernel: "maxPool2dBackward",
      inputs: () => ({
        dy: floats(14, [0, 2, 2, 2]),
        argmax: given(new Int32Array(0), [0, 2, 2, 2]),
      }),
      call: (k, t) => ({ dx: k.maxPool2dBackward(t.dy, t.argmax, POOL) }),
      tolerance: { dx: EXACT },
    }),
    kernelCase({
      name: "globalAvgPool and its backward over 0 planes",
      kernel: "globalAvgPool",
      inputs: () => ({ x: floats(15, [0, 4]), dy: NONE }),
      call: (k, t) => ({
        y: k.globalAvgPool(t.x, 0, 4),
        dx: k.globalAvgPoolBackward(t.dy, 0, 4),
      }),
      tolerance: { y: EXACT, dx: EXACT },
    }),
    kernelCase({
      name: "globalAvgPoolBackward over 0 planes",
      kernel: "globalAvgPoolBackward",
      inputs: () => ({ dy: NONE }),
      call: (k, t) => ({ dx: k.globalAvgPoolBackward(t.dy, 0, 9) }),
      tolerance: { dx: EXACT },
    }),
  ];
}

function lossAndNormCases(): KernelCase[] {
  return [...normCases(), ...lossCases()];
}

function normCases(): KernelCase[] {
  const layout = { n: 0, c: 2, area: 4 };
  return [
    kernelCase({
      name:
        "batchNorm in training on a batch of 0 (the mean of nothing is NaN)",
      kernel: "batchNorm",
      inputs: () => ({
        x: floats(16, [0, 2, 2, 2]),
        gamma: given([1, 2]),
        beta: given([0, 1]),
      }),
      call: (k, t) => {
        const r = k.batchNorm(t.x, t.gamma, t.beta, null, {
          layout,
          train: true,
          momentum: 0.1,
          eps: 1e-5,
        });
        return { y: r.y, xhat: r.xhat, invStd: r.invStd };
      },
      tolerance: { y: EXACT, xhat: EXACT, invStd: EXACT },
    }),
    kernelCase({
      name: "batchNormBackward on a batch of 0",
      kernel: "batchNormBackward",
      inputs: () => ({
        dy: floats(17, [0, 2, 2, 2]),
        xhat: floats(18, [0, 2, 2, 2]),
        gamma: given([1, 2]),
        invStd: given([1, 0.5]),
      }),
      call: (k, t) =>
        k.batchNormBackward(t.dy, t.xhat, t.gamma, t.invStd, layout, false),
      tolerance: { dx: EXACT, dgamma: EXACT, dbeta: EXACT },
      expected: { dgamma: [0, 0], dbeta: [0, 0] },
    }),
  ];
}

function lossCases(): KernelCase[] {
  return [
    kernelCase({
      name: "softmaxCrossEntropy, its backward and countCorrect on 0 rows",
      kernel: "softmaxCrossEntropy",
      inputs: () => ({
        logits: floats(19, [0, 3]),
        labels: given(new Int32Array(0)),
        dloss: given([1]),
      }),
      call: (k, t) => {
        const { loss, probs } = k.softmaxCrossEntropy(t.logits, t.labels);
        return {
          loss,
          probs,
          dx: k.softmaxCrossEntropyBackward(probs, t.labels, t.dloss),
        };
      },
      tolerance: { loss: EXACT, probs: EXACT, dx: EXACT },
    }),
    kernelCase({
      name: "softmaxCrossEntropyBackward on 0 rows",
      kernel: "softmaxCrossEntropyBackward",
      inputs: () => ({
        probs: floats(20, [0, 3]),
        labels: given(new Int32Array(0)),
        dloss: given([1]),
      }),
      call: (k, t) => ({
        dx: k.softmaxCrossEntropyBackward(t.probs, t.labels, t.dloss),
      }),
      tolerance: { dx: EXACT },
    }),
    kernelCase({
      name: "countCorrect on 0 rows",
      kernel: "countCorrect",
      inputs: () => ({
        logits: floats(21, [0, 3]),
        labels: given(new Int32Array(0)),
      }),
      call: (k, t) => ({ n: k.countCorrect(t.logits, t.labels) }),
      tolerance: { n: EXACT },
      expected: { n: [0] },
    }),
  ];
}

function quantizerCases(): KernelCase[] {
  const cases: KernelCase[] = [];
  for (const withZ2 of [false, true]) {
    const z2 = withZ2 ? " with an empty z2" : "";
    cases.push(
      kernelCase({
        name: `residualQuantize of [0, 4]${z2}`,
        kernel: "residualQuantize",
        inputs: () => ({
          x: floats(22, [0, 4]),
          xmax: RANGE(),
          gates: GATES(),
          z2: NONE,
        }),
        call: (k, t) => ({
          y: k.residualQuantize(
            t.x,
            t.xmax,
            t.gates,
            withZ2 ? t.z2 : null,
            true,
          ),
        }),
        tolerance: { y: EXACT },
      }),
      kernelCase({
        name: `residualQuantizeBackward of [0, 4]${z2}`,
        kernel: "residualQuantizeBackward",
        inputs: () => ({
          x: floats(23, [0, 4]),
          xmax: RANGE(),
          gates: GATES(),
          z2: NONE,
          dy: floats(24, [0, 4]),
        }),
        call: (k, t) =>
          k.residualQuantizeBackward(
            t.x,
            t.xmax,
            t.gates,
            withZ2 ? t.z2 : null,
            false,
            t.dy,
          ),
        tolerance: { dx: EXACT, dxmax: EXACT, dgates: EXACT, dz2: EXACT },
        expected: { dxmax: [0], dgates: [0, 0, 0, 0] },
      }),
    );
  }
  cases.push(
    kernelCase({
      name: "residualQuantizePool on a batch of 0",
      kernel: "residualQuantizePool",
      inputs: () => ({
        x: floats(25, [0, 2, 4, 4]),
        xmax: RANGE(),
        gates: GATES(),
      }),
      call: (k, t) => ({
        y: k.residualQuantizePool(t.x, t.xmax, t.gates, false, POOL),
      }),
      tolerance: { y: EXACT },
    }),
  );
  return cases;
}

function updateCases(): KernelCase[] {
  return [
    kernelCase({
      name: "uniform, 0 numbers",
      kernel: "uniform",
      inputs: () => ({}),
      call: (k) => ({ u: k.uniform(randomKey(4), 0, 7) }),
      tolerance: { u: EXACT },
    }),
    kernelCase({
      name: "adamUpdate of 0 elements",
      kernel: "adamUpdate",
      inputs: () => ({ theta: NONE, grad: NONE, m: NONE, v: NONE }),
      call: (k, t) =>
        k.adamUpdate(t.theta, t.grad, t.m, t.v, {
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay: 0,
          stepSize: 0.1,
          sqrtCorrection2: 1,
        }),
      tolerance: { theta: EXACT, m: EXACT, v: EXACT },
    }),
    kernelCase({
      name: "sgdUpdate of 0 elements, with momentum",
      kernel: "sgdUpdate",
      inputs: () => ({ theta: NONE, grad: NONE, momentum: NONE }),
      call: (k, t) =>
        k.sgdUpdate(t.theta, t.grad, t.momentum, {
          lr: 0.1,
          momentum: 0.9,
          nesterov: false,
          weightDecay: 0,
        }),
      tolerance: { theta: EXACT, momentum: EXACT },
    }),
  ];
}

/** Every kernel case on empty tensors. */
export function emptyCases(): KernelCase[] {
  return [
    ...matrixCases(),
    ...layerCases(),
    ...lossAndNormCases(),
    ...quantizerCases(),
    ...updateCases(),
  ];
}
