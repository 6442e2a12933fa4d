/**
 * The reference device's kernel table: every kernel of `Kernels` on host
 * typed arrays, built from one part per family (elementwise, matrix, conv,
 * pool, batch norm, loss, quantizer, gates, prior, FracBits, random numbers,
 * optimizers), each a thin adapter over the TypeScript of its family's file
 * beside this one.
 *
 * @module
 */

import type {
  ActivationKind,
  AdamHyper,
  BatchNormKernelOptions,
  ChannelLayout,
  ConvGeometry,
  GatePriorOptions,
  GemmShape,
  Kernels,
  PoolGeometry,
  RunningStats,
  SgdHyper,
} from "../kernels.ts";
import { type RandomKey, uniform } from "../rng.ts";
import type { Shape, Tensor } from "../tensor.ts";
import {
  batchNormBackwardReference,
  batchNormNormalizeReference,
  batchNormStatisticsReference,
  inverseStd,
  runningStatisticsReference,
} from "./batchnorm.ts";
import { conv2dBackwardReference, conv2dReference } from "./conv.ts";
import {
  addReference,
  broadcastReference,
  mulReference,
  relu6BackwardReference,
  relu6Reference,
  reluBackwardReference,
  reluReference,
  scaleReference,
  sumReference,
} from "./elementwise.ts";
import {
  CHAIN_STOP_LOGIT,
  deterministicGates,
  type GateLogits,
  sampleGateGrad,
  sampleGates,
} from "./gates.ts";
import { bitPlaneKernels } from "./bitplanes.ts";
import {
  countCorrectReference,
  softmaxCrossEntropyBackwardReference,
  softmaxCrossEntropyReference,
} from "./loss.ts";
import {
  addBiasReference,
  biasGradReference,
  gemmReference,
} from "./matrix.ts";
import { adamUpdateReference, sgdUpdateReference } from "./optim.ts";
import {
  globalAvgPoolBackwardReference,
  globalAvgPoolReference,
  maxPool2dBackwardReference,
  maxPool2dReference,
} from "./pool.ts";
import { fracBitsKernels } from "./fracbits.ts";
import { checkCodeRange, uniformQuantizeReference } from "./grid.ts";
import { prior } from "./prior.ts";
import {
  quantizeBackward,
  quantizeForward,
  quantizerPass,
} from "./quantizer.ts";

/** The chain logits `[g4, g8, g16, g32]` and pruning logits as plain numbers. */
export function gateLogitsOf(
  logits: Float32Array,
  prune: Float32Array | null,
): GateLogits {
  const base = { g4: logits[0], g8: logits[1], g16: logits[2], g32: logits[3] };
  return prune ? { g2: prune, ...base } : base;
}

/**
 * `dz/dg` of each chain gate for the noise of one sample (0 past the chain
 * stop): what `hardConcreteChainBackward` multiplies by.
 */
export function chainSampleGrads(
  logits: ArrayLike<number>,
  noise: ArrayLike<number>,
): number[] {
  const out = [0, 0, 0, 0];
  for (let l = 0; l < 4; l++) {
    if (logits[l] <= CHAIN_STOP_LOGIT) break;
    out[l] = sampleGateGrad(logits[l], noise[l]);
  }
  return out;
}

/** Host access to a reference device's tensors, shared by the kernel families. */
export interface HostAccess {
  /** The float32 elements of a tensor of the device (no copy). */
  readonly f32: (t: Tensor) => Float32Array;
  /** The int32 elements of a tensor of the device (no copy). */
  readonly i32: (t: Tensor) => Int32Array;
  /** A result tensor over fresh `values` (no copy). */
  readonly out: (values: Float32Array | Int32Array, shape: Shape) => Tensor;
  /** The first element of a float32 tensor. */
  readonly scalar: (t: Tensor) => number;
}

/**
 * Every reference kernel, reading and writing tensors through `host`.
 *
 * @param host The device's tensor access.
 * @returns The kernel table.
 */
export function referenceKernelTable(host: HostAccess): Kernels {
  return {
    ...elementwiseKernels(host),
    ...matrixKernels(host),
    ...convKernels(host),
    ...poolKernels(host),
    ...batchNormKernels(host),
    ...lossKernels(host),
    ...quantizerKernels(host),
    ...bitPlaneKernels(host),
    ...gateKernels(host),
    ...priorKernels(host),
    ...fracBitsKernels(host),
    ...randomKernels(host),
    ...optimizerKernels(host),
  };
}

/** The reference kernels of elementwise ops and activations. */
function elementwiseKernels(
  { f32, out, scalar }: HostAccess,
): Pick<
  Kernels,
  | "add"
  | "mul"
  | "scale"
  | "sum"
  | "broadcast"
  | "activation"
  | "activationBackward"
> {
  return {
    add: (a, b) => out(addReference(f32(a), f32(b)), a.shape),
    mul: (a, b) => out(mulReference(f32(a), f32(b)), a.shape),
    scale: (a, factor) => out(scaleReference(f32(a), factor), a.shape),
    sum: (a) => out(sumReference(f32(a)), [1]),
    broadcast: (s, shape) =>
      out(
        broadcastReference(scalar(s), shape.reduce((p, d) => p * d, 1)),
        shape,
      ),
    activation: (kind: ActivationKind, x) =>
      out(
        kind === "relu" ? reluReference(f32(x)) : relu6Reference(f32(x)),
        x.shape,
      ),
    activationBackward: (kind: ActivationKind, x, dy) =>
      out(
        kind === "relu"
          ? reluBackwardReference(f32(x), f32(dy))
          : relu6BackwardReference(f32(x), f32(dy)),
        x.shape,
      ),
  };
}

/** The reference kernels of GEMM and bias. */
function matrixKernels(
  { f32, out }: HostAccess,
): Pick<Kernels, "gemm" | "addBias" | "biasGrad"> {
  return {
    gemm: (a, b, shape: GemmShape) =>
      out(gemmReference(shape, f32(a), f32(b)), [shape.m, shape.n]),
    addBias: (a, bias) => out(addBiasReference(f32(a), f32(bias)), a.shape),
    biasGrad: (a, cols) => out(biasGradReference(f32(a), cols), [cols]),
  };
}

/** The reference kernels of convolution. */
function convKernels(
  { f32, out }: HostAccess,
): Pick<Kernels, "conv2d" | "conv2dBackward"> {
  return {
    conv2d: (x, w, bias, g: ConvGeometry) =>
      out(
        conv2dReference(f32(x), f32(w), bias ? f32(bias) : null, g),
        [g.n, g.o, g.oh, g.ow],
      ),
    conv2dBackward: (x, w, dy, g, needInput, needBias) => {
      const r = conv2dBackwardReference(
        f32(x),
        f32(w),
        f32(dy),
        g,
        needInput,
        needBias,
      );
      return {
        dx: r.dx ? out(r.dx, x.shape) : null,
        dw: out(r.dw, w.shape),
        db: r.db ? out(r.db, [g.o]) : null,
      };
    },
  };
}

/** The reference kernels of max and global average pooling. */
function poolKernels(
  { f32, i32, out }: HostAccess,
): Pick<
  Kernels,
  "maxPool2d" | "maxPool2dBackward" | "globalAvgPool" | "globalAvgPoolBackward"
> {
  return {
    maxPool2d: (x, g: PoolGeometry) => {
      const r = maxPool2dReference(f32(x), g);
      const shape = [g.n, g.c, g.oh, g.ow];
      return { y: out(r.y, shape), argmax: out(r.argmax, shape) };
    },
    maxPool2dBackward: (dy, argmax, g) =>
      out(
        maxPool2dBackwardReference(f32(dy), i32(argmax), g),
        [g.n, g.c, g.h, g.w],
      ),
    globalAvgPool: (x, planes, area) =>
      out(globalAvgPoolReference(f32(x), planes, area), [planes]),
    globalAvgPoolBackward: (dy, planes, area) =>
      out(globalAvgPoolBackwardReference(f32(dy), planes, area), [
        planes * area,
      ]),
  };
}

/** The reference kernels of batch norm. */
function batchNormKernels(
  host: HostAccess,
): Pick<Kernels, "batchNorm" | "batchNormBackward"> {
  const { f32, out } = host;
  return {
    batchNorm: (x, gamma, beta, running, options) =>
      batchNorm(host, x, gamma, beta, running, options),
    batchNormBackward: (
      dy,
      xhat,
      gamma,
      invStd,
      layout: ChannelLayout,
      train,
    ) => {
      const r = batchNormBackwardReference(
        f32(dy),
        f32(xhat),
        layout,
        f32(gamma),
        f32(invStd),
        train,
      );
      return {
        dx: out(r.dx, dy.shape),
        dgamma: out(r.dgamma, [layout.c]),
        dbeta: out(r.dbeta, [layout.c]),
      };
    },
  };
}

/** The reference kernels of softmax cross-entropy and accuracy. */
function lossKernels(
  { f32, i32, out, scalar }: HostAccess,
): Pick<
  Kernels,
  "softmaxCrossEntropy" | "softmaxCrossEntropyBackward" | "countCorrect"
> {
  return {
    softmaxCrossEntropy: (logits, labels) => {
      const [n, k] = logits.shape;
      const r = softmaxCrossEntropyReference(f32(logits), i32(labels), k);
      return {
        loss: out(new Float32Array([r.total / n]), [1]),
        probs: out(r.probs, logits.shape),
      };
    },
    softmaxCrossEntropyBackward: (probs, labels, dloss) =>
      out(
        softmaxCrossEntropyBackwardReference(
          f32(probs),
          i32(labels),
          probs.shape[1],
          scalar(dloss),
        ),
        probs.shape,
      ),
    countCorrect: (logits, labels) =>
      out(
        new Int32Array([
          countCorrectReference(f32(logits), i32(labels), logits.shape[1]),
        ]),
        [1],
      ),
  };
}

/** The reference kernels of the residual quantizer and the uniform grid. */
function quantizerKernels(
  { f32, out, scalar }: HostAccess,
): Pick<
  Kernels,
  | "residualQuantize"
  | "residualQuantizeBackward"
  | "residualQuantizePool"
  | "uniformQuantize"
> {
  return {
    residualQuantize: (x, xmax, gates, z2, signed) => {
      const pass = quantizerPass(
        scalar(xmax),
        signed,
        f32(gates),
        z2 ? f32(z2) : null,
      );
      return out(quantizeForward(f32(x), pass), x.shape);
    },
    residualQuantizeBackward: (x, xmax, gates, z2, signed, dy) => {
      const pass = quantizerPass(
        scalar(xmax),
        signed,
        f32(gates),
        z2 ? f32(z2) : null,
      );
      const r = quantizeBackward(f32(x), f32(dy), pass);
      return {
        dx: out(r.dx, x.shape),
        dxmax: out(new Float32Array([r.dxmax]), [1]),
        dgates: out(Float32Array.from(r.dgates), [4]),
        dz2: r.dz2 && z2 ? out(Float32Array.from(r.dz2), z2.shape) : null,
      };
    },
    uniformQuantize: (x, scale, codeMin, codeMax) => {
      checkCodeRange("uniformQuantize", codeMin, codeMax);
      return out(
        uniformQuantizeReference(f32(x), scalar(scale), codeMin, codeMax),
        x.shape,
      );
    },
    residualQuantizePool: (x, xmax, gates, signed, g) => {
      const pass = quantizerPass(scalar(xmax), signed, f32(gates), null);
      const xq = quantizeForward(f32(x), pass);
      return out(maxPool2dReference(xq, g).y, [g.n, g.c, g.oh, g.ow]);
    },
  };
}

/** The reference kernels of hard-concrete gates. */
function gateKernels(
  { f32, out }: HostAccess,
): Pick<
  Kernels,
  | "hardConcreteSample"
  | "hardConcreteChainBackward"
  | "hardConcretePruneBackward"
  | "hardConcreteGates"
> {
  return {
    hardConcreteSample: (logits, prune, noise) => {
      const s = sampleGates(
        gateLogitsOf(f32(logits), prune ? f32(prune) : null),
        f32(noise),
      );
      const v = s.values;
      return {
        chain: out(new Float32Array([v.z4, v.z8, v.z16, v.z32]), [4]),
        z2: v.z2 && prune ? out(Float32Array.from(v.z2), prune.shape) : null,
      };
    },
    hardConcreteChainBackward: (logits, noise, dchain) => {
      const d = chainSampleGrads(f32(logits), f32(noise));
      const g = f32(dchain);
      return out(Float32Array.from(g, (gi, l) => gi * d[l]), [4]);
    },
    hardConcretePruneBackward: (prune, noise, dz2) => {
      const p = f32(prune);
      const u = f32(noise);
      const g = f32(dz2);
      return out(
        Float32Array.from(g, (gi, c) => gi * sampleGateGrad(p[c], u[4 + c])),
        prune.shape,
      );
    },
    hardConcreteGates: (logits, prune) => {
      const z = deterministicGates(
        gateLogitsOf(f32(logits), prune ? f32(prune) : null),
      );
      return {
        chain: out(new Float32Array([z.z4, z.z8, z.z16, z.z32]), [4]),
        z2: z.z2 && prune ? out(Float32Array.from(z.z2), prune.shape) : null,
      };
    },
  };
}

/** The reference kernels of the gate prior. */
function priorKernels(
  { f32, out, scalar }: HostAccess,
): Pick<Kernels, "gatePrior" | "gatePriorBackward"> {
  return {
    gatePrior: (logits, prune, options: GatePriorOptions) => {
      const r = prior(
        gateLogitsOf(f32(logits), prune ? f32(prune) : null),
        options,
      );
      return out(new Float32Array([r.value]), [1]);
    },
    gatePriorBackward: (logits, prune, options, dr) => {
      const r = prior(
        gateLogitsOf(f32(logits), prune ? f32(prune) : null),
        options,
      );
      const g = scalar(dr);
      return {
        dlogits: out(Float32Array.from(r.dg, (d) => d * g), [4]),
        dprune: r.dg2 && prune
          ? out(Float32Array.from(r.dg2, (d) => d * g), prune.shape)
          : null,
      };
    },
  };
}

/** The reference kernels of random numbers. */
function randomKernels(
  { out }: HostAccess,
): Pick<Kernels, "uniform"> {
  return {
    uniform: (key: RandomKey, count, offset) =>
      out(uniform(key, count, offset), [count]),
  };
}

/** The reference kernels of optimizer updates. */
function optimizerKernels(
  { f32, out }: HostAccess,
): Pick<Kernels, "adamUpdate" | "sgdUpdate"> {
  return {
    adamUpdate: (theta, grad, m, v, hyper: AdamHyper) => {
      const r = adamUpdateReference(
        f32(theta),
        f32(grad),
        f32(m),
        f32(v),
        hyper,
      );
      return {
        theta: out(r.theta, theta.shape),
        m: out(r.m, theta.shape),
        v: out(r.v, theta.shape),
      };
    },
    sgdUpdate: (theta, grad, momentum, hyper: SgdHyper) => {
      const r = sgdUpdateReference(
        f32(theta),
        f32(grad),
        momentum ? f32(momentum) : null,
        hyper,
      );
      return {
        theta: out(r.theta, theta.shape),
        momentum: r.momentum ? out(r.momentum, theta.shape) : null,
      };
    },
  };
}

function batchNorm(
  host: HostAccess,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  running: RunningStats | null,
  options: BatchNormKernelOptions,
): { y: Tensor; xhat: Tensor; invStd: Tensor; running: RunningStats | null } {
  const { f32, out } = host;
  const { layout, train, momentum, eps } = options;
  const xs = f32(x);
  let mean: Float64Array;
  let variance: Float64Array;
  let next: RunningStats | null = null;
  if (train) {
    ({ mean, variance } = batchNormStatisticsReference(xs, layout));
    if (running) {
      const r = runningStatisticsReference(
        f32(running.mean),
        f32(running.variance),
        mean,
        variance,
        layout.n * layout.area,
        momentum,
      );
      next = {
        mean: out(r.mean, [layout.c]),
        variance: out(r.variance, [layout.c]),
      };
    }
  } else {
    if (!running) {
      throw new RangeError("batchNorm: evaluation needs running statistics");
    }
    mean = Float64Array.from(f32(running.mean));
    variance = Float64Array.from(f32(running.variance));
  }
  const invStd = inverseStd(variance, eps);
  const r = batchNormNormalizeReference(
    xs,
    layout,
    mean,
    invStd,
    f32(gamma),
    f32(beta),
  );
  return {
    y: out(r.y, x.shape),
    xhat: out(r.xhat, x.shape),
    invStd: out(Float32Array.from(invStd), [layout.c]),
    running: next,
  };
}
