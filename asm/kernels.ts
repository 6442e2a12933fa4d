/**
 * The kernels of the WASM device, on byte offsets into its memory.
 *
 * Most run the AssemblyScript SIMD kernels of `asm/src/` (through the typed
 * exports of `asm/kernels.generated.ts`, with named arguments), split over
 * the device's threads by the rules of `asm/pool.ts`: activations, pools,
 * batch norm, softmax cross-entropy, uniforms and Adam here, GEMM, bias and
 * convolution (groups 1) in `asm/kernels_matrix.ts`, the residual quantizer
 * in `asm/kernels_quantizer.ts`. Each reads its inputs in place and
 * allocates its outputs on the device.
 *
 * The rest (elementwise arithmetic, the accuracy count, grouped
 * convolution, the hard-concrete gates, the gate prior, FracBits' kernels
 * (`asm/kernels_fracbits.ts`), the BSQ bit-plane kernels
 * (`asm/kernels_bitplanes.ts`) and SGD) run the
 * reference device's TypeScript on zero-copy views of the memory
 * (`onReference` in `asm/reference_views.ts`), so they match the reference bit for bit; only
 * their (small or elementwise) results are written into the memory.
 *
 * @module
 */

import type {
  ActivationKind,
  AdamHyper,
  BatchNormKernelOptions,
  ChannelLayout,
  Kernels,
  PoolGeometry,
  RunningStats,
} from "../core/kernels.ts";
import {
  inverseStd,
  runningStatisticsReference,
} from "../core/reference/batchnorm.ts";
import { assertRandomKey, type RandomKey } from "../core/rng.ts";
import type { Tensor } from "../core/tensor.ts";
import type { WasmDevice } from "./device.ts";
import { bitPlaneKernels } from "./kernels_bitplanes.ts";
import { fracBitsKernels } from "./kernels_fracbits.ts";
import { matrixKernels } from "./kernels_matrix.ts";
import { quantizerKernels } from "./kernels_quantizer.ts";
import { splitElements, splitUnits } from "./pool.ts";
import { expectSize, onReference } from "./reference_views.ts";

/** The four modes of the `activation` export. */
const ACTIVATION_MODES = {
  relu: { forward: 0, backward: 1 },
  relu6: { forward: 2, backward: 3 },
} as const;

function activation(
  dev: WasmDevice,
  kind: ActivationKind,
  x: Tensor,
  dy: Tensor | null,
): Tensor {
  const modes = ACTIVATION_MODES[kind];
  if (!modes) {
    throw new RangeError(`Unknown activation ${JSON.stringify(kind)}`);
  }
  if (dy) expectSize("activationBackward: dy", dy, x.size);
  const px = dev.offset(x);
  const pg = dy ? dev.offset(dy) : 0;
  const y = dev.alloc(x.shape);
  const out = dev.offset(y);
  dev.run(
    "activation",
    splitElements(dev, x.size).map((job) => ({
      kind: dy ? modes.backward : modes.forward,
      x: px,
      g: pg,
      out,
      begin: job.begin,
      end: job.end,
    })),
  );
  return y;
}

function maxPool2d(
  dev: WasmDevice,
  x: Tensor,
  g: PoolGeometry,
): { y: Tensor; argmax: Tensor } {
  const planes = g.n * g.c;
  expectSize("maxPool2d: x", x, planes * g.h * g.w);
  const px = dev.offset(x);
  const shape = [g.n, g.c, g.oh, g.ow];
  const y = dev.alloc(shape);
  const argmax = dev.alloc(shape, "int32");
  const py = dev.offset(y);
  const pa = dev.offset(argmax);
  dev.run(
    "maxPoolForward",
    splitUnits(dev, planes, g.h * g.w).map((job) => ({
      x: px,
      y: py,
      argmax: pa,
      planeBegin: job.begin,
      planeEnd: job.end,
      h: g.h,
      w: g.w,
      oh: g.oh,
      ow: g.ow,
      kernel: g.kernel,
      stride: g.stride,
      padding: g.padding,
    })),
  );
  return { y, argmax };
}

function maxPool2dBackward(
  dev: WasmDevice,
  dy: Tensor,
  argmax: Tensor,
  g: PoolGeometry,
): Tensor {
  const planes = g.n * g.c;
  const inPerPlane = g.h * g.w;
  const outPerPlane = g.oh * g.ow;
  expectSize("maxPool2dBackward: dy", dy, planes * outPerPlane);
  expectSize("maxPool2dBackward: argmax", argmax, planes * outPerPlane);
  dev.i32(argmax);
  const pg = dev.offset(dy);
  const pa = dev.offset(argmax);
  const dx = dev.alloc([g.n, g.c, g.h, g.w]);
  const pdx = dev.offset(dx);
  dev.run(
    "maxPoolBackward",
    splitUnits(dev, planes, inPerPlane).map((job) => ({
      g: pg,
      argmax: pa,
      dx: pdx,
      planeBegin: job.begin,
      planeEnd: job.end,
      inPerPlane,
      outPerPlane,
    })),
  );
  return dx;
}

function globalAvgPool(
  dev: WasmDevice,
  input: Tensor,
  planes: number,
  area: number,
  forward: boolean,
): Tensor {
  expectSize(
    `globalAvgPool${forward ? "" : "Backward"}: input`,
    input,
    forward ? planes * area : planes,
  );
  const pin = dev.offset(input);
  const out = dev.alloc([forward ? planes : planes * area]);
  const pout = dev.offset(out);
  const jobs = splitUnits(dev, planes, area);
  if (forward) {
    dev.run(
      "avgPoolForward",
      jobs.map((job) => ({
        x: pin,
        y: pout,
        planeBegin: job.begin,
        planeEnd: job.end,
        area,
      })),
    );
  } else {
    dev.run(
      "avgPoolBackward",
      jobs.map((job) => ({
        g: pin,
        dx: pout,
        planeBegin: job.begin,
        planeEnd: job.end,
        area,
      })),
    );
  }
  return out;
}

function checkLayout(what: string, layout: ChannelLayout, ...t: Tensor[]) {
  const { n, c, area } = layout;
  expectSize(`${what}: the input`, t[0], n * c * area);
  for (let i = 1; i < t.length; i++) {
    expectSize(`${what}: a per-channel tensor`, t[i], c);
  }
}

/** Per-channel float64 mean and biased variance (the `batchNormStats` export). */
function batchStatistics(
  dev: WasmDevice,
  x: Tensor,
  layout: ChannelLayout,
): { mean: Float64Array; variance: Float64Array } {
  const { n, c, area } = layout;
  const px = dev.offset(x);
  return dev.withScratch([c * 8, c * 8], ([pm, pv]) => {
    dev.run(
      "batchNormStats",
      splitUnits(dev, c, n * area).map((job) => ({
        x: px,
        mean: pm,
        variance: pv,
        chBegin: job.begin,
        chEnd: job.end,
        n,
        c,
        area,
      })),
    );
    const buffer = dev.memory.buffer;
    return {
      mean: Float64Array.from(new Float64Array(buffer, pm, c)),
      variance: Float64Array.from(new Float64Array(buffer, pv, c)),
    };
  });
}

function batchNorm(
  dev: WasmDevice,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  running: RunningStats | null,
  options: BatchNormKernelOptions,
): { y: Tensor; xhat: Tensor; invStd: Tensor; running: RunningStats | null } {
  const { layout, train, momentum, eps } = options;
  const { n, c, area } = layout;
  checkLayout("batchNorm", layout, x, gamma, beta);
  let mean: Float64Array;
  let variance: Float64Array;
  let next: RunningStats | null = null;
  if (train) {
    ({ mean, variance } = batchStatistics(dev, x, layout));
    if (running) {
      checkLayout("batchNorm", layout, x, running.mean, running.variance);
      const r = runningStatisticsReference(
        dev.f32(running.mean),
        dev.f32(running.variance),
        mean,
        variance,
        n * area,
        momentum,
      );
      next = {
        mean: dev.upload(r.mean, [c]),
        variance: dev.upload(r.variance, [c]),
      };
    }
  } else {
    if (!running) {
      throw new RangeError("batchNorm: evaluation needs running statistics");
    }
    checkLayout("batchNorm", layout, x, running.mean, running.variance);
    mean = Float64Array.from(dev.f32(running.mean));
    variance = Float64Array.from(dev.f32(running.variance));
  }
  const invStd = inverseStd(variance, eps);
  const y = dev.alloc(x.shape);
  const xhat = dev.alloc(x.shape);
  dev.withScratch([c * 8, c * 8], ([pm, pis]) => {
    const buffer = dev.memory.buffer;
    new Float64Array(buffer, pm, c).set(mean);
    new Float64Array(buffer, pis, c).set(invStd);
    const [px, pxhat, py] = [x, xhat, y].map((t) => dev.offset(t));
    const [pgamma, pbeta] = [gamma, beta].map((t) => dev.offset(t));
    dev.run(
      "batchNormApply",
      splitUnits(dev, c, n * area).map((job) => ({
        x: px,
        xhat: pxhat,
        y: py,
        mean: pm,
        invStd: pis,
        gamma: pgamma,
        beta: pbeta,
        chBegin: job.begin,
        chEnd: job.end,
        n,
        c,
        area,
      })),
    );
  });
  return {
    y,
    xhat,
    invStd: dev.upload(Float32Array.from(invStd), [c]),
    running: next,
  };
}

function batchNormBackward(
  dev: WasmDevice,
  dy: Tensor,
  xhat: Tensor,
  gamma: Tensor,
  invStd: Tensor,
  layout: ChannelLayout,
  train: boolean,
): { dx: Tensor; dgamma: Tensor; dbeta: Tensor } {
  const { n, c, area } = layout;
  checkLayout("batchNormBackward", layout, dy, gamma, invStd);
  expectSize("batchNormBackward: xhat", xhat, dy.size);
  const dx = dev.alloc(dy.shape);
  const dgamma = dev.alloc([c]);
  const dbeta = dev.alloc([c]);
  dev.withScratch([c * 8], ([pis]) => {
    new Float64Array(dev.memory.buffer, pis, c).set(dev.f32(invStd));
    const [pg, ph, pdx, pgamma, pdgamma, pdbeta] = [
      dy,
      xhat,
      dx,
      gamma,
      dgamma,
      dbeta,
    ].map((t) => dev.offset(t));
    dev.run(
      "batchNormBackward",
      splitUnits(dev, c, n * area).map((job) => ({
        g: pg,
        xhat: ph,
        dx: pdx,
        gamma: pgamma,
        invStd: pis,
        dgamma: pdgamma,
        dbeta: pdbeta,
        chBegin: job.begin,
        chEnd: job.end,
        n,
        c,
        area,
        train: train ? 1 : 0,
      })),
    );
  });
  return { dx, dgamma, dbeta };
}

/** `[n, k]` of logits, with labels checked to be `n` int32 values in `[0, k)`. */
function logitRows(
  dev: WasmDevice,
  logits: Tensor,
  labels: Tensor,
): [number, number] {
  if (logits.shape.length !== 2) {
    throw new RangeError(
      `softmaxCrossEntropy: logits must be [N, K], got [${
        logits.shape.join(", ")
      }]`,
    );
  }
  const [n, k] = logits.shape;
  expectSize("softmaxCrossEntropy: labels", labels, n);
  const classes = dev.i32(labels);
  for (let i = 0; i < n; i++) {
    if (!(classes[i] >= 0 && classes[i] < k)) {
      throw new RangeError(
        `softmaxCrossEntropy: label ${i} is ${classes[i]}, expected 0..${
          k - 1
        }`,
      );
    }
  }
  return [n, k];
}

function softmaxCrossEntropy(
  dev: WasmDevice,
  logits: Tensor,
  labels: Tensor,
): { loss: Tensor; probs: Tensor } {
  const [n, k] = logitRows(dev, logits, labels);
  const probs = dev.alloc(logits.shape);
  const total = dev.call("softmaxForward", {
    z: dev.offset(logits),
    labels: dev.offset(labels),
    probs: dev.offset(probs),
    n,
    k,
  });
  return { loss: dev.upload([total / n], [1]), probs };
}

function softmaxCrossEntropyBackward(
  dev: WasmDevice,
  probs: Tensor,
  labels: Tensor,
  dloss: Tensor,
): Tensor {
  const [n, k] = logitRows(dev, probs, labels);
  expectSize("softmaxCrossEntropyBackward: dloss", dloss, 1);
  const scale = dev.f32(dloss)[0];
  const dz = dev.alloc(probs.shape);
  dev.call("softmaxBackward", {
    probs: dev.offset(probs),
    labels: dev.offset(labels),
    dz: dev.offset(dz),
    n,
    k,
    scale,
  });
  return dz;
}

function uniform(
  dev: WasmDevice,
  key: RandomKey,
  count: number,
  offset: number,
): Tensor {
  assertRandomKey(key);
  if (!Number.isInteger(count) || count < 0) {
    throw new RangeError(
      `Cannot draw ${count} uniforms: count must be a non-negative integer`,
    );
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + count > 2 ** 33) {
    throw new RangeError(
      `Cannot draw ${count} uniforms from stream offset ${offset}: the stream has 2^33 elements`,
    );
  }
  const out = dev.alloc([count]);
  if (count === 0) return out;
  const base = dev.offset(out);
  dev.run(
    "fillUniform",
    splitElements(dev, count).map((job) => {
      const start = offset + job.begin;
      return {
        out: base + job.begin * 4,
        count: job.end - job.begin,
        k0: key[0],
        k1: key[1],
        offsetLo: start % 2 ** 32,
        offsetHi: Math.floor(start / 2 ** 32),
      };
    }),
  );
  return out;
}

function adamUpdate(
  dev: WasmDevice,
  theta: Tensor,
  grad: Tensor,
  m: Tensor,
  v: Tensor,
  hyper: AdamHyper,
): { theta: Tensor; m: Tensor; v: Tensor } {
  for (const [name, t] of [["grad", grad], ["m", m], ["v", v]] as const) {
    expectSize(`adamUpdate: ${name}`, t, theta.size);
  }
  const inputs = [theta, grad, m, v].map((t) => dev.offset(t));
  const next = {
    theta: dev.alloc(theta.shape),
    m: dev.alloc(theta.shape),
    v: dev.alloc(theta.shape),
  };
  const [pt, pm, pv] = [next.theta, next.m, next.v].map((t) => dev.offset(t));
  dev.run(
    "adamUpdate",
    splitElements(dev, theta.size).map((job) => ({
      theta: inputs[0],
      grad: inputs[1],
      mIn: inputs[2],
      vIn: inputs[3],
      thetaOut: pt,
      mOut: pm,
      vOut: pv,
      begin: job.begin,
      end: job.end,
      beta1: hyper.beta1,
      oneMinusBeta1: 1 - hyper.beta1,
      beta2: hyper.beta2,
      oneMinusBeta2: 1 - hyper.beta2,
      eps: hyper.eps,
      weightDecay: hyper.weightDecay,
      stepSize: hyper.stepSize,
      sqrtCorrection2: hyper.sqrtCorrection2,
    })),
  );
  return next;
}

/**
 * The kernels of `dev`.
 *
 * @param dev The WASM device.
 * @returns Every kernel of the closed set.
 */
export function wasmKernels(dev: WasmDevice): Kernels {
  const ref = <T>(body: (view: (t: Tensor) => Tensor, r: Kernels) => T) =>
    onReference(dev, body);
  const orNull = (view: (t: Tensor) => Tensor, t: Tensor | null) =>
    t ? view(t) : null;
  return {
    add: (a, b) => ref((v, r) => r.add(v(a), v(b))),
    mul: (a, b) => ref((v, r) => r.mul(v(a), v(b))),
    scale: (a, factor) => ref((v, r) => r.scale(v(a), factor)),
    sum: (a) => ref((v, r) => r.sum(v(a))),
    broadcast: (s, shape) => ref((v, r) => r.broadcast(v(s), shape)),
    activation: (kind, x) => activation(dev, kind, x, null),
    activationBackward: (kind, x, dy) => activation(dev, kind, x, dy),
    ...matrixKernels(dev),
    maxPool2d: (x, g) => maxPool2d(dev, x, g),
    maxPool2dBackward: (dy, argmax, g) => maxPool2dBackward(dev, dy, argmax, g),
    globalAvgPool: (x, planes, area) =>
      globalAvgPool(dev, x, planes, area, true),
    globalAvgPoolBackward: (dy, planes, area) =>
      globalAvgPool(dev, dy, planes, area, false),
    batchNorm: (x, gamma, beta, running, options) =>
      batchNorm(dev, x, gamma, beta, running, options),
    batchNormBackward: (dy, xhat, gamma, invStd, layout, train) =>
      batchNormBackward(dev, dy, xhat, gamma, invStd, layout, train),
    softmaxCrossEntropy: (logits, labels) =>
      softmaxCrossEntropy(dev, logits, labels),
    softmaxCrossEntropyBackward: (probs, labels, dloss) =>
      softmaxCrossEntropyBackward(dev, probs, labels, dloss),
    countCorrect: (logits, labels) =>
      ref((v, r) => r.countCorrect(v(logits), v(labels))),
    ...quantizerKernels(dev),
    uniformQuantize: (x, scale, codeMin, codeMax) =>
      ref((v, r) => r.uniformQuantize(v(x), v(scale), codeMin, codeMax)),
    hardConcreteSample: (logits, prune, noise) =>
      ref((v, r) =>
        r.hardConcreteSample(v(logits), orNull(v, prune), v(noise))
      ),
    hardConcreteChainBackward: (logits, noise, dchain) =>
      ref((v, r) =>
        r.hardConcreteChainBackward(v(logits), v(noise), v(dchain))
      ),
    hardConcretePruneBackward: (prune, noise, dz2) =>
      ref((v, r) => r.hardConcretePruneBackward(v(prune), v(noise), v(dz2))),
    hardConcreteGates: (logits, prune) =>
      ref((v, r) => r.hardConcreteGates(v(logits), orNull(v, prune))),
    gatePrior: (logits, prune, options) =>
      ref((v, r) => r.gatePrior(v(logits), orNull(v, prune), options)),
    gatePriorBackward: (logits, prune, options, dr) =>
      ref((v, r) =>
        r.gatePriorBackward(v(logits), orNull(v, prune), options, v(dr))
      ),
    ...bitPlaneKernels(ref),
    ...fracBitsKernels(dev),
    uniform: (key, count, offset) => uniform(dev, key, count, offset),
    adamUpdate: (theta, grad, m, v, hyper) =>
      adamUpdate(dev, theta, grad, m, v, hyper),
    sgdUpdate: (theta, grad, momentum, hyper) =>
      ref((v, r) => r.sgdUpdate(v(theta), v(grad), orNull(v, momentum), hyper)),
  };
}
