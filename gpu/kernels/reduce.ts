/**
 * WGSL per-channel double-float sums over a `[N, C, area]` layout, shared
 * by the convolution's bias gradient and batch norm.
 *
 * Contract: one workgroup of {@link CHANNEL_WORKGROUP} invocations per
 * channel; invocation `l` sums elements `l, l + 256, ...` of the channel
 * (sample-major, then pixel) as double-floats, and the workgroup combines
 * the 256 partial sums as a tree. Modes (word 3):
 * - 0: `sum a`;
 * - 1: `sum a` and `sum a b` (products exact, Dekker);
 * - 2: `sum (a - mean[c])^2` with `mean` given as a double-float pair per
 *   channel in `b` (`b[2c]`, `b[2c + 1]`), the difference exact (TwoSum).
 * Output: `out[4 c ..]` = `(hi, lo)` of the first sum and of the second
 * (mode 1) when word 4 is 0; the first sum rounded to float32 at `out[c]`
 * when word 4 is 1. Words: 2 channels, 3 mode, 4 rounded, 5 N, 6 area.
 *
 * @module
 */

import { type GpuContext, type KernelSource, PRELUDE_WGSL } from "./common.ts";

/** Invocations per channel. */
export const CHANNEL_WORKGROUP = 256;

const CHANNEL_SUMS: KernelSource = {
  name: "channel_sums",
  bindings: "rrw",
  workgroup: CHANNEL_WORKGROUP,
  code: PRELUDE_WGSL + /* wgsl */ `
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
var<workgroup> part: array<vec4<f32>, ${CHANNEL_WORKGROUP}>;

@compute @workgroup_size(${CHANNEL_WORKGROUP})
fn channel_sums(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let channels = pu(2u);
  let ch = g.y * pu(0u) + g.x;
  if (ch >= channels) { return; }
  let mode = pu(3u);
  let area = pu(6u);
  let count = pu(5u) * area;
  var s0 = vec2<f32>(0.0, 0.0);
  var s1 = vec2<f32>(0.0, 0.0);
  var mean = vec2<f32>(0.0, 0.0);
  if (mode == 2u) { mean = vec2<f32>(b[2u * ch], b[2u * ch + 1u]); }
  for (var e = l; e < count; e += ${CHANNEL_WORKGROUP}u) {
    let i = ((e / area) * channels + ch) * area + e % area;
    let v = a[i];
    if (mode == 2u) {
      let d = df_add(vec2<f32>(v, 0.0), -mean.x);
      let dd = df_add(d, -mean.y);
      let sq = df_mul(dd.x, dd.x);
      s0 = df_add2(s0, vec2<f32>(sq.x, sq.y + 2.0 * dd.x * dd.y));
    } else {
      s0 = df_add(s0, v);
      if (mode == 1u) { s1 = df_add2(s1, df_mul(v, b[i])); }
    }
  }
  part[l] = vec4<f32>(s0, s1);
  workgroupBarrier();
  for (var half = ${CHANNEL_WORKGROUP / 2}u; half > 0u; half >>= 1u) {
    if (l < half) {
      let p = part[l];
      let q = part[l + half];
      part[l] = vec4<f32>(df_add2(p.xy, q.xy), df_add2(p.zw, q.zw));
    }
    workgroupBarrier();
  }
  if (l == 0u) {
    let r = part[0];
    if (pu(4u) == 1u) {
      out[ch] = r.x + r.y;
    } else {
      out[4u * ch] = r.x;
      out[4u * ch + 1u] = r.y;
      out[4u * ch + 2u] = r.z;
      out[4u * ch + 3u] = r.w;
    }
  }
}
`,
};

/** The layout of a channel reduction. */
export interface ChannelSums {
  /** Samples. */
  readonly n: number;
  /** Channels. */
  readonly c: number;
  /** Elements per channel per sample. */
  readonly area: number;
}

/**
 * Records per-channel sums of `a` (and `b`, see the module documentation).
 *
 * @param ctx The device's context.
 * @param layout The layout of `a`.
 * @param mode 0, 1 or 2.
 * @param a The summed buffer.
 * @param b The second operand (mode 1), the means (mode 2), else any buffer.
 * @param out `[C]` (rounded) or `[4 C]` (double-float pairs).
 * @param rounded Whether to write the first sum rounded to float32.
 */
export function recordChannelSums(
  ctx: GpuContext,
  layout: ChannelSums,
  mode: 0 | 1 | 2,
  a: GPUBuffer,
  b: GPUBuffer,
  out: GPUBuffer,
  rounded: boolean,
): void {
  ctx.run(CHANNEL_SUMS, [a, b, out], layout.c * CHANNEL_WORKGROUP, [
    layout.c,
    mode,
    rounded ? 1 : 0,
    layout.n,
    layout.area,
  ]);
}

const CHANNEL_SUMS_F32: KernelSource = {
  name: "channel_sums_f32",
  bindings: "rw",
  workgroup: 64,
  code: PRELUDE_WGSL + /* wgsl */ `
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn channel_sums_f32(@builtin(workgroup_id) g: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let ch = linear(g, l, 64u);
  let channels = pu(2u);
  if (ch >= channels) { return; }
  let area = pu(4u);
  var s = 0.0;
  for (var n = 0u; n < pu(3u); n++) {
    let base = (n * channels + ch) * area;
    for (var p = 0u; p < area; p++) { s += a[base + p]; }
  }
  out[ch] = s;
}
`,
};

/**
 * Records float32 sums per channel in the reference's order (sample, then
 * pixel), one invocation per channel: `out[c]`.
 *
 * @param ctx The device's context.
 * @param layout The layout of `a`.
 * @param a The summed buffer.
 * @param out `[C]`.
 */
export function recordChannelSumsF32(
  ctx: GpuContext,
  layout: ChannelSums,
  a: GPUBuffer,
  out: GPUBuffer,
): void {
  ctx.run(CHANNEL_SUMS_F32, [a, out], layout.c, [
    layout.c,
    layout.n,
    layout.area,
  ]);
}
