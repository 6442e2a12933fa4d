/**
 * Fused Bayesian Bits quantizer kernels: forward (`xq`) and straight-through
 * backward (`dx` plus per-channel partial sums), one pass over the data.
 *
 * Contract
 * - Data: flat float32 tensors at byte offsets `x`, `dy`, `out`, `dx` in this
 *   module's memory; the tensor is `channels` contiguous blocks of
 *   `perChannel` elements (channel `c` is elements `[c*perChannel, (c+1)*perChannel)`).
 *   A call processes the element range `[begin, end)`, which may start and end
 *   anywhere (inside a channel, at any element).
 * - Alignment: none required; `v128.load`/`v128.store` are unaligned-safe.
 *   Callers get the best speed with 16-byte aligned arrays and `begin` a
 *   multiple of 4.
 * - Lengths: any. Each channel segment runs a v128 main loop (two vectors,
 *   8 elements, per step), a one-vector loop and a scalar tail (0 to 3
 *   elements), so lengths and channel sizes need not be multiples of 4.
 * - Aliasing: `out` may equal `x`, `dx` may equal `x` or `dy` (each element is
 *   read before it is written, element ranges do not overlap otherwise).
 *   Concurrent calls must use disjoint `[begin, end)` ranges and disjoint
 *   `sums` regions.
 * - `z2`: byte offset of `channels` float32 pruning gates, read only when
 *   `hasZ2` is 1; otherwise every channel's `z2` is 1.
 * - Arithmetic: float32, in the order of `core/reference.ts`, so the forward
 *   output and `dx` are bit-for-bit equal to the reference:
 *   `t1 = x - lo; r1 = max(t1, 0); t2 = span - r1; r2 = max(t2, 0); xc = hi - r2`
 *   (max as `t > 0 ? t : 0`, i.e. `f32x4.pmax(0, t)`, so NaN clips to `lo`),
 *   then per level `v = r / s` (a true division), `q = nearest(v)` (round half
 *   to even), `e = s * q`, `err = q - v`, `r = r - e`; brackets from the top
 *   `inner_l = e_l + round32(z_{l+1} * inner_{l+1})` with the gate in float64
 *   as the reference has it; `xq = z2 * inner_0`.
 *   Only `levels` levels are computed; higher levels are exact zeros.
 * - Backward sums: for every channel the range touches, six float64 values are
 *   written (overwritten, not accumulated) at `sums + 48 * (c - first)`, where
 *   `first = begin / perChannel`: `sum dy*e_l` for the levels `l = 0..4` (zero
 *   from `levelsBackward` up), then `sum dy*(clipGrad + sum_l xmaxFactor_l *
 *   err_l)`. The brackets are linear in the levels, so the caller forms
 *   `sum dy*inner_l = sum_{k >= l} (z_{l+1} ... z_k) * sum dy*e_k` itself; the
 *   backward needs no gates and keeps the brackets off its division chain.
 *   Products are summed in float32 lanes and flushed into float64 every
 *   `FLUSH` (128) elements, so the sums differ from the reference's float64 sums
 *   only by float32 rounding of short partial sums.
 * - Never allocates; imports nothing.
 */

// @ts-nocheck: AssemblyScript, not TypeScript.

/** Elements summed in float32 lanes (32 per lane) before a flush into float64. */
const FLUSH: i32 = 128;

@inline function clip(x: v128, lo: v128, span: v128, hi: v128): v128 {
  const zero = f32x4.splat(0);
  const r1 = f32x4.pmax(zero, f32x4.sub(x, lo));
  const r2 = f32x4.pmax(zero, f32x4.sub(span, r1));
  return f32x4.sub(hi, r2);
}

@inline function clipScalar(x: f32, lo: f32, span: f32, hi: f32): f32 {
  const t1 = x - lo;
  const r1 = select<f32>(t1, 0, t1 > 0);
  const t2 = span - r1;
  const r2 = select<f32>(t2, 0, t2 > 0);
  return hi - r2;
}

/**
 * `round32(g * v)` per lane where `g` is a float64 gate: the reference
 * multiplies its (float64) gate by the float32 bracket and rounds to float32.
 * With a float32-exact gate (`EXACT`), a float32 multiply gives the same bits.
 */
@inline function gateMul(g32: v128, g64: v128, v: v128, EXACT: bool): v128 {
  if (EXACT) return f32x4.mul(g32, v);
  const low = f32x4.demote_f64x2_zero(f64x2.mul(g64, f64x2.promote_low_f32x4(v)));
  const high = f32x4.demote_f64x2_zero(
    f64x2.mul(g64, f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1))),
  );
  return i32x4.shuffle(low, high, 0, 1, 4, 5);
}

@inline function gateMulScalar(g: f64, v: f32, EXACT: bool): f32 {
  return EXACT ? <f32>g * v : <f32>(g * <f64>v);
}

/**
 * Forward over one channel segment `[i, stop)` with a compile-time level
 * count `L` (the call sites pass literals, so the level tests fold away).
 */
@inline function forwardSegment(
  x: usize, out: usize, i: i32, stop: i32, z2: f32, hasZ2: bool,
  lo: f32, hi: f32, span: f32,
  s0: f32, s1: f32, s2: f32, s3: f32, s4: f32,
  g0: f64, g1: f64, g2: f64, g3: f64, gTop: f32, L: i32, EXACT: bool,
): void {
  const loV = f32x4.splat(lo);
  const hiV = f32x4.splat(hi);
  const spanV = f32x4.splat(span);
  const s0V = f32x4.splat(s0);
  const s1V = f32x4.splat(s1);
  const s2V = f32x4.splat(s2);
  const s3V = f32x4.splat(s3);
  const s4V = f32x4.splat(s4);
  const g0V = f32x4.splat(<f32>g0);
  const g1V = f32x4.splat(<f32>g1);
  const g2V = f32x4.splat(<f32>g2);
  const g3V = f32x4.splat(<f32>g3);
  const g0D = f64x2.splat(g0);
  const g1D = f64x2.splat(g1);
  const g2D = f64x2.splat(g2);
  const g3D = f64x2.splat(g3);
  const gTopV = f32x4.splat(gTop);
  const z2V = f32x4.splat(z2);
  // Two vectors per step: each vector is a chain of dependent divisions, and
  // two independent chains let the out-of-order core overlap them (about 10 %
  // faster than one). The one-vector loop below is the same arithmetic.
  for (; i + 8 <= stop; i += 8) {
    const pA = (<usize>i) << 2;
    const xcA = clip(v128.load(x + pA), loV, spanV, hiV);
    let qA = f32x4.nearest(f32x4.div(xcA, s0V));
    const e0A = f32x4.mul(s0V, qA);
    let innerA = e0A;
    if (L > 1) {
      let rA = f32x4.sub(xcA, e0A);
      qA = f32x4.nearest(f32x4.div(rA, s1V));
      const e1A = f32x4.mul(s1V, qA);
      if (L > 2) {
        rA = f32x4.sub(rA, e1A);
        qA = f32x4.nearest(f32x4.div(rA, s2V));
        const e2A = f32x4.mul(s2V, qA);
        if (L > 3) {
          rA = f32x4.sub(rA, e2A);
          qA = f32x4.nearest(f32x4.div(rA, s3V));
          const e3A = f32x4.mul(s3V, qA);
          if (L > 4) {
            rA = f32x4.sub(rA, e3A);
            qA = f32x4.nearest(f32x4.div(rA, s4V));
            const e4A = f32x4.mul(s4V, qA);
            innerA = f32x4.add(e3A, gateMul(g3V, g3D, e4A, EXACT));
          } else {
            innerA = f32x4.add(e3A, gTopV);
          }
          innerA = f32x4.add(e2A, gateMul(g2V, g2D, innerA, EXACT));
        } else {
          innerA = f32x4.add(e2A, gTopV);
        }
        innerA = f32x4.add(e1A, gateMul(g1V, g1D, innerA, EXACT));
      } else {
        innerA = f32x4.add(e1A, gTopV);
      }
      innerA = f32x4.add(e0A, gateMul(g0V, g0D, innerA, EXACT));
    } else {
      innerA = f32x4.add(e0A, gTopV);
    }
    if (hasZ2) innerA = f32x4.mul(z2V, innerA);
    v128.store(out + pA, innerA);
  
    const pB = pA + 16;
    const xcB = clip(v128.load(x + pB), loV, spanV, hiV);
    let qB = f32x4.nearest(f32x4.div(xcB, s0V));
    const e0B = f32x4.mul(s0V, qB);
    let innerB = e0B;
    if (L > 1) {
      let rB = f32x4.sub(xcB, e0B);
      qB = f32x4.nearest(f32x4.div(rB, s1V));
      const e1B = f32x4.mul(s1V, qB);
      if (L > 2) {
        rB = f32x4.sub(rB, e1B);
        qB = f32x4.nearest(f32x4.div(rB, s2V));
        const e2B = f32x4.mul(s2V, qB);
        if (L > 3) {
          rB = f32x4.sub(rB, e2B);
          qB = f32x4.nearest(f32x4.div(rB, s3V));
          const e3B = f32x4.mul(s3V, qB);
          if (L > 4) {
            rB = f32x4.sub(rB, e3B);
            qB = f32x4.nearest(f32x4.div(rB, s4V));
            const e4B = f32x4.mul(s4V, qB);
            innerB = f32x4.add(e3B, gateMul(g3V, g3D, e4B, EXACT));
          } else {
            innerB = f32x4.add(e3B, gTopV);
          }
          innerB = f32x4.add(e2B, gateMul(g2V, g2D, innerB, EXACT));
        } else {
          innerB = f32x4.add(e2B, gTopV);
        }
        innerB = f32x4.add(e1B, gateMul(g1V, g1D, innerB, EXACT));
      } else {
        innerB = f32x4.add(e1B, gTopV);
      }
      innerB = f32x4.add(e0B, gateMul(g0V, g0D, innerB, EXACT));
    } else {
      innerB = f32x4.add(e0B, gTopV);
    }
    if (hasZ2) innerB = f32x4.mul(z2V, innerB);
    v128.store(out + pB, innerB);
    }
  for (; i + 4 <= stop; i += 4) {
    const p = (<usize>i) << 2;
    const xc = clip(v128.load(x + p), loV, spanV, hiV);
    let q = f32x4.nearest(f32x4.div(xc, s0V));
    const e0 = f32x4.mul(s0V, q);
    let inner = e0;
    if (L > 1) {
      let r = f32x4.sub(xc, e0);
      q = f32x4.nearest(f32x4.div(r, s1V));
      const e1 = f32x4.mul(s1V, q);
      if (L > 2) {
        r = f32x4.sub(r, e1);
        q = f32x4.nearest(f32x4.div(r, s2V));
        const e2 = f32x4.mul(s2V, q);
        if (L > 3) {
          r = f32x4.sub(r, e2);
          q = f32x4.nearest(f32x4.div(r, s3V));
          const e3 = f32x4.mul(s3V, q);
          if (L > 4) {
            r = f32x4.sub(r, e3);
            q = f32x4.nearest(f32x4.div(r, s4V));
            const e4 = f32x4.mul(s4V, q);
            inner = f32x4.add(e3, gateMul(g3V, g3D, e4, EXACT));
          } else {
            inner = f32x4.add(e3, gTopV);
          }
          inner = f32x4.add(e2, gateMul(g2V, g2D, inner, EXACT));
        } else {
          inner = f32x4.add(e2, gTopV);
        }
        inner = f32x4.add(e1, gateMul(g1V, g1D, inner, EXACT));
      } else {
        inner = f32x4.add(e1, gTopV);
      }
      inner = f32x4.add(e0, gateMul(g0V, g0D, inner, EXACT));
    } else {
      inner = f32x4.add(e0, gTopV);
    }
    if (hasZ2) inner = f32x4.mul(z2V, inner);
    v128.store(out + p, inner);
  }
  for (; i < stop; i++) {
    const p = (<usize>i) << 2;
    const xc = clipScalar(load<f32>(x + p), lo, span, hi);
    let q = nearest<f32>(xc / s0);
    const e0 = s0 * q;
    let inner = e0;
    if (L > 1) {
      let r = xc - e0;
      q = nearest<f32>(r / s1);
      const e1 = s1 * q;
      if (L > 2) {
        r = r - e1;
        q = nearest<f32>(r / s2);
        const e2 = s2 * q;
        if (L > 3) {
          r = r - e2;
          q = nearest<f32>(r / s3);
          const e3 = s3 * q;
          if (L > 4) {
            r = r - e3;
            q = nearest<f32>(r / s4);
            const e4 = s4 * q;
            inner = e3 + gateMulScalar(g3, e4, EXACT);
          } else {
            inner = e3 + gTop;
          }
          inner = e2 + gateMulScalar(g2, inner, EXACT);
        } else {
          inner = e2 + gTop;
        }
        inner = e1 + gateMulScalar(g1, inner, EXACT);
      } else {
        inner = e1 + gTop;
      }
      inner = e0 + gateMulScalar(g0, inner, EXACT);
    } else {
      inner = e0 + gTop;
    }
    if (hasZ2) inner = z2 * inner;
    store<f32>(out + p, inner);
  }
}

/**
 * Fused forward: `out[i] = xq(x[i])` for `i` in `[begin, end)`.
 * `levels` (1 to 5) is `levelsForward`; `g0..g3` are `z4, z8, z16, z32` as
 * float64 (the reference multiplies by the unrounded gate).
 */
export function quantizeForward(
  x: usize, out: usize, begin: i32, end: i32, perChannel: i32,
  z2: usize, hasZ2: i32,
  lo: f32, hi: f32, span: f32,
  s0: f32, s1: f32, s2: f32, s3: f32, s4: f32,
  g0: f64, g1: f64, g2: f64, g3: f64, levels: i32,
): void {
  // Gates that are float32 values (0, 1, most sampled gates are not) allow
  // float32 multiplies with the very same result.
  const exact = <f64><f32>g0 == g0 && <f64><f32>g1 == g1 && <f64><f32>g2 == g2 && <f64><f32>g3 == g3;
  // The reference adds `z_L * 0` to the top computed level (`inner_L` is an
  // exact +0); keep that addition so a -0 level becomes +0 exactly as there.
  const gTop: f32 = <f32>(levels == 1 ? g0 * 0 : levels == 2 ? g1 * 0 : levels == 3 ? g2 * 0 : g3 * 0);
  let i = begin;
  let ch = begin / perChannel;
  while (i < end) {
    const chEnd = (ch + 1) * perChannel;
    const stop = chEnd < end ? chEnd : end;
    const zc: f32 = hasZ2 ? load<f32>(z2 + ((<usize>ch) << 2)) : 1;
    forwardAny(x, out, i, stop, zc, hasZ2 != 0, lo, hi, span, s0, s1, s2, s3, s4, g0, g1, g2, g3, gTop, levels, exact);
    i = stop;
    ch++;
  }
}

/** {@link forwardSegment} with the level count and exactness chosen at run time. */
@inline function forwardAny(
  x: usize, out: usize, i: i32, stop: i32, zc: f32, h: bool,
  lo: f32, hi: f32, span: f32,
  s0: f32, s1: f32, s2: f32, s3: f32, s4: f32,
  g0: f64, g1: f64, g2: f64, g3: f64, gTop: f32, levels: i32, exact: bool,
): void {
  if (exact) {
    if (levels == 1) forwardSegment(x, out, i, stop, zc, h, lo, hi, span, s0, s1, s2, s3, s4, g0, g1, g2, g3, gTop, 1, true);
    else if (levels == 2) forwardSegment(x, out, i, stop, zc, h, lo, hi, span, s0, s1, s2, s3, s4, g0, g1, g2, g3, gTop, 2, true);
    else if (levels == 3) forwardSegment(x, out, i, stop, zc, h, lo, hi, span, s0, s1, s2, s3, s4, g0, g1, g2, g3, gTop, 3, true);
    else if (levels == 4) forwardSegment(x, out, i, stop, zc, h, lo, hi, span, s0, s1, s2, s3, s4, g0, g1, g2, g3, gTop, 4, true);
    else forwardSegment(x, out, i, stop, zc, h, lo, hi, span, s0, s1, s2, s3, s4, g0, g1, g2, g3, gTop, 5, true);
  } else {
    if (levels == 1) forwardSegment(x, out, i, stop, zc, h, lo, hi, span, s0, s1, s2, s3, s4, g0, g1, g2, g3, gTop, 1, false);
    else if (levels == 2) forwardSegment(x, out, i, stop, zc, h, lo, hi, span, s0, s1, s2, s3, s4, g0, g1, g2, g3, gTop, 2, false);
    else if (levels == 3) forwardSegment(x, out, i, stop, zc, h, lo, hi, span, s0, s1, s2, s3, s4, g0, g1, g2, g3, gTop, 3, false);
    else if (levels == 4) forwardSegment(x, out, i, stop, zc, h, lo, hi, span, s0, s1, s2, s3, s4, g0, g1, g2, g3, gTop, 4, false);
    else forwardSegment(x, out, i, stop, zc, h, lo, hi, span, s0, s1, s2, s3, s4, g0, g1, g2, g3, gTop, 5, false);
  }
}

/**
 * Quantize, then max-pool (inference only): for each plane in
 * `[planeBegin, planeEnd)` of `x` (planes of `h x w`), the plane's `xq`
 * (as {@link quantizeForward}, no `z2`) goes to `scratch` (`h * w` float32
 * owned by this call), and its max-pool (`kernel`, `stride`, `padding`, the
 * first maximum of a window kept, as `maxPoolForward` of `ops.ts`) to the
 * plane's `oh x ow` outputs in `y`. Bit for bit `maxPool(quantize(x))`,
 * without the full-size `xq` in memory.
 */
export function quantizePoolForward(
  x: usize, y: usize, scratch: usize, planeBegin: i32, planeEnd: i32,
  h: i32, w: i32, oh: i32, ow: i32, kernel: i32, stride: i32, padding: i32,
  lo: f32, hi: f32, span: f32,
  s0: f32, s1: f32, s2: f32, s3: f32, s4: f32,
  g0: f64, g1: f64, g2: f64, g3: f64, levels: i32,
): void {
  const exact = <f64><f32>g0 == g0 && <f64><f32>g1 == g1 && <f64><f32>g2 == g2 && <f64><f32>g3 == g3;
  const gTop: f32 = <f32>(levels == 1 ? g0 * 0 : levels == 2 ? g1 * 0 : levels == 3 ? g2 * 0 : g3 * 0);
  const area = h * w;
  for (let plane = planeBegin; plane < planeEnd; plane++) {
    const src = x + ((<usize>plane * <usize>area) << 2);
    forwardAny(src, scratch, 0, area, 1, false, lo, hi, span, s0, s1, s2, s3, s4, g0, g1, g2, g3, gTop, levels, exact);
    const dst = y + ((<usize>plane * <usize>(oh * ow)) << 2);
    for (let oy = 0; oy < oh; oy++) {
      let ox = 0;
      const row = dst + ((<usize>(oy * ow)) << 2);
      if (kernel == 2 && stride == 2 && padding == 0) {
        // Four windows per step, the comparisons of maxPoolForward.
        for (; ox + 4 <= ow; ox += 4) {
          const t = scratch + ((<usize>(2 * oy * w + 2 * ox)) << 2);
          const b = t + ((<usize>w) << 2);
          const t0 = v128.load(t);
          const t1 = v128.load(t, 16);
          const b0 = v128.load(b);
          const b1 = v128.load(b, 16);
          let best = v128.shuffle<f32>(t0, t1, 0, 2, 4, 6);
          let v = v128.shuffle<f32>(t0, t1, 1, 3, 5, 7);
          best = v128.bitselect(v, best, f32x4.gt(v, best));
          v = v128.shuffle<f32>(b0, b1, 0, 2, 4, 6);
          best = v128.bitselect(v, best, f32x4.gt(v, best));
          v = v128.shuffle<f32>(b0, b1, 1, 3, 5, 7);
          best = v128.bitselect(v, best, f32x4.gt(v, best));
          v128.store(row + ((<usize>ox) << 2), best);
        }
      }
      for (; ox < ow; ox++) {
        let best: f32 = -Infinity;
        let any = false;
        for (let ky = 0; ky < kernel; ky++) {
          const iy = oy * stride - padding + ky;
          if (iy < 0 || iy >= h) continue;
          for (let kx = 0; kx < kernel; kx++) {
            const ix = ox * stride - padding + kx;
            if (ix < 0 || ix >= w) continue;
            const v = load<f32>(scratch + ((<usize>(iy * w + ix)) << 2));
            if (v > best || !any) {
              best = v;
              any = true;
            }
          }
        }
        store<f32>(row + ((<usize>ox) << 2), best);
      }
    }
  }
}

@inline function lanesum(v: v128): f64 {
  return (<f64>f32x4.extract_lane(v, 0) + <f64>f32x4.extract_lane(v, 1)) +
    (<f64>f32x4.extract_lane(v, 2) + <f64>f32x4.extract_lane(v, 3));
}

/**
 * Backward over one channel segment `[i, stop)`, `L` = levelsBackward as a
 * literal; writes the six float64 sums at `sums`.
 */
@inline function backwardSegment(
  x: usize, dy: usize, dx: usize, i: i32, stop: i32, z2: f32, sums: usize,
  lo: f32, hi: f32, span: f32,
  s0: f32, s1: f32, s2: f32, s3: f32, s4: f32,
  f0: f32, f1: f32, f2: f32, f3: f32, f4: f32,
  clipHi: f32, clipLo: f32, L: i32,
): void {
  const zero = f32x4.splat(0);
  const loV = f32x4.splat(lo);
  const hiV = f32x4.splat(hi);
  const spanV = f32x4.splat(span);
  const s0V = f32x4.splat(s0);
  const s1V = f32x4.splat(s1);
  const s2V = f32x4.splat(s2);
  const s3V = f32x4.splat(s3);
  const s4V = f32x4.splat(s4);
  const f0V = f32x4.splat(f0);
  const f1V = f32x4.splat(f1);
  const f2V = f32x4.splat(f2);
  const f3V = f32x4.splat(f3);
  const f4V = f32x4.splat(f4);
  const clipHiV = f32x4.splat(clipHi);
  const clipLoV = f32x4.splat(clipLo);
  const z2V = f32x4.splat(z2);
  let sum0: f64 = 0, sum1: f64 = 0, sum2: f64 = 0, sum3: f64 = 0, sum4: f64 = 0, sumX: f64 = 0;
  while (i + 4 <= stop) {
    let blockStop = i + FLUSH;
    if (blockStop > stop) blockStop = stop;
    let a0 = zero, a1 = zero, a2 = zero, a3 = zero, a4 = zero, aX = zero;
    // Two independent vectors per step, as in forwardSegment; the one-vector
    // loop below is the same arithmetic for the remainder.
    for (; i + 8 <= blockStop; i += 8) {
      const pA = (<usize>i) << 2;
      const xvA = v128.load(x + pA);
      const gA = v128.load(dy + pA);
      const t1A = f32x4.sub(xvA, loV);
      const t2A = f32x4.sub(spanV, f32x4.pmax(zero, t1A));
      const xcA = f32x4.sub(hiV, f32x4.pmax(zero, t2A));
      const in1A = f32x4.gt(t1A, zero);
      const in2A = f32x4.gt(t2A, zero);
      v128.store(dx + pA, v128.and(v128.and(in1A, in2A), f32x4.mul(gA, z2V)));
      let vA = f32x4.div(xcA, s0V);
      let qA = f32x4.nearest(vA);
      let eA = f32x4.mul(s0V, qA);
      let rA = f32x4.sub(xcA, eA);
      const clipA = v128.bitselect(v128.andnot(clipLoV, in1A), clipHiV, in2A);
      let termA = f32x4.add(clipA, f32x4.mul(f0V, f32x4.sub(qA, vA)));
      a0 = f32x4.add(a0, f32x4.mul(gA, eA));
      if (L > 1) {
        vA = f32x4.div(rA, s1V);
        qA = f32x4.nearest(vA);
        eA = f32x4.mul(s1V, qA);
        rA = f32x4.sub(rA, eA);
        termA = f32x4.add(termA, f32x4.mul(f1V, f32x4.sub(qA, vA)));
        a1 = f32x4.add(a1, f32x4.mul(gA, eA));
      }
      if (L > 2) {
        vA = f32x4.div(rA, s2V);
        qA = f32x4.nearest(vA);
        eA = f32x4.mul(s2V, qA);
        rA = f32x4.sub(rA, eA);
        termA = f32x4.add(termA, f32x4.mul(f2V, f32x4.sub(qA, vA)));
        a2 = f32x4.add(a2, f32x4.mul(gA, eA));
      }
      if (L > 3) {
        vA = f32x4.div(rA, s3V);
        qA = f32x4.nearest(vA);
        eA = f32x4.mul(s3V, qA);
        rA = f32x4.sub(rA, eA);
        termA = f32x4.add(termA, f32x4.mul(f3V, f32x4.sub(qA, vA)));
        a3 = f32x4.add(a3, f32x4.mul(gA, eA));
      }
      if (L > 4) {
        vA = f32x4.div(rA, s4V);
        qA = f32x4.nearest(vA);
        eA = f32x4.mul(s4V, qA);
        termA = f32x4.add(termA, f32x4.mul(f4V, f32x4.sub(qA, vA)));
        a4 = f32x4.add(a4, f32x4.mul(gA, eA));
      }
      aX = f32x4.add(aX, f32x4.mul(gA, termA));

      const pB = pA + 16;
      const xvB = v128.load(x + pB);
      const gB = v128.load(dy + pB);
      const t1B = f32x4.sub(xvB, loV);
      const t2B = f32x4.sub(spanV, f32x4.pmax(zero, t1B));
      const xcB = f32x4.sub(hiV, f32x4.pmax(zero, t2B));
      const in1B = f32x4.gt(t1B, zero);
      const in2B = f32x4.gt(t2B, zero);
      v128.store(dx + pB, v128.and(v128.and(in1B, in2B), f32x4.mul(gB, z2V)));
      let vB = f32x4.div(xcB, s0V);
      let qB = f32x4.nearest(vB);
      let eB = f32x4.mul(s0V, qB);
      let rB = f32x4.sub(xcB, eB);
      const clipB = v128.bitselect(v128.andnot(clipLoV, in1B), clipHiV, in2B);
      let termB = f32x4.add(clipB, f32x4.mul(f0V, f32x4.sub(qB, vB)));
      a0 = f32x4.add(a0, f32x4.mul(gB, eB));
      if (L > 1) {
        vB = f32x4.div(rB, s1V);
        qB = f32x4.nearest(vB);
        eB = f32x4.mul(s1V, qB);
        rB = f32x4.sub(rB, eB);
        termB = f32x4.add(termB, f32x4.mul(f1V, f32x4.sub(qB, vB)));
        a1 = f32x4.add(a1, f32x4.mul(gB, eB));
      }
      if (L > 2) {
        vB = f32x4.div(rB, s2V);
        qB = f32x4.nearest(vB);
        eB = f32x4.mul(s2V, qB);
        rB = f32x4.sub(rB, eB);
        termB = f32x4.add(termB, f32x4.mul(f2V, f32x4.sub(qB, vB)));
        a2 = f32x4.add(a2, f32x4.mul(gB, eB));
      }
      if (L > 3) {
        vB = f32x4.div(rB, s3V);
        qB = f32x4.nearest(vB);
        eB = f32x4.mul(s3V, qB);
        rB = f32x4.sub(rB, eB);
        termB = f32x4.add(termB, f32x4.mul(f3V, f32x4.sub(qB, vB)));
        a3 = f32x4.add(a3, f32x4.mul(gB, eB));
      }
      if (L > 4) {
        vB = f32x4.div(rB, s4V);
        qB = f32x4.nearest(vB);
        eB = f32x4.mul(s4V, qB);
        termB = f32x4.add(termB, f32x4.mul(f4V, f32x4.sub(qB, vB)));
        a4 = f32x4.add(a4, f32x4.mul(gB, eB));
      }
      aX = f32x4.add(aX, f32x4.mul(gB, termB));
    }
    for (; i + 4 <= blockStop; i += 4) {
      const p = (<usize>i) << 2;
      const xv = v128.load(x + p);
      const g = v128.load(dy + p);
      const t1 = f32x4.sub(xv, loV);
      const t2 = f32x4.sub(spanV, f32x4.pmax(zero, t1));
      const xc = f32x4.sub(hiV, f32x4.pmax(zero, t2));
      const in1 = f32x4.gt(t1, zero);
      const in2 = f32x4.gt(t2, zero);
      v128.store(dx + p, v128.and(v128.and(in1, in2), f32x4.mul(g, z2V)));
      let v = f32x4.div(xc, s0V);
      let q = f32x4.nearest(v);
      let e = f32x4.mul(s0V, q);
      let r = f32x4.sub(xc, e);
      const clip = v128.bitselect(v128.andnot(clipLoV, in1), clipHiV, in2);
      let term = f32x4.add(clip, f32x4.mul(f0V, f32x4.sub(q, v)));
      a0 = f32x4.add(a0, f32x4.mul(g, e));
      if (L > 1) {
        v = f32x4.div(r, s1V);
        q = f32x4.nearest(v);
        e = f32x4.mul(s1V, q);
        r = f32x4.sub(r, e);
        term = f32x4.add(term, f32x4.mul(f1V, f32x4.sub(q, v)));
        a1 = f32x4.add(a1, f32x4.mul(g, e));
      }
      if (L > 2) {
        v = f32x4.div(r, s2V);
        q = f32x4.nearest(v);
        e = f32x4.mul(s2V, q);
        r = f32x4.sub(r, e);
        term = f32x4.add(term, f32x4.mul(f2V, f32x4.sub(q, v)));
        a2 = f32x4.add(a2, f32x4.mul(g, e));
      }
      if (L > 3) {
        v = f32x4.div(r, s3V);
        q = f32x4.nearest(v);
        e = f32x4.mul(s3V, q);
        r = f32x4.sub(r, e);
        term = f32x4.add(term, f32x4.mul(f3V, f32x4.sub(q, v)));
        a3 = f32x4.add(a3, f32x4.mul(g, e));
      }
      if (L > 4) {
        v = f32x4.div(r, s4V);
        q = f32x4.nearest(v);
        e = f32x4.mul(s4V, q);
        term = f32x4.add(term, f32x4.mul(f4V, f32x4.sub(q, v)));
        a4 = f32x4.add(a4, f32x4.mul(g, e));
      }
      aX = f32x4.add(aX, f32x4.mul(g, term));
    }
    sum0 += lanesum(a0);
    if (L > 1) sum1 += lanesum(a1);
    if (L > 2) sum2 += lanesum(a2);
    if (L > 3) sum3 += lanesum(a3);
    if (L > 4) sum4 += lanesum(a4);
    sumX += lanesum(aX);
  }
  for (; i < stop; i++) {
    const p = (<usize>i) << 2;
    const g = load<f32>(dy + p);
    const t1 = load<f32>(x + p) - lo;
    const t2 = span - select<f32>(t1, 0, t1 > 0);
    const xc = hi - select<f32>(t2, 0, t2 > 0);
    store<f32>(dx + p, t1 > 0 && t2 > 0 ? g * z2 : 0);
    const clipGrad: f32 = t2 > 0 ? (t1 > 0 ? 0 : clipLo) : clipHi;
    let v = xc / s0;
    let q = nearest<f32>(v);
    let e = s0 * q;
    let r = xc - e;
    let term: f32 = clipGrad + f0 * (q - v);
    sum0 += <f64>g * <f64>e;
    if (L > 1) {
      v = r / s1;
      q = nearest<f32>(v);
      e = s1 * q;
      r = r - e;
      term += f1 * (q - v);
      sum1 += <f64>g * <f64>e;
    }
    if (L > 2) {
      v = r / s2;
      q = nearest<f32>(v);
      e = s2 * q;
      r = r - e;
      term += f2 * (q - v);
      sum2 += <f64>g * <f64>e;
    }
    if (L > 3) {
      v = r / s3;
      q = nearest<f32>(v);
      e = s3 * q;
      r = r - e;
      term += f3 * (q - v);
      sum3 += <f64>g * <f64>e;
    }
    if (L > 4) {
      v = r / s4;
      q = nearest<f32>(v);
      e = s4 * q;
      term += f4 * (q - v);
      sum4 += <f64>g * <f64>e;
    }
    sumX += <f64>g * <f64>term;
  }
  store<f64>(sums, sum0);
  store<f64>(sums, sum1, 8);
  store<f64>(sums, sum2, 16);
  store<f64>(sums, sum3, 24);
  store<f64>(sums, sum4, 32);
  store<f64>(sums, sumX, 40);
}

/**
 * Fused backward over `[begin, end)`: writes `dx` (bit-for-bit the reference:
 * `inside ? dy * z2 : 0`) and six float64 sums per touched channel (see the
 * contract above). `levelsForward` limits the `xmaxFactor` terms (`f0..f4`
 * above it are treated as zero), `levelsBackward` the levels computed.
 */
export function quantizeBackward(
  x: usize, dy: usize, dx: usize, begin: i32, end: i32, perChannel: i32,
  z2: usize, hasZ2: i32,
  lo: f32, hi: f32, span: f32,
  s0: f32, s1: f32, s2: f32, s3: f32, s4: f32,
  f0: f32, f1: f32, f2: f32, f3: f32, f4: f32,
  clipHi: f32, clipLo: f32, levelsForward: i32, levelsBackward: i32,
  sums: usize,
): void {
  // Factors above levelsForward multiply exact zeros in the reference.
  if (levelsForward < 2) f1 = 0;
  if (levelsForward < 3) f2 = 0;
  if (levelsForward < 4) f3 = 0;
  if (levelsForward < 5) f4 = 0;
  let i = begin;
  const first = begin / perChannel;
  let ch = first;
  while (i < end) {
    const chEnd = (ch + 1) * perChannel;
    const stop = chEnd < end ? chEnd : end;
    const zc: f32 = hasZ2 ? load<f32>(z2 + ((<usize>ch) << 2)) : 1;
    const out = sums + (<usize>(ch - first)) * 48;
    const L = levelsBackward;
    if (L == 1) backwardSegment(x, dy, dx, i, stop, zc, out, lo, hi, span, s0, s1, s2, s3, s4, f0, f1, f2, f3, f4, clipHi, clipLo, 1);
    else if (L == 2) backwardSegment(x, dy, dx, i, stop, zc, out, lo, hi, span, s0, s1, s2, s3, s4, f0, f1, f2, f3, f4, clipHi, clipLo, 2);
    else if (L == 3) backwardSegment(x, dy, dx, i, stop, zc, out, lo, hi, span, s0, s1, s2, s3, s4, f0, f1, f2, f3, f4, clipHi, clipLo, 3);
    else if (L == 4) backwardSegment(x, dy, dx, i, stop, zc, out, lo, hi, span, s0, s1, s2, s3, s4, f0, f1, f2, f3, f4, clipHi, clipLo, 4);
    else backwardSegment(x, dy, dx, i, stop, zc, out, lo, hi, span, s0, s1, s2, s3, s4, f0, f1, f2, f3, f4, clipHi, clipLo, 5);
    i = stop;
    ch++;
  }
}
