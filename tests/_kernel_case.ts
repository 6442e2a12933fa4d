/**
 * What one row of the kernel table (`_kernel_cases.ts`) is: deterministic
 * host inputs, the kernel call on a device, and a tolerance per output;
 * with the helpers that build inputs and compare outputs.
 */

import assert from "node:assert/strict";
import type { Device } from "../core/device.ts";
import type { Kernels } from "../core/kernels.ts";
import type { Shape, Tensor } from "../core/tensor.ts";
import { randomValues } from "./_fixtures.ts";

/** One host input of a case. */
export interface HostInput {
  /** The elements; an `Int32Array` makes an `int32` tensor. */
  readonly values: Float32Array | Int32Array;
  /** The shape. */
  readonly shape: Shape;
}

/** A case's named host inputs. */
export type Inputs = Readonly<Record<string, HostInput>>;

/** A case's named outputs (null where the kernel returns null). */
export type Outputs = Readonly<Record<string, Tensor | null>>;

/**
 * `"exact"`: bit for bit (`Object.is`: NaN matches NaN, `-0` differs from
 * `+0`); else `|actual - expected| <= atol + rtol |expected|`.
 */
export type Tolerance = "exact" | {
  /** Relative part. */
  readonly rtol: number;
  /** Absolute part: one for every element, or one per element. */
  readonly atol: number | readonly number[];
};

/** One kernel case. */
export interface KernelCase {
  /** What the case exercises, as a sentence fragment. */
  readonly name: string;
  /** The kernel under test (a case may call others to build its outputs). */
  readonly kernel: keyof Kernels;
  /** Builds the host inputs (deterministic: every call gives the same). */
  readonly inputs: () => Inputs;
  /** Calls the kernel(s) on inputs uploaded to the kernels' device. */
  readonly call: (kernels: Kernels, t: Record<string, Tensor>) => Outputs;
  /** Uploads the inputs to `dev` and calls the kernel there. */
  readonly run: (dev: Device) => Outputs;
  /** The tolerance of every non-null output. */
  readonly tolerance: Readonly<Record<string, Tolerance>>;
  /** Hand-computed values of some outputs (checked to {@link HAND}). */
  readonly expected?: Readonly<Record<string, readonly number[]>>;
  /**
   * Tolerances on a device without float64 arithmetic (WebGPU), where they
   * differ from {@link KernelCase.tolerance}: the kernel's contract says
   * how far its float32 or double-float arithmetic may be from the
   * reference's float64.
   */
  readonly float32?: Readonly<Record<string, Tolerance>>;
}

/** The tolerance of output `name` of `c` on a device with or without float64. */
export function toleranceOf(
  c: KernelCase,
  name: string,
  float64: boolean,
): Tolerance {
  return (float64 ? undefined : c.float32?.[name]) ?? c.tolerance[name];
}

/** Bit for bit, NaN equal to NaN, `-0` different from `+0`. */
export const EXACT: Tolerance = "exact";
/** GEMM and convolution: a device may sum in float32 blocks in another order. */
export const GEMM: Tolerance = { rtol: 1e-5, atol: 1e-5 };
/** A float64 reduction rounded to float32, possibly split over threads. */
export const REDUCTION: Tolerance = { rtol: 1e-6, atol: 1e-7 };
/**
 * A few float32 roundings where the reference rounds float64 once: four
 * units in the last place.
 */
export const FLOAT32_ULPS: Tolerance = { rtol: 4 * 2 ** -24, atol: 0 };
/** What hand-computed expectations are checked to (written in decimal). */
export const HAND: Tolerance = { rtol: 1e-6, atol: 1e-7 };

/** Makes a case; its `run` uploads `inputs()` and calls `call`. */
export function kernelCase<I extends Inputs>(spec: {
  readonly name: string;
  readonly kernel: keyof Kernels;
  readonly inputs: () => I;
  readonly call: (kernels: Kernels, t: { [K in keyof I]: Tensor }) => Outputs;
  readonly tolerance: Readonly<Record<string, Tolerance>>;
  readonly expected?: Readonly<Record<string, readonly number[]>>;
  readonly float32?: Readonly<Record<string, Tolerance>>;
}): KernelCase {
  const call = spec.call as KernelCase["call"];
  return {
    ...spec,
    call,
    run: (dev) => call(dev.kernels, uploadInputs(dev, spec.inputs())),
  };
}

/** Random float32 host input of `shape`, uniform in `[lo, hi)`. */
export function floats(
  seed: number,
  shape: Shape,
  lo = -1,
  hi = 1,
): HostInput {
  const count = shape.reduce((p, d) => p * d, 1);
  return { values: randomValues(seed, count, lo, hi), shape };
}

/**
 * Random host input of `shape` with about 85 % zeros of both signs, like
 * a gradient after a ReLU and a max-pool.
 */
export function mostlyZeros(seed: number, shape: Shape): HostInput {
  const input = floats(seed, shape);
  const values = input.values as Float32Array;
  for (let i = 0; i < values.length; i++) {
    if (Math.abs(values[i]) < 0.85) values[i] = i % 2 === 0 ? 0 : -0;
  }
  return input;
}

/** Host input from literal values (`Int32Array` for `int32`). */
export function given(
  values: ArrayLike<number>,
  shape: Shape = [values.length],
): HostInput {
  return {
    values: values instanceof Int32Array ? values : Float32Array.from(values),
    shape,
  };
}

/**
 * Asserts `actual` is within `tolerance` of `expected` (see
 * {@link Tolerance}); NaN only matches NaN.
 */
export function assertWithin(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tolerance: Tolerance,
  what: string,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const [a, e] = [actual[i], expected[i]];
    if (tolerance === "exact") {
      if (!Object.is(a, e)) {
        assert.fail(`${what}: element ${i} is ${a}, expected exactly ${e}`);
      }
      continue;
    }
    const { atol, rtol } = tolerance;
    const bound = (typeof atol === "number" ? atol : atol[i]) +
      rtol * Math.abs(e);
    if (Number.isNaN(e) ? !Number.isNaN(a) : !(Math.abs(a - e) <= bound)) {
      assert.fail(
        `${what}: element ${i} is ${a}, expected ${e} (error ${
          Math.abs(a - e)
        }, allowed ${bound})`,
      );
    }
  }
}

/** Reads every output back to the host (null stays null). */
export async function readOutputs(
  outputs: Outputs,
): Promise<Record<string, Float32Array | Int32Array | null>> {
  const out: Record<string, Float32Array | Int32Array | null> = {};
  for (const [name, t] of Object.entries(outputs)) {
    out[name] = t ? await t.read() : null;
  }
  return out;
}

/** Uploads host inputs to `dev`, each as its own tensor. */
export function uploadInputs(
  dev: Device,
  inputs: Inputs,
): Record<string, Tensor> {
  return Object.fromEntries(
    Object.entries(inputs).map(([name, v]) => [
      name,
      dev.upload(
        v.values,
        v.shape,
        v.values instanceof Int32Array ? "int32" : "float32",
      ),
    ]),
  );
}
