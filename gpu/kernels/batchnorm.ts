/**
 * WGSL kernels of the batch-norm family over `[N, C, area]`.
 *
 * Contract:
 * - Training statistics: two passes of the per-channel double-float sums
 *   of `./reduce.ts` (`sum x`, then `sum (x - mean)^2` around the
 *   double-float mean), like the reference's two float64 passes in another
 *   order: mean and variance agree to about `2^-44` of the sums of
 *   magnitudes.
 * - `invStd = 1 / sqrt(var + eps)` in float32 (a correctly rounded `sqrt`
 *   and division: within two units in the last place of the reference's
 *   float64 value rounded once); running statistics in float32
 *   (`(1 - momentum) old + momentum batch`, variance times `count /
 *   (count - 1)`).
 * - `xhat = (x - mean) invStd` with `x - mean` exact (double-float) and
 *   `y = gamma xhat + beta` rounded once from the float32 `xhat` (exact
 *   double-float product): `y` is the reference's whenever `xhat` is.
 * - Backward: the channel sums `sum dy`, `sum dy xhat` (double-float,
 *   products exact) and `dx` per element in double-float steps rounded at
 *   the end: training `gamma invStd / count (count dy - sum dy - xhat sum dy
 *   xhat)`, evaluation `dy gamma invStd` (the reference's bits unless the
 *   exact value is within about 2^-44 relative of a rounding boundary).
 *
 * @module
 */

import type {
  BatchNormKernelOptions,
  ChannelLayout,
  Kernels,
  RunningStats,
} from "../../core/kernels.ts";
import type { Tensor } from "../../core/tensor.ts";
import {
  f32Word,
  type GpuContext,
  type KernelSource,
  PRELUDE_WGSL,
} from "./common.ts";
import { recordChannelSums } from "./reduce.ts";

function source(name: string, decl: string, body: string): KernelSource {
  return {
    name,
    bindings: [...decl.matchAll(/var<storage, (read_write|read)>/g)].map((m) =>
      m[1] === "read" ? "r" : "w"
    ).join(""),
    workgroup: 64,
    code: PRELUDE_WGSL + decl + /* wgsl */ `
@compute @workgroup_size(64)
fn ${name}(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let e = linear(g, l, 64u);
  if (e >= pu(2u)) { return; }
  let channels = pu(3u);
  let area = pu(4u);
  let count = f32(pu(5u) * area);
  ${body}
}
`,
  };
}

/** `(hi, lo) / d` as a double-float. */
const DF_DIV = /* wgsl */ `
fn df_div(s: vec2<f32>, d: f32) -> vec2<f32> {
  let q = s.x / d;
  let rest = df_add2(s, -df_mul(q, d));
  return two_sum(q, (rest.x + rest.y) / d);
}
`;

/** Per channel: the double-float mean from the sums `[4 C]`. */
const MEAN = source(
  "bn_mean",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> sums: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
` + DF_DIV,
  /* wgsl */ `let m = df_div(vec2<f32>(sums[4u * e], sums[4u * e + 1u]), count);
  mean[2u * e] = m.x;
  mean[2u * e + 1u] = m.y;`,
);

/**
 * Per channel: `invStd`, the mean used to normalise (`[2 C]`, double-float)
 * and the running statistics. Words: 6 train, 7 eps, 8 momentum, 9 running.
 */
const FINISH = source(
  "bn_finish",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> sums: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> old_mean: array<f32>;
@group(0) @binding(4) var<storage, read> old_var: array<f32>;
@group(0) @binding(5) var<storage, read_write> inv_std: array<f32>;
@group(0) @binding(6) var<storage, read_write> norm_mean: array<f32>;
@group(0) @binding(7) var<storage, read_write> new_mean: array<f32>;
@group(0) @binding(8) var<storage, read_write> new_var: array<f32>;
`,
  /* wgsl */ `var m = vec2<f32>(0.0, 0.0);
  var v = 0.0;
  if (pu(6u) == 1u) {
    m = vec2<f32>(mean[2u * e], mean[2u * e + 1u]);
    v = (sums[4u * e] + sums[4u * e + 1u]) / count;
    if (pu(9u) == 1u) {
      let mom = pf(8u);
      let keep = 1.0 - mom;
      let unbiased = select(1.0, count / (count - 1.0), count > 1.0);
      new_mean[e] = opaque(keep * old_mean[e]) + opaque(mom * (m.x + m.y));
      new_var[e] = opaque(keep * old_var[e]) + opaque(mom * (v * unbiased));
    }
  } else {
    m = vec2<f32>(old_mean[e], 0.0);
    v = old_var[e];
  }
  inv_std[e] = 1.0 / sqrt(v + pf(7u));
  norm_mean[2u * e] = m.x;
  norm_mean[2u * e + 1u] = m.y;`,
);

/** Per element: `xhat` and `y`. */
const NORMALIZE = source(
  "bn_normalize",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> norm_mean: array<f32>;
@group(0) @binding(3) var<storage, read> inv_std: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> beta: array<f32>;
@group(0) @binding(6) var<storage, read_write> xhat: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
`,
  /* wgsl */ `let c = (e / area) % channels;
  let d = df_add(two_sum(x[e], -norm_mean[2u * c]), -norm_mean[2u * c + 1u]);
  let p = df_mul(d.x, inv_std[c]);
  let xh = p.x + (p.y + opaque(d.y * inv_std[c]));
  xhat[e] = xh;
  y[e] = df_add(df_mul(gamma[c], xh), beta[c]).x;`,
);

/** Per element: `dx`; per channel: `dgamma`, `dbeta`. Word 6: train. */
const BACKWARD = source(
  "bn_backward",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> sums: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> xhat: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> inv_std: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(8) var<storage, read_write> dbeta: array<f32>;
`,
  /* wgsl */ `let c = (e / area) % channels;
  let sg = vec2<f32>(sums[4u * c], sums[4u * c + 1u]);
  let sgx = vec2<f32>(sums[4u * c + 2u], sums[4u * c + 3u]);
  if (e < channels) {
    dgamma[e] = sums[4u * e + 2u] + sums[4u * e + 3u];
    dbeta[e] = sums[4u * e] + sums[4u * e + 1u];
  }
  if (e >= pu(7u)) { return; }
  let gi = dy[e];
  if (pu(6u) == 1u) {
    var t = df_mul(count, gi);
    t = df_add2(t, -sg);
    t = df_add2(t, -df_mul(xhat[e], sgx.x));
    t = df_add(t, -opaque(xhat[e] * sgx.y));
    let f = df_mul(gamma[c], inv_std[c]);
    let factor = (f.x + f.y) / count;
    let r = df_mul(factor, t.x);
    dx[e] = r.x + (r.y + opaque(factor * t.y));
  } else {
    let p = df_mul(gi, gamma[c]);
    let q = df_mul(p.x, inv_std[c]);
    dx[e] = q.x + (q.y + opaque(p.y * inv_std[c]));
  }`,
);

function layoutOf(
  ctx: GpuContext,
  kernel: string,
  l: ChannelLayout,
  x: Tensor,
) {
  for (const key of ["n", "c", "area"] as const) {
    if (!Number.isInteger(l[key]) || l[key] < 0) {
      ctx.fail(
        kernel,
        `layout.${key} must be a non-negative integer, got ${l[key]}`,
      );
    }
  }
  ctx.size(kernel, x, "x", l.n * l.c * l.area);
  return [l.c, l.area, l.n];
}

/** `batchNorm` on the WebGPU device. */
function batchNormGpu(
  ctx: GpuContext,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  running: RunningStats | null,
  options: BatchNormKernelOptions,
): ReturnType<Kernels["batchNorm"]> {
  const kernel = "batchNorm";
  const { layout, train, momentum, eps } = options;
  const bx = ctx.input(kernel, x, "x");
  const [c, area, n] = layoutOf(ctx, kernel, layout, x);
  const params = [
    ctx.input(kernel, gamma, "gamma"),
    ctx.input(kernel, beta, "beta"),
  ];
  ctx.size(kernel, gamma, "gamma", c);
  ctx.size(kernel, beta, "beta", c);
  if (!train && !running) {
    ctx.fail(kernel, "evaluation needs running statistics");
  }
  const old = running
    ? [
      ctx.input(kernel, running.mean, "running.mean"),
      ctx.input(kernel, running.variance, "running.variance"),
    ]
    : [
      ctx.scratch(1, "no running mean"),
      ctx.scratch(1, "no running variance"),
    ];
  if (running) {
    ctx.size(kernel, running.mean, "running.mean", c);
    ctx.size(kernel, running.variance, "running.variance", c);
  }
  const next = train && running
    ? { mean: ctx.alloc([c]), variance: ctx.alloc([c]) }
    : null;
  const invStd = ctx.alloc([c]);
  const sums = ctx.scratch(4 * c, "batch norm sums");
  const mean = ctx.scratch(2 * c, "batch norm mean");
  const head = (size: number) => [size, c, area, n];
  if (train) {
    recordChannelSums(ctx, layout, 0, bx, bx, sums, false);
    ctx.run(MEAN, [sums, mean], c, head(c));
    recordChannelSums(ctx, layout, 2, bx, mean, sums, false);
  }
  const normMean = ctx.scratch(2 * c, "batch norm normalising mean");
  ctx.run(
    FINISH,
    [
      sums,
      mean,
      ...old,
      ctx.buf(invStd),
      normMean,
      next ? ctx.buf(next.mean) : ctx.scratch(c, "unused mean"),
      next ? ctx.buf(next.variance) : ctx.scratch(c, "unused variance"),
    ],
    c,
    [
      ...head(c),
      train ? 1 : 0,
      f32Word(eps),
      f32Word(momentum),
      next ? 1 : 0,
    ],
  );
  const xhat = ctx.alloc(x.shape);
  const y = ctx.alloc(x.shape);
  ctx.run(
    NORMALIZE,
    [bx, normMean, ctx.buf(invStd), ...params, ctx.buf(xhat), ctx.buf(y)],
    x.size,
    head(x.size),
  );
  return { y, xhat, invStd, running: next };
}

/** `batchNormBackward` on the WebGPU device. */
function batchNormBackwardGpu(
  ctx: GpuContext,
  dy: Tensor,
  xhat: Tensor,
  gamma: Tensor,
  invStd: Tensor,
  layout: ChannelLayout,
  train: boolean,
): ReturnType<Kernels["batchNormBackward"]> {
  const kernel = "batchNormBackward";
  const bdy = ctx.input(kernel, dy, "dy");
  const [c, area, n] = layoutOf(ctx, kernel, layout, dy);
  const bxh = ctx.input(kernel, xhat, "xhat");
  ctx.size(kernel, xhat, "xhat", dy.size);
  const bg = ctx.input(kernel, gamma, "gamma");
  const bi = ctx.input(kernel, invStd, "invStd");
  ctx.size(kernel, gamma, "gamma", c);
  ctx.size(kernel, invStd, "invStd", c);
  const sums = ctx.scratch(4 * c, "batch norm gradient sums");
  recordChannelSums(ctx, layout, 1, bdy, bxh, sums, false);
  const dx = ctx.alloc(dy.shape);
  const dgamma = ctx.alloc([c]);
  const dbeta = ctx.alloc([c]);
  ctx.run(
    BACKWARD,
    [sums, bdy, bxh, bg, bi, ctx.buf(dx), ctx.buf(dgamma), ctx.buf(dbeta)],
    Math.max(dy.size, c),
    [
      Math.max(dy.size, c),
      c,
      area,
      n,
      train ? 1 : 0,
      dy.size,
    ],
  );
  return { dx, dgamma, dbeta };
}

/**
 * The batch-norm kernels of a WebGPU device.
 *
 * @param ctx The device's context.
 * @returns The kernels.
 */
export function batchNormKernels(
  ctx: GpuContext,
): Pick<Kernels, "batchNorm" | "batchNormBackward"> {
  return {
    batchNorm: (x, gamma, beta, running, options) =>
      batchNormGpu(ctx, x, gamma, beta, running, options),
    batchNormBackward: (dy, xhat, gamma, invStd, layout, train) =>
      batchNormBackwardGpu(ctx, dy, xhat, gamma, invStd, layout, train),
  };
}
