/**
 * Every kernel case (`_kernel_cases.ts`) on every device against the
 * reference device, within the case's tolerance; a kernel a device does not
 * have must throw `UnsupportedKernelError`. Also: the table covers every
 * kernel, the hand-computed values hold on the reference device, and no
 * kernel writes its inputs.
 */

import assert from "node:assert/strict";
import { referenceDevice } from "../core/reference/device.ts";
import { type Device, device, UnsupportedKernelError } from "../core/device.ts";
import { KERNEL_NAMES, type Kernels } from "../core/kernels.ts";
import type { Tensor } from "../core/tensor.ts";
import {
  assertWithin,
  HAND,
  type KernelCase,
  type Outputs,
  readOutputs,
  toleranceOf,
  uploadInputs,
} from "./_kernel_case.ts";
import { KERNEL_CASES } from "./_kernel_cases.ts";
import { PENDING_WGSL } from "../gpu/kernels.ts";

/** A device under test: how to open it and which kernels it has. */
interface DeviceUnderTest {
  readonly name: string;
  readonly open: () => Promise<Device>;
  /** Every kernel, or all but those that must throw UnsupportedKernelError. */
  readonly supports: "all" | { readonly except: readonly (keyof Kernels)[] };
  /** Whether it computes in float64 where the reference does. */
  readonly float64: boolean;
}

const DEVICES: readonly DeviceUnderTest[] = [
  {
    name: "wasm",
    open: () => device("wasm", { threads: 2, parallelThreshold: 1 }),
    supports: "all",
    float64: true,
  },
  {
    name: "webgpu",
    open: () => device("webgpu"),
    supports: { except: PENDING_WGSL },
    float64: false,
  },
];

/** Checks `got` against the reference's outputs `want` with the case's tolerances. */
async function assertMatches(
  c: KernelCase,
  got: Outputs,
  want: Outputs,
  where: string,
  float64: boolean,
): Promise<void> {
  assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort(), where);
  const [gotValues, wantValues] = [
    await readOutputs(got),
    await readOutputs(want),
  ];
  for (const [name, expected] of Object.entries(wantValues)) {
    const what = `${where}, output "${name}"`;
    const actual = gotValues[name];
    if (expected === null) {
      assert.equal(actual, null, `${what}: expected null`);
      continue;
    }
    assert.ok(actual !== null, `${what}: got null`);
    assert.deepEqual(got[name]!.shape, want[name]!.shape, `${what}: shape`);
    assert.equal(got[name]!.dtype, want[name]!.dtype, `${what}: dtype`);
    assertWithin(actual, expected, toleranceOf(c, name, float64), what);
  }
}

/** Asserts the tensors `dev` was given still hold the host inputs. */
async function assertInputsUntouched(
  c: KernelCase,
  inputs: Record<string, Tensor>,
  where: string,
): Promise<void> {
  const host = c.inputs();
  for (const [name, t] of Object.entries(inputs)) {
    assertWithin(
      await t.read(),
      host[name].values,
      "exact",
      `${where}: input "${name}" was written`,
    );
  }
}

Deno.test("the kernel table covers every kernel, and every output has a tolerance", () => {
  const covered = new Set(KERNEL_CASES.map((c) => c.kernel));
  assert.deepEqual(KERNEL_NAMES.filter((k) => !covered.has(k)), []);
  const names = KERNEL_CASES.map((c) => c.name);
  assert.deepEqual(names.filter((n, i) => names.indexOf(n) !== i), []);
  for (const c of KERNEL_CASES) {
    for (const [name, t] of Object.entries(c.run(referenceDevice))) {
      if (t !== null) assert.ok(c.tolerance[name], `${c.name}: "${name}"`);
    }
  }
});

Deno.test("the reference device reproduces every hand-computed kernel value", async () => {
  const handmade = KERNEL_CASES.filter((c) => c.expected);
  assert.ok(handmade.length >= 10, `only ${handmade.length} hand cases`);
  for (const c of handmade) {
    const got = await readOutputs(c.run(referenceDevice));
    for (const [name, expected] of Object.entries(c.expected!)) {
      assert.ok(got[name], `${c.name}: no output "${name}"`);
      assertWithin(got[name]!, expected, HAND, `${c.name}, "${name}"`);
    }
  }
});

Deno.test("the reference device's kernels never write their inputs", async () => {
  for (const c of KERNEL_CASES) {
    const inputs = uploadInputs(referenceDevice, c.inputs());
    c.call(referenceDevice.kernels, inputs);
    await assertInputsUntouched(c, inputs, c.name);
  }
});

/** Runs one case on `dev`: a match with the reference, or the kernel's refusal. */
async function checkCase(
  dev: Device,
  c: KernelCase,
  supported: boolean,
  float64: boolean,
): Promise<void> {
  const where = `${c.name} on ${dev.name}`;
  const inputs = uploadInputs(dev, c.inputs());
  if (!supported) {
    assert.throws(
      () => c.call(dev.kernels, inputs),
      (error) =>
        error instanceof UnsupportedKernelError && error.kernel === c.kernel,
      `${where}: expected UnsupportedKernelError for "${c.kernel}"`,
    );
    return;
  }
  const got = c.call(dev.kernels, inputs);
  await assertMatches(c, got, c.run(referenceDevice), where, float64);
  await assertInputsUntouched(c, inputs, where);
}

for (const { name, open, supports, float64 } of DEVICES) {
  Deno.test(`every kernel case on the ${name} device matches the reference device`, async () => {
    const dev = await open();
    const failures: string[] = [];
    try {
      assert.equal(dev.kind, name);
      for (const c of KERNEL_CASES) {
        const supported = supports === "all" ||
          !supports.except.includes(c.kernel);
        try {
          await checkCase(dev, c, supported, float64);
        } catch (error) {
          failures.push(error instanceof Error ? error.message : `${error}`);
        }
      }
    } finally {
      dev.dispose();
    }
    assert.deepEqual(
      failures,
      [],
      `${failures.length} of ${KERNEL_CASES.length} cases failed`,
    );
  });
}
