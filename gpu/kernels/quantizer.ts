/**
 * WGSL kernels of the residual quantizer (spec sections 1 and 7): the
 * constants, the forward pass, the fused max-pool of the forward pass, and
 * the straight-through backward pass with its reductions.
 *
 * Contract:
 * - Data stays on the device. `quantizer_constants` (one invocation) reads
 *   the range `xmax` `[1]` and the gates `[z4, z8, z16, z32]` `[4]` from
 *   storage and writes a {@link QUANTIZER_CONSTANTS_BYTES}-byte `Constants`
 *   block that the other kernels read. It derives them as
 *   `core/reference/quantizer.ts` does: `hi = CLIP_FACTOR xmax`, `lo = -hi`
 *   (signed) or 0, `span = hi - lo`, `s2 = (signed ? 2 xmax : xmax) / 3`,
 *   `s4 = s2 / 5`, `s8 = s4 / 17`, `s16 = s8 / 257`, `s32 = s16 / 65537`,
 *   each one float32 operation, so they are the reference's bits wherever
 *   division is correctly rounded; the levels to compute from which gates
 *   are zero; and the `d xq / d xmax` factors `k_l G_l (1 - z_l)` in float32
 *   (the reference rounds them once from float64: they feed only the
 *   `dxmax` reduction, which has a tolerance).
 * - Buffers are flat `array<f32>`; outputs never alias inputs. Lengths need
 *   not be multiples of anything: invocations past the end do nothing.
 * - Channels are contiguous blocks of `params.per_channel` elements; `z2`
 *   has one value per channel and is read only when `params.has_z2 == 1`
 *   (bind any non-empty buffer otherwise; `z2` then counts as 1).
 * - Dispatch is two-dimensional so that more than 65535 workgroups fit: the
 *   linear workgroup index is `id.y * params.grid_width + id.x`.
 * - Arithmetic is float32 in the reference's order, so the forward output,
 *   the pooled output and `dx` are the reference's bits on an IEEE-exact
 *   device: clip as `hi - relu(span - relu(x - lo))` (`relu` by comparison,
 *   as the reference, so NaN clips to `lo`), per level `v = r / s` (a true
 *   division), `q = round(v)` (WGSL `round` is half to even), `e = s q`,
 *   `err = q - v`, `r = r - e`, then brackets from the top
 *   `inner_l = e_l + z_{l+1} inner_{l+1}`. Levels at or above the level
 *   count are exact zeros, and the brackets still add `gate * 0`, as the
 *   reference does (it turns `-0` into `+0`).
 * - Trap: a compiler may contract `a * b + c` into a fused multiply-add,
 *   which changes the last bit. Every product whose sum must be rounded on
 *   its own goes through `opaque()`, an XOR with the uniform `params.zero`
 *   (always 0), which no compiler can see through.
 * - Subnormals: WGSL lets a device flush them to zero; llvmpipe keeps them.
 *   Where `s32` is subnormal (`xmax` below about 2.6e-29) a flushing device
 *   divides by zero at 32 bits; ranges that small are not supported there.
 * - Backward reductions (`./quantizer_backward.ts`), all on the device: `quantize_backward` gives
 *   workgroup `t` the tile (channel `t / chunks`, chunk `t % chunks`) of up
 *   to `ELEMENTS_PER_TILE` elements and writes its float32 tree sums
 *   `[sum dy inner_0..4, sum dy dxc/dxmax, 0, 0]` to `partials[8 t ..]`
 *   (channels of at most `ROW_CHANNEL_LIMIT` elements: one channel
 *   per invocation, one chunk per channel);
 *   `reduce_chunks` adds groups of `REDUCE_WORKGROUP_SIZE` chunks of
 *   a channel (run until one chunk is left); `finish_backward` (one
 *   workgroup) writes `dz2[c] = sum_0`, and sums over the channels
 *   `dgates[l - 1] = z2 z4..z_{l-1} sum_l` and `dxmax = z2 sum_5`.
 *
 * @module
 */

/** Invocations per workgroup of the forward and pooling kernels. */
export const FORWARD_WORKGROUP_SIZE = 256;

/** Bytes of the `Constants` block written by `quantizer_constants`. */
export const QUANTIZER_CONSTANTS_BYTES = 96;

/**
 * Bytes of the uniform block of the forward, pooling and backward kernels:
 * sixteen u32 in the order of {@link QUANTIZER_PARAM_FIELDS}.
 */
export const QUANTIZER_PARAMS_BYTES = 64;

/** The u32 fields of the quantizer uniform block, in memory order. */
export const QUANTIZER_PARAM_FIELDS = [
  "length",
  "per_channel",
  "has_z2",
  "grid_width",
  "chunks_per_channel",
  "zero",
  "h",
  "w",
  "oh",
  "ow",
  "kernel",
  "stride",
  "padding",
] as const;

/**
 * Bytes of the uniform block of `quantizer_constants`: `k` (vec4 of f32,
 * the exact `d s_l / d xmax` of levels 0..3 rounded to float32) at 0, `k4`
 * at 16, `clip` (`CLIP_FACTOR`) at 20, `signed` (u32) at 24.
 */
export const CONSTANTS_PARAMS_BYTES = 32;

/** The WGSL `Constants` struct (see {@link QUANTIZER_CONSTANTS_BYTES}). */
export const CONSTANTS_STRUCT: string = /* wgsl */ `
struct Constants {
  scales: vec4<f32>,   // s2, s4, s8, s16
  factors: vec4<f32>,  // d xq / d xmax coefficients of levels 0..3
  gates: vec4<f32>,    // z4, z8, z16, z32
  scale4: f32,         // s32
  factor4: f32,
  hi: f32,
  lo: f32,
  span: f32,
  clip_grad_hi: f32,
  clip_grad_lo: f32,
  levels_forward: u32,
  levels_backward: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}
`;

/**
 * Derives the constants block from `xmax` and the gates (one invocation).
 *
 * Bindings: 0 uniform (see {@link CONSTANTS_PARAMS_BYTES}), 1 `xmax`, 2
 * `gates` (read-only storage), 3 the `Constants` block (storage).
 */
export const QUANTIZER_CONSTANTS_WGSL: string = CONSTANTS_STRUCT + /* wgsl */ `
struct ConstantsParams {
  k: vec4<f32>,
  k4: f32,
  clip: f32,
  signed: u32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> cp: ConstantsParams;
@group(0) @binding(1) var<storage, read> xmax_in: array<f32>;
@group(0) @binding(2) var<storage, read> gates_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: Constants;

@compute @workgroup_size(1)
fn quantizer_constants() {
  let xmax = xmax_in[0];
  let z = vec4<f32>(gates_in[0], gates_in[1], gates_in[2], gates_in[3]);
  let signed = cp.signed == 1u;
  var c: Constants;
  c.hi = cp.clip * xmax;
  c.lo = select(0.0, -c.hi, signed);
  c.span = c.hi - c.lo;
  let s2 = select(xmax, 2.0 * xmax, signed) / 3.0;
  let s4 = s2 / 5.0;
  let s8 = s4 / 17.0;
  let s16 = s8 / 257.0;
  c.scales = vec4<f32>(s2, s4, s8, s16);
  c.scale4 = s16 / 65537.0;
  // G_l: the product of the gates below level l.
  let g2 = z.x * z.y;
  let g3 = g2 * z.z;
  c.factors = cp.k * vec4<f32>(1.0 - z.x, z.x * (1.0 - z.y),
                               g2 * (1.0 - z.z), g3 * (1.0 - z.w));
  c.factor4 = cp.k4 * (g3 * z.w);
  c.gates = z;
  c.clip_grad_hi = cp.clip;
  c.clip_grad_lo = select(0.0, -cp.clip, signed);
  // Forward: x2 and every level whose gates below are all non-zero.
  var lf = 1u;
  while (lf < 5u && z[lf - 1u] != 0.0) {
    lf++;
  }
  // Backward: one more level, then on while the gates stay non-zero.
  var lb = min(5u, lf + 1u);
  while (lb < 5u && z[lb - 1u] != 0.0) {
    lb++;
  }
  c.levels_forward = lf;
  c.levels_backward = lb;
  out = c;
}
`;

/**
 * The uniform block `Params` (binding 0), the constants (binding 1),
 * `opaque()` and `decompose(x, levels)`, shared by the element kernels.
 */
export const DECOMPOSE_WGSL: string = CONSTANTS_STRUCT + /* wgsl */ `
struct Params {
  length: u32,
  per_channel: u32,
  has_z2: u32,
  grid_width: u32,
  chunks_per_channel: u32,
  zero: u32,
  h: u32,
  w: u32,
  oh: u32,
  ow: u32,
  kernel: u32,
  stride: u32,
  padding: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> k: Constants;

// Hides a value from the optimiser so that a product is rounded on its own
// and never contracted into a fused multiply-add with the next addition.
fn opaque(v: f32) -> f32 {
  return bitcast<f32>(bitcast<u32>(v) ^ params.zero);
}

struct Decomposition {
  inner_lo: vec4<f32>,  // brackets 0..3 (inner_0 is the one z2 multiplies)
  inner4: f32,
  err_lo: vec4<f32>,    // rounding errors round(v) - v of levels 0..3
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
  let t1 = x - k.lo;
  let r1 = select(0.0, t1, t1 > 0.0);
  let t2 = k.span - r1;
  let r2 = select(0.0, t2, t2 > 0.0);
  let xc = k.hi - r2;
  d.inside = t1 > 0.0 && t2 > 0.0;
  d.clip_grad = select(k.clip_grad_hi,
                       select(k.clip_grad_lo, 0.0, t1 > 0.0),
                       t2 > 0.0);
  var e = vec4<f32>(0.0);
  var err = vec4<f32>(0.0);
  var e4 = 0.0;
  var err4 = 0.0;
  var r = xc;
  for (var l = 0u; l < min(levels, 4u); l++) {
    let step = level_step(r, k.scales[l]);
    e[l] = step.e;
    err[l] = step.err;
    r = step.residual;
  }
  if (levels > 4u) {
    let step = level_step(r, k.scale4);
    e4 = step.e;
    err4 = step.err;
  }
  let g = k.gates;
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
`;

/**
 * Forward: `out[i] = z2[channel(i)] inner_0(x[i])` at the forward level
 * count.
 *
 * Bindings: 0 uniform `Params`, 1 `Constants`, 2 `x`, 3 `z2` (read-only
 * storage), 4 `out` (storage). Workgroup size
 * {@link FORWARD_WORKGROUP_SIZE}, one element per invocation.
 */
export const QUANTIZER_FORWARD_WGSL: string = DECOMPOSE_WGSL + /* wgsl */ `
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> z2: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${FORWARD_WORKGROUP_SIZE})
fn quantize_forward(
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
) {
  let i = (group.y * params.grid_width + group.x) * ${FORWARD_WORKGROUP_SIZE}u + local;
  if (i >= params.length) {
    return;
  }
  var z2v = 1.0;
  if (params.has_z2 == 1u) {
    z2v = z2[i / params.per_channel];
  }
  out[i] = z2v * decompose(x[i], k.levels_forward).inner_lo.x;
}
`;

/**
 * Max-pool of the forward output without `z2`: `out[o]` is the first
 * maximum of `inner_0(x)` over window `o` (`params.length` outputs over
 * planes of `h x w`, windows `kernel` square with `stride` and implicit
 * `-inf` padding `padding`; an empty window gives `-inf`).
 *
 * Bindings: 0 uniform `Params`, 1 `Constants`, 2 `x` (read-only storage),
 * 3 `out` (storage). Workgroup size {@link FORWARD_WORKGROUP_SIZE}, one
 * output per invocation.
 */
export const QUANTIZER_POOL_WGSL: string = DECOMPOSE_WGSL + /* wgsl */ `
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(${FORWARD_WORKGROUP_SIZE})
fn quantize_pool(
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
) {
  let o = (group.y * params.grid_width + group.x) * ${FORWARD_WORKGROUP_SIZE}u + local;
  if (o >= params.length) {
    return;
  }
  let ox = o % params.ow;
  let oy = (o / params.ow) % params.oh;
  let plane = o / (params.ow * params.oh);
  var best = bitcast<f32>(0xff800000u); // -inf
  var found = false;
  for (var ky = 0u; ky < params.kernel; ky++) {
    let iy = i32(oy * params.stride + ky) - i32(params.padding);
    if (iy < 0 || iy >= i32(params.h)) {
      continue;
    }
    for (var kx = 0u; kx < params.kernel; kx++) {
      let ix = i32(ox * params.stride + kx) - i32(params.padding);
      if (ix < 0 || ix >= i32(params.w)) {
        continue;
      }
      let i = (plane * params.h + u32(iy)) * params.w + u32(ix);
      let v = decompose(x[i], k.levels_forward).inner_lo.x;
      if (v > best || !found) {
        best = v;
        found = true;
      }
    }
  }
  out[o] = best;
}
`;
