/**
 * The residual (bit-doubling) quantizer of spec sections 1 and 7, as the
 * reference device computes it: plain TypeScript, one element at a time,
 * float32 rounding after every operation (`Math.fround`), float64 sums.
 *
 * A quantizer owns a tensor `x` and a range `xmax`; signed or unsigned is
 * fixed once. Clip: `hi = (1 - 1e-7) xmax`, `lo = signed ? -hi : 0`,
 * `xc = hi - relu((hi - lo) - relu(x - lo))`. Scales: `s2 = (signed ? 2 xmax
 * : xmax) / 3`, then `s4 = s2 / 5`, `s8 = s4 / 17`, `s16 = s8 / 257`,
 * `s32 = s16 / 65537`. Levels, each residual formed by subtracting the
 * levels one at a time and each division a true division:
 *
 * ```
 * x2  = s2  round(xc / s2)
 * e4  = s4  round((xc - x2) / s4)
 * e8  = s8  round(((xc - x2) - e4) / s8)
 * ...
 * xq  = z2 (x2 + z4 (e4 + z8 (e8 + z16 (e16 + z32 e32))))
 * ```
 *
 * with `round` half to even. Gradients are straight-through: `dxq/dx = z2`
 * inside the clip range and 0 outside; `xmax` gets the clip's gradient at
 * clipped elements and the scales' through each level's rounding error; a
 * gate gets the sum of `dy` times the bracket it multiplies.
 *
 * Every device derives the same float32 constants ({@link quantizerConstants})
 * from the range and the gates, so all of them round alike.
 *
 * @module
 */

import { roundHalfEven } from "../round.ts";

/** The bit widths a quantizer can end up with; 0 means pruned. */
export const BIT_WIDTHS: readonly [0, 2, 4, 8, 16, 32] = Object.freeze(
  [0, 2, 4, 8, 16, 32] as const,
);

/** A bit width: one of {@link BIT_WIDTHS}. */
export type BitWidth = (typeof BIT_WIDTHS)[number];

/** Gate values, each in [0, 1]. */
export interface GateValues {
  /** Per-output-channel pruning gates (axis 0), or absent for none. */
  readonly z2?: ArrayLike<number>;
  /** The 4-bit gate. */
  readonly z4: number;
  /** The 8-bit gate. */
  readonly z8: number;
  /** The 16-bit gate. */
  readonly z16: number;
  /** The 32-bit gate. */
  readonly z32: number;
}

/** Float32 value of the clip factor `1 - 1e-7`, as float32 arithmetic sees it. */
export const CLIP_FACTOR: number = Math.fround(1 - 1e-7);

/**
 * Float32 constants derived from the range and the gates.
 *
 * `scales[l]` is `s_b` for `b = 2, 4, 8, 16, 32`; `xmaxFactors[l]` is the
 * coefficient of the rounding error `round(r/s) - r/s` of level `l` in
 * `d xq / d xmax`; `levelsForward` / `levelsBackward` say how many levels a
 * kernel must compute (levels above them are multiplied by an exact zero).
 */
export interface QuantizerConstants {
  /** The range the constants derive from. */
  readonly xmax: number;
  /** Whether the grid is signed. */
  readonly signed: boolean;
  /** Upper clip bound `(1 - 1e-7) * xmax` in float32. */
  readonly hi: number;
  /** Lower clip bound: `-hi` (signed) or `0`. */
  readonly lo: number;
  /** `hi - lo` in float32. */
  readonly span: number;
  /** `[s2, s4, s8, s16, s32]` in float32. */
  readonly scales: readonly [number, number, number, number, number];
  /** Coefficients of the per-level rounding errors in `d xq / d xmax`. */
  readonly xmaxFactors: readonly [number, number, number, number, number];
  /** `d xc / d xmax` where `x` is clipped at the top. */
  readonly clipGradHi: number;
  /** `d xc / d xmax` where `x` is clipped at the bottom. */
  readonly clipGradLo: number;
  /** Levels (1 to 5) the forward pass must compute. */
  readonly levelsForward: number;
  /** Levels (1 to 5) the backward pass must compute. */
  readonly levelsBackward: number;
}

/**
 * Everything one quantizer pass needs, with the constants precomputed so
 * every device uses the very same float32 numbers.
 */
export interface QuantizerPass {
  /** Number of output channels (axis 0); the flat length is a multiple of it. */
  readonly channels: number;
  /** Per-channel pruning gates `z2`, or `null` for a tensor without them. */
  readonly z2: Float32Array | null;
  /** The four bit-doubling gates `z4, z8, z16, z32` (float32 values). */
  readonly gates: readonly [number, number, number, number];
  /** Derived float32 constants; see {@link QuantizerConstants}. */
  readonly constants: QuantizerConstants;
}

/** Gradients from one backward pass of the quantizer. */
export interface QuantizerGrads {
  /** `dL/dx`, same length as `x`. */
  readonly dx: Float32Array;
  /** `dL/dxmax`. */
  readonly dxmax: number;
  /** `dL/dz2` per channel, or `null` when the pass had no `z2`. */
  readonly dz2: Float64Array | null;
  /** `[dL/dz4, dL/dz8, dL/dz16, dL/dz32]`. */
  readonly dgates: readonly [number, number, number, number];
}

/**
 * Derives the float32 constants of a quantizer pass (spec sections 1 and 7).
 *
 * @param xmax The range, finite and positive.
 * @param signed Whether the grid is symmetric around zero.
 * @param gates `[z4, z8, z16, z32]`, each in [0, 1].
 * @returns The constants every device uses.
 *
 * @example
 * ```ts
 * import { quantizerConstants } from "./quantizer.ts";
 * import assert from "node:assert/strict";
 *
 * const c = quantizerConstants(3, true, [1, 1, 0, 0]);
 * assert.equal(c.scales[0], 2); // s2 = 2 * 3 / 3
 * assert.equal(c.levelsForward, 3); // x2, e4, e8
 * ```
 */
export function quantizerConstants(
  xmax: number,
  signed: boolean,
  gates: readonly [number, number, number, number],
): QuantizerConstants {
  return deriveConstants(xmax, signed, gates, Math.fround);
}

/** The smallest normal float32, 2^-126: a grid step below it has lost precision, or is 0. */
export const MIN_NORMAL_F32: number = 2 ** -126;

/**
 * What is wrong with a range's grid steps, or `null`: the first of the
 * first `levels` scales (`s2`, `s4`, ...) that overflows float32 (a signed
 * range above about 1.7e38 makes `2 xmax` infinite) or underflows it (below
 * {@link MIN_NORMAL_F32}: a tiny range at a high width), either of which
 * would quantize to NaN or to a distorted grid.
 *
 * @param c The constants of the range.
 * @param levels How many levels the pass computes (1 to 5).
 * @returns A description such as `"its 32-bit step 4.6e-48 underflows
 *   float32"`, or `null` when every step is a normal float32.
 *
 * @example
 * ```ts
 * import { quantizerConstants, scaleProblem } from "./quantizer.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(scaleProblem(quantizerConstants(1, true, [1, 1, 1, 1]), 5), null);
 * assert.match(scaleProblem(quantizerConstants(3e38, true, [1, 1, 0, 0]), 3)!, /2-bit step overflows/);
 * assert.match(scaleProblem(quantizerConstants(1e-30, false, [1, 1, 1, 1]), 5)!, /32-bit step .* underflows/);
 * ```
 */
export function scaleProblem(
  c: QuantizerConstants,
  levels: number,
): string | null {
  const bits = [2, 4, 8, 16, 32];
  for (let l = 0; l < levels; l++) {
    const s = c.scales[l];
    if (!Number.isFinite(s)) {
      return `its ${
        bits[l]
      }-bit step overflows float32 (xmax ${c.xmax} is too large)`;
    }
    if (!(s >= MIN_NORMAL_F32)) {
      return `its ${
        bits[l]
      }-bit step ${s} underflows float32 (xmax ${c.xmax} is too small)`;
    }
  }
  return null;
}

/**
 * {@link quantizerConstants} with a chosen rounding of each operation:
 * `Math.fround` (float32, what every device uses) or the identity (float64,
 * for the float64 reference that gradient checks run against).
 */
export function deriveConstants(
  xmax: number,
  signed: boolean,
  gates: readonly [number, number, number, number],
  f: (v: number) => number,
): QuantizerConstants {
  const hi = f(CLIP_FACTOR * xmax);
  const lo = signed ? -hi : 0;
  const span = f(hi - lo);
  const s2 = f((signed ? f(2 * xmax) : f(xmax)) / 3);
  const s4 = f(s2 / 5);
  const s8 = f(s4 / 17);
  const s16 = f(s8 / 257);
  const s32 = f(s16 / 65537);
  // d s_b / d xmax, exactly.
  const k2 = (signed ? 2 : 1) / 3;
  const k = [k2, k2 / 5, k2 / 85, k2 / 21845, k2 / 1431655765];
  // G[l] = product of the gates up to level l (G[0] = 1 for x2).
  const G = [1, 0, 0, 0, 0, 0];
  for (let l = 1; l <= 4; l++) G[l] = G[l - 1] * gates[l - 1];
  const factors = k.map((kl, l) => f(kl * (G[l] - G[l + 1])));
  let levelsForward = 1;
  while (levelsForward < 5 && G[levelsForward] !== 0) levelsForward++;
  let levelsBackward = Math.min(5, levelsForward + 1);
  while (levelsBackward < 5 && gates[levelsBackward - 1] !== 0) {
    levelsBackward++;
  }
  return {
    xmax,
    signed,
    hi,
    lo,
    span,
    scales: [s2, s4, s8, s16, s32],
    xmaxFactors: factors as unknown as QuantizerConstants["xmaxFactors"],
    clipGradHi: f(CLIP_FACTOR),
    clipGradLo: signed ? -f(CLIP_FACTOR) : 0,
    levelsForward,
    levelsBackward,
  };
}

/**
 * The pass of a quantizer call from its (already valid) range, gates and
 * pruning gates.
 *
 * @param xmax The range.
 * @param signed Signedness.
 * @param gates `[z4, z8, z16, z32]` as float32 values.
 * @param z2 Per-channel pruning gates, or null.
 * @returns The pass.
 */
export function quantizerPass(
  xmax: number,
  signed: boolean,
  gates: ArrayLike<number>,
  z2: Float32Array | null,
): QuantizerPass {
  const tuple = [gates[0], gates[1], gates[2], gates[3]] as const;
  return {
    channels: z2 ? z2.length : 1,
    z2,
    gates: tuple,
    constants: quantizerConstants(xmax, signed, tuple),
  };
}

/**
 * Elements per channel of a pass over `length` elements, after checking the
 * length splits into the pass's channels: a multiple of them, and 0 when
 * there are none (an empty tensor with an empty `z2`). Every device applies
 * this one rule.
 *
 * @param length The flat length of `x`.
 * @param pass The pass.
 * @returns `length / channels` (0 without channels).
 * @throws {RangeError} If the length does not split.
 */
export function perChannel(length: number, pass: QuantizerPass): number {
  const { channels } = pass;
  if (channels === 0 ? length !== 0 : length % channels !== 0) {
    throw new RangeError(
      `Cannot quantize ${length} elements in ${channels} channels: the length must be a multiple of the channel count (0 only for 0 channels)`,
    );
  }
  return channels === 0 ? 0 : length / channels;
}

type Rounding = (v: number) => number;

/**
 * Per-element state of the residual decomposition: the levels, the inner
 * brackets, the rounding errors and the clip masks.
 */
interface Decomposition {
  /** `inner[l]` is the bracket gate `l` multiplies (`inner[0]` is z2's). */
  inner: Float64Array;
  /** `roundingError[l] = round(r_l / s_l) - r_l / s_l`. */
  roundingError: Float64Array;
  /** True inside the clip range (where `d xc / d x = 1`). */
  inside: boolean;
  /** `d xc / d xmax` for this element. */
  clipGrad: number;
}

function newDecomposition(): Decomposition {
  return {
    inner: new Float64Array(5),
    roundingError: new Float64Array(5),
    inside: false,
    clipGrad: 0,
  };
}

function decompose(
  f: Rounding,
  x: number,
  pass: QuantizerPass,
  levels: number,
  out: Decomposition,
): void {
  const c = pass.constants;
  const t1 = f(x - c.lo);
  const r1 = t1 > 0 ? t1 : 0;
  const t2 = f(c.span - r1);
  const r2 = t2 > 0 ? t2 : 0;
  const xc = f(c.hi - r2);
  out.inside = t1 > 0 && t2 > 0;
  out.clipGrad = t2 > 0 ? (t1 > 0 ? 0 : c.clipGradLo) : c.clipGradHi;
  const level = out.inner; // first holds e_l, then becomes the brackets
  let residual = xc;
  for (let l = 0; l < 5; l++) {
    if (l >= levels) {
      level[l] = 0;
      out.roundingError[l] = 0;
      continue;
    }
    const s = c.scales[l];
    const v = f(residual / s);
    const q = roundHalfEven(v);
    level[l] = f(s * q);
    out.roundingError[l] = f(q - v);
    residual = f(residual - level[l]);
  }
  // Brackets from the top: inner_l = e_l + z_{l+1} * inner_{l+1}.
  for (let l = 3; l >= 0; l--) {
    level[l] = f(level[l] + f(pass.gates[l] * level[l + 1]));
  }
}

function forward(
  f: Rounding,
  x: Float32Array,
  pass: QuantizerPass,
): Float32Array {
  const out = new Float32Array(x.length);
  const per = perChannel(x.length, pass);
  const d = newDecomposition();
  for (let ch = 0; ch < pass.channels; ch++) {
    const z2 = pass.z2 ? pass.z2[ch] : 1;
    for (let i = ch * per; i < (ch + 1) * per; i++) {
      decompose(f, x[i], pass, pass.constants.levelsForward, d);
      out[i] = f(z2 * d.inner[0]);
    }
  }
  return out;
}

function backward(
  f: Rounding,
  x: Float32Array,
  dy: Float32Array,
  pass: QuantizerPass,
): QuantizerGrads {
  const c = pass.constants;
  const dx = new Float32Array(x.length);
  const dz2 = pass.z2 ? new Float64Array(pass.channels) : null;
  const dgates = [0, 0, 0, 0];
  let dxmax = 0;
  const per = perChannel(x.length, pass);
  const d = newDecomposition();
  const sums = new Float64Array(5);
  for (let ch = 0; ch < pass.channels; ch++) {
    const z2 = pass.z2 ? pass.z2[ch] : 1;
    sums.fill(0);
    let xmaxSum = 0;
    for (let i = ch * per; i < (ch + 1) * per; i++) {
      decompose(f, x[i], pass, c.levelsBackward, d);
      const g = dy[i];
      dx[i] = d.inside ? f(g * z2) : 0;
      for (let l = 0; l < 5; l++) sums[l] += g * d.inner[l];
      let dxc = d.clipGrad;
      for (let l = 0; l < c.levelsForward; l++) {
        dxc += c.xmaxFactors[l] * d.roundingError[l];
      }
      xmaxSum += g * dxc;
    }
    if (dz2) dz2[ch] = sums[0];
    // dL/dz_b = z2 * (gates below b) * sum(dy * inner_b)
    let below = z2;
    for (let l = 1; l < 5; l++) {
      dgates[l - 1] += below * sums[l];
      below *= pass.gates[l - 1];
    }
    dxmax += z2 * xmaxSum;
  }
  return {
    dx,
    dxmax,
    dz2,
    dgates: dgates as unknown as QuantizerGrads["dgates"],
  };
}

/**
 * The forward pass in float32 (what every device computes).
 *
 * @param x The tensor's elements, channel after channel.
 * @param pass The pass.
 * @returns A new array `xq`.
 *
 * @example A 4-bit unsigned grid has step 1/15
 * ```ts
 * import { quantizeForward, quantizerPass } from "./quantizer.ts";
 * import assert from "node:assert/strict";
 *
 * const xq = quantizeForward(new Float32Array([0.45]), quantizerPass(1, false, [1, 0, 0, 0], null));
 * assert.ok(Math.abs(xq[0] - 7 / 15) < 1e-6);
 * ```
 */
export function quantizeForward(
  x: Float32Array,
  pass: QuantizerPass,
): Float32Array {
  return forward(Math.fround, x, pass);
}

/**
 * The straight-through backward pass in float32, float64 sums.
 *
 * @param x The quantized tensor's elements.
 * @param dy `dL/dxq`.
 * @param pass The pass of the forward call.
 * @returns Every gradient.
 */
export function quantizeBackward(
  x: Float32Array,
  dy: Float32Array,
  pass: QuantizerPass,
): QuantizerGrads {
  return backward(Math.fround, x, dy, pass);
}

const exact: Rounding = (v) => v;

function inFloat64(pass: QuantizerPass): QuantizerPass {
  const c = pass.constants;
  return {
    ...pass,
    constants: deriveConstants(c.xmax, c.signed, pass.gates, exact),
  };
}

/**
 * The arithmetic of {@link quantizeForward} carried out in float64 (scales,
 * levels and brackets unrounded; only `xq` is float32). The 16- and 32-bit
 * levels are below float32 resolution for most ranges, so gradient checks
 * of the gates `z16`, `z32` run against this one.
 *
 * @param x The elements.
 * @param pass The pass.
 * @returns A new array.
 */
export function quantizeForwardFloat64(
  x: Float32Array,
  pass: QuantizerPass,
): Float32Array {
  return forward(exact, x, inFloat64(pass));
}

/**
 * {@link quantizeBackward} in float64 (see {@link quantizeForwardFloat64}).
 *
 * @param x The elements.
 * @param dy `dL/dxq`.
 * @param pass The pass.
 * @returns Every gradient.
 */
export function quantizeBackwardFloat64(
  x: Float32Array,
  dy: Float32Array,
  pass: QuantizerPass,
): QuantizerGrads {
  return backward(exact, x, dy, inFloat64(pass));
}
