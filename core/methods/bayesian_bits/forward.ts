/**
 * Running a gated model: the training loss with sampled gates
 * ({@link gatedLoss}) and the test accuracy with deterministic gates
 * ({@link evaluateGated}), on the device its parameters live on.
 *
 * @module
 */

import type { Dataset } from "../../data.ts";
import { evaluateFrozen, withFrozen } from "../../frozen.ts";
import { runGraph } from "../../graph.ts";
import { add } from "../../ops/elementwise.ts";
import { softmaxCrossEntropy } from "../../ops/loss.ts";
import type { RandomKey } from "../../rng.ts";
import type { Tensor } from "../../tensor.ts";
import { checkImageShape, readSmallTensors } from "../../train.ts";
import { freezeGated, gatedHooks, gatedPenalty, gatesFor } from "./method.ts";
import type { GatedModel, GatedState } from "./model.ts";

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
  await readSmallTensors(state.params);
  return await withFrozen(
    state.params,
    () => freezeGated(gated, state),
    (frozen) => evaluateFrozen(frozen, data, { batchSize: options.batchSize }),
  );
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
 * import { bayesianBits, initGated, initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
 * import { gatedLoss } from "@bbits/core/bayesian-bits";
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
  const gates = gatesFor(gated, state.params, options.noiseKey);
  const output = runGraph(gated.model, state.params, x, {
    ...gatedHooks(gated, state, gates),
    mode: "train",
  }).output;
  const ce = softmaxCrossEntropy(output, labels);
  const penalty = options.prior === false
    ? null
    : gatedPenalty(gated, state.params);
  if (!penalty) return { loss: ce, crossEntropy: ce, prior: null };
  return {
    loss: add(ce, penalty.value),
    crossEntropy: ce,
    prior: penalty.metrics.prior,
  };
}
