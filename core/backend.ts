/**
 * The backend interface: the hot loops every backend implements.
 *
 * Three implementations exist: the plain-TypeScript reference
 * (`core/reference.ts`, the oracle), WASM SIMD (`asm/backend.ts`) and WebGPU
 * (`gpu/backend.ts`, asynchronous because GPU read-back is). Each is tested
 * against the reference.
 *
 * @module
 */

import type { PoolGeometry } from "./ops/kernels.ts";

/**
 * Everything one fused quantizer pass needs, already validated and with the
 * scales precomputed by {@link quantizerConstants} so every backend uses the
 * very same float32 numbers.
 */
export interface QuantizerPass {
  /** Number of output channels (axis 0); the flat length is a multiple of it. */
  readonly channels: number;
  /** Per-channel pruning gates `z2`, or `null` for a tensor without them. */
  readonly z2: Float32Array | null;
  /** The four bit-doubling gates `z4, z8, z16, z32`. */
  readonly gates: readonly [number, number, number, number];
  /** Derived float32 constants; see {@link QuantizerConstants}. */
  readonly constants: QuantizerConstants;
}

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

/** A synchronous backend (reference TypeScript, WASM). */
export interface QuantizerBackend {
  /** A short name for reports: `"reference"`, `"wasm"`, ... */
  readonly name: string;
  /** Fused forward: returns `xq` for a flat float32 `x`. */
  quantizeForward(x: Float32Array, pass: QuantizerPass): Float32Array;
  /** Fused straight-through backward: all gradients in one pass over `x`, `dy`. */
  quantizeBackward(
    x: Float32Array,
    dy: Float32Array,
    pass: QuantizerPass,
  ): QuantizerGrads;
  /**
   * Optional, inference only: the max-pool of `xq` (planes of `geometry`; a
   * pass without `z2`), bit for bit `maxPool2d(quantizeForward(x, pass))`,
   * without the full-size `xq` in memory. Callers without it run the two
   * steps.
   */
  quantizePoolForward?(
    x: Float32Array,
    pass: QuantizerPass,
    geometry: PoolGeometry,
  ): Float32Array;
}

/** Float32 value of the clip factor `1 - 1e-7`, as float32 arithmetic sees it. */
export const CLIP_FACTOR: number = Math.fround(1 - 1e-7);

/**
 * Derives the float32 constants of a quantizer pass (spec sections 1 and 7).
 *
 * @param xmax The range, finite and positive.
 * @param signed Whether the grid is symmetric around zero.
 * @param gates `[z4, z8, z16, z32]`, each in [0, 1].
 * @returns The constants every backend uses.
 *
 * @example
 * ```ts
 * import { quantizerConstants } from "@bbits/core";
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

/**
 * {@link quantizerConstants} with a chosen rounding of each operation:
 * `Math.fround` (float32, what every backend uses) or the identity (float64,
 * for the float64 reference that gradient checks run against).
 *
 * @ignore
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
