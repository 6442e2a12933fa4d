/**
 * The check of a Bayesian Bits state against its gated model: every
 * parameter the model needs (weights, biases, each quantizer's range, gate
 * logits and pruning logits) present with its shape, no stranger, and the
 * signedness of every quantizer recorded. A state read from a snapshot goes
 * through it before training resumes or a model is exported, so a snapshot
 * that lost its pruning logits is refused instead of keeping every channel.
 *
 * @module
 */

import { hostF32, type Shape } from "../../tensor.ts";
import type { GatedModel, GatedState } from "./model.ts";

/**
 * The shape of every parameter of a gated model, by name.
 *
 * @param gated The gated model.
 * @returns Weights, biases and each quantizer's parameters with their shapes.
 *
 * @example
 * ```ts
 * import { bayesianBits, lenet5 } from "@bbits/core";
 * import { gatedParamShapes } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const shapes = gatedParamShapes(bayesianBits(lenet5()));
 * assert.deepEqual(shapes.get("conv1.weight"), [32, 1, 5, 5]);
 * assert.deepEqual(shapes.get("conv1.weight.prune"), [32]);
 * ```
 */
export function gatedParamShapes(gated: GatedModel): Map<string, Shape> {
  const shapes = new Map<string, Shape>();
  for (const layer of gated.layers) {
    shapes.set(`${layer.name}.weight`, layer.weightShape);
    shapes.set(`${layer.name}.bias`, [layer.outChannels]);
  }
  for (const q of gated.quantizers) {
    shapes.set(q.xmaxParam, [1]);
    shapes.set(q.logitsParam, [4]);
    if (q.pruneParam) shapes.set(q.pruneParam, [q.pruneChannels]);
  }
  return shapes;
}

/**
 * Checks a state against its gated model.
 *
 * @param gated The gated model the state is for.
 * @param state The state (e.g. a resumed snapshot's).
 * @param where Opens every message, e.g. `Cannot resume from "run/checkpoint.safetensors"`.
 * @returns Nothing.
 * @throws {RangeError} Naming the first missing, misshapen or unknown
 *   parameter, or the quantizer whose signedness is not recorded.
 *
 * @example
 * ```ts
 * import { bayesianBits, initGated, initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
 * import { checkGatedState } from "@bbits/core/bayesian-bits";
 * import assert from "node:assert/strict";
 *
 * const gated = bayesianBits(lenet5());
 * const x = Tensor.from(new Float32Array(784).fill(0.5), [1, 1, 28, 28]);
 * const state = await initGated(gated, initGraph(lenet5(), randomKey(0)), x);
 * checkGatedState(gated, state, "the state");
 * const { ["conv1.weight.prune"]: _, ...params } = state.params;
 * assert.throws(
 *   () => checkGatedState(gated, { ...state, params }, "the state"),
 *   /the state: parameter "conv1.weight.prune" is missing \(expected shape \[32\]\)/,
 * );
 * ```
 */
export function checkGatedState(
  gated: GatedModel,
  state: GatedState,
  where: string,
): void {
  const shapes = gatedParamShapes(gated);
  for (const [name, shape] of shapes) {
    const p = Object.hasOwn(state.params, name)
      ? state.params[name]
      : undefined;
    if (!p) {
      throw new RangeError(
        `${where}: parameter "${name}" is missing (expected shape [${
          shape.join(", ")
        }])`,
      );
    }
    if (p.shape.join() !== shape.join()) {
      throw new RangeError(
        `${where}: parameter "${name}" has shape [${
          p.shape.join(", ")
        }], the model needs [${shape.join(", ")}]`,
      );
    }
  }
  const unknown = Object.keys(state.params).find((name) => !shapes.has(name));
  if (unknown !== undefined) {
    throw new RangeError(
      `${where}: parameter ${
        JSON.stringify(unknown.slice(0, 80))
      } is not one of the ${gated.model.name} model's`,
    );
  }
  checkValues(gated, state, where);
  for (const q of gated.quantizers) {
    const signed = Object.hasOwn(state.signed, q.name)
      ? state.signed[q.name]
      : undefined;
    if (typeof signed !== "boolean") {
      throw new RangeError(
        `${where}: signed["${q.name}"] must be a boolean, got ${typeof signed}`,
      );
    }
  }
}

/**
 * The values the host can see: ranges finite and positive, gate logits
 * finite (a device the host cannot read synchronously is left to training's
 * own checks).
 */
function checkValues(gated: GatedModel, state: GatedState, where: string) {
  for (const q of gated.quantizers) {
    const names = [q.xmaxParam, q.logitsParam, q.pruneParam];
    for (const name of names) {
      if (name === null) continue;
      const t = state.params[name];
      if (t.device.kind === "webgpu") return;
      const values = hostF32(t);
      const bad = values.findIndex((v) =>
        !Number.isFinite(v) || (name === q.xmaxParam && !(v > 0))
      );
      if (bad >= 0) {
        throw new RangeError(
          `${where}: parameter "${name}" has ${
            values[bad]
          } at element ${bad} (${
            name === q.xmaxParam
              ? "a range must be finite and positive"
              : "logits must be finite"
          })`,
        );
      }
    }
  }
}
