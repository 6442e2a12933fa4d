/**
 * What every frozen model shares, whichever method produced it: its BOPs
 * from the plan (`planBops`, spec section 4, in `core/plan_bops.ts`) and its test accuracy
 * ({@link evaluateFrozen}), activations quantized on the plan's grids.
 *
 * @module
 */

import { batches, type Dataset } from "./data.ts";
import { runGraph, type RunOptions } from "./graph.ts";
import type { Device } from "./device.ts";
import type { Frozen, LayerPlan, ResidualGrid, UniformGrid } from "./method.ts";
import { gridGates, quantizeActivationForInference } from "./ops/grid.ts";
import type { ParamRecord } from "./loop.ts";
import type { Tensor } from "./tensor.ts";

export {
  executableBits,
  planBops,
  type PlanCost,
  type PlanLayerCost,
  producerOf,
} from "./plan_bops.ts";

/** A plan's activation grid as tensors on a device. */
type GridTensors =
  | {
    readonly grid: ResidualGrid;
    readonly xmax: Tensor;
    readonly chain: Tensor;
  }
  | { readonly grid: UniformGrid; readonly scale: Tensor };

/** The activation grids of a plan as tensors on a device. */
function gridTensors(
  dev: Device,
  layers: readonly LayerPlan[],
): Map<string, GridTensors> {
  const out = new Map<string, GridTensors>();
  for (const l of layers) {
    const grid = l.activation;
    if (!grid) continue;
    out.set(
      l.name,
      grid.kind === "uniform"
        ? { grid, scale: dev.upload([grid.scale], [1]) }
        : {
          grid,
          xmax: dev.upload([grid.xmax], [1]),
          chain: dev.upload(gridGates(grid.bits), [4]),
        },
    );
  }
  return out;
}

/** Frees the tensors of {@link gridTensors}. */
function freeGrids(dev: Device, grids: Map<string, GridTensors>): void {
  for (const g of grids.values()) {
    if ("scale" in g) dev.free(g.scale);
    else dev.free(g.xmax, g.chain);
  }
}

/**
 * The run options that quantize a frozen model's activations on its grids:
 * a residual grid by the decomposition, a uniform grid by `uniformQuantize`.
 * An unsigned residual grid after a ReLU takes the pre-activation (its clip
 * at 0 is the ReLU) and joins the max-pool that follows, bit for bit as the
 * three steps.
 */
function frozenHooks(
  frozen: Frozen,
  grids: Map<string, GridTensors>,
): RunOptions {
  const k = Object.values(frozen.params)[0].device.kernels;
  return {
    mode: "eval",
    stats: frozen.stats ?? {},
    activation: (layer, a) => {
      const g = grids.get(layer.name);
      if (!g) return a;
      if ("scale" in g) {
        return k.uniformQuantize(a, g.scale, g.grid.codeMin, g.grid.codeMax);
      }
      return k.residualQuantize(a, g.xmax, g.chain, null, g.grid.signed);
    },
    fused: (layer, z, activation, pool) => {
      const g = grids.get(layer.name);
      if (!g || "scale" in g || g.grid.signed || activation !== "relu") {
        return undefined;
      }
      return quantizeActivationForInference(z, g.xmax, g.chain, {
        relu: true,
        pool,
        name: `${layer.name} activation`,
      });
    },
  };
}

/**
 * The fraction of a dataset a model classifies correctly: batches uploaded
 * to `dev`, each forward pass and count in a device scope, the counts read
 * back one batch at a time.
 *
 * @param dev The device the model lives on.
 * @param data The dataset.
 * @param batchSize Images per batch.
 * @param forward The logits `[N, K]` of a batch `[N, ...shape]`.
 * @returns The accuracy in [0, 1].
 * @throws {RangeError} On an empty dataset or an image that is not finite.
 */
export async function accuracyOn(
  dev: Device,
  data: Dataset,
  batchSize: number,
  forward: (x: Tensor) => Tensor,
): Promise<number> {
  if (data.count === 0) {
    throw new RangeError("Cannot evaluate on an empty dataset");
  }
  let correct = 0;
  let first = 0;
  for (const batch of batches(data, batchSize)) {
    checkFiniteImages(batch.images, first, data);
    first += batch.size;
    const count = dev.scope(() => {
      const x = dev.upload(batch.images, [batch.size, ...data.shape]);
      const labels = dev.upload(batch.labels, [batch.size], "int32");
      return dev.kernels.countCorrect(forward(x), labels);
    });
    correct += (await count.read())[0];
    dev.free(count);
  }
  return correct / data.count;
}

/**
 * Throws unless every pixel of a batch is finite, as training requires
 * (a NaN image would otherwise count as a wrong answer, silently).
 */
function checkFiniteImages(
  images: Float32Array,
  first: number,
  data: Dataset,
): void {
  for (let i = 0; i < images.length; i++) {
    if (!Number.isFinite(images[i])) {
      const size = data.shape[0] * data.shape[1] * data.shape[2];
      throw new RangeError(
        `Cannot evaluate: image ${first + Math.floor(i / size)} has ${
          images[i]
        } at element ${i % size} (images must be finite)`,
      );
    }
  }
}

/**
 * Freezes a state in a device scope, hands the frozen model to `body`, and
 * frees what freezing made (the quantized weights; the state's own
 * parameters stay) once `body` returns or its promise settles.
 *
 * @param params The state's parameters (kept).
 * @param freeze Makes the frozen model from them.
 * @param body Uses it (evaluation, export).
 * @returns What `body` returns.
 */
export function withFrozen<T>(
  params: ParamRecord,
  freeze: () => Frozen,
  body: (frozen: Frozen) => T,
): T {
  const dev = Object.values(params)[0].device;
  const frozen = dev.scope(freeze);
  const release = () => {
    const kept = new Set(Object.values(params));
    dev.free(...Object.values(frozen.params).filter((t) => !kept.has(t)));
  };
  let result: T;
  try {
    result = body(frozen);
  } catch (error) {
    release();
    throw error;
  }
  if (result instanceof Promise) return result.finally(release) as T;
  release();
  return result;
}

/**
 * Test accuracy of a frozen model on the device its parameters live on:
 * weights as frozen, activations quantized on the plan's grids.
 *
 * @param frozen The frozen model.
 * @param data The dataset (host images, uploaded batch by batch).
 * @param options Batch size (default 1000).
 * @returns The fraction of correctly classified samples.
 * @throws {RangeError} On an empty dataset.
 */
export async function evaluateFrozen(
  frozen: Frozen,
  data: Dataset,
  options: { readonly batchSize?: number } = {},
): Promise<number> {
  if (data.count === 0) {
    throw new RangeError("Cannot evaluate on an empty dataset");
  }
  const dev = Object.values(frozen.params)[0].device;
  const grids = gridTensors(dev, frozen.plan.layers);
  const hooks = frozenHooks(frozen, grids);
  try {
    return await accuracyOn(
      dev,
      data,
      options.batchSize ?? 1000,
      (x) => runGraph(frozen.model, frozen.params, x, hooks).output,
    );
  } finally {
    freeGrids(dev, grids);
  }
}

/**
 * The logits of a frozen model for a batch, on the batch's device: weights
 * as frozen, activations quantized on the plan's grids (as
 * {@link evaluateFrozen} runs it). The parameters must live on the batch's
 * device.
 *
 * @param frozen The frozen model.
 * @param x A batch `[N, C, H, W]`.
 * @returns The logits `[N, classes]`.
 *
 * @example
 * ```ts
 * import { floatMethod, initGraph, lenet5, randomKey, Tensor } from "@bbits/core";
 * import { runFrozen } from "./frozen.ts";
 * import assert from "node:assert/strict";
 *
 * const frozen = floatMethod().freeze(lenet5(), initGraph(lenet5(), randomKey(0)));
 * assert.deepEqual(runFrozen(frozen, Tensor.zeros([3, 1, 28, 28])).shape, [3, 10]);
 * ```
 */
export function runFrozen(frozen: Frozen, x: Tensor): Tensor {
  const dev = x.device;
  const grids = gridTensors(dev, frozen.plan.layers);
  try {
    return runGraph(frozen.model, frozen.params, x, frozenHooks(frozen, grids))
      .output;
  } finally {
    freeGrids(dev, grids);
  }
}
