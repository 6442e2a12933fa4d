/**
 * WGSL Threefry-2x32-20 and a uniform fill kernel, the GPU twin of
 * `core/rng.ts`.
 *
 * Contract:
 * - Stream layout as in `core/rng.ts`: stream element `n` of key `k` is word
 *   `n & 1` of `threefry2x32(k, [n >>> 1, 0])`; the uniform of 32 bits `b` is
 *   `(f32(b >> 9) + 0.5) * 2^-23`, exact in float32, strictly inside (0, 1).
 * - Only u32 add, rotate and xor (wrapping), so the bits match the
 *   TypeScript generator on every device; the float conversion is exact.
 * - Invocation `j` computes block `params.first_block + j` and writes its two
 *   words to `out[2 j - params.parity]` and `out[2 j + 1 - params.parity]`
 *   where those are inside `[0, params.count)`: the fill starts at stream
 *   position `2 first_block + parity` (so offsets up to `2^33` work), and
 *   `count` need not be a multiple of anything.
 * - Bindings: 0 `Params` (uniform, 32 bytes: key0, key1, first_block,
 *   parity, count, grid_width, 2 spare u32), 1 `out` (storage, f32).
 *   Workgroup size {@link RNG_WORKGROUP_SIZE}; `ceil((count + parity) / 2)`
 *   invocations in a 2-D grid of workgroups (linear index
 *   `id.y * grid_width + id.x`).
 *
 * @module
 */

/** Invocations per workgroup of the uniform fill kernel. */
export const RNG_WORKGROUP_SIZE = 256;

/** Bytes of the uniform fill kernel's uniform block. */
export const RNG_PARAMS_BYTES = 32;

/**
 * WGSL `threefry2x32(key, counter) -> vec2<u32>` (20 rounds), usable by any
 * kernel that includes it.
 */
export const THREEFRY_WGSL: string = /* wgsl */ `
const KEY_PARITY: u32 = 0x1bd11bdau;

fn rotl(v: u32, r: u32) -> u32 {
  return (v << r) | (v >> (32u - r));
}

fn threefry_round(x: vec2<u32>, r: u32) -> vec2<u32> {
  let x0 = x.x + x.y;
  return vec2<u32>(x0, rotl(x.y, r) ^ x0);
}

fn threefry_four(x_in: vec2<u32>, r0: u32, r1: u32, r2: u32, r3: u32) -> vec2<u32> {
  var x = threefry_round(x_in, r0);
  x = threefry_round(x, r1);
  x = threefry_round(x, r2);
  return threefry_round(x, r3);
}

fn threefry2x32(key: vec2<u32>, counter: vec2<u32>) -> vec2<u32> {
  let k2 = key.x ^ key.y ^ KEY_PARITY;
  var x = counter + key;
  x = threefry_four(x, 13u, 15u, 26u, 6u);
  x += vec2<u32>(key.y, k2 + 1u);
  x = threefry_four(x, 17u, 29u, 16u, 24u);
  x += vec2<u32>(k2, key.x + 2u);
  x = threefry_four(x, 13u, 15u, 26u, 6u);
  x += vec2<u32>(key.x, key.y + 3u);
  x = threefry_four(x, 17u, 29u, 16u, 24u);
  x += vec2<u32>(key.y, k2 + 4u);
  x = threefry_four(x, 13u, 15u, 26u, 6u);
  x += vec2<u32>(k2, key.x + 5u);
  return x;
}
`;

/**
 * Fills `out` with uniforms of a key's stream (see the module contract).
 */
export const UNIFORM_FILL_WGSL: string = THREEFRY_WGSL + /* wgsl */ `
struct Params {
  key: vec2<u32>,
  first_block: u32,
  parity: u32,
  count: u32,
  grid_width: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

fn bits_to_uniform(bits: u32) -> f32 {
  return (f32(bits >> 9u) + 0.5) * 0x1p-23f;
}

@compute @workgroup_size(${RNG_WORKGROUP_SIZE})
fn uniform_fill(
  @builtin(workgroup_id) group: vec3<u32>,
  @builtin(local_invocation_index) local: u32,
) {
  let j = (group.y * params.grid_width + group.x) * ${RNG_WORKGROUP_SIZE}u + local;
  // Output positions of the block's two words, shifted up by one so that
  // the word before the start (parity 1) is index 0 and skipped unsigned.
  let shifted = 2u * j;
  if (shifted >= params.count + params.parity) {
    return;
  }
  let words = threefry2x32(params.key, vec2<u32>(params.first_block + j, 0u));
  if (shifted >= params.parity) {
    out[shifted - params.parity] = bits_to_uniform(words.x);
  }
  if (shifted + 1u - params.parity < params.count) {
    out[shifted + 1u - params.parity] = bits_to_uniform(words.y);
  }
}
`;
