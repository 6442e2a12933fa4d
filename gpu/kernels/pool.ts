/**
 * WGSL kernels of the pooling family: max-pool forward (with the flat index
 * of each window's first maximum) and backward, global average pool
 * forward and backward.
 *
 * Contract:
 * - Max-pool: one invocation per output, the reference's loop (`v > best
 *   || none yet`: ties keep the first, a NaN first element stays, padding
 *   never wins, an empty window gives `-inf` and index -1): bit for bit.
 * - Max-pool backward: one invocation per input element gathers the `dy`
 *   of the windows (in output order) whose `argmax` is that element, and
 *   adds them in float32 from 0: the reference's scatter-add in output
 *   order, bit for bit. `argmax` must come from `maxPool2d` of the same
 *   geometry (an index outside its window is not seen).
 * - Global average pool: one invocation per plane, a double-float sum
 *   divided by the area and rounded once (see `./common.ts`); backward
 *   `dy[p] / area` in float32, bit for bit.
 *
 * @module
 */

import type { Kernels, PoolGeometry } from "../../core/kernels.ts";
import {
  type GpuContext,
  type KernelSource,
  perElementSource,
} from "./common.ts";

const GEOMETRY = /* wgsl */ `
fn ph() -> u32 { return pu(3u); }
fn pw() -> u32 { return pu(4u); }
fn poh() -> u32 { return pu(5u); }
fn pow_() -> u32 { return pu(6u); }
fn pk() -> u32 { return pu(7u); }
fn ps() -> u32 { return pu(8u); }
fn pp() -> u32 { return pu(9u); }
`;

function source(name: string, decl: string, body: string): KernelSource {
  return perElementSource(name, decl, GEOMETRY, body);
}

const MAX_POOL = source(
  "max_pool",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> at: array<i32>;
`,
  /* wgsl */ `let ox = e % pow_();
  let oy = (e / pow_()) % poh();
  let plane = e / (pow_() * poh());
  var best = bitcast<f32>(0xff800000u);
  var index = -1;
  for (var ky = 0u; ky < pk(); ky++) {
    let iy = i32(oy * ps() + ky) - i32(pp());
    if (iy < 0 || iy >= i32(ph())) { continue; }
    for (var kx = 0u; kx < pk(); kx++) {
      let ix = i32(ox * ps() + kx) - i32(pp());
      if (ix < 0 || ix >= i32(pw())) { continue; }
      let i = (plane * ph() + u32(iy)) * pw() + u32(ix);
      let v = x[i];
      if (v > best || index < 0) {
        best = v;
        index = i32(i);
      }
    }
  }
  y[e] = best;
  at[e] = index;`,
);

const MAX_POOL_BACKWARD = source(
  "max_pool_backward",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> at: array<i32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
`,
  /* wgsl */ `let ix = e % pw();
  let iy = (e / pw()) % ph();
  let plane = e / (pw() * ph());
  // Windows oy with oy * s - p <= iy < oy * s - p + k.
  let ty = i32(iy + pp());
  let tx = i32(ix + pp());
  let oy0 = max(0, (ty - i32(pk()) + i32(ps())) / i32(ps()));
  let oy1 = min(i32(poh()) - 1, ty / i32(ps()));
  let ox0 = max(0, (tx - i32(pk()) + i32(ps())) / i32(ps()));
  let ox1 = min(i32(pow_()) - 1, tx / i32(ps()));
  var acc = 0.0;
  for (var oy = oy0; oy <= oy1; oy++) {
    for (var ox = ox0; ox <= ox1; ox++) {
      let o = (plane * poh() + u32(oy)) * pow_() + u32(ox);
      if (at[o] == i32(e)) { acc += dy[o]; }
    }
  }
  dx[e] = acc;`,
);

const GLOBAL_AVG = source(
  "global_avg_pool",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
`,
  /* wgsl */ `let area = pu(3u);
  var s = vec2<f32>(0.0, 0.0);
  for (var i = 0u; i < area; i++) { s = df_add(s, x[e * area + i]); }
  let a = f32(area);
  let q = s.x / a;
  let rest = df_add2(s, -df_mul(q, a));
  y[e] = q + (rest.x + rest.y) / a;`,
);

const GLOBAL_AVG_BACKWARD = source(
  "global_avg_pool_backward",
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
`,
  "dx[e] = dy[e / pu(3u)] / f32(pu(3u));",
);

function geometryWords(g: PoolGeometry): number[] {
  return [g.h, g.w, g.oh, g.ow, g.kernel, g.stride, g.padding];
}

/**
 * The pooling kernels of a WebGPU device.
 *
 * @param ctx The device's context.
 * @returns The kernels.
 */
export function poolKernels(
  ctx: GpuContext,
): Pick<
  Kernels,
  "maxPool2d" | "maxPool2dBackward" | "globalAvgPool" | "globalAvgPoolBackward"
> {
  const planes = (kernel: string, planes: number, area: number) => {
    if (!Number.isInteger(planes) || !Number.isInteger(area) || area < 1) {
      ctx.fail(kernel, `bad planes ${planes} or area ${area}`);
    }
  };
  return {
    maxPool2d: (x, g) => {
      const bx = ctx.input("maxPool2d", x, "x");
      ctx.size("maxPool2d", x, "x", g.n * g.c * g.h * g.w);
      const shape = [g.n, g.c, g.oh, g.ow];
      const y = ctx.alloc(shape);
      const argmax = ctx.alloc(shape, "int32");
      ctx.run(MAX_POOL, [bx, ctx.buf(y), ctx.buf(argmax)], y.size, [
        y.size,
        ...geometryWords(g),
      ]);
      return { y, argmax };
    },
    maxPool2dBackward: (dy, argmax, g) => {
      const kernel = "maxPool2dBackward";
      const bdy = ctx.input(kernel, dy, "dy");
      const bat = ctx.input(kernel, argmax, "argmax", "int32");
      ctx.size(kernel, dy, "dy", g.n * g.c * g.oh * g.ow);
      ctx.size(kernel, argmax, "argmax", dy.size);
      const dx = ctx.alloc([g.n, g.c, g.h, g.w]);
      ctx.run(MAX_POOL_BACKWARD, [bdy, bat, ctx.buf(dx)], dx.size, [
        dx.size,
        ...geometryWords(g),
      ]);
      return dx;
    },
    globalAvgPool: (x, n, area) => {
      planes("globalAvgPool", n, area);
      const bx = ctx.input("globalAvgPool", x, "x");
      ctx.size("globalAvgPool", x, "x", n * area);
      const y = ctx.alloc([n]);
      ctx.run(GLOBAL_AVG, [bx, ctx.buf(y)], n, [n, area]);
      return y;
    },
    globalAvgPoolBackward: (dy, n, area) => {
      planes("globalAvgPoolBackward", n, area);
      const bdy = ctx.input("globalAvgPoolBackward", dy, "dy");
      ctx.size("globalAvgPoolBackward", dy, "dy", n);
      const dx = ctx.alloc([n * area]);
      ctx.run(GLOBAL_AVG_BACKWARD, [bdy, ctx.buf(dx)], dx.size, [
        dx.size,
        area,
      ]);
      return dx;
    },
  };
}
