/**
 * BSQ's bit planes on the host (spec `bsq.md` sections 2 and 4): a float
 * weight to integer codes and planes, planes back to codes, and the
 * periodic re-quantization with its precision adjustment (grow on
 * overflow, drop all-zero MSB and LSB planes with the exact scale
 * correction). Codes are signed integers `k` in `[-m, m]`, `m = 2^N - 1`;
 * a layer's weight is `s k / m`. Planes are plane-major `[N, size]`, plane
 * 0 the most significant; `pos` holds the magnitude bits of positive codes,
 * `neg` those of negative ones.
 *
 * @module
 */

import {
  bitPlaneSumReference,
  planeLevels,
} from "../../reference/bitplanes.ts";
import { roundHalfEven } from "../../round.ts";

/** One layer's codes, precision and scale. */
export interface LayerCodes {
  /** Signed integer codes, one per weight. */
  readonly codes: Int32Array;
  /** `N`: magnitude planes. */
  readonly planes: number;
  /** `s`: the layer's scale (a weight is `s k / (2^N - 1)`). */
  readonly scale: number;
}

/**
 * A float weight tensor as `N` planes (spec section 2): `s = max |W|`,
 * `k = round(|W| (2^N - 1) / s)` in float32, multiplying first, ties to
 * even; `W = 0` goes to the negative side with code 0. An all-zero tensor
 * has scale 0 and codes 0.
 *
 * @param weights The float weights.
 * @param planes `N >= 1`.
 * @returns Codes, `N` and `s` (float32).
 *
 * @example Spec section 10, case 2: ties go to even
 * ```ts
 * import { codesFromFloat } from "@bbits/core/bsq";
 * import assert from "node:assert/strict";
 *
 * const r = codesFromFloat(new Float32Array([3, 2.5, 0.5, -1.5, 0, -3]), 2);
 * assert.deepEqual([...r.codes], [3, 2, 0, -2, 0, -3]);
 * assert.equal(r.scale, 3);
 * ```
 */
export function codesFromFloat(
  weights: Float32Array,
  planes: number,
): LayerCodes {
  const m = planeLevels(planes);
  let scale = 0;
  for (const w of weights) scale = Math.max(scale, Math.abs(w));
  const codes = new Int32Array(weights.length);
  if (scale > 0) {
    for (let i = 0; i < weights.length; i++) {
      const magnitude = roundHalfEven(
        Math.fround(Math.fround(Math.abs(weights[i]) * m) / scale),
      );
      codes[i] = weights[i] > 0 ? magnitude : -magnitude;
    }
  }
  return { codes, planes, scale: Math.fround(scale) };
}

/**
 * Codes as exact 0/1 planes, MSB first (spec section 2).
 *
 * @param codes Signed codes with `|k| <= 2^N - 1`.
 * @param planes `N`.
 * @returns `pos` and `neg`, `[N * size]` each.
 * @throws {RangeError} If a code does not fit `N` planes.
 */
export function planesFromCodes(
  codes: Int32Array,
  planes: number,
): { pos: Float32Array; neg: Float32Array } {
  const size = codes.length;
  const m = planeLevels(planes);
  const pos = new Float32Array(planes * size);
  const neg = new Float32Array(planes * size);
  for (let i = 0; i < size; i++) {
    let rest = Math.abs(codes[i]);
    if (rest > m) {
      throw new RangeError(
        `Code ${
          codes[i]
        } of weight ${i} does not fit ${planes} planes (|k| <= ${m})`,
      );
    }
    const target = codes[i] > 0 ? pos : neg;
    for (let b = 0; b < planes; b++) {
      const place = 2 ** (planes - 1 - b);
      const bit = Math.floor(rest / place);
      target[b * size + i] = bit;
      rest -= bit * place;
    }
  }
  return { pos, neg };
}

/**
 * The codes that continuous planes round to (step 4a without the overflow
 * rule): `wt` as the forward pass composes it (float32), then
 * `k = round(wt m)`, not clamped.
 */
export function codesFromPlanes(
  pos: Float32Array,
  neg: Float32Array,
  planes: number,
): Int32Array {
  const m = planeLevels(planes);
  const wt = bitPlaneSumReference(pos, neg, planes);
  return Int32Array.from(wt, (v) => {
    const k = roundHalfEven(Math.fround(Math.abs(v) * m));
    return v < 0 ? -k : k;
  });
}

/**
 * Step 4a: codes of the current planes; at `N >= maxBits` they saturate at
 * `m`, else an overflow past `m` adds one plane (`s` scaled by
 * `(2^(N+1) - 1) / (2^N - 1)`, every value unchanged).
 *
 * @param layer Codes from {@link codesFromPlanes}, `N` and `s`.
 * @param maxBits The most planes a layer may have.
 * @returns The re-quantized layer.
 */
export function growOrSaturate(
  layer: LayerCodes,
  maxBits: number,
): LayerCodes {
  const m = planeLevels(layer.planes);
  let largest = 0;
  for (const k of layer.codes) largest = Math.max(largest, Math.abs(k));
  if (largest <= m) return layer;
  if (layer.planes >= maxBits) {
    const codes = layer.codes.map((k) => Math.max(-m, Math.min(m, k)));
    return { ...layer, codes };
  }
  const planes = layer.planes + 1;
  const scale = Math.fround(layer.scale * planeLevels(planes) / m);
  return { codes: layer.codes, planes, scale };
}

/**
 * Step 4b: drops all-zero MSB planes (codes unchanged), then all-zero LSB
 * planes (codes halved), never below one plane, and corrects the scale
 * exactly: `s' = s 2^dropped_lsb (2^N' - 1) / (2^N - 1)`, so every value
 * `s k / m` stays the same.
 *
 * @param layer The layer.
 * @returns The layer with the fewest planes that hold its codes.
 *
 * @example Spec section 10, case 6: both sides
 * ```ts
 * import { dropZeroPlanes } from "@bbits/core/bsq";
 * import assert from "node:assert/strict";
 *
 * const r = dropZeroPlanes({ codes: new Int32Array([6, -2, 4, 0]), planes: 4, scale: 15 });
 * assert.deepEqual([r.planes, r.scale, ...r.codes], [2, 6, 3, -1, 2, 0]);
 * ```
 */
export function dropZeroPlanes(layer: LayerCodes): LayerCodes {
  let planes = layer.planes;
  let largest = 0;
  for (const k of layer.codes) largest = Math.max(largest, Math.abs(k));
  while (planes > 1 && largest < 2 ** (planes - 1)) planes--;
  let codes = layer.codes;
  let shift = 0;
  while (planes > 1 && codes.every((k) => k % 2 === 0)) {
    codes = codes.map((k) => k / 2);
    planes--;
    shift++;
  }
  const scale = Math.fround(
    layer.scale * 2 ** shift * planeLevels(planes) /
      planeLevels(layer.planes),
  );
  return { codes, planes, scale };
}

/**
 * One re-quantization of a layer's continuous planes (spec section 4):
 * step 4a ({@link codesFromPlanes}, {@link growOrSaturate}) then step 4b
 * ({@link dropZeroPlanes}).
 *
 * @param pos Positive planes `[N * size]`.
 * @param neg Negative planes `[N * size]`.
 * @param planes `N`.
 * @param scale `s`.
 * @param maxBits The most planes a layer may have.
 * @returns The layer's new codes, `N` and `s`.
 */
export function requantizePlanes(
  pos: Float32Array,
  neg: Float32Array,
  planes: number,
  scale: number,
  maxBits: number,
): LayerCodes {
  const codes = codesFromPlanes(pos, neg, planes);
  return dropZeroPlanes(growOrSaturate({ codes, planes, scale }, maxBits));
}

/** `k / m` per code, float32: the normalised weight of exact planes. */
export function normalizedWeights(
  codes: Int32Array,
  planes: number,
): Float32Array {
  const m = planeLevels(planes);
  return Float32Array.from(codes, (k) => k / m);
}
