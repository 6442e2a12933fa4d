/**
 * The WebGPU device's memory, scopes, kernel set and life cycle. These
 * tests need an adapter and fail, not skip, without one.
 */

import assert from "node:assert/strict";
// core/tensor.ts before core/device.ts: see the note in gpu/device.ts.
import { Tensor } from "../../core/tensor.ts";
import { type Device, UnsupportedKernelError } from "../../core/device.ts";
import { KERNEL_NAMES } from "../../core/kernels.ts";
import { referenceDevice } from "../../core/reference/device.ts";
import { createGpuDevice, GpuUnavailableError } from "../../gpu/mod.ts";
import { PENDING_WGSL } from "../../gpu/kernels.ts";
import {
  assertForwardMatches,
  assertSameBits,
  checkCase,
  type Gates,
  gpuDevice,
  plain,
  poolGeometry,
  poolOn,
  randomValues,
} from "./_gpu_helpers.ts";

Deno.test("the WebGPU device names its adapter and says what it is", async () => {
  const dev = await gpuDevice();
  assert.equal(dev.kind, "webgpu");
  assert.ok(dev.adapterInfo.description.length > 0, "adapter description");
  assert.equal(dev.name, `webgpu (${dev.adapterInfo.description})`);
  assert.equal(typeof dev.adapterInfo.isFallbackAdapter, "boolean");
  assert.ok(dev.adapterInfo.maxStorageBufferBindingSize >= 2 ** 27);
});

Deno.test("read() on the WebGPU device returns exactly what upload() wrote", async () => {
  const dev = await gpuDevice();
  const floats = Float32Array.from([
    1.5,
    -0,
    0,
    NaN,
    Infinity,
    -Infinity,
    2 ** -149, // the smallest subnormal
    -3.4028234663852886e38,
    Math.fround(0.1),
  ]);
  const f = dev.upload(floats, [3, 3]);
  assert.deepEqual(f.shape, [3, 3]);
  assert.equal(f.dtype, "float32");
  const back = await f.read();
  assert.ok(back instanceof Float32Array);
  assertSameBits(back, floats, "float32");
  // Plain numbers are rounded to float32 once, as on every device.
  assertSameBits(
    await dev.upload([0.1, 1 / 3], [2]).read(),
    Float32Array.from([0.1, 1 / 3]),
    "numbers",
  );
  const ints = Int32Array.from([0, -1, 2 ** 31 - 1, -(2 ** 31), 42]);
  const i = await dev.upload(ints, [5]).read();
  assert.ok(i instanceof Int32Array);
  assert.deepEqual([...i], [...ints]);
  const labels = dev.upload([3, -7], [2], "int32");
  assert.equal(labels.dtype, "int32");
  assert.deepEqual([...await labels.read()], [3, -7]);
  assert.equal((await dev.upload([], [0, 4]).read()).length, 0);
  // A reshape shares the storage; to() copies through the host.
  assertSameBits(await f.reshape([9]).read(), floats, "reshape");
  const onRef = await f.to(referenceDevice);
  assertSameBits(onRef.toFloat32Array(), floats, "to(reference)");
  assertSameBits(await (await onRef.to(dev)).read(), floats, "and back");
});

Deno.test("zeros() on the WebGPU device are zeros even in recycled buffers", async () => {
  const dev = await gpuDevice();
  const ones = dev.upload(new Float32Array(1000).fill(1), [1000]);
  await ones.read();
  dev.free(ones); // its buffer goes back to the pool
  for (let round = 0; round < 3; round++) {
    const z = dev.zeros([10, 100]);
    assert.deepEqual([...await z.read()].filter((v) => v !== 0), []);
    const again = dev.upload(new Float32Array(1000).fill(round + 2), [1000]);
    assert.deepEqual(new Set(await again.read()), new Set([round + 2]));
    dev.free(z, again);
  }
  assert.deepEqual([...await dev.zeros([2], "int32").read()], [0, 0]);
});

Deno.test("the host cannot see WebGPU memory: get() and toFloat32Array() throw", async () => {
  const dev = await gpuDevice();
  const t = dev.upload([1, 2], [2]);
  assert.throws(() => t.get(0), TypeError);
  assert.throws(() => t.toFloat32Array(), /await tensor.read\(\)/);
});

Deno.test("no kernel of the WebGPU device throws UnsupportedKernelError but FracBits' (listed as pending)", async () => {
  const dev = await gpuDevice();
  const x = dev.upload([1, -1], [2]);
  const pending: readonly string[] = PENDING_WGSL;
  for (const name of KERNEL_NAMES) {
    const kernel = dev.kernels[name] as (...args: unknown[]) => unknown;
    let unsupported = false;
    try {
      // Wrong arguments on purpose: the kernel rejects them by their names.
      kernel(x, x, x, x, x, x);
    } catch (error) {
      unsupported = error instanceof UnsupportedKernelError;
    }
    assert.equal(
      unsupported,
      pending.includes(name),
      `${name}: ${unsupported ? "not implemented in WGSL" : "implemented"}`,
    );
  }
});

Deno.test("a lost WebGPU device makes read() throw, naming the last kernel and its sizes", async () => {
  using dev = await createGpuDevice();
  const a = dev.upload([1, 2, 3, 4, 5, 6], [2, 3]);
  const c = dev.kernels.gemm(a, a, {
    m: 2,
    n: 2,
    k: 3,
    transA: false,
    transB: true,
  });
  assert.deepEqual([...await c.read()], [14, 32, 32, 77]);
  const d = dev.kernels.addBias(c, dev.upload([1, 1], [2]));
  dev.gpuDevice.destroy(); // what a driver reset does to the device
  await assert.rejects(
    () => d.read(),
    /lost[\s\S]*addBias\(\[2,2\], \[2\]\)/,
  );
});

Deno.test("a WebGPU scope frees what it does not return", async () => {
  const dev = await gpuDevice();
  let inner: Tensor | undefined;
  const kept = dev.scope(() => {
    inner = dev.kernels.uniform([3, 4], 8, 0);
    return dev.kernels.uniform([3, 4], 8, 0);
  });
  assertSameBits(
    await kept.read(),
    await referenceDevice.kernels.uniform([3, 4], 8, 0).read(),
    "kept",
  );
  assert.throws(() => inner!.read(), /used after its device scope ended/);
  dev.free(kept);
  assert.throws(() => kept.read(), /used after/);
});

/** Records hundreds of commands without reading: zeros, forward, backward. */
function manySteps(dev: Device) {
  const k = dev.kernels;
  let x = Tensor.from(randomValues(4000, 300, -1, 1), [3, 100], dev);
  const xmax = Tensor.from([0.8], [1], dev);
  const z2 = Tensor.from([1, 0.5, 0.25], [3], dev);
  let dxmax = dev.zeros([1]);
  for (let step = 0; step < 120; step++) {
    const gates = k.uniform([9, step], 4, 0);
    const xq = k.residualQuantize(x, xmax, gates, z2, true);
    const g = k.residualQuantizeBackward(x, xmax, gates, z2, true, xq);
    x = g.dx;
    dxmax = g.dxmax;
    dev.zeros([step + 1]);
  }
  return { x, dxmax };
}

Deno.test("hundreds of WebGPU kernels recorded without a read are submitted in batches", async () => {
  const dev = await gpuDevice();
  const gpu = manySteps(dev);
  const ref = manySteps(referenceDevice);
  assertSameBits(await gpu.x.read(), await ref.x.read(), "x");
  const [a, e] = [(await gpu.dxmax.read())[0], (await ref.dxmax.read())[0]];
  assert.ok(Math.abs(a - e) <= 1e-5 * (1 + Math.abs(e)), `dxmax ${a} vs ${e}`);
});

Deno.test("the WebGPU device rejects foreign tensors and allocations beyond its limit", async () => {
  const dev = await gpuDevice();
  const foreign = Tensor.from([1, 2, 3, 4]);
  assert.throws(() => dev.read(foreign), /was given to the webgpu/);
  const limit = Math.min(
    dev.adapterInfo.maxStorageBufferBindingSize,
    dev.adapterInfo.maxBufferSize,
  );
  const tooMany = Math.floor(limit / 4) + 1;
  assert.throws(
    () => dev.zeros([tooMany]),
    (e: Error) =>
      e instanceof RangeError && e.message.includes(`${tooMany} elements`),
  );
});

Deno.test("createGpuDevice() throws GpuUnavailableError without navigator.gpu, and RangeError on a bad grid limit", async () => {
  await assert.rejects(
    () => createGpuDevice({ maxWorkgroupsPerDimension: 0 }),
    (e: Error) =>
      e instanceof RangeError &&
      e.message.includes("maxWorkgroupsPerDimension 0"),
  );
  Object.defineProperty(navigator, "gpu", {
    value: undefined,
    configurable: true,
  });
  try {
    await assert.rejects(
      () => createGpuDevice(),
      (e: Error) =>
        e instanceof GpuUnavailableError &&
        e.message.includes("navigator.gpu is undefined"),
    );
  } finally {
    // Uncovers the getter on Navigator.prototype again.
    delete (navigator as { gpu?: unknown }).gpu;
  }
  assert.ok(navigator.gpu, "navigator.gpu is restored");
});

Deno.test("every WebGPU kernel spreads a large grid over two dimensions and handles the ragged tail", async () => {
  // Three workgroups per dimension: small inputs take the 2-D path.
  using dev = await createGpuDevice({ maxWorkgroupsPerDimension: 3 });
  const cases: [number, number][] = [
    [1, 1000], // forward: 4 workgroups
    [7, 100], // backward tiles: 7 workgroups
    [500, 3], // backward rows: 8 workgroups
    [4, 66_000], // 65 chunks a channel: 8 reduction workgroups
  ];
  let seed = 3300;
  for (const [channels, per] of cases) {
    const x = randomValues(seed++, channels * per, -1.2, 1.2);
    const dy = randomValues(seed++, channels * per);
    const z2 = new Float32Array(channels).fill(0.75);
    const c = { ...plain(x, dy, 1, true, [1, 1, 0, 0]), z2 };
    await checkCase(dev, c, `${channels} channels of ${per}`);
  }
  const g = poolGeometry(2, 4, 32, 32, 3, 1, 1); // 8192 outputs: 32 workgroups
  const x = randomValues(3400, 2 * 4 * 32 * 32, -1, 1);
  const grid = { xmax: 1, signed: true, gates: [1, 1, 0, 0] as Gates };
  assertForwardMatches(
    dev,
    await poolOn(dev, x, grid, g),
    await poolOn(referenceDevice, x, grid, g),
    grid,
    "pool",
  );
  const u = await dev.kernels.uniform([5, 6], 2001, 3).read();
  assertSameBits(
    u,
    await referenceDevice.kernels.uniform([5, 6], 2001, 3).read(),
    "uniform",
  );
});

Deno.test("a disposed WebGPU device refuses to allocate or read", async () => {
  const dev = await gpuDevice();
  const t = dev.upload([1, 2], [2]);
  dev.dispose();
  dev.dispose(); // idempotent
  assert.throws(() => dev.upload([1], [1]), /disposed/);
  assert.throws(() => dev.kernels.uniform([1, 2], 4, 0), /disposed/);
  await assert.rejects(() => t.read(), /disposed/);
});
