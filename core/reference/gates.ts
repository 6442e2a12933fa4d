/**
 * Hard-concrete gates (spec section 2).
 *
 * Every gate has a learnable logit `g`. In training a gate is sampled as
 * `z = clamp(sigmoid((log u - log(1 - u) + g) / beta) * (zeta - gamma) + gamma, 0, 1)`
 * from one uniform `u` per gate per step; in evaluation it is on iff
 * `1 - q(g) < 0.34` with `q(g) = P(z > 0)`. The bit-doubling gates form a
 * chain visited 4, 8, 16, 32: once a logit is `<= -2`, that gate and every
 * higher one are 0 and draw no noise.
 *
 * Gate arithmetic here is float64 (a handful of numbers per quantizer).
 *
 * @module
 */

import type { BitWidth, GateValues } from "./quantizer.ts";
import { type RandomKey, uniform } from "../rng.ts";

/** The hard-concrete constants: temperature `beta`, stretch `gamma`, `zeta`. */
export const HARD_CONCRETE: {
  readonly beta: number;
  readonly gamma: number;
  readonly zeta: number;
} = Object.freeze({ beta: 2 / 3, gamma: -0.1, zeta: 1.1 });

/** A logit at or below this stops the chain: that gate and all above are 0. */
export const CHAIN_STOP_LOGIT: number = -2;

/** Evaluation rule: a gate is on iff `1 - q(g) <` this. */
export const EVAL_OFF_PROBABILITY: number = 0.34;

/** The logits of one quantizer's gates. */
export interface GateLogits {
  /** Per-output-channel pruning logits, or absent for a quantizer without `z2`. */
  readonly g2?: ArrayLike<number>;
  /** Logit of the 4-bit gate. */
  readonly g4: number;
  /** Logit of the 8-bit gate. */
  readonly g8: number;
  /** Logit of the 16-bit gate. */
  readonly g16: number;
  /** Logit of the 32-bit gate. */
  readonly g32: number;
}

/** Sampled gates and the derivative of each sample with respect to its logit. */
export interface SampledGates {
  /** The gate values, ready for {@link quantize}. */
  readonly values: GateValues & { readonly z2?: Float32Array };
  /** `dz2_c / dg2_c` per channel, or `null` without `z2`. */
  readonly dz2dg2: Float64Array | null;
  /** `[dz4/dg4, dz8/dg8, dz16/dg16, dz32/dg32]`; 0 past a chain stop. */
  readonly dzdg: readonly [number, number, number, number];
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

function checkLogit(g: number, what: string): void {
  if (typeof g !== "number" || !Number.isFinite(g)) {
    throw new RangeError(
      `Gate logit ${what} must be a finite number, got ${g}`,
    );
  }
}

function checkUniform(u: number, what: string): void {
  if (!(u > 0 && u < 1)) {
    throw new RangeError(
      `Uniform noise ${what} must be strictly inside (0, 1), got ${u}`,
    );
  }
}

/**
 * Samples one hard-concrete gate from explicit noise.
 *
 * @param logit The gate logit `g`.
 * @param u Uniform noise in (0, 1).
 * @returns `z` in [0, 1].
 * @throws {RangeError} If `logit` is not finite or `u` is outside (0, 1).
 *
 * @example
 * ```ts
 * import { sampleGate } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * assert.equal(sampleGate(6, 0.5), 1); // a large logit saturates at 1
 * assert.equal(sampleGate(-6, 0.5), 0);
 * ```
 */
export function sampleGate(logit: number, u: number): number {
  checkLogit(logit, "g");
  checkUniform(u, "u");
  const { beta, gamma, zeta } = HARD_CONCRETE;
  const s = sigmoid((Math.log(u) - Math.log(1 - u) + logit) / beta);
  return Math.min(1, Math.max(0, s * (zeta - gamma) + gamma));
}

/**
 * Derivative of {@link sampleGate} with respect to the logit, for fixed noise.
 * Zero where the stretched sample is clamped (strictly outside [0, 1]).
 *
 * @param logit The gate logit.
 * @param u The same noise as the sample.
 * @returns `dz/dg`.
 *
 * @example
 * ```ts
 * import { sampleGateGrad } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * // at g = 0, u = 0.5: s = 0.5, dz/dg = (zeta - gamma) * s (1 - s) / beta
 * assert.ok(Math.abs(sampleGateGrad(0, 0.5) - 1.2 * 0.25 * 1.5) < 1e-12);
 * ```
 */
export function sampleGateGrad(logit: number, u: number): number {
  checkLogit(logit, "g");
  checkUniform(u, "u");
  const { beta, gamma, zeta } = HARD_CONCRETE;
  const s = sigmoid((Math.log(u) - Math.log(1 - u) + logit) / beta);
  const stretched = s * (zeta - gamma) + gamma;
  if (stretched < 0 || stretched > 1) return 0;
  return (zeta - gamma) * s * (1 - s) / beta;
}

/**
 * Probability that a gate is on, `q(g) = P(z > 0) = sigmoid(g - beta log(-gamma / zeta))`.
 *
 * @param logit The gate logit.
 * @returns `q(g)` in (0, 1).
 *
 * @example
 * ```ts
 * import { gateProbability } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * assert.ok(gateProbability(6) > 0.99);
 * ```
 */
export function gateProbability(logit: number): number {
  checkLogit(logit, "g");
  const { beta, gamma, zeta } = HARD_CONCRETE;
  return sigmoid(logit - beta * Math.log(-gamma / zeta));
}

/**
 * Derivative of {@link gateProbability}: `q (1 - q)`.
 *
 * @param logit The gate logit.
 * @returns `dq/dg`.
 *
 * @example
 * ```ts
 * import { gateProbability, gateProbabilityGrad } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const q = gateProbability(0.3);
 * assert.equal(gateProbabilityGrad(0.3), q * (1 - q));
 * ```
 */
export function gateProbabilityGrad(logit: number): number {
  const q = gateProbability(logit);
  return q * (1 - q);
}

/**
 * The deterministic evaluation rule for one gate: on iff `1 - q(g) < 0.34`.
 * (The chain stop is applied by {@link deterministicGates}.)
 *
 * @param logit The gate logit.
 * @returns Whether the gate is on.
 *
 * @example
 * ```ts
 * import { gateIsOn } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * assert.equal(gateIsOn(6), true);
 * assert.equal(gateIsOn(-6), false);
 * ```
 */
export function gateIsOn(logit: number): boolean {
  return 1 - gateProbability(logit) < EVAL_OFF_PROBABILITY;
}

function checkLogits(logits: GateLogits): void {
  checkLogit(logits?.g4, "g4");
  checkLogit(logits.g8, "g8");
  checkLogit(logits.g16, "g16");
  checkLogit(logits.g32, "g32");
  if (logits.g2 !== undefined) {
    for (let c = 0; c < logits.g2.length; c++) {
      checkLogit(logits.g2[c], `g2[${c}]`);
    }
  }
}

/**
 * How many uniforms {@link sampleGates} consumes for these logits:
 * 4 for `z4..z32` then one per channel of `z2`.
 *
 * @param logits The logits.
 * @returns `4 + channels`.
 *
 * @example
 * ```ts
 * import { gateNoiseCount } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * assert.equal(gateNoiseCount({ g2: [6, 6], g4: 6, g8: 6, g16: -6, g32: -6 }), 6);
 * ```
 */
export function gateNoiseCount(logits: GateLogits): number {
  return 4 + (logits.g2?.length ?? 0);
}

/**
 * Samples every gate of a quantizer for one training step, applying the
 * chain stop. Noise layout: `noise[0..3]` for `z4, z8, z16, z32`, then
 * `noise[4 + c]` for `z2` of channel `c`.
 *
 * @param logits The logits.
 * @param noise Uniforms in (0, 1), at least {@link gateNoiseCount} of them
 *   (e.g. from {@link gateNoise}).
 * @returns Gate values and the derivative of each sample w.r.t. its logit.
 * @throws {RangeError} On non-finite logits or too little / bad noise.
 *
 * @example The chain stops at the first logit <= -2
 * ```ts
 * import { sampleGates } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const s = sampleGates({ g4: 6, g8: -3, g16: 6, g32: 6 }, [0.5, 0.5, 0.5, 0.5]);
 * assert.deepEqual([s.values.z4, s.values.z8, s.values.z16, s.values.z32], [1, 0, 0, 0]);
 * ```
 */
export function sampleGates(
  logits: GateLogits,
  noise: ArrayLike<number>,
): SampledGates {
  checkLogits(logits);
  const count = gateNoiseCount(logits);
  const u = noise;
  if (u.length < count) {
    throw new RangeError(
      `Sampling these gates needs ${count} uniforms, got ${u.length}`,
    );
  }
  const chain = [logits.g4, logits.g8, logits.g16, logits.g32];
  const z = [0, 0, 0, 0];
  const dzdg = [0, 0, 0, 0];
  for (let l = 0; l < 4; l++) {
    if (chain[l] <= CHAIN_STOP_LOGIT) break;
    z[l] = sampleGate(chain[l], u[l]);
    dzdg[l] = sampleGateGrad(chain[l], u[l]);
  }
  let z2: Float32Array | undefined;
  let dz2dg2: Float64Array | null = null;
  if (logits.g2 !== undefined) {
    const channels = logits.g2.length;
    z2 = new Float32Array(channels);
    dz2dg2 = new Float64Array(channels);
    for (let c = 0; c < channels; c++) {
      z2[c] = sampleGate(logits.g2[c], u[4 + c]);
      dz2dg2[c] = sampleGateGrad(logits.g2[c], u[4 + c]);
    }
  }
  const values = { z4: z[0], z8: z[1], z16: z[2], z32: z[3] };
  return {
    values: z2 ? { z2, ...values } : values,
    dz2dg2,
    dzdg: dzdg as unknown as SampledGates["dzdg"],
  };
}

/**
 * The deterministic (evaluation / export) gates: each on iff
 * `1 - q(g) < 0.34`, the chain stopping at the first gate that is off or has
 * a logit `<= -2`.
 *
 * @param logits The logits.
 * @returns Hard 0/1 gate values.
 *
 * @example
 * ```ts
 * import { deterministicGates } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const z = deterministicGates({ g2: [6, -6], g4: 6, g8: 6, g16: -6, g32: -6 });
 * assert.deepEqual([...z.z2!], [1, 0]);
 * assert.deepEqual([z.z4, z.z8, z.z16, z.z32], [1, 1, 0, 0]);
 * ```
 */
export function deterministicGates(
  logits: GateLogits,
): GateValues & { readonly z2?: Float32Array } {
  checkLogits(logits);
  const chain = [logits.g4, logits.g8, logits.g16, logits.g32];
  const z = [0, 0, 0, 0];
  for (let l = 0; l < 4; l++) {
    if (chain[l] <= CHAIN_STOP_LOGIT || !gateIsOn(chain[l])) break;
    z[l] = 1;
  }
  const values = { z4: z[0], z8: z[1], z16: z[2], z32: z[3] };
  if (logits.g2 === undefined) return values;
  return {
    z2: Float32Array.from(logits.g2, (g) => (gateIsOn(g) ? 1 : 0)),
    ...values,
  };
}

/** The effective bit widths of a quantizer under the deterministic rule. */
export interface EffectiveBits {
  /** Bit width of the kept channels: 2, 4, 8, 16 or 32. */
  readonly bits: Exclude<BitWidth, 0>;
  /** Per-channel bit width (0 = pruned), or `null` without `z2`. */
  readonly channelBits: readonly BitWidth[] | null;
  /** Number of kept channels (all channels without `z2`). */
  readonly keptChannels: number | null;
}

/**
 * The bit width a quantizer ends up with: 2, 4, 8, 16 or 32 from the chain of
 * on-gates; a pruned channel (`z2 = 0`) has 0 bits.
 *
 * @param logits The logits.
 * @returns Tensor bit width, per-channel bit widths and kept channels.
 *
 * @example
 * ```ts
 * import { effectiveBits } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const e = effectiveBits({ g2: [6, -6, 6], g4: 6, g8: -1, g16: 6, g32: 6 });
 * assert.equal(e.bits, 4);
 * assert.deepEqual(e.channelBits, [4, 0, 4]);
 * assert.equal(e.keptChannels, 2);
 * ```
 */
export function effectiveBits(logits: GateLogits): EffectiveBits {
  const z = deterministicGates(logits);
  const bits =
    (z.z32 ? 32 : z.z16 ? 16 : z.z8 ? 8 : z.z4 ? 4 : 2) as EffectiveBits[
      "bits"
    ];
  if (!z.z2) return { bits, channelBits: null, keptChannels: null };
  const channelBits = Array.from(z.z2, (on) => (on ? bits : 0) as BitWidth);
  return {
    bits,
    channelBits,
    keptChannels: channelBits.filter((b) => b > 0).length,
  };
}

/**
 * Convenience: draws the gate noise of one step from a key.
 *
 * @param logits The logits.
 * @param key The step's key (e.g. `foldIn(quantizerKey, step)`).
 * @returns `gateNoiseCount(logits)` uniforms.
 *
 * @example
 * ```ts
 * import { randomKey } from "@bbits/core";
 * import { gateNoise } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * assert.equal(gateNoise({ g4: 6, g8: 6, g16: -6, g32: -6 }, randomKey(3)).length, 4);
 * ```
 */
export function gateNoise(logits: GateLogits, key: RandomKey): Float32Array {
  return uniform(key, gateNoiseCount(logits));
}
