/**
 * Training in full: the method seam, the one training loop, frozen models
 * and their plans, BOP counting, optimizers and schedules, data batching,
 * random keys, model graphs and the model zoo.
 *
 * @example A step schedule for the weights, paired with Adam
 * ```ts
 * import { adam, stepSchedule } from "@bbits/core/training";
 * import assert from "node:assert/strict";
 *
 * const lr = stepSchedule({ lr: 0.1, gamma: 0.5, stepSize: 10 });
 * assert.equal(lr(10), 0.05);
 * assert.equal(typeof adam({ lr }).update, "function");
 * ```
 *
 * @module
 */

export * from "./method.ts";
export * from "./train.ts";
export * from "./loop.ts";
export * from "./frozen.ts";
export * from "./bops.ts";
export * from "./optim.ts";
export * from "./schedules.ts";
export * from "./data.ts";
export * from "./rng.ts";
export * from "./graph.ts";
export * from "./size_budget.ts";
export * from "./models.ts";
export * from "./methods/float.ts";
export * from "./budget.ts";
