/**
 * WGSL kernels of the fused residual quantizer (forward and backward).
 *
 * Contract (both kernels):
 * - Buffers: `x`, `dy`, `out`/`dx` are flat `array<f32>` of `params.length`
 *   elements; `x` and `dy` are read only, `out`/`dx` must not alias them.
 *   Lengths need not be multiples of anything: invocations past
 *   `params.length` (the tail of the last workgroup) do nothing.
 * - Channels are contiguous blocks of `params.per_channel` elements; `z2` has
 *   one value per channel and is read only when `params.has_z2 == 1` (bind
 *   any non-empty buffer otherwise; `z2` then counts as 1).
 * - Dispatch is two-dimensional so that more than 65535 workgroups fit: the
 *   linear workgroup index is `id.y * params.grid_width + id.x`.
 * - Arithmetic is float32, in the order of `core/reference.ts`, so that the
 *   forward output and `dx` are bit for bit those of the reference on an
 *   IEEE-exact device: clip as `hi - max(span - max(x - lo, 0), 0)`, per level
 *   `v = r / s` (a true division, never a reciprocal), `q = round(v)` (WGSL
 *   `round` is round half to even), `e = s * q`, `err = q - v`, `r = r - e`,
 *   then brackets from the top `inner_l = e_l + z_{l+1} * inner_{l+1}`.
 *   Levels at or above `params.levels` are exact zeros, and the brackets
 *   still add `gate * 0`, as the reference does (it turns `-0` into `+0`).
 * - Trap: a compiler may contract `a * b + c` into a fused multiply-add,
 *   which changes the last bit. Every product whose sum must be rounded
 *   separately goes through `opaque()`, an XOR with the uniform
 *   `params.zero` (always 0), which no compiler can see through. llvmpipe
 *   happens not to contract even without it (measured); the guard is for
 *   real GPU compilers, which do. Its cost is one integer XOR per product.
 * - Subnormals: WGSL lets a device flush them to zero; llvmpipe keeps them.
 *   Where `s32` is subnormal (`xmax` below about 2.6e-29) a flushing device
 *   divides by zero at 32 bits. Ranges that small are not supported there.
 * - Backward reductions: workgroup `t` handles tile `t` = (channel
 *   `t / chunks_per_channel`, chunk `t % chunks_per_channel`) of up to
 *   `ELEMENTS_PER_TILE` elements of one channel, and writes the float32 tree
 *   sums `[sum dy*inner_0..4, sum dy*dxc/dxmax, 0, 0]` to
 *   `partials[8 t .. 8 t + 7]`. The host adds the tiles of each channel in
 *   float64 and combines them as the reference does.
 *
 * @module
 */

/** Invocations per workgroup of the forward kernel (one element each). */
export const FORWARD_WORKGROUP_SIZE = 256;

/**
 * Invocations per workgroup of the backward kernel. Smaller than the
 * forward's, with more elements per invocation: the tree reduction's
 * barriers are expensive on llvmpipe (measured: 256 x 4 was 3x slower than
 * 64 x 16), and 64 is still a whole wavefront / two warps on real GPUs.
 */
export const BACKWARD_WORKGROUP_SIZE = 64;

/** Elements each invocation of the backward kernel handles. */
export const BACKWARD_ELEMENTS_PER_INVOCATION = 16;

/** Elements of one channel that one backward workgroup (one tile) reduces. */
export const ELEMENTS_PER_TILE = BACKWARD_WORKGROUP_SIZE *
  BACKWARD_ELEMENTS_PER_INVOCATION;

/** float32 values per tile in the backward partial-sums buffer. */
export const PARTIALS_STRIDE = 8;

/** Bytes of the uniform block shared by both kernels (see `PARAMS_WGSL`). */
export const QUANTIZER_PARAMS_BYTES = 128;

/**
 * The uniform block of both kernels. Byte layout (little endian, 128 bytes):
 * u32 at 0 length, 4 per_channel, 8 levels, 12 levels_forward, 16 has_z2,
 * 20 chunks_per_channel, 24 grid_width, 28 zero; f32 at 32 hi, 36 lo,
 * 40 span, 44 clip_grad_hi, 48 clip_grad_lo; vec4<f32> at 64 scales 0..3,
 * 80 gates `z4, z8, z16, z32`, 96 xmax factors 0..3; f32 at 112 scale 4,
 * 116 xmax factor 4.
 */
const PARAMS_WGSL = /* wgsl */ `
struct Params {
  length: u32,
  per_channel: u32,
  levels: u32,
  levels_forward: u32,
  has_z2: u32,
  chunks_per_channel: u32,
  grid_width: u32,
  zero: u32,
  hi: f32,
  lo: f32,
  span: f32,
  clip_grad_hi: f32,
  clip_grad_lo: f32,
  _pad0: f32,
  _pad1: f32,
  _pad2: f32,
  scales_lo: vec4<f32>,
  gates: vec4<f32>,
  factors_lo: vec4<f32>,
  scale4: f32,
  factor4: f32,
  _pad3: f32,
  _pad4: f32,
}

@group(0) @binding(0) var<uniform> params: Params;

// Hides a value from the optimiser so that a product is rounded on its own
// and never contracted into a fused multiply-add with the next addition.
fn opaque(v: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(v) ^ params.zero);
}

struct Decomposition {
  // inner brackets 0..4 (inner_0 is the one z2 multiplies)
  inner_lo: vec4<f32>,
  inner4: f32,
  // rounding errors round(v) - v of levels 0..4
  err_lo: vec4<f32>,
  err4: f32,
  inside: bool,
  clip_grad: f32,
}

struct Level {
  e: f32,
  err: f32,
  residual: f32,
}

fn level_step(residual: f32, s: f32) -> Level {
  let v = residual / s;
  let q = round(v);
  let e = opaque(s * q);
  return Level(e, q - v, residual - e);
}

fn decompose(x: f32, levels: u32) -> Decomposition {
  var d: Decomposition;
  let t1 = x - params.lo;
  let r1 = max(t1, 0.0);
  let t2 = params.span - r1;
  let r2 = max(t2, 0.0);
  let xc = params.hi - r2;
  d.inside = t1 > 0.0 && t2 > 0.0;
  d.clip_grad = select(params.clip_grad_hi,
                       select(params.clip_grad_lo, 0.0, t1 > 0.0),
                       t2 > 0.0);
  var e = vec4<f32>(0.0);
  var err = vec4<f32>(0.0);
  var e4 = 0.0;
  var err4 = 0.0;
  var r = xc;
  // levels >= 1 always
  var step = level_step(r, params.scales_lo.x);
  e.x = step.e; err.x = step.err; r = step.residual;
  if (levels > 1u) {
    step = level_step(r, params.scales_lo.y);
    e.y = step.e; err.y = step.err; r = step.residual;
  }
  if (levels > 2u) {
    step = level_step(r, params.scales_lo.z);
    e.z = step.e; err.z = step.err; r = step.residual;
  }
  if (levels > 3u) {
    step = level_step(r, params.scales_lo.w);
    e.w = step.e; err.w = step.err; r = step.residual;
  }
  if (levels > 4u) {
    step = level_step(r, params.scale4);
    e4 = step.e; err4 = step.err;
  }
  let g = params.gates;
  let inner3 = e.w + opaque(g.w * e4);
  let inner2 = e.z + opaque(g.z * inner3);
  let inner1 = e.y + opaque(g.y * inner2);
  let inner0 = e.x + opaque(g.x * inner1);
  d.inner_lo = vec4<f32>(inner0, inner1, inner2, inner3);
  d.inner4 = e4;
  d.err_lo = err;
  d.err4 = err4;
  return d;
}

fn z2_of(channel: u32) -> f32 {
  if (params.has_z2 == 1u) {
    return z2[channel];
  }
  return 1.0;
}
`;

/**
 * Fused forward: `out[i] = z2[channel(i)] * inner_0(x[i])`, computing
 * `params.levels` levels (set it to `levelsForward`).
 *
 * Bindings: 0 `Params` (uniform), 1 `x`, 2 `z2` (read-only storage),
 * 3 `out` (storage). Workgroup size {@link FORWARD_WORKGROUP_SIZE}, one
 * element per invocation, `ceil(length / 256)` workgroups in a 2-D grid.
 *
 * @example
 * ```ts
 * import { QUANTIZER_FORWARD_WGSL } from "@bbits/core/gpu";
 * import assert from "node:assert/strict";
 *
 * assert.ok(QUANTIZER_FORWARD_WGSL.includes("fn quantize_forward"));
 * ```
 */
export const QUANTIZER_FORWARD_WGSL: string = PARAMS_WGSL + /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> z2: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${FORWARD_WORKGROUP_SIZE})
fn quantize_forward(
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
) {
  let i = (group.y * params.grid_width + group.x) * ${FORWARD_WORKGROUP_SIZE}u + local;
  if (i >= params.length) {
    return;
  }
  let d = decompose(x[i], params.levels);
  out[i] = z2_of(i / params.per_channel) * d.inner_lo.x;
}
`;

/**
 * Fused straight-through backward: writes `dx` and the per-tile partial sums
 * (see the module contract), computing `params.levels` levels (set it to
 * `levelsBackward`) and the `d xc / d xmax` term from the first
 * `params.levels_forward` rounding errors.
 *
 * Bindings: 0 `Params` (uniform), 1 `x`, 2 `z2`, 3 `dy` (read-only storage),
 * 4 `dx`, 5 `partials` (storage). Workgroup size
 * {@link BACKWARD_WORKGROUP_SIZE}, one workgroup per tile in a 2-D grid.
 *
 * @example
 * ```ts
 * import { QUANTIZER_BACKWARD_WGSL } from "@bbits/core/gpu";
 * import assert from "node:assert/strict";
 *
 * assert.ok(QUANTIZER_BACKWARD_WGSL.includes("fn quantize_backward"));
 * ```
 */
export const QUANTIZER_BACKWARD_WGSL: string = PARAMS_WGSL + /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> z2: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

const WG: u32 = ${BACKWARD_WORKGROUP_SIZE}u;
const PER_INVOCATION: u32 = ${BACKWARD_ELEMENTS_PER_INVOCATION}u;

var<workgroup> inner_sums: array<vec4<f32>, WG>;
var<workgroup> other_sums: array<vec2<f32>, WG>;

@compute @workgroup_size(${BACKWARD_WORKGROUP_SIZE})
fn quantize_backward(
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
) {
  let tile = group.y * params.grid_width + group.x;
  let channel = tile / params.chunks_per_channel;
  let chunk = tile % params.chunks_per_channel;
  let channel_start = channel * params.per_channel;
  let channel_end = channel_start + params.per_channel;
  let tile_start = channel_start + chunk * WG * PER_INVOCATION;
  let z2v = z2_of(min(channel, arrayLength(&z2) - 1u));
  let f = params.factors_lo;
  var inner_acc = vec4<f32>(0.0);
  var inner4_acc = 0.0;
  var xmax_acc = 0.0;
  // Out-of-range tiles (the tail of the 2-D grid) have channel_start past
  // the end and skip the loop, but still join the barriers below.
  for (var k = 0u; k < PER_INVOCATION; k++) {
    let i = tile_start + k * WG + local;
    if (i < channel_end && i < params.length) {
      let d = decompose(x[i], params.levels);
      let g = dy[i];
      dx[i] = select(0.0, g * z2v, d.inside);
      inner_acc += g * d.inner_lo;
      inner4_acc += g * d.inner4;
      // Only the first levels_forward errors count; the others are zero
      // when levels == levels_forward, masked here when levels is larger.
      let lf = params.levels_forward;
      let m = vec4<f32>(vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(lf));
      let m4 = select(0.0, 1.0, lf > 4u);
      let dxc = d.clip_grad + dot(f * m, d.err_lo) + params.factor4 * m4 * d.err4;
      xmax_acc += g * dxc;
    }
  }
  inner_sums[local] = inner_acc;
  other_sums[local] = vec2<f32>(inner4_acc, xmax_acc);
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (local < stride) {
      inner_sums[local] += inner_sums[local + stride];
      other_sums[local] += other_sums[local + stride];
    }
    workgroupBarrier();
  }
  if (local == 0u && tile < arrayLength(&partials) / ${PARTIALS_STRIDE}u) {
    let base = tile * ${PARTIALS_STRIDE}u;
    let a = inner_sums[0];
    let b = other_sums[0];
    partials[base] = a.x;
    partials[base + 1u] = a.y;
    partials[base + 2u] = a.z;
    partials[base + 3u] = a.w;
    partials[base + 4u] = b.x;
    partials[base + 5u] = b.y;
    partials[base + 6u] = 0.0;
    partials[base + 7u] = 0.0;
  }
}
`;
