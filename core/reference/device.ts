/**
 * The reference device: tensors in host typed arrays, every kernel in plain
 * TypeScript (one file per family beside this one). It is the oracle every
 * other device is tested against, and it runs everywhere.
 *
 * @module
 */

import { BaseDevice, type Device, type Storage } from "../device.ts";
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
import type { RandomKey } from "../rng.ts";
import { uniform } from "../rng.ts";
import {
  type DType,
  hostF32,
  hostI32,
  type Shape,
  type Tensor,
} from "../tensor.ts";
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
  deterministicGates,
  type GateLogits,
  sampleGateGrad,
  sampleGates,
} from "./gates.ts";
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
import { maxPool2dBackwardReference, maxPool2dReference } from "./pool.ts";
import {
  globalAvgPoolBackwardReference,
  globalAvgPoolReference,
} from "./pool.ts";
import { prior } from "./prior.ts";
import {
  quantizeBackward,
  quantizeForward,
  quantizerPass,
} from "./quantizer.ts";
import { CHAIN_STOP_LOGIT } from "./gates.ts";

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

class ReferenceDeviceImpl extends BaseDevice {
  readonly kind = "reference" as const;
  readonly name = "reference";
  readonly kernels: Kernels;

  constructor() {
    super();
    this.kernels = referenceKernels(this);
  }

  protected allocateHandle(length: number, dtype: DType): unknown {
    return dtype === "int32"
      ? new Int32Array(length)
      : new Float32Array(length);
  }

  protected releaseHandle(): void {}

  protected writeHandle(
    handle: unknown,
    values: Float32Array | Int32Array,
  ): void {
    (handle as Float32Array | Int32Array).set(values);
  }

  protected readHandle(storage: Storage): Promise<Float32Array | Int32Array> {
    return Promise.resolve(
      (storage.handle as Float32Array | Int32Array).slice(),
    );
  }

  protected zeroHandle(storage: Storage): void {
    (storage.handle as Float32Array | Int32Array).fill(0);
  }

  hostView(storage: Storage): Float32Array | Int32Array {
    return storage.handle as Float32Array | Int32Array;
  }

  /** The reference device lives as long as the program: nothing to release. */
  protected disposeResources(): void {}

  override dispose(): void {}

  /** A tensor over `values` itself (a kernel's fresh result; no copy). */
  adopt(values: Float32Array | Int32Array, shape: Shape): Tensor {
    return this.wrap(
      values,
      values.length,
      shape,
      values instanceof Int32Array ? "int32" : "float32",
    );
  }
}

function referenceKernels(dev: ReferenceDeviceImpl): Kernels {
  const f32 = (t: Tensor) => hostF32(dev.checked(t));
  const i32 = (t: Tensor) => hostI32(dev.checked(t));
  const out = (values: Float32Array | Int32Array, shape: Shape) =>
    dev.adopt(values, shape);
  const scalar = (t: Tensor) => f32(t)[0];
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
    gemm: (a, b, shape: GemmShape) =>
      out(gemmReference(shape, f32(a), f32(b)), [shape.m, shape.n]),
    addBias: (a, bias) => out(addBiasReference(f32(a), f32(bias)), a.shape),
    biasGrad: (a, cols) => out(biasGradReference(f32(a), cols), [cols]),
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
    batchNorm: (x, gamma, beta, running, options) =>
      batchNorm(dev, x, gamma, beta, running, options),
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
    residualQuantizePool: (x, xmax, gates, signed, g) => {
      const pass = quantizerPass(scalar(xmax), signed, f32(gates), null);
      const xq = quantizeForward(f32(x), pass);
      return out(maxPool2dReference(xq, g).y, [g.n, g.c, g.oh, g.ow]);
    },
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
    uniform: (key: RandomKey, count, offset) =>
      out(uniform(key, count, offset), [count]),
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
  dev: ReferenceDeviceImpl,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  running: RunningStats | null,
  options: BatchNormKernelOptions,
): { y: Tensor; xhat: Tensor; invStd: Tensor; running: RunningStats | null } {
  const { layout, train, momentum, eps } = options;
  const xs = hostF32(dev.checked(x));
  let mean: Float64Array;
  let variance: Float64Array;
  let next: RunningStats | null = null;
  if (train) {
    ({ mean, variance } = batchNormStatisticsReference(xs, layout));
    if (running) {
      const r = runningStatisticsReference(
        hostF32(dev.checked(running.mean)),
        hostF32(dev.checked(running.variance)),
        mean,
        variance,
        layout.n * layout.area,
        momentum,
      );
      next = {
        mean: dev.adopt(r.mean, [layout.c]),
        variance: dev.adopt(r.variance, [layout.c]),
      };
    }
  } else {
    if (!running) {
      throw new RangeError("batchNorm: evaluation needs running statistics");
    }
    mean = Float64Array.from(hostF32(dev.checked(running.mean)));
    variance = Float64Array.from(hostF32(dev.checked(running.variance)));
  }
  const invStd = inverseStd(variance, eps);
  const r = batchNormNormalizeReference(
    xs,
    layout,
    mean,
    invStd,
    hostF32(dev.checked(gamma)),
    hostF32(dev.checked(beta)),
  );
  return {
    y: dev.adopt(r.y, x.shape),
    xhat: dev.adopt(r.xhat, x.shape),
    invStd: dev.adopt(Float32Array.from(invStd), [layout.c]),
    running: next,
  };
}

/** The reference device: a {@link Device} on host typed arrays. */
export interface ReferenceDevice extends Device {
  /** `"reference"`. */
  readonly kind: "reference";
  /**
   * A tensor over `values` itself (no copy): what kernels use for results.
   *
   * @param values The elements (the tensor owns them from now on).
   * @param shape The shape; its size must be `values.length`.
   * @returns The tensor.
   */
  adopt(values: Float32Array | Int32Array, shape: Shape): Tensor;
}

/**
 * The reference device: plain TypeScript, always available (also what
 * `Tensor.from` uses when no device is given).
 *
 * @example
 * ```ts
 * import { referenceDevice } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const y = referenceDevice.kernels.add(
 *   referenceDevice.upload([1, 2], [2]),
 *   referenceDevice.upload([3, 4], [2]),
 * );
 * assert.deepEqual([...await y.read()], [4, 6]);
 * ```
 */
export const referenceDevice: ReferenceDevice = new ReferenceDeviceImpl();
