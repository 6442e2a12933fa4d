/**
 * Running a gated model: the training loss with sampled gates
 * ({@link gatedLoss}) and the test accuracy with deterministic gates
 * ({@link evaluateGated}), on the device its parameters live on.
 *
 * @module
 */

import { batches, type Dataset } from "../../data.ts";
import { runGraph } from "../../graph.ts";
import { add, scale } from "../../ops/elementwise.ts";
import { softmaxCrossEntropy } from "../../ops/loss.ts";
import { maxPool2d } from "../../ops/pool.ts";
import { foldIn, type RandomKey } from "../../rng.ts";
import type { Tensor } from "../../tensor.ts";
import { checkImageShape } from "../../train.ts";
import {
  firstParam,
  type GatedModel,
  type GatedState,
  logitTensors,
  type QuantizerInfo,
} from "./model.ts";
import {
  gatesOp,
  type GateTensors,
  priorOp,
  quantizeActivationForInference,
  quantizerOp,
} from "./ops.ts";

/** Runs the gated model with the given gate tensors per quantizer. */
function gatedForward(
  gated: GatedModel,
  state: GatedState,
  x: Tensor,
  gatesOf: (q: QuantizerInfo) => GateTensors,
  frozenWeights = false,
): Tensor {
  const weightQ = new Map<string, QuantizerInfo>();
  const actQ = new Map<string, QuantizerInfo>();
  for (const q of gated.quantizers) {
    (q.kind === "weight" ? weightQ : actQ).set(q.layer, q);
  }
  const { params, signed } = state;
  const apply = (q: QuantizerInfo | undefined, t: Tensor) =>
    q
      ? quantizerOp(t, params[q.xmaxParam], gatesOf(q), {
        signed: signed[q.name],
        name: q.name,
      })
      : t;
  return runGraph(gated.model, params, x, {
    mode: "train",
    weight: frozenWeights
      ? undefined
      : (layer, w) => apply(weightQ.get(layer.name), w),
    activation: (layer, a) => apply(actQ.get(layer.name), a),
    // An unsigned grid clips at 0, which is what a ReLU before it does: the
    // quantizer on the pre-activation gives the same xq and, since its
    // straight-through mask is 0 wherever the ReLU's is, the same gradients
    // for every input, bit for bit. So the ReLU is skipped; in evaluation the
    // max-pool that follows joins the same pass.
    fused: (layer, z, activation, pool) => {
      const q = actQ.get(layer.name);
      if (!q || signed[q.name] || activation !== "relu") return undefined;
      if (frozenWeights) {
        return quantizeActivationForInference(
          z,
          params[q.xmaxParam],
          gatesOf(q).chain,
          { relu: true, pool, name: q.name },
        );
      }
      const a = apply(q, z);
      return pool ? maxPool2d(a, pool.kernel, pool.stride, pool.padding) : a;
    },
  }).output;
}

/**
 * The deterministic gates of every quantizer and the weights quantized once
 * with them, for evaluation. `made` lists the tensors made here.
 */
function frozenForEval(
  gated: GatedModel,
  state: GatedState,
): { state: GatedState; gates: Map<string, GateTensors>; made: Tensor[] } {
  const gates = new Map<string, GateTensors>();
  const params: Record<string, Tensor> = { ...state.params };
  const made: Tensor[] = [];
  for (const q of gated.quantizers) {
    const z = gatesOp(logitTensors(q, state.params), null);
    gates.set(q.name, z);
    made.push(z.chain, ...(z.z2 ? [z.z2] : []));
    if (q.kind === "weight") {
      const w = `${q.layer}.weight`;
      params[w] = quantizerOp(state.params[w], state.params[q.xmaxParam], z, {
        signed: state.signed[q.name],
        name: q.name,
      });
      made.push(params[w]);
    }
  }
  return { state: { params, signed: state.signed }, gates, made };
}

/** Options of {@link evaluateGated}. */
export interface EvaluateGatedOptions {
  /** Batch size (default 1000). */
  readonly batchSize?: number;
}

/**
 * Test accuracy of a gated model with deterministic gates, on the device
 * its parameters live on: weights quantized once, activations quantized
 * batch by batch. Each ReLU, activation quantizer and the max-pool after it
 * run as one pass, with the predictions of the three steps bit for bit.
 *
 * @param gated The gated model.
 * @param state Its state.
 * @param data The dataset.
 * @param options Batch size.
 * @returns The fraction of correctly classified samples.
 * @throws {RangeError} On an empty dataset or images of the wrong shape.
 *
 * @example
 * ```ts
 * import { bayesianBits, evaluateGated, initGated, initGraph, lenet5, makeDataset, randomKey, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const images = new Float32Array(4 * 784).map((_, i) => (i % 11) / 11);
 * const data = makeDataset(images, new Int32Array([0, 1, 2, 3]), [1, 28, 28]);
 * const gated = bayesianBits(lenet5());
 * const state = await initGated(gated, initGraph(lenet5(), randomKey(0)), Tensor.from(images, [4, 1, 28, 28]));
 * const accuracy = await evaluateGated(gated, state, data);
 * assert.ok(accuracy >= 0 && accuracy <= 1);
 * ```
 */
export async function evaluateGated(
  gated: GatedModel,
  state: GatedState,
  data: Dataset,
  options: EvaluateGatedOptions = {},
): Promise<number> {
  if (data.count === 0) {
    throw new RangeError("Cannot evaluate on an empty dataset");
  }
  checkImageShape(gated.model, "test", data);
  const dev = firstParam(state.params).device;
  const frozen = dev.scope(() => frozenForEval(gated, state));
  let correct = 0;
  try {
    for (const batch of batches(data, options.batchSize ?? 1000)) {
      const count = dev.scope(() => {
        const x = dev.upload(batch.images, [batch.size, ...data.shape]);
        const labels = dev.upload(batch.labels, [batch.size], "int32");
        const out = gatedForward(
          gated,
          frozen.state,
          x,
          (q) => frozen.gates.get(q.name)!,
          true,
        );
        return dev.kernels.countCorrect(out, labels);
      });
      correct += (await count.read())[0];
      dev.free(count);
    }
  } finally {
    dev.free(...frozen.made);
  }
  return correct / data.count;
}

/** Options of {@link gatedLoss}. */
export interface GatedLossOptions {
  /**
   * The step's key: quantizer `i` draws its gate noise from
   * `foldIn(noiseKey, i)`. `null`: deterministic gates (no noise, no
   * gradient to the logits through the gates).
   */
  readonly noiseKey: RandomKey | null;
  /** Add `mu * sum R` (default true). */
  readonly prior?: boolean;
}

/** What {@link gatedLoss} returns: one-element tensors on the model's device. */
export interface GatedLossParts {
  /** `CE + mu * sum R` (or `CE` without the prior). */
  readonly loss: Tensor;
  /** The mean cross-entropy. */
  readonly crossEntropy: Tensor;
  /** `sum R` without `mu`, or `null` when the prior is not part of the loss. */
  readonly prior: Tensor | null;
}

/**
 * The training loss of one batch, `CE + mu * sum_q R_q`, as a tensor that
 * `valueAndGrad` can differentiate w.r.t. weights, ranges and logits.
 *
 * @param gated The gated model.
 * @param state Parameters and signedness.
 * @param x A batch `[N, C, H, W]` on the parameters' device.
 * @param labels Integer labels (host numbers or an `int32` tensor).
 * @param options Gate noise key, whether the prior is added.
 * @returns The loss tensor and its parts (cross-entropy, summed prior without mu).
 *
 * @example
 * ```ts
 * import { bayesianBits, gatedLoss, initGated, initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5(), { mu: 0.5 });
 * const x = Tensor.from(new Float32Array(784).map((_, i) => (i % 9) / 9), [1, 1, 28, 28]);
 * const state = await initGated(gated, initGraph(lenet5(), randomKey(0)), x);
 * const r = gatedLoss(gated, state, x, new Int32Array([3]), { noiseKey: randomKey(1) });
 * assert.ok(Math.abs(r.loss.get(0) - (r.crossEntropy.get(0) + 0.5 * r.prior!.get(0))) < 1e-4);
 * ```
 */
export function gatedLoss(
  gated: GatedModel,
  state: GatedState,
  x: Tensor,
  labels: Tensor | ArrayLike<number>,
  options: GatedLossOptions,
): GatedLossParts {
  const p = state.params;
  const dev = x.device;
  const gates = new Map<string, GateTensors>();
  gated.quantizers.forEach((q, i) => {
    const noise = options.noiseKey === null ? null : dev.kernels.uniform(
      foldIn(options.noiseKey, i),
      4 + q.pruneChannels,
      0,
    );
    gates.set(q.name, gatesOp(logitTensors(q, p), noise));
  });
  const output = gatedForward(gated, state, x, (q) => gates.get(q.name)!);
  const ce = softmaxCrossEntropy(output, labels);
  if (options.prior === false || gated.options.mu === 0) {
    return { loss: ce, crossEntropy: ce, prior: null };
  }
  let r: Tensor | null = null;
  for (const q of gated.quantizers) {
    const rq = priorOp(logitTensors(q, p), {
      macRatio: q.macRatio,
      mode: gated.options.prior,
    });
    r = r ? add(r, rq) : rq;
  }
  if (r === null) return { loss: ce, crossEntropy: ce, prior: null };
  return {
    loss: add(ce, scale(r, gated.options.mu)),
    crossEntropy: ce,
    prior: r,
  };
}
