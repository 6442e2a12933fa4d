/**
 * Helpers of the checkpoint and snapshot tests: temporary directories,
 * exact comparisons, and a device whose memory the host cannot see.
 */

import { UnsupportedKernelError } from "../core/device.ts";
import { HostArrayDevice } from "../core/reference/device.ts";
import type { Kernels } from "../core/kernels.ts";
import type { OptimizerState } from "../core/optim.ts";
import type { SafetensorsInput } from "../core/safetensors.ts";

/**
 * A device whose memory the host cannot see, as a GPU's: tensors can be
 * uploaded and read back (asynchronously) but not viewed, and it has no
 * kernels. Checkpoints must work through `read()` alone.
 */
export class OpaqueDevice extends HostArrayDevice {
  readonly kind = "webgpu" as const;
  readonly name = "opaque test device";
  readonly kernels: Kernels = new Proxy({} as Kernels, {
    get: (_, kernel) => {
      throw new UnsupportedKernelError(String(kernel), this.name);
    },
  });

  override hostView(): Float32Array | Int32Array {
    throw new TypeError("The opaque test device's memory is not host-visible");
  }

  protected disposeResources(): void {}
}

/** Runs `body` with a fresh temporary directory, removed afterwards. */
export async function withTempDir(body: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "bbits_checkpoint_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The names in `dir`, sorted. */
export async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) names.push(entry.name);
  return names.sort();
}

/** The bits of the elements, to compare -0, NaN and Infinity exactly. */
export const bitsOf = (data: SafetensorsInput["data"]) =>
  data instanceof Float32Array
    ? [...new Uint32Array(data.buffer, data.byteOffset, data.length)]
    : [...data];

/**
 * Optimizer state read back to the host: the step, and per slot its device
 * kind, shape and element bits (-0 and NaN compared exactly).
 */
export async function hostState(state: OptimizerState) {
  const slots: Record<string, Record<string, unknown>> = {};
  for (const [param, record] of Object.entries(state.slots)) {
    slots[param] = {};
    for (const [slot, t] of Object.entries(record)) {
      slots[param][slot] = {
        device: t.device.kind,
        shape: [...t.shape],
        bits: bitsOf(await t.read()),
      };
    }
  }
  return { step: state.step, slots };
}
