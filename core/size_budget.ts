/**
 * The size budget of a model read from a file: how many weights and how
 * many activation elements per sample a graph may ask for. A file is
 * checked against it before anything of that size is allocated, so an
 * edited graph (a pruned 200,000 x 200,000 kernel holds no codes yet
 * dequantizes to 160 GB) is refused with a message, not an out-of-memory
 * crash. The largest built-in model (ResNet-18 at 224 x 224: 11.7 M weights,
 * about 10 M activations per sample) is well inside.
 *
 * @module
 */

import type { GraphInfo } from "./graph.ts";

/** The most weights (elements of every conv/dense weight) a model may have: 2^28. */
export const MAX_MODEL_WEIGHTS = 2 ** 28;

/** The most activation elements (every node's output, summed) per sample: 2^26. */
export const MAX_SAMPLE_ACTIVATIONS = 2 ** 26;

/**
 * Checks an analysed graph against the budget.
 *
 * @param info `analyzeGraph(graph)`.
 * @returns Nothing.
 * @throws {RangeError} Naming the total and the budget, and the largest
 *   layer or node.
 *
 * @example
 * ```ts
 * import { lenet5 } from "@bbits/core";
 * import { analyzeGraph, checkModelBudget } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * checkModelBudget(analyzeGraph(lenet5()));
 * const huge = { ...lenet5(), inputShape: [1, 28, 28] as [number, number, number], nodes: [
 *   { op: "conv" as const, name: "c", input: "input", outChannels: 1, kernel: 200_000, padding: 100_000 },
 * ] };
 * assert.throws(() => checkModelBudget(analyzeGraph(huge)), /40000000000 weights.*layer "c"/);
 * ```
 */
export function checkModelBudget(info: GraphInfo): void {
  let weights = 0;
  let largest = { name: "", size: 0 };
  for (const layer of info.layers) {
    const size = layer.weightShape.reduce((a, b) => a * b, 1);
    weights += size;
    if (size > largest.size) largest = { name: layer.name, size };
  }
  if (!(weights <= MAX_MODEL_WEIGHTS)) {
    throw new RangeError(
      `The model has ${weights} weights, more than the budget of ${MAX_MODEL_WEIGHTS} (layer "${largest.name}" alone has ${largest.size})`,
    );
  }
  let activations = 0;
  largest = { name: "", size: 0 };
  for (const [name, shape] of info.shapes) {
    const size = shape.reduce((a, b) => a * b, 1);
    activations += size;
    if (size > largest.size) largest = { name, size };
  }
  if (!(activations <= MAX_SAMPLE_ACTIVATIONS)) {
    throw new RangeError(
      `The model computes ${activations} activations per sample, more than the budget of ${MAX_SAMPLE_ACTIVATIONS} (node "${largest.name}" alone outputs ${largest.size})`,
    );
  }
}
