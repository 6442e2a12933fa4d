/**
 * The Bayesian Bits pieces as differentiable ops, so that a whole training
 * loss (cross-entropy + mu x priors) is one function for `valueAndGrad`:
 *
 * - {@link quantizerOp}: the residual quantizer over tensors `x`, `xmax` and
 *   the gate values, with the straight-through gradients of every input;
 * - {@link gatesOp}: hard-concrete samples (training) or deterministic gates
 *   (evaluation) from logit tensors, the gradient flowing through the sample;
 * - {@link priorOp}: the BOP-aware prior `R` of one quantizer.
 *
 * Each runs on the device of its inputs.
 *
 * @module
 */

import { recordOp } from "../../autodiff.ts";
import type { GatePriorOptions } from "../../kernels.ts";
import { hostF32, type Tensor } from "../../tensor.ts";

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

function label(name: string | undefined): string {
  return name === undefined ? "tensor" : `"${name}"`;
}

/**
 * On devices whose memory the host sees, checks the range is finite and
 * positive (one element: cheap); other devices check nothing here.
 */
function checkRange(xmax: Tensor, name: string | undefined): void {
  if (xmax.device.kind === "webgpu") return;
  const v = hostF32(xmax)[0];
  if (!(Number.isFinite(v) && v > 0)) {
    throw new RangeError(
      `Cannot quantize ${
        label(name)
      }: xmax must be finite and positive, got ${v}`,
    );
  }
}

function checkChain(chain: Tensor, what: string): void {
  if (chain.size !== 4) {
    throw new RangeError(`${what} needs 4 chain values, got ${chain.size}`);
  }
}

/**
 * The quantizer as a differentiable op of `x`, `xmax` (a one-element tensor)
 * and the gate tensors, on their device.
 *
 * @param x The tensor to quantize (axis 0: output channels).
 * @param xmax `[1]`, the range.
 * @param gates Gate values.
 * @param options Signedness and a name for errors.
 * @returns `xq`, shaped like `x`.
 * @throws {RangeError} On a range that is not one element, a chain that is
 *   not four, or pruning gates that do not match axis 0.
 *
 * @example
 * ```ts
 * import { Tensor, valueAndGrad } from "@bbits/core";
 * import { sum } from "@bbits/core/ops";
 * import { quantizerOp } from "@bbits/core/bayesian-bits";
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
  options: { readonly signed: boolean; readonly name?: string },
): Tensor {
  if (xmax.size !== 1) {
    throw new RangeError(`xmax must be a one-element tensor, got ${xmax.size}`);
  }
  checkChain(gates.chain, "The gate chain");
  checkRange(xmax, options.name);
  const z2 = gates.z2 ?? null;
  if (z2) {
    const channels = x.shape.length === 0 ? 1 : x.shape[0];
    if (x.shape.length === 0 || z2.size !== channels) {
      throw new RangeError(
        `Cannot quantize ${
          label(options.name)
        }: the pruning gate z2 has ${z2.size} values but the tensor of shape [${
          x.shape.join(", ")
        }] has ${channels} output channels (axis 0)`,
      );
    }
  }
  const { signed } = options;
  const k = x.device.kernels;
  const out = k.residualQuantize(x, xmax, gates.chain, z2, signed);
  const inputs = z2 ? [x, xmax, gates.chain, z2] : [x, xmax, gates.chain];
  return recordOp(out, inputs, (g) => {
    const r = k.residualQuantizeBackward(x, xmax, gates.chain, z2, signed, g);
    return z2 ? [r.dx, r.dxmax, r.dgates, r.dz2] : [r.dx, r.dxmax, r.dgates];
  });
}

/**
 * Gate values from logit tensors: hard-concrete samples from `noise`
 * (`4 + channels` uniforms: the chain's, then one per pruning gate) in
 * training, the deterministic rule when `noise` is null. Gradients flow to
 * the logits through the samples; the deterministic gates have none.
 *
 * @param logits Logit tensors.
 * @param noise Uniforms on the logits' device, or `null` for evaluation.
 * @returns Gate tensors for {@link quantizerOp}.
 * @throws {RangeError} On a chain that is not four logits or too little noise.
 *
 * @example
 * ```ts
 * import { Tensor } from "@bbits/core";
 * import { gatesOp } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const z = gatesOp({ chain: Tensor.from([6, 6, -6, -6]) }, null);
 * assert.deepEqual([...z.chain.toFloat32Array()], [1, 1, 0, 0]);
 * ```
 */
export function gatesOp(
  logits: LogitTensors,
  noise: Tensor | null,
): GateTensors {
  checkChain(logits.chain, "Gate logits");
  const k = logits.chain.device.kernels;
  const g2 = logits.g2 ?? null;
  if (noise === null) {
    const z = k.hardConcreteGates(logits.chain, g2);
    return z.z2 ? { chain: z.chain, z2: z.z2 } : { chain: z.chain };
  }
  const needed = 4 + (g2 ? g2.size : 0);
  if (noise.size < needed) {
    throw new RangeError(
      `Gate noise has ${noise.size} values, the gates need ${needed}`,
    );
  }
  const s = k.hardConcreteSample(logits.chain, g2, noise);
  const chain = recordOp(
    s.chain,
    [logits.chain],
    (g) => [k.hardConcreteChainBackward(logits.chain, noise, g)],
  );
  if (!g2 || !s.z2) return { chain };
  const z2 = recordOp(
    s.z2,
    [g2],
    (g) => [k.hardConcretePruneBackward(g2, noise, g)],
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
 * import { Tensor } from "@bbits/core";
 * import { priorOp } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const r = priorOp({ chain: Tensor.from([-50, -50, -50, -50]) }, { macRatio: 1, mode: "bop" });
 * assert.ok(Math.abs(r.get(0) - 1) < 1e-6);
 * ```
 */
export function priorOp(
  logits: LogitTensors,
  options: GatePriorOptions,
): Tensor {
  checkChain(logits.chain, "Gate logits");
  const k = logits.chain.device.kernels;
  const g2 = logits.g2 ?? null;
  const r = k.gatePrior(logits.chain, g2, options);
  const inputs = g2 ? [logits.chain, g2] : [logits.chain];
  return recordOp(r, inputs, (g) => {
    const b = k.gatePriorBackward(logits.chain, g2, options, g);
    return g2 ? [b.dlogits, b.dprune] : [b.dlogits];
  });
}

export { quantizeActivationForInference } from "../../ops/grid.ts";
