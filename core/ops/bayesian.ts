/**
 * The Bayesian Bits pieces as differentiable ops, so that a whole training
 * loss (cross-entropy + mu x priors) is one function for {@link valueAndGrad}:
 *
 * - {@link quantizerOp}: the residual quantizer over tensors `x`, `xmax` and
 *   the gate values, with the straight-through gradients of every input;
 * - {@link gatesOp}: hard-concrete samples (training) or deterministic gates
 *   (evaluation) from logit tensors, the gradient flowing through the sample;
 * - {@link priorOp}: the BOP-aware prior `R` of one quantizer.
 *
 * @module
 */

import { recordOp } from "../autodiff.ts";
import type { QuantizerBackend } from "../backend.ts";
import { deterministicGates, type GateLogits, sampleGates } from "../gates.ts";
import { prior, type PriorOptions } from "../prior.ts";
import type { PoolWindow } from "../graph.ts";
import { makeQuantizerPass } from "../quantizer.ts";
import { referenceBackend } from "../reference.ts";
import { Tensor, tensorStorage } from "../tensor.ts";
import { maxPool2d, poolGeometry } from "./pool.ts";

/** Gate values as tensors: `chain` is `[z4, z8, z16, z32]`, `z2` one per channel. */
export interface GateTensors {
  /** `[z4, z8, z16, z32]`. */
  readonly chain: Tensor;
  /** Pruning gates `[C]`, or absent. */
  readonly z2?: Tensor;
}

/** Gate logits as tensors: `chain` is `[g4, g8, g16, g32]`, `g2` one per channel. */
export interface LogitTensors {
  /** `[g4, g8, g16, g32]`. */
  readonly chain: Tensor;
  /** Pruning logits `[C]`, or absent. */
  readonly g2?: Tensor;
}

function toLogits(logits: LogitTensors): GateLogits {
  const c = tensorStorage(logits.chain);
  if (c.length !== 4) {
    throw new RangeError(
      `Gate logits need 4 chain values (g4..g32), got ${c.length}`,
    );
  }
  return {
    ...(logits.g2 ? { g2: tensorStorage(logits.g2) } : {}),
    g4: c[0],
    g8: c[1],
    g16: c[2],
    g32: c[3],
  };
}

/**
 * The quantizer as a differentiable op of `x`, `xmax` (a one-element tensor)
 * and the gate tensors.
 *
 * @param x The tensor to quantize (axis 0: output channels).
 * @param xmax `[1]`, the range.
 * @param gates Gate values.
 * @param options Signedness, backend (default reference) and a name for errors.
 * @returns `xq`, shaped like `x`.
 * @throws {RangeError} On bad inputs (see `makeQuantizerPass`).
 *
 * @example
 * ```ts
 * import { quantizerOp, sum, Tensor, valueAndGrad } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const loss = (p: { xmax: Tensor; chain: Tensor }) =>
 *   sum(quantizerOp(Tensor.from([0.3, 5]), p.xmax, { chain: p.chain }, { signed: false }));
 * const { grads } = valueAndGrad(loss)({ xmax: Tensor.from([1]), chain: Tensor.from([1, 1, 0, 0]) });
 * assert.ok(grads.xmax.get(0) > 0.9); // the clipped 5 pulls xmax up
 * ```
 */
export function quantizerOp(
  x: Tensor,
  xmax: Tensor,
  gates: GateTensors,
  options: { signed: boolean; backend?: QuantizerBackend; name?: string },
): Tensor {
  if (xmax.size !== 1) {
    throw new RangeError(`xmax must be a one-element tensor, got ${xmax.size}`);
  }
  const chain = tensorStorage(gates.chain);
  if (chain.length !== 4) {
    throw new RangeError(`Gate chain needs 4 values, got ${chain.length}`);
  }
  const range = { xmax: tensorStorage(xmax)[0], signed: options.signed };
  const values = {
    ...(gates.z2 ? { z2: tensorStorage(gates.z2) } : {}),
    z4: chain[0],
    z8: chain[1],
    z16: chain[2],
    z32: chain[3],
  };
  const pass = makeQuantizerPass(x, range, values, options.name);
  const backend = options.backend ?? referenceBackend;
  const xs = tensorStorage(x);
  const out = Tensor.adopt(backend.quantizeForward(xs, pass), x.shape);
  const inputs = gates.z2
    ? [x, xmax, gates.chain, gates.z2]
    : [x, xmax, gates.chain];
  return recordOp(out, inputs, (g) => {
    const grads = backend.quantizeBackward(xs, g, pass);
    const result = [
      grads.dx,
      new Float32Array([grads.dxmax]),
      Float32Array.from(grads.dgates),
    ];
    if (gates.z2) result.push(Float32Array.from(grads.dz2!));
    return result;
  });
}

/**
 * Gate values from logit tensors: hard-concrete samples from `noise` (one
 * uniform per gate, layout of `sampleGates`) in training, the deterministic
 * rule when `noise` is null. Gradients flow to the logits through the
 * samples; the deterministic gates have none.
 *
 * @param logits Logit tensors.
 * @param noise Uniforms (`4 + channels`), or `null` for evaluation.
 * @returns Gate tensors for {@link quantizerOp}.
 * @throws {RangeError} On bad logits or noise.
 *
 * @example
 * ```ts
 * import { gatesOp, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const z = gatesOp({ chain: Tensor.from([6, 6, -6, -6]) }, null);
 * assert.deepEqual([...z.chain.toFloat32Array()], [1, 1, 0, 0]);
 * ```
 */
export function gatesOp(
  logits: LogitTensors,
  noise: ArrayLike<number> | null,
): GateTensors {
  const plain = toLogits(logits);
  if (noise === null) {
    const z = deterministicGates(plain);
    return {
      chain: Tensor.from([z.z4, z.z8, z.z16, z.z32]),
      ...(z.z2 ? { z2: Tensor.from(z.z2) } : {}),
    };
  }
  const s = sampleGates(plain, noise);
  const v = s.values;
  const chain = recordOp(
    Tensor.from([v.z4, v.z8, v.z16, v.z32]),
    [logits.chain],
    (g) => [g.map((gi, l) => gi * s.dzdg[l])],
  );
  if (!logits.g2) return { chain };
  const z2 = recordOp(
    Tensor.from(v.z2!),
    [logits.g2],
    (g) => [g.map((gi, c) => gi * s.dz2dg2![c])],
  );
  return { chain, z2 };
}

/**
 * The prior `R` of one quantizer as a differentiable op of its logits.
 *
 * @param logits Logit tensors.
 * @param options MAC ratio and mode.
 * @returns A one-element tensor.
 *
 * @example
 * ```ts
 * import { priorOp, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const r = priorOp({ chain: Tensor.from([-50, -50, -50, -50]) }, { macRatio: 1 });
 * assert.ok(Math.abs(r.get(0) - 1) < 1e-6);
 * ```
 */
export function priorOp(logits: LogitTensors, options: PriorOptions): Tensor {
  const r = prior(toLogits(logits), options);
  const inputs = logits.g2 ? [logits.chain, logits.g2] : [logits.chain];
  return recordOp(Tensor.from([r.value], [1]), inputs, (g) => {
    const out = [Float32Array.from(r.dg, (d) => d * g[0])];
    if (r.dg2) out.push(Float32Array.from(r.dg2, (d) => d * g[0]));
    return out;
  });
}

/**
 * Inference fast path of an activation quantizer on an unsigned grid (what
 * follows a ReLU): `maxPool2d(quantizerOp(relu(z)))` bit for bit, the pool
 * only when `pool` is given, in one backend pass where the backend has
 * `quantizePoolForward`. The unsigned clip at 0 is itself the ReLU, so `z`
 * goes in before its activation. Like the two steps, it refuses an
 * activation that is not finite (with `relu`: a `+Infinity` in `z`). Not
 * differentiable: evaluation only.
 *
 * @param z The layer's output before its activation.
 * @param xmax The range.
 * @param chain The gates `[z4, z8, z16, z32]`.
 * @param options `relu` (else no activation), the pool, backend and name.
 * @returns The quantized (and pooled) activation.
 * @throws {RangeError} On a bad range, gates or pool, or a non-finite activation.
 */
export function quantizeActivationForInference(
  z: Tensor,
  xmax: number,
  chain: readonly [number, number, number, number],
  options: {
    readonly relu: boolean;
    readonly pool: PoolWindow | null;
    readonly backend?: QuantizerBackend;
    readonly name?: string;
  },
): Tensor {
  const [z4, z8, z16, z32] = chain;
  const pass = makeQuantizerPass(
    Tensor.zeros([0]),
    { xmax, signed: false },
    { z4, z8, z16, z32 },
    options.name,
  );
  const zs = tensorStorage(z);
  for (let i = 0; i < zs.length; i++) {
    const v = zs[i];
    if (options.relu ? v === Infinity : !Number.isFinite(v)) {
      throw new RangeError(
        `Cannot quantize ${
          options.name === undefined ? "tensor" : `"${options.name}"`
        }: element ${i} is ${v} (values must be finite)`,
      );
    }
  }
  const backend = options.backend ?? referenceBackend;
  const p = options.pool;
  if (p === null) {
    return Tensor.adopt(backend.quantizeForward(zs, pass), z.shape);
  }
  const geometry = poolGeometry(z.shape, p.kernel, p.stride, p.padding);
  if (backend.quantizePoolForward) {
    return Tensor.adopt(backend.quantizePoolForward(zs, pass, geometry), [
      geometry.n,
      geometry.c,
      geometry.oh,
      geometry.ow,
    ]);
  }
  const xq = Tensor.adopt(backend.quantizeForward(zs, pass), z.shape);
  return maxPool2d(xq, p.kernel, p.stride, p.padding);
}
