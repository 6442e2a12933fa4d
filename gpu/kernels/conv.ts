/**
 * WGSL kernels of the convolution family.
 *
 * Contract:
 * - Groups 1: implicit GEMMs on the tiled template of `./matrix.ts`, the
 *   column matrix never stored. Forward `Y[(s, pixel), o] = cols x W^T`
 *   stored straight into NCHW with the bias added last; `dW = dY^T cols`
 *   (K = N OH OW, split-K when long); `dX[(s, iy, ix), c] = sum over
 *   (o, ky, kx) of dY[s, o, oy, ox] W[o, c, ky, kx]` where `iy + padding -
 *   ky = oy stride` (a gather: no atomics). Float32 sums in another order
 *   than the reference: the GEMM tolerance.
 * - Groups > 1: the direct loop, one invocation per output element, fused
 *   multiply-adds in the reference's (input channel, tap) order (each
 *   `acc + w x` exact as a double-float, then rounded once) and the bias
 *   added last: the reference's bits unless its float64 sum, rounded
 *   twice, lands on the other side of a float32 rounding boundary.
 *   The backward pass is a gather per `dx` and per `dw` element (GEMM
 *   tolerance).
 * - `db`: float32 sums per output channel in the reference's order
 *   (sample, then pixel), one invocation per channel: bit for bit.
 * - Words from 8: C, H, W, O, KH, KW, OH, OW, stride, padding, has bias,
 *   N, groups.
 *
 * @module
 */

import type { ConvGeometry, Kernels } from "../../core/kernels.ts";
import type { Tensor } from "../../core/tensor.ts";
import { type GpuContext, type KernelSource, PRELUDE_WGSL } from "./common.ts";
import { gemmSource, recordGemm, SPLIT_STORE } from "./matrix.ts";
import { recordChannelSumsF32 } from "./reduce.ts";

/** Geometry accessors shared by every convolution kernel. */
const GEOMETRY_WGSL = /* wgsl */ `
fn gc() -> u32 { return pu(8u); }
fn gh() -> u32 { return pu(9u); }
fn gw() -> u32 { return pu(10u); }
fn go() -> u32 { return pu(11u); }
fn gkh() -> u32 { return pu(12u); }
fn gkw() -> u32 { return pu(13u); }
fn goh() -> u32 { return pu(14u); }
fn gow() -> u32 { return pu(15u); }
fn gstride() -> u32 { return pu(16u); }
fn gpad() -> u32 { return pu(17u); }
// x at (sample, channel, oy * stride - pad + ky, ox * stride - pad + kx), 0 in the padding.
fn x_tap(s: u32, ch: u32, oy: u32, ox: u32, ky: u32, kx: u32) -> f32 {
  let iy = i32(oy * gstride() + ky) - i32(gpad());
  let ix = i32(ox * gstride() + kx) - i32(gpad());
  if (iy < 0 || ix < 0 || iy >= i32(gh()) || ix >= i32(gw())) { return 0.0; }
  return x[((s * gc() + ch) * gh() + u32(iy)) * gw() + u32(ix)];
}
// The column matrix of x: row (s, oy, ox), column (ch, ky, kx).
fn col(r: u32, q: u32) -> f32 {
  let area = goh() * gow();
  let pix = r % area;
  let taps = gkh() * gkw();
  let t = q % taps;
  return x_tap(r / area, q / taps, pix / gow(), pix % gow(), t / gkw(), t % gkw());
}
`;

const CONV_FORWARD = gemmSource({
  name: "conv_forward",
  bindings: "rrrw",
  declarations: /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
` + GEOMETRY_WGSL,
  loadA: "fn load_a(r: u32, q: u32) -> f32 { return col(r, q); }\n",
  loadB: "fn load_b(q: u32, o: u32) -> f32 { return wt[o * pu(4u) + q]; }\n",
  store: /* wgsl */ `
fn store(r: u32, o: u32, split: u32, v: f32) {
  let area = goh() * gow();
  var b = 0.0;
  if (pu(18u) == 1u) { b = bias[o]; }
  y[((r / area) * go() + o) * area + r % area] = v + b;
}
`,
  aPFast: "false",
  bJFast: "false",
});

const CONV_GRAD_WEIGHT = gemmSource({
  name: "conv_grad_weight",
  bindings: "rrw",
  declarations: /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
` + GEOMETRY_WGSL,
  loadA: /* wgsl */ `
fn load_a(o: u32, r: u32) -> f32 {
  let area = goh() * gow();
  return dy[((r / area) * go() + o) * area + r % area];
}
`,
  loadB: "fn load_b(r: u32, q: u32) -> f32 { return col(r, q); }\n",
  store: SPLIT_STORE,
  aPFast: "true",
  bJFast: "true",
});

const CONV_GRAD_INPUT = gemmSource({
  name: "conv_grad_input",
  bindings: "rrw",
  declarations: /* wgsl */ `
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
` + GEOMETRY_WGSL.replace(/\/\/ x at[\s\S]*$/, ""),
  loadA: /* wgsl */ `
fn load_a(r: u32, q: u32) -> f32 {
  let plane = gh() * gw();
  let s = r / plane;
  let iy = (r % plane) / gw();
  let ix = r % gw();
  let taps = gkh() * gkw();
  let o = q / taps;
  let ky = (q % taps) / gkw();
  let kx = q % gkw();
  let ty = i32(iy + gpad()) - i32(ky);
  let tx = i32(ix + gpad()) - i32(kx);
  if (ty < 0 || tx < 0) { return 0.0; }
  let st = gstride();
  if (u32(ty) % st != 0u || u32(tx) % st != 0u) { return 0.0; }
  let oy = u32(ty) / st;
  let ox = u32(tx) / st;
  if (oy >= goh() || ox >= gow()) { return 0.0; }
  return dy[((s * go() + o) * goh() + oy) * gow() + ox];
}
`,
  loadB: /* wgsl */ `
fn load_b(q: u32, c: u32) -> f32 {
  let taps = gkh() * gkw();
  return wt[((q / taps) * gc() + c) * taps + q % taps];
}
`,
  store: /* wgsl */ `
fn store(r: u32, c: u32, split: u32, v: f32) {
  let plane = gh() * gw();
  dx[((r / plane) * gc() + c) * plane + r % plane] = v;
}
`,
  aPFast: "false",
  bJFast: "true",
});

/** The grouped direct kernels: forward, `dx` and `dw`, one element each. */
function grouped(name: string, bindings: string, body: string): KernelSource {
  const decl = name === "conv_grouped_forward"
    ? /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
`
    : /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
`;
  return {
    name,
    bindings,
    workgroup: 64,
    code: PRELUDE_WGSL + decl + GEOMETRY_WGSL + /* wgsl */ `
@compute @workgroup_size(64)
fn ${name}(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let e = linear(g, l, 64u);
  if (e >= pu(2u)) { return; }
  let groups = pu(20u);
  let og = go() / groups;
  let cg = gc() / groups;
  ${body}
}
`,
  };
}

const GROUPED_FORWARD = grouped(
  "conv_grouped_forward",
  "rrrw",
  /* wgsl */ `let area = goh() * gow();
  let pix = e % area;
  let oc = (e / area) % go();
  let s = e / (area * go());
  let grp = oc / og;
  var acc = 0.0;
  for (var ic = 0u; ic < cg; ic++) {
    for (var ky = 0u; ky < gkh(); ky++) {
      for (var kx = 0u; kx < gkw(); kx++) {
        let iy = i32((pix / gow()) * gstride() + ky) - i32(gpad());
        let ix = i32((pix % gow()) * gstride() + kx) - i32(gpad());
        if (iy < 0 || ix < 0 || iy >= i32(gh()) || ix >= i32(gw())) { continue; }
        let wv = wt[((oc * cg + ic) * gkh() + ky) * gkw() + kx];
        let xv = x[((s * gc() + grp * cg + ic) * gh() + u32(iy)) * gw() + u32(ix)];
        acc = df_add2(vec2<f32>(acc, 0.0), df_mul(wv, xv)).x;
      }
    }
  }
  if (pu(18u) == 1u) { acc = acc + bias[oc]; }
  out[e] = acc;`,
);

const GROUPED_GRAD_INPUT = grouped(
  "conv_grouped_grad_input",
  "rrrw",
  /* wgsl */ `let plane = gh() * gw();
  let ix = e % gw();
  let iy = (e / gw()) % gh();
  let c = (e / plane) % gc();
  let s = e / (plane * gc());
  let grp = c / cg;
  let ic = c % cg;
  var acc = 0.0;
  for (var j = 0u; j < og; j++) {
    let oc = grp * og + j;
    for (var ky = 0u; ky < gkh(); ky++) {
      let ty = i32(iy + gpad()) - i32(ky);
      if (ty < 0 || u32(ty) % gstride() != 0u || u32(ty) / gstride() >= goh()) { continue; }
      for (var kx = 0u; kx < gkw(); kx++) {
        let tx = i32(ix + gpad()) - i32(kx);
        if (tx < 0 || u32(tx) % gstride() != 0u || u32(tx) / gstride() >= gow()) { continue; }
        let wv = wt[((oc * cg + ic) * gkh() + ky) * gkw() + kx];
        acc += wv * dy[((s * go() + oc) * goh() + u32(ty) / gstride()) * gow() + u32(tx) / gstride()];
      }
    }
  }
  out[e] = acc;`,
);

const GROUPED_GRAD_WEIGHT = grouped(
  "conv_grouped_grad_weight",
  "rrrw",
  /* wgsl */ `let taps = gkh() * gkw();
  let kx = e % gkw();
  let ky = (e / gkw()) % gkh();
  let ic = (e / taps) % cg;
  let oc = e / (taps * cg);
  let grp = oc / og;
  var acc = 0.0;
  for (var s = 0u; s < pu(19u); s++) {
    for (var oy = 0u; oy < goh(); oy++) {
      for (var ox = 0u; ox < gow(); ox++) {
        let xv = x_tap(s, grp * cg + ic, oy, ox, ky, kx);
        acc += xv * dy[((s * go() + oc) * goh() + oy) * gow() + ox];
      }
    }
  }
  out[e] = acc;`,
);

/** The geometry words from 8 (see the module documentation). */
function words(g: ConvGeometry, hasBias: boolean): number[] {
  return [
    g.c,
    g.h,
    g.w,
    g.o,
    g.kh,
    g.kw,
    g.oh,
    g.ow,
    g.stride,
    g.padding,
    hasBias ? 1 : 0,
    g.n,
    g.groups,
  ];
}

/** Checks the sizes of `x`, `w` (and `dy`) against the geometry. */
function check(
  ctx: GpuContext,
  kernel: string,
  g: ConvGeometry,
  x: Tensor,
  w: Tensor,
): [GPUBuffer, GPUBuffer] {
  const bx = ctx.input(kernel, x, "x");
  const bw = ctx.input(kernel, w, "w");
  if (g.groups < 1 || g.c % g.groups || g.o % g.groups) {
    ctx.fail(kernel, `groups ${g.groups} must divide ${g.c} and ${g.o}`);
  }
  ctx.size(kernel, x, "x", g.n * g.c * g.h * g.w);
  ctx.size(kernel, w, "w", g.o * (g.c / g.groups) * g.kh * g.kw);
  return [bx, bw];
}

/** `conv2d` on the WebGPU device. */
function conv2dGpu(
  ctx: GpuContext,
  x: Tensor,
  w: Tensor,
  bias: Tensor | null,
  g: ConvGeometry,
): ReturnType<Kernels["conv2d"]> {
  const [bx, bw] = check(ctx, "conv2d", g, x, w);
  let bb = bx;
  if (bias) {
    bb = ctx.input("conv2d", bias, "bias");
    ctx.size("conv2d", bias, "bias", g.o);
  }
  const y = ctx.alloc([g.n, g.o, g.oh, g.ow]);
  const ws = words(g, bias !== null);
  if (g.groups > 1) {
    ctx.run(GROUPED_FORWARD, [bx, bw, bb, ctx.buf(y)], y.size, [
      y.size,
      0,
      0,
      0,
      0,
      0,
      ...ws,
    ]);
    return y;
  }
  const rows = g.n * g.oh * g.ow;
  recordGemm(
    ctx,
    CONV_FORWARD,
    [bx, bw, bb],
    ctx.buf(y),
    [
      rows,
      g.o,
      g.c * g.kh * g.kw,
    ],
    ws,
    false,
  );
  return y;
}

/** `conv2dBackward` on the WebGPU device. */
function conv2dBackwardGpu(
  ctx: GpuContext,
  x: Tensor,
  w: Tensor,
  dy: Tensor,
  g: ConvGeometry,
  needInput: boolean,
  needBias: boolean,
): ReturnType<Kernels["conv2dBackward"]> {
  const [bx, bw] = check(ctx, "conv2dBackward", g, x, w);
  const bdy = ctx.input("conv2dBackward", dy, "dy");
  ctx.size("conv2dBackward", dy, "dy", g.n * g.o * g.oh * g.ow);
  const ws = words(g, false);
  const dw = ctx.alloc(w.shape);
  const dx = needInput ? ctx.alloc(x.shape) : null;
  const db = needBias ? ctx.alloc([g.o]) : null;
  if (g.groups > 1) {
    const head = (size: number) => [size, 0, 0, 0, 0, 0, ...ws];
    ctx.run(
      GROUPED_GRAD_WEIGHT,
      [bx, bw, bdy, ctx.buf(dw)],
      dw.size,
      head(dw.size),
    );
    if (dx) {
      ctx.run(
        GROUPED_GRAD_INPUT,
        [bx, bw, bdy, ctx.buf(dx)],
        dx.size,
        head(dx.size),
      );
    }
  } else {
    const taps = g.c * g.kh * g.kw;
    const rows = g.n * g.oh * g.ow;
    if (rows === 0) ctx.queue.clear(ctx.buf(dw));
    else {recordGemm(
        ctx,
        CONV_GRAD_WEIGHT,
        [bx, bdy],
        ctx.buf(dw),
        [g.o, taps, rows],
        ws,
        true,
      );}
    if (dx) {
      recordGemm(
        ctx,
        CONV_GRAD_INPUT,
        [bdy, bw],
        ctx.buf(dx),
        [
          g.n * g.h * g.w,
          g.c,
          g.o * g.kh * g.kw,
        ],
        ws,
        false,
      );
    }
  }
  if (db) {
    recordChannelSumsF32(
      ctx,
      { n: g.n, c: g.o, area: g.oh * g.ow },
      bdy,
      ctx.buf(db),
    );
  }
  return { dx, dw, db };
}

/**
 * The convolution kernels of a WebGPU device.
 *
 * @param ctx The device's context.
 * @returns The kernels.
 */
export function convKernels(
  ctx: GpuContext,
): Pick<Kernels, "conv2d" | "conv2dBackward"> {
  return {
    conv2d: (x, w, bias, g) => conv2dGpu(ctx, x, w, bias, g),
    conv2dBackward: (x, w, dy, g, needInput, needBias) =>
      conv2dBackwardGpu(ctx, x, w, dy, g, needInput, needBias),
  };
}
