/**
 * WGSL kernels of the hard-concrete gates and their prior (spec sections 2
 * and 3): sampling from the device's uniforms, the gradients of a sample,
 * the evaluation gates, and the prior `R` with its gradient.
 *
 * Contract:
 * - One invocation per gate (`[g4, g8, g16, g32]` then one per pruning
 *   channel); the prior recomputes its bracket in every invocation.
 * - The reference computes in float64; here float32 with WGSL's `log` and
 *   `exp`: a sample `z`, its derivative and the prior are within a few
 *   units of `2^-24` of the log-odds (at most 16) through a slope of at
 *   most 0.45, i.e. about `4e-6` absolute, and the prior a few units in
 *   the last place relative. A sample at the clamp boundary may fall on the
 *   other side. The uniforms, the chain stop (`g <= -2`) and the evaluation
 *   gates are exact: the host finds the smallest float32 logit that is on
 *   under the float64 rule `1 - q(g) < 0.34` and the kernel compares with
 *   it.
 *
 * @module
 */

import type { GatePriorOptions, Kernels } from "../../core/kernels.ts";
import {
  CHAIN_STOP_LOGIT,
  gateIsOn,
  HARD_CONCRETE,
} from "../../core/reference/gates.ts";
import type { Tensor } from "../../core/tensor.ts";
import {
  f32Word,
  type GpuContext,
  type KernelSource,
  perElementSource,
} from "./common.ts";

/** The smallest float32 logit `g` with `gateIsOn(g)` (monotonic in `g`). */
function onThreshold(): number {
  let lo = -10; // off
  let hi = 10; // on
  while (true) {
    const mid = Math.fround((lo + hi) / 2);
    if (mid === lo || mid === hi) break;
    if (gateIsOn(mid)) hi = mid;
    else lo = mid;
  }
  // hi is on, lo is off, and they are adjacent float32 values.
  return hi;
}

const { beta, gamma, zeta } = HARD_CONCRETE;
const ON_THRESHOLD = onThreshold();

const GATE_WGSL = /* wgsl */ `
const BETA: f32 = ${beta};
const GAMMA: f32 = ${gamma};
const ZETA: f32 = ${zeta};
const STOP: f32 = ${CHAIN_STOP_LOGIT}.0;

fn sigmoid(v: f32) -> f32 { return 1.0 / (1.0 + exp(-v)); }
// s (1 - s) of s = sigmoid(v), without the cancellation of 1 - s.
fn slope(v: f32) -> f32 { return sigmoid(v) * sigmoid(-v); }
fn log_odds(g: f32, u: f32) -> f32 { return (log(u) - log(1.0 - u) + g) / BETA; }
fn sample(g: f32, u: f32) -> f32 {
  return clamp(sigmoid(log_odds(g, u)) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0);
}
fn sample_grad(g: f32, u: f32) -> f32 {
  let v = log_odds(g, u);
  let stretched = sigmoid(v) * (ZETA - GAMMA) + GAMMA;
  if (stretched < 0.0 || stretched > 1.0) { return 0.0; }
  return (ZETA - GAMMA) * slope(v) / BETA;
}
// Whether the chain reaches gate l (no logit <= -2 at or below it).
fn reached(l: u32) -> bool {
  for (var j = 0u; j <= l; j++) {
    if (logits[j] <= STOP) { return false; }
  }
  return true;
}
fn channels() -> u32 { return pu(3u); }
`;

function source(name: string, decl: string, body: string): KernelSource {
  return perElementSource(name, decl, GATE_WGSL, body);
}

const SAMPLE = source(
  "gate_sample",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> prune: array<f32>;
@group(0) @binding(3) var<storage, read> noise: array<f32>;
@group(0) @binding(4) var<storage, read_write> chain: array<f32>;
@group(0) @binding(5) var<storage, read_write> z2: array<f32>;
`,
  /* wgsl */ `if (e < 4u) {
    chain[e] = select(0.0, sample(logits[e], noise[e]), reached(e));
  } else {
    z2[e - 4u] = sample(prune[e - 4u], noise[e]);
  }`,
);

const CHAIN_BACKWARD = source(
  "gate_chain_backward",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> noise: array<f32>;
@group(0) @binding(3) var<storage, read> dchain: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
`,
  /* wgsl */ `var d = 0.0;
  if (reached(e)) { d = sample_grad(logits[e], noise[e]); }
  out[e] = dchain[e] * d;`,
);

const PRUNE_BACKWARD = source(
  "gate_prune_backward",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> noise: array<f32>;
@group(0) @binding(3) var<storage, read> dz2: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
`,
  "out[e] = dz2[e] * sample_grad(logits[e], noise[4u + e]);",
);

const EVAL = source(
  "gate_eval",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> prune: array<f32>;
@group(0) @binding(3) var<storage, read_write> chain: array<f32>;
@group(0) @binding(4) var<storage, read_write> z2: array<f32>;
`,
  /* wgsl */ `let on = pf(6u);
  if (e < 4u) {
    var all = true;
    for (var j = 0u; j <= e; j++) {
      all = all && logits[j] > STOP && logits[j] >= on;
    }
    chain[e] = select(0.0, 1.0, all);
  } else {
    z2[e - 4u] = select(0.0, 1.0, prune[e - 4u] >= on);
  }`,
);

/** `R` (word 7 = 1) or its gradient: invocation 0..3 the chain, then channels. */
const PRIOR = source(
  "gate_prior",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> prune: array<f32>;
@group(0) @binding(3) var<storage, read> dr: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(5) var<storage, read_write> dprune: array<f32>;
`,
  /* wgsl */ `let shift = pf(8u);
  var q: array<f32, 4>;
  for (var j = 0u; j < 4u; j++) { q[j] = sigmoid(logits[j] - shift); }
  let bop = pu(4u) == 1u;
  let ratio = pf(5u);
  var w = array<f32, 5>(1.0, 1.0, 1.0, 1.0, 1.0);
  if (bop) { w = array<f32, 5>(2.0 * ratio, 4.0 * ratio, 8.0 * ratio, 16.0 * ratio, 32.0 * ratio); }
  var t: array<f32, 5>;
  t[4] = w[4];
  for (var j = 3; j >= 0; j--) { t[j] = w[j] + q[j] * t[j + 1]; }
  let c = channels();
  var mean_q2 = 1.0;
  if (c > 0u) {
    var sum = vec2<f32>(0.0, 0.0);
    for (var j = 0u; j < c; j++) { sum = df_add(sum, sigmoid(prune[j] - shift)); }
    mean_q2 = (sum.x + sum.y) / f32(c);
  }
  if (pu(7u) == 1u) {
    dlogits[0] = select(1.0 + (t[0] - w[0]), mean_q2 * t[0], c > 0u);
    return;
  }
  let scale = dr[0];
  if (e < 4u) {
    var below = 1.0;
    for (var j = 0u; j < e; j++) { below *= q[j]; }
    let d = below * t[e + 1u] * slope(logits[e] - shift);
    dlogits[e] = select(d, mean_q2 * d, c > 0u) * scale;
  } else {
    dprune[e - 4u] = slope(prune[e - 4u] - shift) * t[0] / f32(c) * scale;
  }`,
);

/** A `[4]` float32 input. */
function chainInput(
  ctx: GpuContext,
  kernel: string,
  t: Tensor,
  what = "logits",
): GPUBuffer {
  const b = ctx.input(kernel, t, what);
  ctx.size(kernel, t, what, 4);
  return b;
}

/** The pruning logits, or a placeholder the kernels do not read. */
function pruneInput(
  ctx: GpuContext,
  kernel: string,
  prune: Tensor | null,
): GPUBuffer {
  return prune
    ? ctx.input(kernel, prune, "prune")
    : ctx.scratch(1, "no pruning logits");
}

/** The uniforms, at least `4 + channels`. */
function noiseInput(
  ctx: GpuContext,
  kernel: string,
  noise: Tensor,
  channels: number,
): GPUBuffer {
  const b = ctx.input(kernel, noise, "noise");
  if (noise.size < 4 + channels) {
    ctx.fail(kernel, `noise has ${noise.size} uniforms, needs ${4 + channels}`);
  }
  return b;
}

/** The prior's inputs and its words for `total` invocations. */
function priorSetup(
  ctx: GpuContext,
  kernel: string,
  logits: Tensor,
  prune: Tensor | null,
  options: GatePriorOptions,
) {
  const { mode, macRatio } = options;
  if (mode !== "bop" && mode !== "const") {
    ctx.fail(kernel, `unknown prior mode "${mode}"`);
  }
  if (mode === "bop" && !(macRatio > 0 && macRatio <= 1)) {
    ctx.fail(kernel, `the MAC ratio must be in (0, 1], got ${macRatio}`);
  }
  if (prune && prune.size === 0) ctx.fail(kernel, "prune is empty");
  const c = prune?.size ?? 0;
  const shift = beta * Math.log(-gamma / zeta);
  return {
    buffers: [chainInput(ctx, kernel, logits), pruneInput(ctx, kernel, prune)],
    words: (total: number, value: boolean) => [
      total,
      c,
      mode === "bop" ? 1 : 0,
      f32Word(mode === "bop" ? macRatio : 1),
      0,
      value ? 1 : 0,
      f32Word(shift),
    ],
  };
}

/** `gatePrior` on the WebGPU device. */
function gatePriorGpu(
  ctx: GpuContext,
  logits: Tensor,
  prune: Tensor | null,
  options: GatePriorOptions,
): ReturnType<Kernels["gatePrior"]> {
  const p = priorSetup(ctx, "gatePrior", logits, prune, options);
  const r = ctx.alloc([1]);
  ctx.run(
    PRIOR,
    [
      ...p.buffers,
      ctx.scratch(1, "no dr"),
      ctx.buf(r),
      ctx.scratch(1, "no dprune"),
    ],
    1,
    p.words(1, true),
  );
  return r;
}

/** `gatePriorBackward` on the WebGPU device. */
function gatePriorBackwardGpu(
  ctx: GpuContext,
  logits: Tensor,
  prune: Tensor | null,
  options: GatePriorOptions,
  dr: Tensor,
): ReturnType<Kernels["gatePriorBackward"]> {
  const kernel = "gatePriorBackward";
  const p = priorSetup(ctx, kernel, logits, prune, options);
  const bd = ctx.input(kernel, dr, "dr");
  ctx.size(kernel, dr, "dr", 1);
  const out = {
    dlogits: ctx.alloc([4]),
    dprune: prune ? ctx.alloc(prune.shape) : null,
  };
  const dprune = out.dprune ? ctx.buf(out.dprune) : ctx.scratch(1, "no dprune");
  const total = 4 + (prune?.size ?? 0);
  ctx.run(
    PRIOR,
    [...p.buffers, bd, ctx.buf(out.dlogits), dprune],
    total,
    p.words(total, false),
  );
  return out;
}

/** `hardConcreteSample` on the WebGPU device. */
function hardConcreteSampleGpu(
  ctx: GpuContext,
  logits: Tensor,
  prune: Tensor | null,
  noise: Tensor,
): ReturnType<Kernels["hardConcreteSample"]> {
  const kernel = "hardConcreteSample";
  const c = prune?.size ?? 0;
  const buffers = [
    chainInput(ctx, kernel, logits),
    pruneInput(ctx, kernel, prune),
    noiseInput(ctx, kernel, noise, c),
  ];
  const out = {
    chain: ctx.alloc([4]),
    z2: prune ? ctx.alloc(prune.shape) : null,
  };
  const z2 = out.z2 ? ctx.buf(out.z2) : ctx.scratch(1, "no z2");
  ctx.run(SAMPLE, [...buffers, ctx.buf(out.chain), z2], 4 + c, [4 + c, c]);
  return out;
}

/**
 * The gate and prior kernels of a WebGPU device.
 *
 * @param ctx The device's context.
 * @returns The kernels.
 */
export function gateKernels(
  ctx: GpuContext,
): Pick<
  Kernels,
  | "hardConcreteSample"
  | "hardConcreteChainBackward"
  | "hardConcretePruneBackward"
  | "hardConcreteGates"
  | "gatePrior"
  | "gatePriorBackward"
> {
  return {
    hardConcreteSample: (logits, prune, noise) =>
      hardConcreteSampleGpu(ctx, logits, prune, noise),
    hardConcreteChainBackward: (logits, noise, dchain) => {
      const kernel = "hardConcreteChainBackward";
      const buffers = [
        chainInput(ctx, kernel, logits),
        noiseInput(ctx, kernel, noise, 0),
        chainInput(ctx, kernel, dchain, "dchain"),
      ];
      const out = ctx.alloc([4]);
      ctx.run(CHAIN_BACKWARD, [...buffers, ctx.buf(out)], 4, [4, 0]);
      return out;
    },
    hardConcretePruneBackward: (prune, noise, dz2) => {
      const kernel = "hardConcretePruneBackward";
      const c = prune.size;
      const bp = ctx.input(kernel, prune, "prune");
      const bn = noiseInput(ctx, kernel, noise, c);
      const bd = ctx.input(kernel, dz2, "dz2");
      ctx.size(kernel, dz2, "dz2", c);
      const out = ctx.alloc(prune.shape);
      ctx.run(PRUNE_BACKWARD, [bp, bn, bd, ctx.buf(out)], c, [c, c]);
      return out;
    },
    hardConcreteGates: (logits, prune) => {
      const kernel = "hardConcreteGates";
      const c = prune?.size ?? 0;
      const buffers = [
        chainInput(ctx, kernel, logits),
        pruneInput(ctx, kernel, prune),
      ];
      const out = {
        chain: ctx.alloc([4]),
        z2: prune ? ctx.alloc(prune.shape) : null,
      };
      const z2 = out.z2 ? ctx.buf(out.z2) : ctx.scratch(1, "no z2");
      ctx.run(EVAL, [...buffers, ctx.buf(out.chain), z2], 4 + c, [
        4 + c,
        c,
        0,
        0,
        f32Word(ON_THRESHOLD),
      ]);
      return out;
    },
    gatePrior: (logits, prune, options) =>
      gatePriorGpu(ctx, logits, prune, options),
    gatePriorBackward: (logits, prune, options, dr) =>
      gatePriorBackwardGpu(ctx, logits, prune, options, dr),
  };
}
