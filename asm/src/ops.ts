/**
 * Training-op kernels: the elementwise activations, pools, batch norm,
 * softmax cross-entropy, im2col / col2im and the layout transposes of the
 * conv GEMM path, the bias add and bias-gradient reductions, and the Adam
 * update. Each one's plain-TypeScript twin is in `core/ops/*.ts` or
 * `core/optim.ts`; `tests/ops_kernels_test.ts` checks them against it.
 *
 * Contract (every kernel)
 * - Pointer arguments are byte offsets of arrays in this module's memory
 *   (float32 unless said otherwise; labels and argmax are int32, batch-norm
 *   statistics float64); no alignment required (16-byte aligned is fastest).
 * - Each kernel computes one range (`begin`/`end` elements, planes, rows,
 *   samples, channels or columns, as named) so threads can share a call by
 *   disjoint ranges. Inputs and outputs must not overlap unless said; no
 *   output's old contents are read (outputs that accumulate zero their own
 *   range first). Never allocates. Any length works: v128 main loops with
 *   scalar tails.
 * - Rounding: every kernel keeps its reference's summation order, so the
 *   results are the reference's bit for bit, except where only float64
 *   rounding could differ: softmax's `exp` and `log` are AssemblyScript's
 *   (V8 has its own), and batch-norm statistics square with `d * d` where
 *   the reference writes `d ** 2`. float64 is used exactly where the
 *   reference computes in float64 (JavaScript numbers) and rounds once on
 *   storing into a Float32Array; float32 sums (`+=` into a Float32Array)
 *   stay float32 in the same order (v128 lanes over independent columns or
 *   pixels, never across one sum). That is also why the float64 sums of
 *   batch norm and the average pool are scalar chains.
 * - `conv2d`'s fused GEMM path (`WasmBackend.kernels.conv2dGemmForward` /
 *   `conv2dGemmBackward`) is these kernels and `gemm.ts` chained on the
 *   host, with the column matrix left in this memory.
 */

// @ts-nocheck: AssemblyScript, not TypeScript.

@inline function f32At(base: usize, i: i32): usize {
  return base + ((<usize>i) << 2);
}

/** Zeroes float32 elements `[begin, end)` of `p`. */
function zeroF32(p: usize, begin: i32, end: i32): void {
  const zero = f32x4.splat(0);
  let i = begin;
  for (; i + 4 <= end; i += 4) v128.store(f32At(p, i), zero);
  for (; i < end; i++) store<f32>(f32At(p, i), 0);
}

// ---------------------------------------------------------------------------
// Activations. kind: 0 relu forward, 1 relu backward, 2 relu6 forward,
// 3 relu6 backward. Forward: out = f(x). Backward: out = x in the open
// range ? g : 0. NaN inputs give 0, as the reference's comparisons do.
// `out` may equal `x` or `g`.

/** One of the four activation kernels on elements `[begin, end)`. */
export function activation(kind: i32, x: usize, g: usize, out: usize, begin: i32, end: i32): void {
  const zero = f32x4.splat(0);
  const six = f32x4.splat(6);
  let i = begin;
  for (; i + 4 <= end; i += 4) {
    const v = v128.load(f32At(x, i));
    const pos = f32x4.gt(v, zero);
    let r: v128;
    if (kind == 0) {
      r = v128.and(v, pos);
    } else if (kind == 1) {
      r = v128.and(v128.load(f32At(g, i)), pos);
    } else if (kind == 2) {
      r = v128.and(v128.bitselect(v, six, f32x4.lt(v, six)), pos);
    } else {
      r = v128.and(v128.load(f32At(g, i)), v128.and(pos, f32x4.lt(v, six)));
    }
    v128.store(f32At(out, i), r);
  }
  for (; i < end; i++) {
    const v = load<f32>(f32At(x, i));
    let r: f32 = 0;
    if (kind == 0) {
      if (v > 0) r = v;
    } else if (kind == 1) {
      if (v > 0) r = load<f32>(f32At(g, i));
    } else if (kind == 2) {
      if (v > 0) r = v < 6 ? v : 6;
    } else {
      if (v > 0 && v < 6) r = load<f32>(f32At(g, i));
    }
    store<f32>(f32At(out, i), r);
  }
}

// ---------------------------------------------------------------------------
// Max-pool. x: planes of h x w; y, argmax (int32, index into x): planes of
// oh x ow. A window's first element (in row-major window order) inside the
// input starts the max; later ones replace it only when strictly greater
// (so the first maximum wins and a NaN first element stays).

/** Max-pool forward on planes `[planeBegin, planeEnd)`. */
export function maxPoolForward(
  x: usize, y: usize, argmax: usize, planeBegin: i32, planeEnd: i32,
  h: i32, w: i32, oh: i32, ow: i32, kernel: i32, stride: i32, padding: i32,
): void {
  for (let plane = planeBegin; plane < planeEnd; plane++) {
    const xBase = plane * h * w;
    const yBase = plane * oh * ow;
    for (let oy = 0; oy < oh; oy++) {
      let ox = 0;
      const o0 = yBase + oy * ow;
      if (kernel == 2 && stride == 2 && padding == 0) {
        // Four windows per step: even and odd columns of two input rows.
        const top = xBase + 2 * oy * w;
        const first = i32x4(0, 2, 4, 6);
        const right = i32x4.splat(1);
        const down = i32x4.splat(w);
        for (; ox + 4 <= ow; ox += 4) {
          const t = f32At(x, top + 2 * ox);
          const b = t + ((<usize>w) << 2);
          const t0 = v128.load(t);
          const t1 = v128.load(t, 16);
          const b0 = v128.load(b);
          const b1 = v128.load(b, 16);
          const i00 = i32x4.add(i32x4.splat(top + 2 * ox), first);
          let best = v128.shuffle<f32>(t0, t1, 0, 2, 4, 6);
          let at = i00;
          let v = v128.shuffle<f32>(t0, t1, 1, 3, 5, 7);
          let m = f32x4.gt(v, best);
          best = v128.bitselect(v, best, m);
          at = v128.bitselect(i32x4.add(i00, right), at, m);
          v = v128.shuffle<f32>(b0, b1, 0, 2, 4, 6);
          m = f32x4.gt(v, best);
          best = v128.bitselect(v, best, m);
          at = v128.bitselect(i32x4.add(i00, down), at, m);
          v = v128.shuffle<f32>(b0, b1, 1, 3, 5, 7);
          m = f32x4.gt(v, best);
          best = v128.bitselect(v, best, m);
          at = v128.bitselect(i32x4.add(i32x4.add(i00, down), right), at, m);
          v128.store(f32At(y, o0 + ox), best);
          v128.store(f32At(argmax, o0 + ox), at);
        }
      }
      for (; ox < ow; ox++) {
        let best: f32 = -Infinity;
        let at: i32 = -1;
        for (let ky = 0; ky < kernel; ky++) {
          const iy = oy * stride - padding + ky;
          if (iy < 0 || iy >= h) continue;
          for (let kx = 0; kx < kernel; kx++) {
            const ix = ox * stride - padding + kx;
            if (ix < 0 || ix >= w) continue;
            const i = xBase + iy * w + ix;
            const v = load<f32>(f32At(x, i));
            if (v > best || at < 0) {
              best = v;
              at = i;
            }
          }
        }
        store<f32>(f32At(y, o0 + ox), best);
        store<i32>(f32At(argmax, o0 + ox), at);
      }
    }
  }
}

/**
 * Max-pool backward on planes `[planeBegin, planeEnd)`: zeroes those planes
 * of `dx`, then `dx[argmax[o]] += g[o]` in output order (argmax stays
 * inside its plane).
 */
export function maxPoolBackward(
  g: usize, argmax: usize, dx: usize, planeBegin: i32, planeEnd: i32,
  inPerPlane: i32, outPerPlane: i32,
): void {
  zeroF32(dx, planeBegin * inPerPlane, planeEnd * inPerPlane);
  const end = planeEnd * outPerPlane;
  for (let o = planeBegin * outPerPlane; o < end; o++) {
    const p = f32At(dx, load<i32>(f32At(argmax, o)));
    store<f32>(p, load<f32>(p) + load<f32>(f32At(g, o)));
  }
}

// ---------------------------------------------------------------------------
// Global average pool: y[p] = (float64 sum of plane p in order) / area.

/** Global average pool forward on planes `[planeBegin, planeEnd)`. */
export function avgPoolForward(x: usize, y: usize, planeBegin: i32, planeEnd: i32, area: i32): void {
  for (let p = planeBegin; p < planeEnd; p++) {
    let s: f64 = 0;
    const base = p * area;
    for (let i = 0; i < area; i++) s += <f64>load<f32>(f32At(x, base + i));
    store<f32>(f32At(y, p), <f32>(s / <f64>area));
  }
}

/** Global average pool backward: plane p of dx filled with g[p] / area. */
export function avgPoolBackward(g: usize, dx: usize, planeBegin: i32, planeEnd: i32, area: i32): void {
  for (let p = planeBegin; p < planeEnd; p++) {
    const value = <f32>(<f64>load<f32>(f32At(g, p)) / <f64>area);
    const v = f32x4.splat(value);
    const base = p * area;
    let i = 0;
    for (; i + 4 <= area; i += 4) v128.store(f32At(dx, base + i), v);
    for (; i < area; i++) store<f32>(f32At(dx, base + i), value);
  }
}

// ---------------------------------------------------------------------------
// Batch norm over axis 1 of [n, c, area]. Statistics (float64 `mean`,
// `variance`, `invStd` arrays) and the per-channel sums are float64 summed
// in the reference's order (sample, then pixel), so scalar; the elementwise
// parts are float64x2 (identical rounding).

/** Batch mean and biased variance of channels `[chBegin, chEnd)` (float64 outputs). */
export function batchNormStats(
  x: usize, mean: usize, variance: usize, chBegin: i32, chEnd: i32,
  n: i32, c: i32, area: i32,
): void {
  const count = <f64>n * <f64>area;
  for (let ch = chBegin; ch < chEnd; ch++) {
    let s1: f64 = 0;
    for (let s = 0; s < n; s++) {
      const base = (s * c + ch) * area;
      for (let p = 0; p < area; p++) s1 += <f64>load<f32>(f32At(x, base + p));
    }
    const mu = s1 / count;
    let s2: f64 = 0;
    for (let s = 0; s < n; s++) {
      const base = (s * c + ch) * area;
      for (let p = 0; p < area; p++) {
        const d = <f64>load<f32>(f32At(x, base + p)) - mu;
        s2 += d * d;
      }
    }
    store<f64>(mean + ((<usize>ch) << 3), mu);
    store<f64>(variance + ((<usize>ch) << 3), s2 / count);
  }
}

/**
 * `xhat = (x - mean) * invStd` and `y = gamma * xhat + beta` (xhat rounded
 * to float32 first, as stored by the reference) for channels `[chBegin, chEnd)`.
 */
export function batchNormApply(
  x: usize, xhat: usize, y: usize, mean: usize, invStd: usize, gamma: usize, beta: usize,
  chBegin: i32, chEnd: i32, n: i32, c: i32, area: i32,
): void {
  for (let s = 0; s < n; s++) {
    for (let ch = chBegin; ch < chEnd; ch++) {
      const mu = load<f64>(mean + ((<usize>ch) << 3));
      const is = load<f64>(invStd + ((<usize>ch) << 3));
      const gm = <f64>load<f32>(f32At(gamma, ch));
      const bt = <f64>load<f32>(f32At(beta, ch));
      const muV = f64x2.splat(mu);
      const isV = f64x2.splat(is);
      const gmV = f64x2.splat(gm);
      const btV = f64x2.splat(bt);
      const base = (s * c + ch) * area;
      let p = 0;
      for (; p + 4 <= area; p += 4) {
        const v = v128.load(f32At(x, base + p));
        const lo = f64x2.promote_low_f32x4(v);
        const hi = f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1));
        const hLo = f32x4.demote_f64x2_zero(f64x2.mul(f64x2.sub(lo, muV), isV));
        const hHi = f32x4.demote_f64x2_zero(f64x2.mul(f64x2.sub(hi, muV), isV));
        const yLo = f32x4.demote_f64x2_zero(f64x2.add(f64x2.mul(gmV, f64x2.promote_low_f32x4(hLo)), btV));
        const yHi = f32x4.demote_f64x2_zero(f64x2.add(f64x2.mul(gmV, f64x2.promote_low_f32x4(hHi)), btV));
        v128.store(f32At(xhat, base + p), i32x4.shuffle(hLo, hHi, 0, 1, 4, 5));
        v128.store(f32At(y, base + p), i32x4.shuffle(yLo, yHi, 0, 1, 4, 5));
      }
      for (; p < area; p++) {
        const h = <f32>((<f64>load<f32>(f32At(x, base + p)) - mu) * is);
        store<f32>(f32At(xhat, base + p), h);
        store<f32>(f32At(y, base + p), <f32>(gm * <f64>h + bt));
      }
    }
  }
}

/**
 * Batch-norm backward for channels `[chBegin, chEnd)`: `dbeta = sum g`,
 * `dgamma = sum g xhat` (float64 sums in reference order, rounded to
 * float32), and `dx` (train: `(gamma invStd / count) (count g - dbeta -
 * xhat dgamma)`, with the float64 sums; eval: `g gamma invStd`).
 */
export function batchNormBackward(
  g: usize, xhat: usize, dx: usize, gamma: usize, invStd: usize, dgamma: usize, dbeta: usize,
  chBegin: i32, chEnd: i32, n: i32, c: i32, area: i32, train: i32,
): void {
  const count = <f64>n * <f64>area;
  for (let ch = chBegin; ch < chEnd; ch++) {
    let sg: f64 = 0;
    let sgx: f64 = 0;
    for (let s = 0; s < n; s++) {
      const base = (s * c + ch) * area;
      for (let p = 0; p < area; p++) {
        const gv = <f64>load<f32>(f32At(g, base + p));
        sg += gv;
        sgx += gv * <f64>load<f32>(f32At(xhat, base + p));
      }
    }
    store<f32>(f32At(dgamma, ch), <f32>sgx);
    store<f32>(f32At(dbeta, ch), <f32>sg);
    const gm = <f64>load<f32>(f32At(gamma, ch));
    const is = load<f64>(invStd + ((<usize>ch) << 3));
    // train: factor * (count * g - sg - xhat * sgx); eval: (g * gamma) * invStd.
    const factor = f64x2.splat(gm * is / count);
    const countV = f64x2.splat(count);
    const sgV = f64x2.splat(sg);
    const sgxV = f64x2.splat(sgx);
    const gmV = f64x2.splat(gm);
    const isV = f64x2.splat(is);
    for (let s = 0; s < n; s++) {
      const base = (s * c + ch) * area;
      let p = 0;
      for (; p + 2 <= area; p += 2) {
        const gv = f64x2.promote_low_f32x4(v128.load64_zero(f32At(g, base + p)));
        let r: v128;
        if (train != 0) {
          const hv = f64x2.promote_low_f32x4(v128.load64_zero(f32At(xhat, base + p)));
          r = f64x2.mul(factor, f64x2.sub(f64x2.sub(f64x2.mul(countV, gv), sgV), f64x2.mul(hv, sgxV)));
        } else {
          r = f64x2.mul(f64x2.mul(gv, gmV), isV);
        }
        v128.store64_lane(f32At(dx, base + p), f32x4.demote_f64x2_zero(r), 0);
      }
      for (; p < area; p++) {
        const gv = <f64>load<f32>(f32At(g, base + p));
        let r: f64;
        if (train != 0) {
          const hv = <f64>load<f32>(f32At(xhat, base + p));
          r = (gm * is / count) * (count * gv - sg - hv * sgx);
        } else {
          r = gv * gm * is;
        }
        store<f32>(f32At(dx, base + p), <f32>r);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Softmax cross-entropy over rows of k logits, float64 as the reference
// (max-shifted log-sum-exp). Single-threaded (the work is tiny).

/**
 * Writes the softmax `probs` of each of `n` rows and returns the summed
 * (not averaged) loss `sum_i log(sum_j exp(z_ij - max_i)) + max_i - z_i,label`.
 * Labels are int32 in `[0, k)` (checked by the caller).
 */
export function softmaxForward(z: usize, labels: usize, probs: usize, n: i32, k: i32): f64 {
  let total: f64 = 0;
  for (let i = 0; i < n; i++) {
    const row = i * k;
    let max: f64 = -Infinity;
    for (let j = 0; j < k; j++) max = Math.max(max, <f64>load<f32>(f32At(z, row + j)));
    let s: f64 = 0;
    for (let j = 0; j < k; j++) s += Math.exp(<f64>load<f32>(f32At(z, row + j)) - max);
    for (let j = 0; j < k; j++) {
      store<f32>(f32At(probs, row + j), <f32>(Math.exp(<f64>load<f32>(f32At(z, row + j)) - max) / s));
    }
    const label = load<i32>(f32At(labels, i));
    total += Math.log(s) + max - <f64>load<f32>(f32At(z, row + label));
  }
  return total;
}

/** `dz_ij = (scale * (probs_ij - [j == label_i])) / n` in float64, rounded once. */
export function softmaxBackward(probs: usize, labels: usize, dz: usize, n: i32, k: i32, scale: f64): void {
  for (let i = 0; i < n; i++) {
    const label = load<i32>(f32At(labels, i));
    for (let j = 0; j < k; j++) {
      const q = i * k + j;
      const hot: f64 = j == label ? 1 : 0;
      store<f32>(f32At(dz, q), <f32>((scale * (<f64>load<f32>(f32At(probs, q)) - hot)) / <f64>n));
    }
  }
}

// ---------------------------------------------------------------------------
// im2col / col2im (groups 1, dilation 1). cols is [n * oh * ow, c * kh * kw],
// one row per output pixel (sample-major), taps in weight order; padding
// taps are 0 in cols and dropped by col2im.

/** Copies `count` floats from `src` to `dst` (v128 then scalar). */
@inline function copyRun(src: usize, dst: usize, count: i32): void {
  let k = 0;
  for (; k + 4 <= count; k += 4) v128.store(f32At(dst, k), v128.load(f32At(src, k)));
  for (; k < count; k++) store<f32>(f32At(dst, k), load<f32>(f32At(src, k)));
}

/** Rows `[rowBegin, rowEnd)` of the column matrix of `x` `[n, c, h, w]`. */
export function im2col(
  x: usize, cols: usize, rowBegin: i32, rowEnd: i32,
  c: i32, h: i32, w: i32, kh: i32, kw: i32, oh: i32, ow: i32, stride: i32, padding: i32,
): void {
  const taps = c * kh * kw;
  const pixels = oh * ow;
  for (let r = rowBegin; r < rowEnd; r++) {
    const s = r / pixels;
    const rest = r - s * pixels;
    const oy = rest / ow;
    const ox = rest - oy * ow;
    const x0 = ox * stride - padding;
    const inside = x0 >= 0 && x0 + kw <= w;
    let q = r * taps;
    for (let ch = 0; ch < c; ch++) {
      const plane = (s * c + ch) * h;
      for (let ky = 0; ky < kh; ky++, q += kw) {
        const iy = oy * stride - padding + ky;
        const dst = f32At(cols, q);
        if (iy < 0 || iy >= h) {
          for (let kx = 0; kx < kw; kx++) store<f32>(dst + ((<usize>kx) << 2), 0);
          continue;
        }
        const row = (plane + iy) * w;
        if (inside) {
          copyRun(f32At(x, row + x0), dst, kw);
        } else {
          for (let kx = 0; kx < kw; kx++) {
            const ix = x0 + kx;
            const v: f32 = ix >= 0 && ix < w ? load<f32>(f32At(x, row + ix)) : 0;
            store<f32>(dst + ((<usize>kx) << 2), v);
          }
        }
      }
    }
  }
}

/**
 * Samples `[sampleBegin, sampleEnd)` of `x = col2im(cols)`: zeroes them,
 * then adds every column entry into its pixel in the reference's order
 * (rows, then taps), four taps of a kernel row at a time.
 */
export function col2im(
  cols: usize, x: usize, sampleBegin: i32, sampleEnd: i32,
  c: i32, h: i32, w: i32, kh: i32, kw: i32, oh: i32, ow: i32, stride: i32, padding: i32,
): void {
  const taps = c * kh * kw;
  zeroF32(x, sampleBegin * c * h * w, sampleEnd * c * h * w);
  for (let s = sampleBegin; s < sampleEnd; s++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        let q = ((s * oh + oy) * ow + ox) * taps;
        const x0 = ox * stride - padding;
        const inside = x0 >= 0 && x0 + kw <= w;
        for (let ch = 0; ch < c; ch++) {
          const plane = (s * c + ch) * h;
          for (let ky = 0; ky < kh; ky++, q += kw) {
            const iy = oy * stride - padding + ky;
            if (iy < 0 || iy >= h) continue;
            const row = (plane + iy) * w;
            const src = f32At(cols, q);
            if (inside) {
              const dst = f32At(x, row + x0);
              let kx = 0;
              for (; kx + 4 <= kw; kx += 4) {
                const p = (<usize>kx) << 2;
                v128.store(dst + p, f32x4.add(v128.load(dst + p), v128.load(src + p)));
              }
              for (; kx < kw; kx++) {
                const p = (<usize>kx) << 2;
                store<f32>(dst + p, load<f32>(dst + p) + load<f32>(src + p));
              }
            } else {
              for (let kx = 0; kx < kw; kx++) {
                const ix = x0 + kx;
                if (ix < 0 || ix >= w) continue;
                const d = f32At(x, row + ix);
                store<f32>(d, load<f32>(d) + load<f32>(src + ((<usize>kx) << 2)));
              }
            }
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Layout transposes of the conv GEMM path, per sample: pixel rows [p, o]
// <-> NCHW [o, p], in 4x4 blocks.

@inline function transposeStore(
  a: v128, b: v128, c: v128, d: v128, dst: usize, stride: usize,
  b0: v128, b1: v128, b2: v128, b3: v128,
): void {
  const t0 = v128.shuffle<f32>(a, b, 0, 4, 1, 5);
  const t1 = v128.shuffle<f32>(a, b, 2, 6, 3, 7);
  const t2 = v128.shuffle<f32>(c, d, 0, 4, 1, 5);
  const t3 = v128.shuffle<f32>(c, d, 2, 6, 3, 7);
  v128.store(dst, f32x4.add(v128.shuffle<i64>(t0, t2, 0, 2), b0));
  v128.store(dst + stride, f32x4.add(v128.shuffle<i64>(t0, t2, 1, 3), b1));
  v128.store(dst + 2 * stride, f32x4.add(v128.shuffle<i64>(t1, t3, 0, 2), b2));
  v128.store(dst + 3 * stride, f32x4.add(v128.shuffle<i64>(t1, t3, 1, 3), b3));
}

/**
 * `y[s, oc, q] = rows[s, q, oc] + bias[oc]` for samples `[sBegin, sEnd)`
 * (bias 0 when `hasBias` is 0: the reference adds 0 too, turning -0 into +0).
 */
export function rowsToNchw(
  rows: usize, y: usize, bias: usize, hasBias: i32, sBegin: i32, sEnd: i32, p: i32, o: i32,
): void {
  const ldr = (<usize>o) << 2;
  const ldy = (<usize>p) << 2;
  for (let s = sBegin; s < sEnd; s++) {
    const src = f32At(rows, s * p * o);
    const dst = f32At(y, s * o * p);
    let oc = 0;
    for (; oc + 4 <= o; oc += 4) {
      const b0 = f32x4.splat(hasBias ? load<f32>(f32At(bias, oc)) : 0);
      const b1 = f32x4.splat(hasBias ? load<f32>(f32At(bias, oc + 1)) : 0);
      const b2 = f32x4.splat(hasBias ? load<f32>(f32At(bias, oc + 2)) : 0);
      const b3 = f32x4.splat(hasBias ? load<f32>(f32At(bias, oc + 3)) : 0);
      let q = 0;
      for (; q + 4 <= p; q += 4) {
        const a = src + <usize>q * ldr + ((<usize>oc) << 2);
        transposeStore(
          v128.load(a), v128.load(a + ldr), v128.load(a + 2 * ldr), v128.load(a + 3 * ldr),
          dst + <usize>oc * ldy + ((<usize>q) << 2), ldy, b0, b1, b2, b3,
        );
      }
      for (; q < p; q++) {
        for (let j = 0; j < 4; j++) {
          const b: f32 = hasBias ? load<f32>(f32At(bias, oc + j)) : 0;
          store<f32>(dst + <usize>(oc + j) * ldy + ((<usize>q) << 2), load<f32>(src + <usize>q * ldr + ((<usize>(oc + j)) << 2)) + b);
        }
      }
    }
    for (; oc < o; oc++) {
      const b: f32 = hasBias ? load<f32>(f32At(bias, oc)) : 0;
      for (let q = 0; q < p; q++) {
        store<f32>(dst + <usize>oc * ldy + ((<usize>q) << 2), load<f32>(src + <usize>q * ldr + ((<usize>oc) << 2)) + b);
      }
    }
  }
}

/** `rows[s, q, oc] = y[s, oc, q]` for samples `[sBegin, sEnd)`. */
export function nchwToRows(y: usize, rows: usize, sBegin: i32, sEnd: i32, p: i32, o: i32): void {
  const ldr = (<usize>o) << 2;
  const ldy = (<usize>p) << 2;
  // transposeStore adds a vector: -0 leaves every value, +0 and -0 included, as is.
  const nz = f32x4.splat(-0.0);
  for (let s = sBegin; s < sEnd; s++) {
    const src = f32At(y, s * o * p);
    const dst = f32At(rows, s * p * o);
    let q = 0;
    for (; q + 4 <= p; q += 4) {
      let oc = 0;
      for (; oc + 4 <= o; oc += 4) {
        const a = src + <usize>oc * ldy + ((<usize>q) << 2);
        transposeStore(
          v128.load(a), v128.load(a + ldy), v128.load(a + 2 * ldy), v128.load(a + 3 * ldy),
          dst + <usize>q * ldr + ((<usize>oc) << 2), ldr, nz, nz, nz, nz,
        );
      }
      for (; oc < o; oc++) {
        for (let j = 0; j < 4; j++) {
          store<f32>(dst + <usize>(q + j) * ldr + ((<usize>oc) << 2), load<f32>(src + <usize>oc * ldy + ((<usize>(q + j)) << 2)));
        }
      }
    }
    for (; q < p; q++) {
      for (let oc = 0; oc < o; oc++) {
        store<f32>(dst + <usize>q * ldr + ((<usize>oc) << 2), load<f32>(src + <usize>oc * ldy + ((<usize>q) << 2)));
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Bias add and bias gradient over a row-major [rows, cols] matrix.

/** `out[r, j] = a[r, j] + bias[j]` for rows `[rowBegin, rowEnd)` (`out` may equal `a`). */
export function addBias(a: usize, bias: usize, out: usize, rowBegin: i32, rowEnd: i32, cols: i32): void {
  for (let r = rowBegin; r < rowEnd; r++) {
    const base = r * cols;
    let j = 0;
    for (; j + 4 <= cols; j += 4) {
      v128.store(f32At(out, base + j), f32x4.add(v128.load(f32At(a, base + j)), v128.load(f32At(bias, j))));
    }
    for (; j < cols; j++) store<f32>(f32At(out, base + j), load<f32>(f32At(a, base + j)) + load<f32>(f32At(bias, j)));
  }
}

/**
 * Column sums `out[j] = sum_r a[r, j]` for columns `[colBegin, colEnd)`,
 * float32, rows in order (the reference's `db[j] += a[r * cols + j]`); one
 * pass over the rows with the running sums in `out`.
 */
export function columnSums(a: usize, out: usize, rows: i32, cols: i32, colBegin: i32, colEnd: i32): void {
  zeroF32(out, colBegin, colEnd);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let j = colBegin;
    for (; j + 4 <= colEnd; j += 4) {
      const p = f32At(out, j);
      v128.store(p, f32x4.add(v128.load(p), v128.load(f32At(a, base + j))));
    }
    for (; j < colEnd; j++) {
      const p = f32At(out, j);
      store<f32>(p, load<f32>(p) + load<f32>(f32At(a, base + j)));
    }
  }
}

// ---------------------------------------------------------------------------
// Adam (core/optim.ts): float64 per element, each stored value rounded to
// float32 once, the parameter step from the stored (float32) m and v.

/** One Adam step on elements `[begin, end)`; outputs may alias their inputs. */
export function adamUpdate(
  theta: usize, grad: usize, mIn: usize, vIn: usize, thetaOut: usize, mOut: usize, vOut: usize,
  begin: i32, end: i32,
  beta1: f64, oneMinusBeta1: f64, beta2: f64, oneMinusBeta2: f64,
  eps: f64, weightDecay: f64, stepSize: f64, sqrtCorrection2: f64,
): void {
  const b1 = f64x2.splat(beta1);
  const c1 = f64x2.splat(oneMinusBeta1);
  const b2 = f64x2.splat(beta2);
  const c2 = f64x2.splat(oneMinusBeta2);
  const ep = f64x2.splat(eps);
  const wd = f64x2.splat(weightDecay);
  const st = f64x2.splat(stepSize);
  const sc = f64x2.splat(sqrtCorrection2);
  let i = begin;
  for (; i + 2 <= end; i += 2) {
    const th = f64x2.promote_low_f32x4(v128.load64_zero(f32At(theta, i)));
    const g = f64x2.add(f64x2.promote_low_f32x4(v128.load64_zero(f32At(grad, i))), f64x2.mul(wd, th));
    const m0 = f64x2.promote_low_f32x4(v128.load64_zero(f32At(mIn, i)));
    const v0 = f64x2.promote_low_f32x4(v128.load64_zero(f32At(vIn, i)));
    const m32 = f32x4.demote_f64x2_zero(f64x2.add(f64x2.mul(b1, m0), f64x2.mul(c1, g)));
    const v32 = f32x4.demote_f64x2_zero(f64x2.add(f64x2.mul(b2, v0), f64x2.mul(f64x2.mul(c2, g), g)));
    const m = f64x2.promote_low_f32x4(m32);
    const v = f64x2.promote_low_f32x4(v32);
    const step = f64x2.div(f64x2.mul(st, m), f64x2.add(f64x2.div(f64x2.sqrt(v), sc), ep));
    v128.store64_lane(f32At(thetaOut, i), f32x4.demote_f64x2_zero(f64x2.sub(th, step)), 0);
    v128.store64_lane(f32At(mOut, i), m32, 0);
    v128.store64_lane(f32At(vOut, i), v32, 0);
  }
  for (; i < end; i++) {
    const th = <f64>load<f32>(f32At(theta, i));
    const g = <f64>load<f32>(f32At(grad, i)) + weightDecay * th;
    const m = <f32>(beta1 * <f64>load<f32>(f32At(mIn, i)) + oneMinusBeta1 * g);
    const v = <f32>(beta2 * <f64>load<f32>(f32At(vIn, i)) + oneMinusBeta2 * g * g);
    const step = stepSize * <f64>m / (Math.sqrt(<f64>v) / sqrtCorrection2 + eps);
    store<f32>(f32At(thetaOut, i), <f32>(th - step));
    store<f32>(f32At(mOut, i), m);
    store<f32>(f32At(vOut, i), v);
  }
}
