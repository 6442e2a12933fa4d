/**
 * What the WebGPU test files share: one device per test module (opened on
 * first use; without an adapter every test that asks for it fails, never
 * skips, with the reason), seeded inputs, and the comparison of the
 * quantizer kernels with the reference device.
 */

import assert from "node:assert/strict";
import type { Device } from "../../core/device.ts";
import type { PoolGeometry } from "../../core/kernels.ts";
import {
  type QuantizerConstants,
  quantizerConstants,
} from "../../core/reference/quantizer.ts";
import { referenceDevice } from "../../core/reference/device.ts";
import { randomKey, uniform } from "../../core/rng.ts";
import { Tensor } from "../../core/tensor.ts";
import { createGpuDevice, type GpuDevice } from "../../gpu/mod.ts";

/** The four bit-doubling gates `[z4, z8, z16, z32]`. */
export type Gates = [number, number, number, number];

let opened: Promise<GpuDevice> | undefined;

/** The module's shared device; rejects with the setup error when there is none. */
export async function gpuDevice(): Promise<GpuDevice> {
  opened ??= createGpuDevice();
  try {
    return await opened;
  } catch (error) {
    throw new Error(
      `The WebGPU tests need a WebGPU adapter (a software one such as llvmpipe will do) and none could be used: ${error}`,
      { cause: error },
    );
  }
}

/** `count` float32 values uniformly in [lo, hi), from a seed. */
export function randomValues(
  seed: number,
  count: number,
  lo = -1,
  hi = 1,
): Float32Array {
  return uniform(randomKey(seed), count).map((v) =>
    Math.fround(lo + (hi - lo) * v)
  );
}

/** Asserts `|actual - expected| <= atol + rtol * |expected|`. */
export function assertClose(
  actual: number,
  expected: number,
  rtol: number,
  atol: number,
  what: string,
): void {
  const err = Math.abs(actual - expected);
  assert.ok(
    err <= atol + rtol * Math.abs(expected),
    `${what}: got ${actual}, expected ${expected} (error ${err}, rtol ${rtol}, atol ${atol})`,
  );
}

/** Asserts equal lengths and equal bits element for element (-0 is not +0). */
export function assertSameBits(
  actual: Float32Array | Int32Array,
  expected: Float32Array | Int32Array,
  what: string,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(
    expected.buffer,
    expected.byteOffset,
    expected.length,
  );
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) {
      assert.fail(
        `${what}: element ${i} has bits 0x${a[i].toString(16)} (${
          actual[i]
        }), expected 0x${e[i].toString(16)} (${expected[i]})`,
      );
    }
  }
}

/** One quantizer call's host inputs. */
export interface Case {
  readonly x: Float32Array;
  readonly dy: Float32Array;
  readonly xmax: number;
  readonly signed: boolean;
  readonly gates: Gates;
  /** Per-channel pruning gates; `x` is `[z2.length, ...]`. */
  readonly z2: Float32Array | null;
}

/** The case's tensors on `dev`. */
export function tensorsOn(dev: Device, c: Case) {
  return {
    x: Tensor.from(c.x, [c.x.length], dev),
    dy: Tensor.from(c.dy, [c.dy.length], dev),
    xmax: Tensor.from([c.xmax], [1], dev),
    gates: Tensor.from(c.gates, [4], dev),
    z2: c.z2 ? Tensor.from(c.z2, [c.z2.length], dev) : null,
  };
}

/** A quantizer's range, signedness and gates. */
export type Grid = Pick<Case, "xmax" | "signed" | "gates">;

/** The float32 constants both devices derive for the grid. */
export function constantsOf(c: Grid): QuantizerConstants {
  return quantizerConstants(Math.fround(c.xmax), c.signed, c.gates);
}

/**
 * Bit-for-bit equality on the fallback adapter; elsewhere a few ulps and a
 * step of the finest computed level.
 */
export function assertForwardMatches(
  dev: GpuDevice,
  actual: Float32Array,
  expected: Float32Array,
  c: Grid,
  what: string,
): void {
  if (dev.adapterInfo.isFallbackAdapter) {
    assertSameBits(actual, expected, what);
    return;
  }
  assert.equal(actual.length, expected.length, `${what}: length`);
  // A real GPU's division may be a few ulps off and move a rounding tie by
  // one step of the finest computed level.
  const k = constantsOf(c);
  const atol = k.scales[k.levelsForward - 1] + 4 * 2 ** -23 * k.xmax;
  for (let i = 0; i < actual.length; i++) {
    assertClose(actual[i], expected[i], 4 * 2 ** -23, atol, `${what} [${i}]`);
  }
}

/** Sum of |dy| over channel `ch` of `channels` (all when -1). */
function absSum(dy: Float32Array, channels: number, ch = -1): number {
  const per = dy.length / channels;
  const [start, end] = ch < 0 ? [0, dy.length] : [ch * per, (ch + 1) * per];
  let sum = 0;
  for (let i = start; i < end; i++) sum += Math.abs(dy[i]);
  return sum;
}

/**
 * Reductions are float32 tree sums, so their error is a small multiple of
 * 2^-24 times the sum of the magnitudes of their terms, whatever the
 * cancellation. The terms are bounded by |dy| times: |inner_0| <= xmax
 * (dz2), |inner_l| <= s_{l-1} (dgates[l-1]) and |d xc / d xmax| <= 2 (dxmax).
 */
const REDUCTION_TOLERANCE = 1e-5;

type Grads = {
  dx: Float32Array;
  dxmax: Float32Array;
  dgates: Float32Array;
  dz2: Float32Array | null;
};

/** Runs the forward and backward kernels of a case on `dev`; reads every output. */
export async function runOn(dev: Device, c: Case) {
  const signed = c.signed;
  const t = tensorsOn(dev, c);
  const k = dev.kernels;
  const xq = k.residualQuantize(t.x, t.xmax, t.gates, t.z2, signed);
  const g = k.residualQuantizeBackward(
    t.x,
    t.xmax,
    t.gates,
    t.z2,
    signed,
    t.dy,
  );
  const [y, dx, dxmax, dgates, dz2] = await Promise.all(
    [xq, g.dx, g.dxmax, g.dgates, g.dz2].map((r) => r?.read() ?? null),
  );
  const grads = { dx, dxmax, dgates, dz2 } as Grads;
  return { xq: y as Float32Array, grads };
}

function assertGradsMatch(
  dev: GpuDevice,
  actual: Grads,
  expected: Grads,
  c: Case,
  what: string,
): void {
  assertForwardMatches(dev, actual.dx, expected.dx, c, `${what} dx`);
  const k = constantsOf(c);
  const channels = c.z2 ? c.z2.length : 1;
  const total = absSum(c.dy, channels);
  const tol = REDUCTION_TOLERANCE;
  assert.equal(actual.dxmax.length, 1, `${what} dxmax length`);
  assertClose(
    actual.dxmax[0],
    expected.dxmax[0],
    1e-4,
    tol * 2 * total,
    `${what} dxmax`,
  );
  assert.equal(actual.dgates.length, 4, `${what} dgates length`);
  for (let l = 0; l < 4; l++) {
    assertClose(
      actual.dgates[l],
      expected.dgates[l],
      1e-4,
      tol * k.scales[l] * total,
      `${what} dgates[${l}]`,
    );
  }
  if (expected.dz2 === null) {
    assert.equal(actual.dz2, null, `${what} dz2`);
    return;
  }
  assert.ok(actual.dz2 !== null, `${what}: dz2 is null`);
  assert.equal(actual.dz2.length, expected.dz2.length, `${what} dz2 length`);
  for (let ch = 0; ch < expected.dz2.length; ch++) {
    assertClose(
      actual.dz2[ch],
      expected.dz2[ch],
      1e-4,
      tol * k.xmax * absSum(c.dy, channels, ch),
      `${what} dz2[${ch}]`,
    );
  }
}

/** Compares a case on the GPU with the reference device. */
export async function checkCase(dev: GpuDevice, c: Case, what: string) {
  const [gpu, ref] = await Promise.all([
    runOn(dev, c),
    runOn(referenceDevice, c),
  ]);
  assertForwardMatches(dev, gpu.xq, ref.xq, c, `${what} forward`);
  assertGradsMatch(dev, gpu.grads, ref.grads, c, `${what} backward`);
}

/** A case without z2 from its parts. */
export function plain(
  x: Float32Array,
  dy: Float32Array,
  xmax: number,
  signed: boolean,
  gates: Gates,
): Case {
  return { x, dy, xmax, signed, gates, z2: null };
}

/** A pooling geometry over `[n, c, h, w]` with the output size it implies. */
export function poolGeometry(
  n: number,
  c: number,
  h: number,
  w: number,
  kernel: number,
  stride: number,
  padding: number,
): PoolGeometry {
  const out = (size: number) =>
    Math.floor((size + 2 * padding - kernel) / stride) + 1;
  return { n, c, h, w, oh: out(h), ow: out(w), kernel, stride, padding };
}

/** Runs `residualQuantizePool` on `dev` and reads the result. */
export async function poolOn(
  dev: Device,
  x: Float32Array,
  c: Grid,
  g: PoolGeometry,
): Promise<Float32Array> {
  const y = dev.kernels.residualQuantizePool(
    Tensor.from(x, [g.n, g.c, g.h, g.w], dev),
    Tensor.from([c.xmax], [1], dev),
    Tensor.from(c.gates, [4], dev),
    c.signed,
    g,
  );
  assert.deepEqual(y.shape, [g.n, g.c, g.oh, g.ow]);
  return await y.read() as Float32Array;
}
