/**
 * Helpers of the WASM device's kernels: size checks, and running a kernel of
 * the reference device on zero-copy views of WASM memory (for the kernels
 * without an AssemblyScript version).
 *
 * @module
 */

import type { Kernels } from "../core/kernels.ts";
import { referenceDevice } from "../core/reference/device.ts";
import { hostView, Tensor } from "../core/tensor.ts";
import type { WasmDevice } from "./device.ts";

/**
 * Throws unless `tensor` has `size` elements.
 *
 * @param what The kernel and argument, for the message.
 * @param tensor The tensor.
 * @param size The expected element count.
 * @throws {RangeError} Naming both counts.
 */
export function expectSize(what: string, tensor: Tensor, size: number): void {
  if (tensor.size !== size) {
    throw new RangeError(
      `${what} has ${tensor.size} elements, expected ${size}`,
    );
  }
}

/**
 * Runs a reference-device kernel on zero-copy views of WASM tensors and
 * writes its result tensors into the device.
 *
 * `body` gets `view`, which wraps a tensor of `dev` as a reference tensor
 * over its memory (no copy); the views stay valid while `body` runs, since
 * nothing is allocated on `dev` meanwhile. The result (a tensor, null, or a
 * plain object of those) comes back with every tensor uploaded to `dev`.
 *
 * @param dev The WASM device.
 * @param body Calls `referenceDevice.kernels` on the views.
 * @returns The result on `dev`.
 */
export function onReference<T>(
  dev: WasmDevice,
  body: (view: (tensor: Tensor) => Tensor, ref: Kernels) => T,
): T {
  const view = (tensor: Tensor) =>
    referenceDevice.adopt(
      dev.hostView(dev.storage(tensor)),
      tensor.shape,
    );
  const upload = (value: unknown): unknown => {
    if (value instanceof Tensor) {
      return dev.upload(hostView(value), value.shape, value.dtype);
    }
    if (value === null || typeof value !== "object") return value;
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, upload(item)]),
    );
  };
  // The views and the reference results live in a reference-device scope:
  // released when it ends, not left to a finalizer, which never runs while
  // a training loop keeps the event loop in microtasks (host memory then
  // grew by every result's size, step after step).
  return referenceDevice.scope(() =>
    upload(body(view, referenceDevice.kernels))
  ) as T;
}
