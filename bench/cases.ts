/**
 * The kernel cases of the kernel table: the kernels a LeNet-5 Bayesian
 * Bits training step and its evaluation call, at batch-128 shapes, with
 * their inputs (deterministic uniform values, uploaded once per device).
 *
 * @module
 */

import type { Tensor } from "../core/tensor.ts";
import type { ConvGeometry, Kernels, PoolGeometry } from "../core/kernels.ts";
import type { Device } from "../core/device.ts";
import { randomKey, uniform } from "../core/rng.ts";

/** Batch size of every case. */
export const KERNEL_BATCH = 128;
const N = KERNEL_BATCH;

/** LeNet-5's first convolution: `[128, 1, 28, 28]` by `[32, 1, 5, 5]`. */
const CONV1: ConvGeometry = {
  n: N,
  c: 1,
  h: 28,
  w: 28,
  o: 32,
  kh: 5,
  kw: 5,
  oh: 24,
  ow: 24,
  stride: 1,
  padding: 0,
  groups: 1,
};
/** LeNet-5's second convolution: `[128, 32, 12, 12]` by `[64, 32, 5, 5]`. */
const CONV2: ConvGeometry = {
  ...CONV1,
  c: 32,
  h: 12,
  w: 12,
  o: 64,
  oh: 8,
  ow: 8,
};
/** The first max-pool: `[128, 32, 24, 24]` to `[128, 32, 12, 12]`. */
const POOL1: PoolGeometry = {
  n: N,
  c: 32,
  h: 24,
  w: 24,
  oh: 12,
  ow: 12,
  kernel: 2,
  stride: 2,
  padding: 0,
};
/** LeNet-5's parameter shapes, for the Adam case. */
const PARAM_SHAPES: readonly (readonly number[])[] = [
  [32, 1, 5, 5],
  [32],
  [64, 32, 5, 5],
  [64],
  [512, 1024],
  [512],
  [10, 512],
  [10],
];

/** The names of the cases' input tensors. */
type InputName =
  | "image"
  | "w1"
  | "b1"
  | "act1"
  | "dAct1"
  | "pooled1"
  | "argmax1"
  | "w2"
  | "b2"
  | "dAct2"
  | "fc1In"
  | "w3"
  | "b3"
  | "fc1Out"
  | "logits"
  | "labels"
  | "probs"
  | "one"
  | "xmax"
  | "gates"
  | "z2"
  | "chainLogits"
  | "prune"
  | "noise"
  | "gamma"
  | "beta"
  | "xhat"
  | "invStd";

/** The inputs of the cases on one device: named tensors and Adam's (theta, grad, m, v) per parameter. */
export type KernelInputs = Readonly<Record<InputName, Tensor>> & {
  readonly adam: readonly Tensor[];
};

let stream = 0;
/** `count` values uniform in (lo, hi) from a fixed key (a new stream per call). */
function values(count: number, lo = -1, hi = 1): Float32Array {
  return uniform(randomKey(7), count, (stream++) * 1e7).map((u) =>
    lo + (hi - lo) * u
  );
}

/**
 * Uploads the cases' inputs to a device (the same values on every device:
 * the value streams restart per call).
 *
 * @param dev The device.
 * @returns The inputs.
 */
export function uploadInputs(dev: Device): KernelInputs {
  stream = 0;
  const up = (shape: number[], lo = -1, hi = 1) =>
    dev.upload(values(shape.reduce((a, b) => a * b, 1), lo, hi), shape);
  const act1 = up([N, 32, 24, 24], -0.5, 1.5);
  const logits = up([N, 10], -3, 3);
  const labels = dev.upload(
    Int32Array.from(values(N, 0, 10), Math.floor),
    [N],
    "int32",
  );
  const gamma = up([32], 0.5, 1.5);
  const beta = up([32]);
  const bn = dev.kernels.batchNorm(act1, gamma, beta, null, {
    layout: { n: N, c: 32, area: 576 },
    train: true,
    momentum: 0.1,
    eps: 1e-5,
  });
  dev.free(bn.y);
  return {
    image: up([N, 1, 28, 28]),
    w1: up([32, 1, 5, 5], -0.2, 0.2),
    b1: up([32]),
    act1,
    dAct1: up([N, 32, 24, 24]),
    pooled1: up([N, 32, 12, 12]),
    argmax1: dev.kernels.maxPool2d(act1, POOL1).argmax,
    w2: up([64, 32, 5, 5], -0.05, 0.05),
    b2: up([64]),
    dAct2: up([N, 64, 8, 8]),
    fc1In: up([N, 1024]),
    w3: up([512, 1024], -0.03, 0.03),
    b3: up([512]),
    fc1Out: up([N, 512]),
    logits,
    labels,
    probs: dev.kernels.softmaxCrossEntropy(logits, labels).probs,
    one: dev.upload([1], [1]),
    xmax: dev.upload([1], [1]),
    gates: dev.upload([1, 1, 0, 0], [4]),
    z2: dev.upload(new Float32Array(64).fill(1), [64]),
    chainLogits: dev.upload([6, 6, -6, -6], [4]),
    prune: dev.upload(new Float32Array(64).fill(6), [64]),
    noise: up([68], 0.001, 0.999),
    gamma,
    beta,
    xhat: bn.xhat,
    invStd: bn.invStd,
    adam: PARAM_SHAPES.flatMap((s) => [
      up([...s]),
      up([...s], -0.01, 0.01),
      up([...s], -0.001, 0.001),
      up([...s], 0, 1e-6),
    ]),
  };
}

/** One row of the kernel table. */
export interface KernelCase {
  /** The kernel and its shape. */
  readonly name: string;
  /** One call. */
  readonly run: (k: Kernels, t: KernelInputs) => unknown;
}

function convCases(): KernelCase[] {
  return [
    {
      name: "conv2d conv1 [128,1,28,28] * [32,1,5,5]",
      run: (k, t) => k.conv2d(t.image, t.w1, t.b1, CONV1),
    },
    {
      name: "conv2d conv2 [128,32,12,12] * [64,32,5,5]",
      run: (k, t) => k.conv2d(t.pooled1, t.w2, t.b2, CONV2),
    },
    {
      name: "conv2dBackward conv1 (dw, db)",
      run: (k, t) =>
        k.conv2dBackward(t.image, t.w1, t.dAct1, CONV1, false, true),
    },
    {
      name: "conv2dBackward conv2 (dx, dw, db)",
      run: (k, t) =>
        k.conv2dBackward(t.pooled1, t.w2, t.dAct2, CONV2, true, true),
    },
    {
      name: "gemm fc1 forward 128x1024 * (512x1024)^T",
      run: (k, t) =>
        k.gemm(t.fc1In, t.w3, {
          m: N,
          n: 512,
          k: 1024,
          transB: true,
          transA: false,
        }),
    },
    {
      name: "gemm fc1 grad-input 128x512 * 512x1024",
      run: (k, t) =>
        k.gemm(t.fc1Out, t.w3, {
          m: N,
          n: 1024,
          k: 512,
          transA: false,
          transB: false,
        }),
    },
    {
      name: "gemm fc1 grad-weight (128x512)^T * 128x1024",
      run: (k, t) =>
        k.gemm(t.fc1Out, t.fc1In, {
          m: 512,
          n: 1024,
          k: N,
          transA: true,
          transB: false,
        }),
    },
    { name: "addBias fc1 [128,512]", run: (k, t) => k.addBias(t.fc1Out, t.b3) },
    {
      name: "biasGrad fc1 [128,512]",
      run: (k, t) => k.biasGrad(t.fc1Out, 512),
    },
  ];
}

function elementCases(): KernelCase[] {
  return [
    {
      name: "activation relu [128,32,24,24]",
      run: (k, t) => k.activation("relu", t.act1),
    },
    {
      name: "activationBackward relu [128,32,24,24]",
      run: (k, t) => k.activationBackward("relu", t.act1, t.dAct1),
    },
    { name: "maxPool2d pool1", run: (k, t) => k.maxPool2d(t.act1, POOL1) },
    {
      name: "maxPool2dBackward pool1",
      run: (k, t) => k.maxPool2dBackward(t.pooled1, t.argmax1, POOL1),
    },
    {
      name: "softmaxCrossEntropy [128,10]",
      run: (k, t) => k.softmaxCrossEntropy(t.logits, t.labels),
    },
    {
      name: "softmaxCrossEntropyBackward [128,10]",
      run: (k, t) => k.softmaxCrossEntropyBackward(t.probs, t.labels, t.one),
    },
    {
      name: "countCorrect [128,10]",
      run: (k, t) => k.countCorrect(t.logits, t.labels),
    },
    {
      name: "adamUpdate, all LeNet-5 parameters (582K)",
      run: (k, t) => {
        const hyper = {
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay: 0,
          stepSize: 1e-3,
          sqrtCorrection2: 0.5,
        };
        for (let i = 0; i < t.adam.length; i += 4) {
          const [theta, grad, m, v] = t.adam.slice(i, i + 4);
          k.adamUpdate(theta, grad, m, v, hyper);
        }
      },
    },
    {
      name: "batchNorm training [128,32,24,24] (not in LeNet-5)",
      run: (k, t) =>
        k.batchNorm(t.act1, t.gamma, t.beta, null, {
          layout: { n: N, c: 32, area: 576 },
          train: true,
          momentum: 0.1,
          eps: 1e-5,
        }),
    },
    {
      name: "batchNormBackward [128,32,24,24] (not in LeNet-5)",
      run: (k, t) =>
        k.batchNormBackward(t.dAct1, t.xhat, t.gamma, t.invStd, {
          n: N,
          c: 32,
          area: 576,
        }, true),
    },
  ];
}

function quantizerCases(): KernelCase[] {
  return [
    {
      name: "residualQuantize weights conv2 [64,32,5,5], z2",
      run: (k, t) => k.residualQuantize(t.w2, t.xmax, t.gates, t.z2, true),
    },
    {
      name: "residualQuantizeBackward weights conv2, z2",
      run: (k, t) =>
        k.residualQuantizeBackward(t.w2, t.xmax, t.gates, t.z2, true, t.w2),
    },
    {
      name: "residualQuantize activations [128,32,24,24]",
      run: (k, t) => k.residualQuantize(t.act1, t.xmax, t.gates, null, false),
    },
    {
      name: "residualQuantizeBackward activations [128,32,24,24]",
      run: (k, t) =>
        k.residualQuantizeBackward(
          t.act1,
          t.xmax,
          t.gates,
          null,
          false,
          t.dAct1,
        ),
    },
    {
      name: "residualQuantizePool activations + pool1 (evaluation)",
      run: (k, t) =>
        k.residualQuantizePool(t.act1, t.xmax, t.gates, false, POOL1),
    },
    {
      name: "hardConcreteSample, 4 + 64 gates",
      run: (k, t) => k.hardConcreteSample(t.chainLogits, t.prune, t.noise),
    },
    {
      name: "gatePrior + gatePriorBackward, 4 + 64 gates",
      run: (k, t) => {
        const options = { macRatio: 0.5, mode: "bop" } as const;
        k.gatePrior(t.chainLogits, t.prune, options);
        k.gatePriorBackward(t.chainLogits, t.prune, options, t.one);
      },
    },
    {
      name: "uniform, 65,536 numbers",
      run: (k) => k.uniform(randomKey(3), 65536, 0),
    },
  ];
}

/**
 * Every case, in table order.
 *
 * @returns The cases.
 */
export function kernelCases(): KernelCase[] {
  return [...convCases(), ...elementCases(), ...quantizerCases()];
}
