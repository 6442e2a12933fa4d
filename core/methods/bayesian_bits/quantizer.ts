/**
 * The Bayesian Bits quantizer as pure functions over tensors.
 *
 * A quantizer owns one tensor `x` and a range `xmax`. Its output is the
 * residual (bit-doubling) decomposition
 * `xq = z2 * (x2 + z4 * (e4 + z8 * (e8 + z16 * (e16 + z32 * e32))))`
 * where `x2` is the 2-bit quantization of the clipped `x` and each `e_b` the
 * `b`-bit quantization of what the coarser levels left over. Gradients follow
 * the straight-through estimator. The math and its float32 conventions are
 * those of the spec (`shared/spec/bayesian-bits.md`, sections 1 and 7); the
 * math itself is `core/reference/quantizer.ts`, and the functions here run it
 * on the device of their input.
 *
 * @module
 */

import {
  BIT_WIDTHS,
  type GateValues,
  quantizerConstants,
  scaleProblem,
} from "../../reference/quantizer.ts";
import { roundHalfEven } from "../../round.ts";
import { hostF32, Tensor } from "../../tensor.ts";

export {
  BIT_WIDTHS,
  type BitWidth,
  type GateValues,
} from "../../reference/quantizer.ts";

/** The learnable range of a quantizer and its signedness. */
export interface QuantizerRange {
  /** The range: the grid covers `[-xmax, xmax]` (signed) or `[0, xmax]`. */
  readonly xmax: number;
  /** Decided once, from the data that initialised the range. */
  readonly signed: boolean;
}

/** Options shared by the quantizer functions. */
export interface QuantizeOptions {
  /** A name for error messages, e.g. `"conv1.weight"`. */
  readonly name?: string;
}

/** The gradients {@link quantizeGrad} returns. */
export interface QuantizeGradResult {
  /** `dL/dx`, shaped like `x`. */
  readonly dx: Tensor;
  /** `dL/dxmax`. */
  readonly dxmax: number;
  /** `dL/dz2` per channel, or `null` without pruning gates. */
  readonly dz2: Float32Array | null;
  /** `dL/dz4`. */
  readonly dz4: number;
  /** `dL/dz8`. */
  readonly dz8: number;
  /** `dL/dz16`. */
  readonly dz16: number;
  /** `dL/dz32`. */
  readonly dz32: number;
}

function label(name: string | undefined): string {
  return name === undefined ? "tensor" : `"${name}"`;
}

function checkFinite(x: Float32Array, name: string | undefined): void {
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) {
      throw new RangeError(
        `Cannot quantize ${label(name)}: element ${i} is ${
          x[i]
        } (values must be finite)`,
      );
    }
  }
}

function checkRange(range: QuantizerRange, name: string | undefined): void {
  if (
    typeof range?.xmax !== "number" || !Number.isFinite(range.xmax) ||
    range.xmax <= 0
  ) {
    throw new RangeError(
      `Cannot quantize ${
        label(name)
      }: xmax must be finite and positive, got ${range?.xmax}`,
    );
  }
  if (Math.fround(range.xmax) === Infinity || Math.fround(range.xmax) === 0) {
    throw new RangeError(
      `Cannot quantize ${
        label(name)
      }: xmax ${range.xmax} is not representable in float32`,
    );
  }
  if (typeof range.signed !== "boolean") {
    throw new TypeError(
      `Cannot quantize ${
        label(name)
      }: signed must be a boolean, got ${range.signed}`,
    );
  }
}

function checkGate(
  value: number,
  gate: string,
  name: string | undefined,
): void {
  if (typeof value !== "number" || !(value >= 0 && value <= 1)) {
    throw new RangeError(
      `Cannot quantize ${
        label(name)
      }: gate ${gate} must be in [0, 1], got ${value}`,
    );
  }
}

/** Host values of a tensor the host can see, for input checks; null on others. */
function visible(x: Tensor): Float32Array | null {
  return x.device.kind === "webgpu" ? null : hostF32(x);
}

interface Checked {
  /** `[z4, z8, z16, z32]` rounded to float32. */
  readonly chain: readonly [number, number, number, number];
  /** Pruning gates, or null. */
  readonly z2: Float32Array | null;
}

/** Validates a quantizer call (range, gates, pruning channels, finite `x`). */
function checkQuantizer(
  x: Tensor,
  range: QuantizerRange,
  gates: GateValues,
  name?: string,
  pass: "forward" | "backward" = "forward",
): Checked {
  if (!(x instanceof Tensor)) {
    throw new TypeError(
      `Cannot quantize ${label(name)}: x must be a Tensor, got ${typeof x}`,
    );
  }
  checkRange(range, name);
  const given = [gates?.z4, gates?.z8, gates?.z16, gates?.z32];
  ["z4", "z8", "z16", "z32"].forEach((g, i) => checkGate(given[i], g, name));
  const chain = given.map(Math.fround) as [number, number, number, number];
  const constants = quantizerConstants(range.xmax, range.signed, chain);
  const problem = scaleProblem(
    constants,
    pass === "forward" ? constants.levelsForward : constants.levelsBackward,
  );
  if (problem !== null) {
    throw new RangeError(`Cannot quantize ${label(name)}: ${problem}`);
  }
  let z2: Float32Array | null = null;
  if (gates.z2 !== undefined && gates.z2 !== null) {
    const channels = x.shape.length === 0 ? 1 : x.shape[0];
    if (x.shape.length === 0 || gates.z2.length !== channels) {
      throw new RangeError(
        `Cannot quantize ${
          label(name)
        }: the pruning gate z2 has ${gates.z2.length} values but the tensor of shape [${
          x.shape.join(", ")
        }] has ${channels} output channels (axis 0)`,
      );
    }
    z2 = Float32Array.from(gates.z2);
    for (let c = 0; c < channels; c++) checkGate(gates.z2[c], `z2[${c}]`, name);
  }
  const values = visible(x);
  if (values) checkFinite(values, name);
  return { chain, z2 };
}

/** The range, gates and pruning gates as tensors on `x`'s device. */
function quantizerTensors(x: Tensor, range: QuantizerRange, c: Checked) {
  const dev = x.device;
  return {
    xmax: dev.upload([range.xmax], [1]),
    chain: dev.upload(c.chain, [4]),
    z2: c.z2 ? dev.upload(c.z2, [c.z2.length]) : null,
  };
}

/**
 * Initialises a range from data, as the spec says: `xmax = max(max(x), 0)`,
 * signed iff `min(x) < 0`. The largest *value*, not the largest magnitude.
 *
 * @param x The first data the quantizer sees (weights, or a first activation batch).
 * @param name Optional name for messages.
 * @returns The range.
 * @throws {RangeError} If `x` is empty, holds NaN/Inf, has no positive
 *   value, or its largest value makes a grid step overflow or underflow
 *   float32 (see `scaleProblem`).
 *
 * @example
 * ```ts
 * import { initRange, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(initRange(Tensor.from([-3, 0.5, 2])), { xmax: 2, signed: true });
 * assert.deepEqual(initRange(Tensor.from([0, 1.5])), { xmax: 1.5, signed: false });
 * ```
 */
export function initRange(x: Tensor, name?: string): QuantizerRange {
  const data = visible(x);
  if (data === null) {
    throw new RangeError(
      `Cannot initialise the range of ${
        label(name)
      } on ${x.device.name}: read it to the host first (await x.to(referenceDevice))`,
    );
  }
  if (data.length === 0) {
    throw new RangeError(
      `Cannot initialise the range of ${label(name)}: it is empty`,
    );
  }
  checkFinite(data, name);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < data.length; i++) {
    if (data[i] < min) min = data[i];
    if (data[i] > max) max = data[i];
  }
  const xmax = Math.max(max, 0);
  if (xmax === 0) {
    throw new RangeError(
      `Cannot initialise the range of ${
        label(name)
      }: its largest value is ${max}, so xmax = max(max(x), 0) would be 0`,
    );
  }
  // The range may be trained at any width: every step must be representable.
  const problem = scaleProblem(
    quantizerConstants(xmax, min < 0, [1, 1, 1, 1]),
    5,
  );
  if (problem !== null) {
    throw new RangeError(
      `Cannot initialise the range of ${label(name)}: ${problem}`,
    );
  }
  return { xmax, signed: min < 0 };
}

/**
 * The gate values that make a quantizer a plain `bits`-bit quantizer.
 *
 * @param bits One of {@link BIT_WIDTHS}; 0 prunes every channel.
 * @param channels Output channels; when given, `z2` is a vector of ones
 *   (zeros for `bits = 0`).
 * @returns Hard 0/1 gates.
 * @throws {RangeError} On an unsupported bit width, a channel count that is
 *   not a non-negative integer, or `bits = 0` without channels.
 *
 * @example
 * ```ts
 * import { gatesForBits } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(gatesForBits(8), { z4: 1, z8: 1, z16: 0, z32: 0 });
 * ```
 */
export function gatesForBits(bits: number, channels?: number): GateValues {
  if (!(BIT_WIDTHS as readonly number[]).includes(bits)) {
    throw new RangeError(
      `Unsupported bit width ${bits}: bits must be one of ${
        BIT_WIDTHS.join(", ")
      }`,
    );
  }
  if (
    channels !== undefined &&
    (!Number.isSafeInteger(channels) || channels < 0)
  ) {
    throw new RangeError(
      `Invalid channel count ${channels} for the z2 gates: it must be a non-negative integer`,
    );
  }
  if (bits === 0 && channels === undefined) {
    throw new RangeError(
      "Bit width 0 (pruned) needs a channel count for the z2 gates",
    );
  }
  const on = (b: number) => (bits >= b ? 1 : 0);
  const gates: GateValues = { z4: on(4), z8: on(8), z16: on(16), z32: on(32) };
  if (channels === undefined) return gates;
  return { z2: new Float32Array(channels).fill(bits === 0 ? 0 : 1), ...gates };
}

/**
 * The quantizer's forward pass: the residual decomposition of `x`.
 *
 * @param x The tensor to quantize; axis 0 holds the output channels.
 * @param range The range and signedness.
 * @param gates Gate values in [0, 1] (hard or fractional).
 * @param options Backend and name.
 * @returns A new tensor `xq` shaped like `x`.
 * @throws {RangeError} On bad inputs (see {@link makeQuantizerPass}).
 *
 * @example A signed 2-bit quantizer has the levels -s2, 0, s2 with s2 = 2 xmax / 3
 * ```ts
 * import { quantize, Tensor } from "@bbits/core";
 * import { gatesForBits } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const x = Tensor.from([-0.9, 0.2, 0.4, 5]);
 * const xq = quantize(x, { xmax: 1.5, signed: true }, gatesForBits(2));
 * assert.deepEqual([...xq.toFloat32Array()], [-1, 0, 0, 1]);
 * ```
 */
export function quantize(
  x: Tensor,
  range: QuantizerRange,
  gates: GateValues,
  options: QuantizeOptions = {},
): Tensor {
  const c = checkQuantizer(x, range, gates, options.name);
  const t = quantizerTensors(x, range, c);
  return x.device.kernels.residualQuantize(
    x,
    t.xmax,
    t.chain,
    t.z2,
    range.signed,
  );
}

/**
 * The quantizer's straight-through backward pass: the gradients of a loss
 * with respect to `x`, `xmax` and every gate, given `dL/dxq`.
 *
 * `d xq / d x = z2` inside the clip range and 0 outside (also exactly at the
 * bounds); `xmax` receives gradient through the clip and through the scales;
 * each gate receives the sum of `dy` times the bracket it multiplies.
 *
 * @param x The tensor that was quantized.
 * @param range The range.
 * @param gates The gate values of the forward pass.
 * @param dy `dL/dxq`, shaped like `x`.
 * @param options Backend and name.
 * @returns All gradients.
 * @throws {RangeError} On bad inputs, or `dy` shaped unlike `x` or non-finite.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { gatesForBits, quantizeGrad } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const x = Tensor.from([0.3, 2]);
 * const g = quantizeGrad(x, { xmax: 1, signed: false }, gatesForBits(8), Tensor.from([1, 1]));
 * assert.deepEqual([...g.dx.toFloat32Array()], [1, 0]); // 2 is clipped
 * ```
 */
export function quantizeGrad(
  x: Tensor,
  range: QuantizerRange,
  gates: GateValues,
  dy: Tensor,
  options: QuantizeOptions = {},
): QuantizeGradResult {
  const c = checkQuantizer(x, range, gates, options.name, "backward");
  if (
    !(dy instanceof Tensor) || dy.shape.join() !== x.shape.join() ||
    dy.size !== x.size
  ) {
    throw new RangeError(
      `Cannot back-propagate through ${label(options.name)}: dy has shape [${
        dy?.shape?.join(", ")
      }] but x has shape [${x.shape.join(", ")}]`,
    );
  }
  const dyData = hostF32(dy);
  for (let i = 0; i < dyData.length; i++) {
    if (!Number.isFinite(dyData[i])) {
      throw new RangeError(
        `Cannot back-propagate through ${
          label(options.name)
        }: dy element ${i} is ${dyData[i]}`,
      );
    }
  }
  const t = quantizerTensors(x, range, c);
  const r = x.device.kernels.residualQuantizeBackward(
    x,
    t.xmax,
    t.chain,
    t.z2,
    range.signed,
    dy,
  );
  const dgates = hostF32(r.dgates);
  return {
    dx: r.dx,
    dxmax: hostF32(r.dxmax)[0],
    dz2: r.dz2 ? hostF32(r.dz2).slice() : null,
    dz4: dgates[0],
    dz8: dgates[1],
    dz16: dgates[2],
    dz32: dgates[3],
  };
}

/**
 * A plain uniform `bits`-bit quantizer on the grid `s_b` of the decomposition
 * (signed: `2^b - 1` symmetric levels; unsigned: `2^b` levels), with the same
 * clip. Away from exact rounding ties, {@link quantize} with gates on up to
 * `bits` equals this; it is the identity's other side and a handy baseline.
 *
 * @param x The tensor.
 * @param range The range.
 * @param bits 2, 4, 8, 16 or 32.
 * @returns A new tensor.
 * @throws {RangeError} On an unsupported bit width or bad inputs.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { uniformQuantize } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const xq = uniformQuantize(Tensor.from([0.45]), { xmax: 1, signed: false }, 4);
 * assert.ok(Math.abs(xq.get(0) - 7 / 15) < 1e-6);
 * ```
 */
export function uniformQuantize(
  x: Tensor,
  range: QuantizerRange,
  bits: number,
): Tensor {
  if (![2, 4, 8, 16, 32].includes(bits)) {
    throw new RangeError(
      `Unsupported bit width ${bits} for a uniform quantizer: bits must be one of 2, 4, 8, 16, 32`,
    );
  }
  const gates = gatesForBits(bits);
  checkQuantizer(x, range, gates);
  const data = visible(x);
  if (data === null) {
    throw new RangeError(
      `uniformQuantize runs on the host: read x first (await x.to(referenceDevice))`,
    );
  }
  const chain = [gates.z4, gates.z8, gates.z16, gates.z32] as const;
  const c = quantizerConstants(range.xmax, range.signed, chain);
  const s = c.scales[[2, 4, 8, 16, 32].indexOf(bits)];
  const f = Math.fround;
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const t1 = f(data[i] - c.lo);
    const t2 = f(c.span - (t1 > 0 ? t1 : 0));
    const xc = f(c.hi - (t2 > 0 ? t2 : 0));
    out[i] = f(s * roundHalfEven(f(xc / s)));
  }
  return x.device.upload(out, x.shape);
}
