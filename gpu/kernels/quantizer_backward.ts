/**
 * WGSL kernels of the residual quantizer's straight-through backward pass
 * and its reductions; the contract is that of `./quantizer.ts`.
 *
 * @module
 */

import { CONSTANTS_STRUCT, DECOMPOSE_WGSL } from "./quantizer.ts";

/**
 * Invocations per workgroup of the backward kernel. Smaller than the
 * forward's, with more elements per invocation: tree-reduction barriers are
 * expensive on llvmpipe (measured: 256 x 4 was 3x slower than 64 x 16), and
 * 64 is still a whole wavefront or two warps on real GPUs.
 */
export const BACKWARD_WORKGROUP_SIZE = 64;

/** Elements each invocation of the backward kernel handles. */
export const BACKWARD_ELEMENTS_PER_INVOCATION = 16;

/** Elements of one channel that one backward workgroup (one tile) reduces. */
export const ELEMENTS_PER_TILE = BACKWARD_WORKGROUP_SIZE *
  BACKWARD_ELEMENTS_PER_INVOCATION;

/**
 * Channels of at most this many elements are reduced one per invocation
 * (`quantize_backward_rows`) rather than one per workgroup; a float32 sum
 * of 64 terms in order is within `64 * 2^-24` of the sum of their
 * magnitudes.
 */
export const ROW_CHANNEL_LIMIT = 64;

/** float32 values per tile (and per channel) in the partial-sums buffers. */
export const PARTIALS_STRIDE = 8;

/** Chunks of a channel that one `reduce_chunks` workgroup adds. */
export const REDUCE_WORKGROUP_SIZE = 64;

/** Invocations of the single `finish_backward` workgroup. */
export const FINISH_WORKGROUP_SIZE = 256;

/** Bytes of the uniform blocks of `reduce_chunks` and `finish_backward`. */
export const REDUCE_PARAMS_BYTES = 16;

/**
 * Straight-through backward: writes `dx` and partial sums (see the module
 * contract), at the backward level count, with the `d xc / d xmax` term
 * from the first forward-count rounding errors. Two entry points:
 * `quantize_backward` gives a workgroup one tile; `quantize_backward_rows`
 * (for channels of at most {@link ROW_CHANNEL_LIMIT} elements) gives an
 * invocation one whole channel, summed in order, and writes
 * `partials[8 c ..]` directly. (llvmpipe spends about 150 us per workgroup
 * with barriers, so 70000 one-element channels as tiles take 10 s.)
 *
 * Bindings: 0 uniform `Params`, 1 `Constants`, 2 `x`, 3 `z2`, 4 `dy`
 * (read-only storage), 5 `dx`, 6 `partials` (storage). Workgroup size
 * {@link BACKWARD_WORKGROUP_SIZE}: one workgroup per tile, or per
 * {@link BACKWARD_WORKGROUP_SIZE} channels.
 */
export const QUANTIZER_BACKWARD_WGSL: string = DECOMPOSE_WGSL + /* wgsl */ `
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> z2: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> partials: array<vec4<f32>>;

const WG: u32 = ${BACKWARD_WORKGROUP_SIZE}u;
const PER_INVOCATION: u32 = ${BACKWARD_ELEMENTS_PER_INVOCATION}u;

var<workgroup> inner_sums: array<vec4<f32>, WG>;
var<workgroup> other_sums: array<vec2<f32>, WG>;

struct Sums {
  inner: vec4<f32>,  // sum dy inner_0..3
  rest: vec2<f32>,   // sum dy inner_4, sum dy dxc/dxmax
}

fn z2_of(channel: u32) -> f32 {
  if (params.has_z2 == 1u) {
    return z2[min(channel, arrayLength(&z2) - 1u)];
  }
  return 1.0;
}

// Writes dx[i] and adds element i's terms to the sums.
fn add_element(i: u32, z2v: f32, sums: Sums) -> Sums {
  let lf = k.levels_forward;
  // Only the first levels_forward rounding errors move xq with xmax.
  let f = k.factors * vec4<f32>(vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(lf));
  let f4 = select(0.0, k.factor4, lf > 4u);
  let d = decompose(x[i], k.levels_backward);
  let g = dy[i];
  dx[i] = select(0.0, g * z2v, d.inside);
  let dxc = d.clip_grad + dot(f, d.err_lo) + f4 * d.err4;
  return Sums(sums.inner + g * d.inner_lo,
              sums.rest + g * vec2<f32>(d.inner4, dxc));
}

@compute @workgroup_size(${BACKWARD_WORKGROUP_SIZE})
fn quantize_backward(
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
) {
  let tile = group.y * params.grid_width + group.x;
  let channel = tile / params.chunks_per_channel;
  let chunk = tile % params.chunks_per_channel;
  let channel_end = (channel + 1u) * params.per_channel;
  let tile_start = channel * params.per_channel + chunk * WG * PER_INVOCATION;
  let z2v = z2_of(channel);
  var sums = Sums(vec4<f32>(0.0), vec2<f32>(0.0));
  // Tiles past the end (the tail of the 2-D grid) skip the loop but still
  // join the barriers below.
  for (var n = 0u; n < PER_INVOCATION; n++) {
    let i = tile_start + n * WG + local;
    if (i < channel_end && i < params.length) {
      sums = add_element(i, z2v, sums);
    }
  }
  inner_sums[local] = sums.inner;
  other_sums[local] = sums.rest;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (local < stride) {
      inner_sums[local] += inner_sums[local + stride];
      other_sums[local] += other_sums[local + stride];
    }
    workgroupBarrier();
  }
  let tiles = (params.length / params.per_channel) * params.chunks_per_channel;
  if (local == 0u && tile < tiles) {
    partials[2u * tile] = inner_sums[0];
    partials[2u * tile + 1u] = vec4<f32>(other_sums[0], 0.0, 0.0);
  }
}

@compute @workgroup_size(${BACKWARD_WORKGROUP_SIZE})
fn quantize_backward_rows(
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
) {
  let channel = (group.y * params.grid_width + group.x) * WG + local;
  if (channel >= params.length / params.per_channel) {
    return;
  }
  let z2v = z2_of(channel);
  var sums = Sums(vec4<f32>(0.0), vec2<f32>(0.0));
  let start = channel * params.per_channel;
  for (var i = start; i < start + params.per_channel; i++) {
    sums = add_element(i, z2v, sums);
  }
  partials[2u * channel] = sums.inner;
  partials[2u * channel + 1u] = vec4<f32>(sums.rest, 0.0, 0.0);
}
`;

/**
 * Adds the partial sums of each channel's chunks in groups: input
 * `[channels][chunks_in][8]`, output `[channels][chunks_out][8]` with
 * `chunks_out = ceil(chunks_in / 64)`, one workgroup per output chunk.
 *
 * Bindings: 0 uniform (`channels, chunks_in, chunks_out, grid_width`),
 * 1 input (read-only storage), 2 output (storage).
 */
export const REDUCE_CHUNKS_WGSL: string = /* wgsl */ `
struct ReduceParams {
  channels: u32,
  chunks_in: u32,
  chunks_out: u32,
  grid_width: u32,
}

@group(0) @binding(0) var<uniform> params: ReduceParams;
@group(0) @binding(1) var<storage, read> input: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> output: array<vec4<f32>>;

const WG: u32 = ${REDUCE_WORKGROUP_SIZE}u;

var<workgroup> lo_sums: array<vec4<f32>, WG>;
var<workgroup> hi_sums: array<vec4<f32>, WG>;

@compute @workgroup_size(${REDUCE_WORKGROUP_SIZE})
fn reduce_chunks(
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
) {
  let w = group.y * params.grid_width + group.x;
  let channel = w / params.chunks_out;
  let chunk = (w % params.chunks_out) * WG + local;
  var lo = vec4<f32>(0.0);
  var hi = vec4<f32>(0.0);
  if (channel < params.channels && chunk < params.chunks_in) {
    let base = 2u * (channel * params.chunks_in + chunk);
    lo = input[base];
    hi = input[base + 1u];
  }
  lo_sums[local] = lo;
  hi_sums[local] = hi;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (local < stride) {
      lo_sums[local] += lo_sums[local + stride];
      hi_sums[local] += hi_sums[local + stride];
    }
    workgroupBarrier();
  }
  if (local == 0u && channel < params.channels) {
    output[2u * w] = lo_sums[0];
    output[2u * w + 1u] = hi_sums[0];
  }
}
`;

/**
 * Combines the per-channel sums `[channels][8]` into `dz2` `[channels]`
 * (when `has_z2`), `dgates` `[4]` and `dxmax` `[1]` (one workgroup of
 * {@link FINISH_WORKGROUP_SIZE}; each invocation takes every 256th channel,
 * then a tree adds the invocations).
 *
 * Bindings: 0 uniform (`channels, has_z2`), 1 sums, 2 `Constants`, 3 `z2`
 * (read-only storage), 4 `dz2`, 5 `dgates`, 6 `dxmax` (storage).
 */
export const FINISH_BACKWARD_WGSL: string = CONSTANTS_STRUCT + /* wgsl */ `
struct FinishParams {
  channels: u32,
  has_z2: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: FinishParams;
@group(0) @binding(1) var<storage, read> sums: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> k: Constants;
@group(0) @binding(3) var<storage, read> z2: array<f32>;
@group(0) @binding(4) var<storage, read_write> dz2: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgates: array<f32>;
@group(0) @binding(6) var<storage, read_write> dxmax: array<f32>;

const WG: u32 = ${FINISH_WORKGROUP_SIZE}u;

var<workgroup> gate_sums: array<vec4<f32>, WG>;
var<workgroup> xmax_sums: array<f32, WG>;

@compute @workgroup_size(${FINISH_WORKGROUP_SIZE})
fn finish_backward(@builtin(local_invocation_index) local: u32) {
  let z = k.gates;
  var gate_acc = vec4<f32>(0.0);
  var xmax_acc = 0.0;
  for (var c = local; c < params.channels; c += WG) {
    let lo = sums[2u * c];
    let hi = sums[2u * c + 1u];
    var z2v = 1.0;
    if (params.has_z2 == 1u) {
      z2v = z2[c];
      dz2[c] = lo.x;
    }
    // dL/dz_b = z2 (gates below b) sum(dy inner_b)
    let below = vec4<f32>(z2v, z2v * z.x, z2v * z.x * z.y, z2v * z.x * z.y * z.z);
    gate_acc += below * vec4<f32>(lo.y, lo.z, lo.w, hi.x);
    xmax_acc += z2v * hi.y;
  }
  gate_sums[local] = gate_acc;
  xmax_sums[local] = xmax_acc;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (local < stride) {
      gate_sums[local] += gate_sums[local + stride];
      xmax_sums[local] += xmax_sums[local + stride];
    }
    workgroupBarrier();
  }
  if (local == 0u) {
    let g = gate_sums[0];
    dgates[0] = g.x;
    dgates[1] = g.y;
    dgates[2] = g.z;
    dgates[3] = g.w;
    dxmax[0] = xmax_sums[0];
  }
}
`;
