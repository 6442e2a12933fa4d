/**
 * WGSL kernels of the optimizer family: one Adam or SGD update of one
 * parameter, one invocation per element.
 *
 * Contract: the host splits every float64 hyperparameter into a float32
 * pair `hi + lo`; the gradient with weight decay, the new moments (Adam's
 * `m`, `v`; SGD's momentum buffer) and SGD's step are double-float
 * products and sums rounded once, so they are the reference's bits unless
 * within about 2^-44 relative of a rounding boundary. Adam's step
 * `stepSize m' / (sqrt(v') / sqrtCorrection2 + eps)` is float32 (a few
 * units in the last place of the update) and subtracted from `theta` with
 * one rounding: `theta'` is within a few units of 2^-24 of the update of
 * the reference's.
 *
 * @module
 */

import type { Kernels } from "../../core/kernels.ts";
import type { Tensor } from "../../core/tensor.ts";
import {
  f32Word,
  type GpuContext,
  type KernelSource,
  perElementSource,
} from "./common.ts";

const HELPERS = /* wgsl */ `
// A host float64 split into words i, i + 1.
fn hyper(i: u32) -> vec2<f32> { return vec2<f32>(pf(i), pf(i + 1u)); }
// (hi + lo) b as a double-float.
fn dfm(a: vec2<f32>, b: f32) -> vec2<f32> { return df_add(df_mul(a.x, b), opaque(a.y * b)); }
// a b of two double-floats.
fn dfmm(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  return df_add(df_mul(a.x, b.x), opaque(a.x * b.y) + opaque(a.y * b.x));
}
// grad + wd theta.
fn decayed(grad: f32, theta: f32) -> vec2<f32> { return df_add(dfm(hyper(3u), theta), grad); }
`;

function source(name: string, decl: string, body: string): KernelSource {
  return perElementSource(name, decl, HELPERS, body);
}

/** Words: 3-4 wd, 5-6 b1, 7-8 1 - b1, 9-10 b2, 11-12 1 - b2, 13 step, 14 c2, 15 eps. */
const ADAM = source(
  "adam_update",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> theta: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> m0: array<f32>;
@group(0) @binding(4) var<storage, read> v0: array<f32>;
@group(0) @binding(5) var<storage, read_write> theta1: array<f32>;
@group(0) @binding(6) var<storage, read_write> m1: array<f32>;
@group(0) @binding(7) var<storage, read_write> v1: array<f32>;
`,
  /* wgsl */ `let t = theta[e];
  let gd = decayed(grad[e], t);
  let m = df_add2(dfm(hyper(5u), m0[e]), dfmm(hyper(7u), gd));
  let gg = dfmm(gd, gd);
  let v = df_add2(dfm(hyper(9u), v0[e]), dfmm(hyper(11u), gg));
  let mr = m.x + m.y;
  let vr = v.x + v.y;
  m1[e] = mr;
  v1[e] = vr;
  let u = pf(13u) * mr / (sqrt(vr) / pf(14u) + pf(15u));
  theta1[e] = t - u;`,
);

/** Words: 3-4 wd, 5-6 lr, 7-8 momentum, 9 has momentum, 10 nesterov. */
const SGD = source(
  "sgd_update",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> theta: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read> b0: array<f32>;
@group(0) @binding(4) var<storage, read_write> theta1: array<f32>;
@group(0) @binding(5) var<storage, read_write> b1: array<f32>;
`,
  /* wgsl */ `let t = theta[e];
  let gd = decayed(grad[e], t);
  var d = gd;
  if (pu(9u) == 1u) {
    let b = df_add2(dfm(hyper(7u), b0[e]), gd);
    let br = b.x + b.y;
    b1[e] = br;
    d = vec2<f32>(br, 0.0);
    if (pu(10u) == 1u) { d = df_add2(gd, dfm(hyper(7u), br)); }
  }
  let step = dfmm(hyper(5u), d);
  let r = df_add(two_sum(t, -step.x), -step.y);
  theta1[e] = r.x + r.y;`,
);

/** A float64 as two float32 words `hi`, `lo`. */
function split(v: number): [number, number] {
  const hi = Math.fround(v);
  return [f32Word(hi), f32Word(v - hi)];
}

/**
 * The optimizer kernels of a WebGPU device.
 *
 * @param ctx The device's context.
 * @returns The kernels.
 */
export function optimizerKernels(
  ctx: GpuContext,
): Pick<Kernels, "adamUpdate" | "sgdUpdate"> {
  const same = (kernel: string, theta: Tensor, named: [string, Tensor][]) =>
    [ctx.input(kernel, theta, "theta")].concat(
      named.map(([what, t]) => {
        const b = ctx.input(kernel, t, what);
        ctx.size(kernel, t, what, theta.size);
        return b;
      }),
    );
  return {
    adamUpdate: (theta, grad, m, v, h) => {
      const inputs = same("adamUpdate", theta, [["grad", grad], ["m", m], [
        "v",
        v,
      ]]);
      const out = {
        theta: ctx.alloc(theta.shape),
        m: ctx.alloc(theta.shape),
        v: ctx.alloc(theta.shape),
      };
      ctx.run(
        ADAM,
        [...inputs, ctx.buf(out.theta), ctx.buf(out.m), ctx.buf(out.v)],
        theta.size,
        [
          theta.size,
          ...split(h.weightDecay),
          ...split(h.beta1),
          ...split(1 - h.beta1),
          ...split(h.beta2),
          ...split(1 - h.beta2),
          f32Word(h.stepSize),
          f32Word(h.sqrtCorrection2),
          f32Word(h.eps),
        ],
      );
      return out;
    },
    sgdUpdate: (theta, grad, momentum, h) => {
      const named: [string, Tensor][] = [["grad", grad]];
      if (momentum) named.push(["momentum", momentum]);
      const inputs = same("sgdUpdate", theta, named);
      const out = {
        theta: ctx.alloc(theta.shape),
        momentum: momentum ? ctx.alloc(theta.shape) : null,
      };
      ctx.run(
        SGD,
        [
          inputs[0],
          inputs[1],
          inputs[2] ?? ctx.scratch(1, "no momentum"),
          ctx.buf(out.theta),
          out.momentum ? ctx.buf(out.momentum) : ctx.scratch(1, "no momentum"),
        ],
        theta.size,
        [
          theta.size,
          ...split(h.weightDecay),
          ...split(h.lr),
          ...split(h.momentum),
          momentum ? 1 : 0,
          h.nesterov ? 1 : 0,
        ],
      );
      return out;
    },
  };
}
