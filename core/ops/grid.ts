/**
 * Quantization on a fixed grid, for evaluating frozen models: the residual
 * quantizer with 0/1 gates is a uniform grid of `bits` bits.
 *
 * @module
 */

import type { PoolWindow } from "../graph.ts";
import { hostF32, type Tensor } from "../tensor.ts";
import { poolGeometry } from "./pool.ts";

function label(name: string | undefined): string {
  return name === undefined ? "tensor" : `"${name}"`;
}

/**
 * The gates `[z4, z8, z16, z32]` of a `bits`-bit grid: on up to `bits`.
 *
 * @param bits 2, 4, 8, 16 or 32.
 * @returns The four gate values.
 * @throws {RangeError} On another bit width.
 *
 * @example
 * ```ts
 * import { gridGates } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(gridGates(8), [1, 1, 0, 0]);
 * ```
 */
export function gridGates(bits: number): [number, number, number, number] {
  if (![2, 4, 8, 16, 32].includes(bits)) {
    throw new RangeError(
      `A grid has 2, 4, 8, 16 or 32 bits, got ${bits}`,
    );
  }
  return [4, 8, 16, 32].map((b) => (bits >= b ? 1 : 0)) as [
    number,
    number,
    number,
    number,
  ];
}

/**
 * Inference fast path of an activation quantizer on an unsigned grid (what
 * follows a ReLU): `maxPool2d(quantizerOp(relu(z)))` bit for bit, the pool
 * only when `pool` is given, in one pass. The unsigned clip at 0 is itself
 * the ReLU, so `z` goes in before its activation. Like the two steps, it
 * refuses an activation that is not finite (with `relu`: a `+Infinity` in
 * `z`) on devices whose memory the host sees. Not differentiable:
 * evaluation only.
 *
 * @param z The layer's output before its activation.
 * @param xmax The range `[1]`.
 * @param chain The gates `[z4, z8, z16, z32]`.
 * @param options `relu` (else no activation), the pool and a name.
 * @returns The quantized (and pooled) activation.
 * @throws {RangeError} On a bad pool or a non-finite activation.
 */
export function quantizeActivationForInference(
  z: Tensor,
  xmax: Tensor,
  chain: Tensor,
  options: {
    readonly relu: boolean;
    readonly pool: PoolWindow | null;
    readonly name?: string;
  },
): Tensor {
  if (z.device.kind !== "webgpu") {
    const range = hostF32(xmax)[0];
    if (!(Number.isFinite(range) && range > 0)) {
      throw new RangeError(
        `Cannot quantize ${
          label(options.name)
        }: xmax must be finite and positive, got ${range}`,
      );
    }
    const zs = hostF32(z);
    for (let i = 0; i < zs.length; i++) {
      const v = zs[i];
      if (options.relu ? v === Infinity : !Number.isFinite(v)) {
        throw new RangeError(
          `Cannot quantize ${
            label(options.name)
          }: element ${i} is ${v} (values must be finite)`,
        );
      }
    }
  }
  const k = z.device.kernels;
  const p = options.pool;
  if (p === null) return k.residualQuantize(z, xmax, chain, null, false);
  const geometry = poolGeometry(z.shape, p.kernel, p.stride, p.padding);
  return k.residualQuantizePool(z, xmax, chain, false, geometry);
}
