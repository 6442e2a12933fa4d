/**
 * FracBits' quantizers and cost (spec `fracbits.md` sections 2 to 4) as the
 * reference device computes them: plain TypeScript, float64 arithmetic with
 * the float32 roundings written out (`Math.fround`), float64 sums.
 *
 * A fractional width `lambda` is clamped to `[min, max]`; with `lo =
 * floor`, `hi = ceil` and `f = lambda - lo` the tensor is quantized at both
 * integer widths and blended, `y = f y_hi + (1 - f) y_lo`. At an integer
 * width `y` is exactly the plain quantizer.
 *
 * Weights (DoReFa): `t = tanh(W) / max|tanh(W)|` over the whole tensor,
 * `x = (t + 1) / 2`, and at `k >= 1` bits the odd code
 * `2 round((2^k - 1) x) - (2^k - 1)` on the scale `c / (2^k - 1)`, where
 * `c` is the constant rescale `1 / (sqrt(fanOut) std)` (std: unbiased, of
 * the blended weight before rescaling, not differentiated) or 1. A 0-bit
 * weight is exactly 0. So a k-bit weight is `fround(scale) * code`, the
 * frozen grid's value, bit for bit.
 *
 * Activations (PACT): at `k >= 1` bits, with `s = fround(|alpha| / (2^k -
 * 1))`, `y = s clamp(round(x / s), 0, 2^k - 1)` (the clip at 0 is the ReLU,
 * the clip at `2^k - 1` the one at `|alpha|`): the frozen uniform grid's
 * quantizer, bit for bit. 0 bits give 0.
 *
 * Gradients are straight-through: the rounding passes its gradient (a
 * 0-bit term is a constant and passes none), the width gets the difference
 * of the neighbouring quantizations inside its clamp range (0 at an
 * integer width, where both neighbours coincide, and outside the range).
 *
 * @module
 */

import type {
  FracActivationOptions,
  FracWeightOptions,
  Kernels,
  WidthCostOptions,
  WidthRange,
} from "../kernels.ts";
import { roundHalfEven } from "../round.ts";
import type { HostAccess } from "./kernels.ts";

/** The two integer neighbours of a clamped width and the blend weight of `hi`. */
export interface WidthBlend {
  /** `floor` of the clamped width. */
  readonly lo: number;
  /** `ceil` of the clamped width. */
  readonly hi: number;
  /** The clamped width minus `lo`, in [0, 1). */
  readonly f: number;
  /** Whether the width gets a gradient: non-integer inside `[min, max]`. */
  readonly learns: boolean;
}

/**
 * Splits a width into its neighbours.
 *
 * @param lambda The fractional width.
 * @param range The allowed widths.
 * @returns `lo`, `hi`, `f`, and whether its gradient flows.
 */
export function widthBlend(lambda: number, range: WidthRange): WidthBlend {
  const l = Math.min(Math.max(lambda, range.min), range.max);
  const lo = Math.floor(l);
  const hi = Math.ceil(l);
  return { lo, hi, f: l - lo, learns: hi > lo };
}

/** The straight-through slope of a blend: the share of terms with `k >= 1`. */
function blendSlope(b: WidthBlend): number {
  return b.f * (b.hi >= 1 ? 1 : 0) + (1 - b.f) * (b.lo >= 1 ? 1 : 0);
}

/** The odd DoReFa code of `x` in [0, 1] at `k >= 1` bits (0 at 0 bits). */
export function doReFaCode(x: number, k: number): number {
  if (k === 0) return 0;
  const levels = 2 ** k - 1;
  return 2 * roundHalfEven(levels * x) - levels;
}

/** One channel's neighbours with their float32 scales and level counts. */
interface ChannelBlend extends WidthBlend {
  /** `2^lo - 1` (0 at 0 bits). */
  readonly levelsLo: number;
  /** `2^hi - 1`. */
  readonly levelsHi: number;
  /** The float32 scale at `lo` bits. */
  readonly scaleLo: number;
  /** The float32 scale at `hi` bits. */
  readonly scaleHi: number;
}

/** Per-tensor facts of the DoReFa transform. */
interface DoReFaPass {
  /** `tanh(W)` per element. */
  readonly tanh: Float64Array;
  /** `x = (tanh(W) / max + 1) / 2` per element. */
  readonly x: Float64Array;
  /** `max |tanh(W)|` (1 when that is 0). */
  readonly max: number;
  /** Index of the first element reaching the maximum. */
  readonly argmax: number;
  /** The blend of each channel. */
  readonly blends: readonly ChannelBlend[];
  /** Elements per channel. */
  readonly per: number;
  /** The constant rescale factor. */
  readonly factor: number;
}

const levelsOf = (k: number) => k === 0 ? 0 : 2 ** k - 1;

/** The channels' blends with the scales of `factor`. */
function channelBlends(
  blends: readonly WidthBlend[],
  factor: number,
): ChannelBlend[] {
  return blends.map((b) => ({
    ...b,
    levelsLo: levelsOf(b.lo),
    levelsHi: levelsOf(b.hi),
    scaleLo: doReFaScale(factor, b.lo),
    scaleHi: doReFaScale(factor, b.hi),
  }));
}

/** The odd code of `x` with `levels = 2^k - 1` (0 for 0 levels). */
function codeOf(x: number, levels: number): number {
  return levels === 0 ? 0 : 2 * roundHalfEven(levels * x) - levels;
}

function doReFaPass(
  w: Float32Array,
  bits: Float32Array,
  options: FracWeightOptions,
): DoReFaPass {
  const per = w.length / bits.length;
  const tanh = new Float64Array(w.length);
  let max = 0;
  let argmax = 0;
  for (let i = 0; i < w.length; i++) {
    const t = Math.tanh(w[i]);
    tanh[i] = t;
    const m = t < 0 ? -t : t;
    if (m > max) {
      max = m;
      argmax = i;
    }
  }
  if (max === 0) max = 1;
  const x = new Float64Array(w.length);
  for (let i = 0; i < w.length; i++) x[i] = (tanh[i] / max + 1) / 2;
  const range = { min: options.minBits, max: options.maxBits };
  const plain = Array.from(bits, (l) => widthBlend(l, range));
  const factor = options.fanOut === null
    ? 1
    : rescaleFactor(x, channelBlends(plain, 1), per, options.fanOut);
  const blends = channelBlends(plain, factor);
  return { tanh, x, max, argmax, blends, per, factor };
}

/**
 * `1 / (sqrt(fanOut) std)` of the blended weights before rescaling (std
 * unbiased, float64 sums in one pass), or 1 when the std is 0 or undefined.
 */
function rescaleFactor(
  x: Float64Array,
  blends: readonly ChannelBlend[],
  per: number,
  fanOut: number,
): number {
  let sum = 0;
  let squares = 0;
  for (let c = 0; c < blends.length; c++) {
    const { levelsLo: lo, levelsHi: hi, f } = blends[c];
    for (let i = c * per; i < (c + 1) * per; i++) {
      const qlo = lo === 0 ? 0 : codeOf(x[i], lo) / lo;
      const v = f === 0 ? qlo : f * (codeOf(x[i], hi) / hi) + (1 - f) * qlo;
      sum += v;
      squares += v * v;
    }
  }
  const n = x.length;
  const variance = (squares - sum * sum / n) / (n - 1);
  const std = n > 1 && variance > 0 ? Math.sqrt(variance) : 0;
  return std > 0 ? 1 / (Math.sqrt(fanOut) * std) : 1;
}

/**
 * The constant rescale factor the weight quantizer uses for `w` at the
 * widths `bits` (1 without rescale).
 *
 * @param w The float weights.
 * @param bits The widths (one, or one per output channel).
 * @param options Width range and rescale.
 * @returns The factor.
 */
export function fracWeightFactor(
  w: Float32Array,
  bits: Float32Array,
  options: FracWeightOptions,
): number {
  return doReFaPass(w, bits, options).factor;
}

/**
 * The float32 scale of a k-bit DoReFa grid under the rescale `factor`
 * (0 at 0 bits): a k-bit weight is `scale * code`.
 */
export function doReFaScale(factor: number, k: number): number {
  return k === 0 ? 0 : Math.fround(factor / (2 ** k - 1));
}

/**
 * FracBits' weights: the blended DoReFa quantization of `w` (`[O, ...]`)
 * at one width (`bits` of length 1) or one per output channel (length
 * `O`), with the rescale factor it used.
 *
 * @param w The float weights.
 * @param bits The fractional widths.
 * @param options Width range and rescale.
 * @returns The weights and the factor.
 */
export function fracWeightReference(
  w: Float32Array,
  bits: Float32Array,
  options: FracWeightOptions,
): { y: Float32Array; factor: number } {
  const { x, blends, per, factor } = doReFaPass(w, bits, options);
  const y = new Float32Array(w.length);
  for (let c = 0; c < blends.length; c++) {
    const b = blends[c];
    for (let i = c * per; i < (c + 1) * per; i++) {
      const wlo = Math.fround(b.scaleLo * codeOf(x[i], b.levelsLo));
      y[i] = b.f === 0 ? wlo : Math.fround(
        b.f * Math.fround(b.scaleHi * codeOf(x[i], b.levelsHi)) +
          (1 - b.f) * wlo,
      );
    }
  }
  return { y, factor };
}

/**
 * The gradients of {@link fracWeightReference} from `dy`: `dw` through the
 * rounding (straight through), the tanh and its maximum (first maximal
 * element); `dbits` the sum over each width's elements of `dy (w_hi -
 * w_lo)`.
 *
 * @param w The float weights.
 * @param bits The fractional widths.
 * @param options Width range and rescale.
 * @param dy The gradient of the weights.
 * @returns `dw` and `dbits`.
 */
export function fracWeightBackwardReference(
  w: Float32Array,
  bits: Float32Array,
  options: FracWeightOptions,
  dy: Float32Array,
): { dw: Float32Array; dbits: Float32Array } {
  const { tanh, x, max, argmax, blends, per, factor } = doReFaPass(
    w,
    bits,
    options,
  );
  const dt = new Float64Array(w.length);
  const dbits = new Float64Array(bits.length);
  let dmax = 0;
  for (let c = 0; c < blends.length; c++) {
    const b = blends[c];
    const slope = factor * blendSlope(b);
    let sum = 0;
    for (let i = c * per; i < (c + 1) * per; i++) {
      dt[i] = dy[i] * slope;
      dmax -= dt[i] * tanh[i];
      if (b.learns) {
        sum += dy[i] *
          (Math.fround(b.scaleHi * codeOf(x[i], b.levelsHi)) -
            Math.fround(b.scaleLo * codeOf(x[i], b.levelsLo)));
      }
    }
    dbits[c] = sum;
  }
  dmax /= max * max;
  const dw = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) {
    let dtanh = dt[i] / max;
    if (i === argmax && tanh[i] !== 0) dtanh += dmax * Math.sign(tanh[i]);
    dw[i] = dtanh * (1 - tanh[i] * tanh[i]);
  }
  return { dw, dbits: Float32Array.from(dbits) };
}

/**
 * The uniform grid's quantizer (`uniformQuantizeReference` of
 * `core/reference/grid.ts`) on one element: `s clamp(round(x / s), 0,
 * levels)` in float32 with `s` float32; 0 when `levels` is 0.
 */
function gridValue(x: number, s: number, levels: number): number {
  if (levels === 0) return 0;
  const code = roundHalfEven(Math.fround(x / s));
  return code !== code
    ? NaN
    : Math.fround(s * Math.min(levels, Math.max(0, code)));
}

/** The PACT grids of a blend for the clip `a`: steps and level counts. */
function pactGrids(a: number, b: WidthBlend) {
  const [levelsLo, levelsHi] = [levelsOf(b.lo), levelsOf(b.hi)];
  return {
    levelsLo,
    levelsHi,
    sLo: levelsLo === 0 ? 0 : Math.fround(a / levelsLo),
    sHi: levelsHi === 0 ? 0 : Math.fround(a / levelsHi),
  };
}

/**
 * FracBits' activations: the blended PACT quantization of `x` with the
 * clip `|alpha|` at the width `bits`.
 *
 * @param x The activations.
 * @param alpha The clip (its magnitude is used; must not be 0).
 * @param bits The fractional width.
 * @param options Width range.
 * @returns The quantized activations.
 */
export function pactReference(
  x: Float32Array,
  alpha: number,
  bits: number,
  options: FracActivationOptions,
): Float32Array {
  const b = widthBlend(bits, { min: options.minBits, max: options.maxBits });
  const { levelsLo, levelsHi, sLo, sHi } = pactGrids(Math.abs(alpha), b);
  const f = b.f;
  const y = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const ylo = gridValue(x[i], sLo, levelsLo);
    y[i] = f === 0
      ? ylo
      : Math.fround(f * gridValue(x[i], sHi, levelsHi) + (1 - f) * ylo);
  }
  return y;
}

/**
 * The gradients of {@link pactReference}: `dx = dy` where `0 < x < |alpha|`;
 * `dalpha` sums `dy sign(alpha)` where `x >= |alpha|` and `dy sign(alpha)
 * (Q(u) - u)` elsewhere (`u = min(relu(x), |alpha|) / |alpha|`, `Q(u) =
 * y / |alpha|`); `dbits` sums `dy (y_hi - y_lo)`.
 *
 * @param x The activations.
 * @param alpha The clip.
 * @param bits The fractional width.
 * @param options Width range.
 * @param dy The gradient of the output.
 * @returns `dx`, `dalpha`, `dbits`.
 */
export function pactBackwardReference(
  x: Float32Array,
  alpha: number,
  bits: number,
  options: FracActivationOptions,
  dy: Float32Array,
): { dx: Float32Array; dalpha: number; dbits: number } {
  const a = Math.abs(alpha);
  const sign = Math.sign(alpha);
  const b = widthBlend(bits, { min: options.minBits, max: options.maxBits });
  const { levelsLo, levelsHi, sLo, sHi } = pactGrids(a, b);
  const slope = blendSlope(b);
  const f = b.f;
  const dx = new Float32Array(x.length);
  let dalpha = 0;
  let dbits = 0;
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    const ylo = gridValue(v, sLo, levelsLo);
    const yhi = f === 0 ? ylo : gridValue(v, sHi, levelsHi);
    const y = f === 0 ? ylo : Math.fround(f * yhi + (1 - f) * ylo);
    if (v > 0 && v < a) dx[i] = dy[i] * slope;
    const u = Math.min(Math.max(v, 0), a) / a;
    dalpha += dy[i] * sign * (v >= a ? slope : y / a - slope * u);
    dbits += dy[i] * (yhi - ylo);
  }
  return { dx, dalpha, dbits: b.learns ? dbits : 0 };
}

function clampWidth(lambda: number, range: WidthRange): number {
  return Math.min(Math.max(lambda, range.min), range.max);
}

function costLearns(lambda: number, range: WidthRange): boolean {
  return range.min < range.max && lambda >= range.min && lambda <= range.max;
}

/**
 * A layer's expected cost: `coefficient * sum_o clamp(bw[o]) *
 * clamp(ba)` (`ba` 1 when the input width is not learned), float64.
 *
 * @param weightBits The weight widths (one, or one per output channel).
 * @param inputBits The input width, or null.
 * @param options Ranges and coefficient.
 * @returns The cost.
 */
export function widthCostReference(
  weightBits: Float32Array,
  inputBits: number | null,
  options: WidthCostOptions,
): number {
  let w = 0;
  for (const l of weightBits) w += clampWidth(l, options.weightRange);
  const a = inputBits === null ? 1 : clampWidth(inputBits, options.inputRange);
  return options.coefficient * w * a;
}

/**
 * The gradients of {@link widthCostReference} times `dcost`: a width gets
 * none outside its range (or when the range is one width).
 *
 * @param weightBits The weight widths.
 * @param inputBits The input width, or null.
 * @param options Ranges and coefficient.
 * @param dcost The upstream gradient.
 * @returns Per weight width, and for the input width (0 when null).
 */
export function widthCostBackwardReference(
  weightBits: Float32Array,
  inputBits: number | null,
  options: WidthCostOptions,
  dcost: number,
): { dweight: Float32Array; dinput: number } {
  const { weightRange, inputRange, coefficient } = options;
  let w = 0;
  for (const l of weightBits) w += clampWidth(l, weightRange);
  const a = inputBits === null ? 1 : clampWidth(inputBits, inputRange);
  const dweight = Float32Array.from(
    weightBits,
    (l) => costLearns(l, weightRange) ? dcost * coefficient * a : 0,
  );
  const dinput = inputBits !== null && costLearns(inputBits, inputRange)
    ? dcost * coefficient * w
    : 0;
  return { dweight, dinput };
}

/** The reference kernels of FracBits' quantizers and cost. */
export function fracBitsKernels(
  { f32, out, scalar }: HostAccess,
): Pick<
  Kernels,
  | "fracWeightQuantize"
  | "fracWeightQuantizeBackward"
  | "pactQuantize"
  | "pactQuantizeBackward"
  | "widthCost"
  | "widthCostBackward"
  | "targetPenalty"
  | "targetPenaltyBackward"
> {
  const one = (v: number) => out(new Float32Array([v]), [1]);
  const orNull = (t: Parameters<typeof f32>[0] | null) =>
    t === null ? null : scalar(t);
  return {
    fracWeightQuantize: (w, bits, options) =>
      out(fracWeightReference(f32(w), f32(bits), options).y, w.shape),
    fracWeightQuantizeBackward: (w, bits, options, dy) => {
      const r = fracWeightBackwardReference(
        f32(w),
        f32(bits),
        options,
        f32(dy),
      );
      return { dw: out(r.dw, w.shape), dbits: out(r.dbits, bits.shape) };
    },
    pactQuantize: (x, clip, bits, options) =>
      out(pactReference(f32(x), scalar(clip), scalar(bits), options), x.shape),
    pactQuantizeBackward: (x, clip, bits, options, dy) => {
      const r = pactBackwardReference(
        f32(x),
        scalar(clip),
        scalar(bits),
        options,
        f32(dy),
      );
      return {
        dx: out(r.dx, x.shape),
        dclip: one(r.dalpha),
        dbits: one(r.dbits),
      };
    },
    widthCost: (weightBits, inputBits, options) =>
      one(widthCostReference(f32(weightBits), orNull(inputBits), options)),
    widthCostBackward: (weightBits, inputBits, options, dcost) => {
      const r = widthCostBackwardReference(
        f32(weightBits),
        orNull(inputBits),
        options,
        scalar(dcost),
      );
      return {
        dweightBits: out(r.dweight, weightBits.shape),
        dinputBits: inputBits === null ? null : one(r.dinput),
      };
    },
    targetPenalty: (cost, target, kappa) =>
      one(kappa * Math.abs(scalar(cost) - target)),
    targetPenaltyBackward: (cost, target, kappa, dpenalty) =>
      one(scalar(dpenalty) * kappa * Math.sign(scalar(cost) - target)),
  };
}
