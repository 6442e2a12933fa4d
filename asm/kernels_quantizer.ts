/**
 * The WASM device's residual quantizer (spec sections 1 and 7): the fused
 * forward, the straight-through backward and the quantize-then-max-pool of
 * `asm/src/quantizer.ts`, split over the threads.
 *
 * The range `xmax` `[1]` and the gates `[4]` are tensors in the memory;
 * they are read through views (synchronously, no copy) and turned into the
 * float32 constants by `quantizerPass` of `core/reference/quantizer.ts`, so
 * every device rounds with the very same numbers. The backward kernel
 * writes six float64 partial sums per channel a thread touches; they are
 * combined here in thread order, so the reductions are deterministic for a
 * given thread count and split threshold.
 *
 * @module
 */

import type { Kernels, PoolGeometry } from "../core/kernels.ts";
import {
  perChannel,
  type QuantizerPass,
  quantizerPass,
} from "../core/reference/quantizer.ts";
import type { Tensor } from "../core/tensor.ts";
import type { WasmDevice } from "./device.ts";
import { splitElements, splitUnits } from "./pool.ts";
import { expectSize } from "./reference_views.ts";

/** The pass of a call, from the tensors' current values. */
function passOf(
  dev: WasmDevice,
  what: string,
  length: number,
  xmax: Tensor,
  gates: Tensor,
  z2: Tensor | null,
  signed: boolean,
): QuantizerPass {
  expectSize(`${what}: xmax`, xmax, 1);
  expectSize(`${what}: gates`, gates, 4);
  const pass = quantizerPass(
    dev.f32(xmax)[0],
    signed,
    dev.f32(gates),
    z2 ? dev.f32(z2) : null,
  );
  perChannel(length, pass);
  return pass;
}

/** The arguments of the forward exports after the range: clip, scales, gates, levels. */
function forwardConstants(pass: QuantizerPass) {
  const c = pass.constants;
  const [s0, s1, s2, s3, s4] = c.scales;
  const [g0, g1, g2, g3] = pass.gates;
  return {
    lo: c.lo,
    hi: c.hi,
    span: c.span,
    s0,
    s1,
    s2,
    s3,
    s4,
    g0,
    g1,
    g2,
    g3,
    levels: c.levelsForward,
  };
}

function residualQuantize(
  dev: WasmDevice,
  x: Tensor,
  xmax: Tensor,
  gates: Tensor,
  z2: Tensor | null,
  signed: boolean,
): Tensor {
  const pass = passOf(dev, "residualQuantize", x.size, xmax, gates, z2, signed);
  const px = dev.offset(x);
  const pz2 = z2 ? dev.offset(z2) : 0;
  const out = dev.alloc(x.shape);
  if (x.size === 0) return out;
  const pout = dev.offset(out);
  const perChannel = x.size / pass.channels;
  const constants = forwardConstants(pass);
  dev.run(
    "quantizeForward",
    splitElements(dev, x.size).map((job) => ({
      x: px,
      out: pout,
      begin: job.begin,
      end: job.end,
      perChannel,
      z2: pz2,
      hasZ2: z2 ? 1 : 0,
      ...constants,
    })),
  );
  return out;
}

/**
 * Runs the backward export over the threads and returns, per channel, the
 * six float64 sums (`sum dy e_l` for the five levels, then the `xmax` term),
 * combined in thread order.
 */
function backwardSums(
  dev: WasmDevice,
  x: Tensor,
  dy: Tensor,
  dx: Tensor,
  z2: Tensor | null,
  pass: QuantizerPass,
): Float64Array {
  const channels = pass.channels;
  const sums = new Float64Array(channels * 6);
  if (x.size === 0) return sums;
  const perChannel = x.size / channels;
  const c = pass.constants;
  const [s0, s1, s2, s3, s4] = c.scales;
  const [f0, f1, f2, f3, f4] = c.xmaxFactors;
  const jobs = splitElements(dev, x.size);
  // Each thread writes 6 float64 per channel its range touches.
  const firsts = jobs.map((j) => Math.floor(j.begin / perChannel));
  const counts = jobs.map((j, t) =>
    j.end > j.begin ? Math.floor((j.end - 1) / perChannel) - firsts[t] + 1 : 0
  );
  const [px, pdy, pdx] = [x, dy, dx].map((t) => dev.offset(t));
  const pz2 = z2 ? dev.offset(z2) : 0;
  dev.withScratch(counts.map((n) => n * 48), (scratch) => {
    dev.run(
      "quantizeBackward",
      jobs.map((job, t) => ({
        x: px,
        dy: pdy,
        dx: pdx,
        begin: job.begin,
        end: job.end,
        perChannel,
        z2: pz2,
        hasZ2: z2 ? 1 : 0,
        lo: c.lo,
        hi: c.hi,
        span: c.span,
        s0,
        s1,
        s2,
        s3,
        s4,
        f0,
        f1,
        f2,
        f3,
        f4,
        clipHi: c.clipGradHi,
        clipLo: c.clipGradLo,
        levelsForward: c.levelsForward,
        levelsBackward: c.levelsBackward,
        sums: scratch[t],
      })),
    );
    const buffer = dev.memory.buffer;
    for (let t = 0; t < jobs.length; t++) {
      const part = new Float64Array(buffer, scratch[t], counts[t] * 6);
      const base = firsts[t] * 6;
      for (let k = 0; k < part.length; k++) sums[base + k] += part[k];
    }
  });
  return sums;
}

function residualQuantizeBackward(
  dev: WasmDevice,
  x: Tensor,
  xmax: Tensor,
  gates: Tensor,
  z2: Tensor | null,
  signed: boolean,
  dy: Tensor,
): { dx: Tensor; dxmax: Tensor; dgates: Tensor; dz2: Tensor | null } {
  const what = "residualQuantizeBackward";
  const pass = passOf(dev, what, x.size, xmax, gates, z2, signed);
  expectSize(`${what}: dy`, dy, x.size);
  const dx = dev.alloc(x.shape);
  const sums = backwardSums(dev, x, dy, dx, z2, pass);
  // The kernel sums dy * e_l per level; the brackets are linear in the
  // levels: sum dy*inner_l = sum dy*e_l + z_{l+1} * sum dy*inner_{l+1}.
  // Then the combination of the reference, channel by channel.
  const channels = pass.channels;
  const z2s = z2 ? dev.f32(z2) : null;
  const dz2 = z2s ? new Float32Array(channels) : null;
  const dgates = [0, 0, 0, 0];
  const inner = new Float64Array(5);
  let dxmax = 0;
  for (let ch = 0; ch < channels; ch++) {
    const zc = z2s ? z2s[ch] : 1;
    inner[4] = sums[ch * 6 + 4];
    for (let l = 3; l >= 0; l--) {
      inner[l] = sums[ch * 6 + l] + pass.gates[l] * inner[l + 1];
    }
    if (dz2) dz2[ch] = inner[0];
    let below = zc;
    for (let l = 1; l < 5; l++) {
      dgates[l - 1] += below * inner[l];
      below *= pass.gates[l - 1];
    }
    dxmax += zc * sums[ch * 6 + 5];
  }
  return {
    dx,
    dxmax: dev.upload([dxmax], [1]),
    dgates: dev.upload(dgates, [4]),
    dz2: dz2 && z2 ? dev.upload(dz2, z2.shape) : null,
  };
}

function residualQuantizePool(
  dev: WasmDevice,
  x: Tensor,
  xmax: Tensor,
  gates: Tensor,
  signed: boolean,
  g: PoolGeometry,
): Tensor {
  const what = "residualQuantizePool";
  const pass = passOf(dev, what, x.size, xmax, gates, null, signed);
  const planes = g.n * g.c;
  const area = g.h * g.w;
  expectSize(`${what}: x`, x, planes * area);
  const px = dev.offset(x);
  const y = dev.alloc([g.n, g.c, g.oh, g.ow]);
  const py = dev.offset(y);
  const jobs = splitUnits(dev, planes, area);
  const constants = forwardConstants(pass);
  dev.withScratch(jobs.map(() => area * 4), (scratch) =>
    dev.run(
      "quantizePoolForward",
      jobs.map((job, t) => ({
        x: px,
        y: py,
        scratch: scratch[t],
        planeBegin: job.begin,
        planeEnd: job.end,
        h: g.h,
        w: g.w,
        oh: g.oh,
        ow: g.ow,
        kernel: g.kernel,
        stride: g.stride,
        padding: g.padding,
        ...constants,
      })),
    ));
  return y;
}

/**
 * The residual quantizer kernels of `dev`.
 *
 * @param dev The WASM device.
 * @returns Those members of the kernel set.
 */
export function quantizerKernels(
  dev: WasmDevice,
): Pick<
  Kernels,
  "residualQuantize" | "residualQuantizeBackward" | "residualQuantizePool"
> {
  return {
    residualQuantize: (x, xmax, gates, z2, signed) =>
      residualQuantize(dev, x, xmax, gates, z2, signed),
    residualQuantizeBackward: (x, xmax, gates, z2, signed, dy) =>
      residualQuantizeBackward(dev, x, xmax, gates, z2, signed, dy),
    residualQuantizePool: (x, xmax, gates, signed, g) =>
      residualQuantizePool(dev, x, xmax, gates, signed, g),
  };
}
