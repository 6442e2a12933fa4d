/**
 * The WGSL kernel families on a WebGPU device whose dispatch grid is cut to
 * two workgroups per dimension, so every kernel takes its 2-D grid path and
 * ragged last rows; every case of the kernel table against the reference
 * device (the parity test runs them on the full grid, and checks that the
 * kernels still without WGSL throw `UnsupportedKernelError`). Needs an adapter
 * (the software one will do) and fails, not skips, without one.
 */

import assert from "node:assert/strict";
import { referenceDevice } from "../../core/reference/device.ts";
import { createGpuDevice } from "../../gpu/mod.ts";
import { PENDING_WGSL } from "../../gpu/kernels.ts";
import {
  assertWithin,
  readOutputs,
  toleranceOf,
  uploadInputs,
} from "../_kernel_case.ts";
import { KERNEL_CASES } from "../_kernel_cases.ts";

Deno.test("every kernel case matches the reference on a WebGPU grid of two workgroups per dimension", async () => {
  using dev = await createGpuDevice({ maxWorkgroupsPerDimension: 2 });
  const failures: string[] = [];
  const pending: readonly string[] = PENDING_WGSL;
  for (const c of KERNEL_CASES) {
    // The kernels without WGSL yet: the parity test checks that they throw.
    if (pending.includes(c.kernel)) continue;
    try {
      const got = await readOutputs(
        c.call(dev.kernels, uploadInputs(dev, c.inputs())),
      );
      const want = await readOutputs(c.run(referenceDevice));
      for (const [name, expected] of Object.entries(want)) {
        const what = `${c.name}, "${name}"`;
        if (expected === null) {
          assert.equal(got[name], null, what);
          continue;
        }
        assertWithin(got[name]!, expected, toleranceOf(c, name, false), what);
      }
    } catch (error) {
      failures.push(error instanceof Error ? error.message : `${error}`);
    }
  }
  assert.deepEqual(failures, [], `${failures.length} cases failed`);
});
