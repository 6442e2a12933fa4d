/**
 * Tensors, devices, kernels and the differentiable ops: what a new op, a
 * new device or a hand-written training step is built from.
 *
 * @example The gradient of sum(w * w) on the WASM device
 * ```ts
 * import { device } from "@bbits/core";
 * import { mul, sum, valueAndGrad } from "@bbits/core/ops";
 * import assert from "node:assert/strict";
 *
 * using dev = await device("wasm", { threads: 2 });
 * const f = valueAndGrad((p: { w: ReturnType<typeof dev.upload> }) => sum(mul(p.w, p.w)));
 * const { grads } = f({ w: dev.upload([1, -3], [2]) });
 * assert.deepEqual([...await grads.w.read()], [2, -6]);
 * ```
 *
 * @module
 */

export * from "../tensor.ts";
export * from "../device.ts";
export * from "../kernels.ts";
export * from "../autodiff.ts";
export * from "../round.ts";
export { type ReferenceDevice, referenceDevice } from "../reference/device.ts";
export * from "./elementwise.ts";
export * from "./dense.ts";
export * from "./conv2d.ts";
export * from "./pool.ts";
export * from "./batchnorm.ts";
export * from "./loss.ts";
export * from "./grid.ts";
