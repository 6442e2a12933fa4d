/**
 * Threefry-2x32-20 counter-based random numbers, bit-for-bit the stream of
 * `core/rng.ts`.
 *
 * Contract
 * - Stream layout: element `i` of the stream of key `(k0, k1)` is word `i & 1`
 *   of `threefry2x32((k0, k1), (i >>> 1, 0))`; a uniform is
 *   `((bits >>> 9) + 0.5) * 2^-23`, an exact float32 strictly inside (0, 1).
 * - `fillUniform(out, count, k0, k1, offsetLo, offsetHi)` writes stream
 *   elements `offset .. offset + count - 1` (`offset = offsetHi * 2^32 +
 *   offsetLo`, below 2^33) as float32 at byte offset `out`.
 * - Alignment: none required. Lengths: any; a v128 main loop makes 8 numbers
 *   (4 blocks) per step from an even stream position, scalar code does an odd
 *   first element and the tail.
 * - Aliasing: writes only `[out, out + 4 * count)`. Never allocates.
 */

// @ts-nocheck: AssemblyScript, not TypeScript.

const KEY_PARITY: u32 = 0x1bd11bda;

@inline function rotl(x: u32, r: i32): u32 {
  return (x << r) | (x >>> (32 - r));
}

@inline function rotlV(x: v128, r: i32): v128 {
  return v128.or(i32x4.shl(x, r), i32x4.shr_u(x, 32 - r));
}


@inline function mixScalar4(x0: u32, x1: u32, r0: i32, r1: i32, r2: i32, r3: i32): u64 {
  x0 += x1; x1 = rotl(x1, r0) ^ x0;
  x0 += x1; x1 = rotl(x1, r1) ^ x0;
  x0 += x1; x1 = rotl(x1, r2) ^ x0;
  x0 += x1; x1 = rotl(x1, r3) ^ x0;
  return (<u64>x1 << 32) | <u64>x0;
}

/** Threefry-2x32-20 of one block: `(word1 << 32) | word0`. */
export function threefry2x32(k0: u32, k1: u32, c0: u32, c1: u32): u64 {
  const k2 = k0 ^ k1 ^ KEY_PARITY;
  let x0 = c0 + k0;
  let x1 = c1 + k1;
  let m: u64;
  m = mixScalar4(x0, x1, 13, 15, 26, 6);
  x0 = <u32>m + k1; x1 = <u32>(m >>> 32) + k2 + 1;
  m = mixScalar4(x0, x1, 17, 29, 16, 24);
  x0 = <u32>m + k2; x1 = <u32>(m >>> 32) + k0 + 2;
  m = mixScalar4(x0, x1, 13, 15, 26, 6);
  x0 = <u32>m + k0; x1 = <u32>(m >>> 32) + k1 + 3;
  m = mixScalar4(x0, x1, 17, 29, 16, 24);
  x0 = <u32>m + k1; x1 = <u32>(m >>> 32) + k2 + 4;
  m = mixScalar4(x0, x1, 13, 15, 26, 6);
  x0 = <u32>m + k2; x1 = <u32>(m >>> 32) + k0 + 5;
  return (<u64>x1 << 32) | <u64>x0;
}

@inline function toUniform(bits: u32): f32 {
  return (<f32>(bits >>> 9) + 0.5) * 1.1920928955078125e-7;
}

@inline function toUniformV(bits: v128): v128 {
  const f = f32x4.convert_i32x4_s(i32x4.shr_u(bits, 9));
  return f32x4.mul(f32x4.add(f, f32x4.splat(0.5)), f32x4.splat(1.1920928955078125e-7));
}

@inline function uniformAt(k0: u32, k1: u32, index: u64): f32 {
  const block = threefry2x32(k0, k1, <u32>(index >>> 1), 0);
  return toUniform((index & 1) ? <u32>(block >>> 32) : <u32>block);
}

/** Writes `count` uniforms of the stream of `(k0, k1)` from `offsetHi:offsetLo`. */
export function fillUniform(out: usize, count: i32, k0: u32, k1: u32, offsetLo: u32, offsetHi: u32): void {
  let index: u64 = ((<u64>offsetHi) << 32) | <u64>offsetLo;
  let j = 0;
  if (count > 0 && (index & 1)) {
    store<f32>(out, uniformAt(k0, k1, index));
    j = 1;
    index++;
  }
  const k2 = k0 ^ k1 ^ KEY_PARITY;
  const k0V = i32x4.splat(k0);
  const k1V = i32x4.splat(k1);
  const k2V = i32x4.splat(k2);
  for (; j + 8 <= count; j += 8) {
    const block = <u32>(index >>> 1);
    let x0 = i32x4.add(i32x4.splat(block), i32x4(0, 1, 2, 3));
    x0 = i32x4.add(x0, k0V);
    let x1 = k1V;
    for (let group = 1; group <= 5; group++) {
      const odd = group & 1;
      x0 = i32x4.add(x0, x1); x1 = v128.xor(rotlV(x1, odd ? 13 : 17), x0);
      x0 = i32x4.add(x0, x1); x1 = v128.xor(rotlV(x1, odd ? 15 : 29), x0);
      x0 = i32x4.add(x0, x1); x1 = v128.xor(rotlV(x1, odd ? 26 : 16), x0);
      x0 = i32x4.add(x0, x1); x1 = v128.xor(rotlV(x1, odd ? 6 : 24), x0);
      const phase = group % 3;
      const a = phase == 1 ? k1V : phase == 2 ? k2V : k0V;
      const b = phase == 1 ? k2V : phase == 2 ? k0V : k1V;
      x0 = i32x4.add(x0, a);
      x1 = i32x4.add(i32x4.add(x1, b), i32x4.splat(group));
    }
    const p = out + ((<usize>j) << 2);
    v128.store(p, toUniformV(i32x4.shuffle(x0, x1, 0, 4, 1, 5)));
    v128.store(p, toUniformV(i32x4.shuffle(x0, x1, 2, 6, 3, 7)), 16);
    index += 8;
  }
  for (; j < count; j++) {
    store<f32>(out + ((<usize>j) << 2), uniformAt(k0, k1, index));
    index++;
  }
}
