/**
 * The reference backend: plain TypeScript, one element at a time, float32
 * rounding after every operation (`Math.fround`), float64 sums.
 *
 * This is the oracle every other backend is tested against. It follows the
 * spec's arithmetic literally: clip as `hi - relu(span - relu(x - lo))`,
 * divide by each scale, round half to even, subtract levels one at a time.
 *
 * @module
 */

import {
  deriveConstants,
  type QuantizerBackend,
  type QuantizerGrads,
  type QuantizerPass,
} from "./backend.ts";
import { roundHalfEven } from "./round.ts";

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
  /** 1 inside the clip range (where `d xc / d x = 1`), else 0. */
  inside: boolean;
  /** `d xc / d xmax` for this element. */
  clipGrad: number;
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

function quantizeForward(
  f: Rounding,
  x: Float32Array,
  pass: QuantizerPass,
): Float32Array {
  const out = new Float32Array(x.length);
  const per = x.length / pass.channels;
  const d: Decomposition = {
    inner: new Float64Array(5),
    roundingError: new Float64Array(5),
    inside: false,
    clipGrad: 0,
  };
  for (let ch = 0; ch < pass.channels; ch++) {
    const z2 = pass.z2 ? pass.z2[ch] : 1;
    for (let i = ch * per; i < (ch + 1) * per; i++) {
      decompose(f, x[i], pass, pass.constants.levelsForward, d);
      out[i] = f(z2 * d.inner[0]);
    }
  }
  return out;
}

function quantizeBackward(
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
  const per = x.length / pass.channels;
  const d: Decomposition = {
    inner: new Float64Array(5),
    roundingError: new Float64Array(5),
    inside: false,
    clipGrad: 0,
  };
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
 * The plain-TypeScript reference backend.
 *
 * @example
 * ```ts
 * import { quantizerConstants, referenceBackend } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gates = [1, 0, 0, 0] as const; // 4-bit
 * const pass = {
 *   channels: 1,
 *   z2: null,
 *   gates,
 *   constants: quantizerConstants(1, false, gates),
 * };
 * const xq = referenceBackend.quantizeForward(new Float32Array([0.45]), pass);
 * assert.ok(Math.abs(xq[0] - 7 / 15) < 1e-6); // 4-bit unsigned grid of step 1/15
 * ```
 */
export const referenceBackend: QuantizerBackend = Object.freeze({
  name: "reference",
  quantizeForward: (x: Float32Array, pass: QuantizerPass) =>
    quantizeForward(Math.fround, x, pass),
  quantizeBackward: (x: Float32Array, dy: Float32Array, pass: QuantizerPass) =>
    quantizeBackward(Math.fround, x, dy, pass),
});

const exact: Rounding = (v) => v;

function inFloat64(pass: QuantizerPass): QuantizerPass {
  const c = pass.constants;
  return {
    ...pass,
    constants: deriveConstants(c.xmax, c.signed, pass.gates, exact),
  };
}

/**
 * The reference arithmetic carried out in float64 (scales, levels and
 * brackets unrounded; only the returned `xq` and `dx` are float32). The 16-
 * and 32-bit levels are below float32 resolution for most ranges, so
 * gradient checks of the gates `z16`, `z32` run against this one.
 *
 * @example
 * ```ts
 * import { float64ReferenceBackend, quantizerConstants } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gates = [1, 1, 1, 1] as const;
 * const pass = { channels: 1, z2: null, gates, constants: quantizerConstants(1, false, gates) };
 * const xq = float64ReferenceBackend.quantizeForward(new Float32Array([0.3]), pass);
 * assert.equal(xq[0], Math.fround(0.3));
 * ```
 */
export const float64ReferenceBackend: QuantizerBackend = Object.freeze({
  name: "reference-float64",
  quantizeForward: (x: Float32Array, pass: QuantizerPass) =>
    quantizeForward(exact, x, inFloat64(pass)),
  quantizeBackward: (x: Float32Array, dy: Float32Array, pass: QuantizerPass) =>
    quantizeBackward(exact, x, dy, inFloat64(pass)),
});
