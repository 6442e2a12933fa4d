/**
 * The WGSL Threefry generator against `core/rng.ts`: raw words and the
 * uniform stream must match bit for bit on every adapter (u32 arithmetic and
 * an exact float conversion). These tests need an adapter and fail, not
 * skip, without one.
 */

import assert from "node:assert/strict";
import {
  type RandomKey,
  randomKey,
  threefry2x32,
  uniform,
} from "../../core/rng.ts";
import { referenceDevice } from "../../core/reference/device.ts";
import { THREEFRY_WGSL } from "../../gpu/kernels/rng.ts";
import { assertSameBits, gpuDevice } from "./_gpu_helpers.ts";

/** Runs THREEFRY_WGSL on (key, counter) rows; returns the output words. */
async function threefryOnGpu(
  rows: [RandomKey, [number, number]][],
): Promise<Uint32Array> {
  const adapter = await navigator.gpu.requestAdapter();
  assert.ok(adapter, "a WebGPU adapter");
  const device = await adapter.requestDevice();
  try {
    const module = device.createShaderModule({
      code: THREEFRY_WGSL + /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> io: array<vec4<u32>>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
  if (id.x < arrayLength(&io)) {
    let row = io[id.x];
    io[id.x] = vec4<u32>(threefry2x32(row.xy, row.zw), 0u, 0u);
  }
}`,
    });
    const pipeline = await device.createComputePipelineAsync({
      layout: "auto",
      compute: { module, entryPoint: "main" },
    });
    const data = new Uint32Array(rows.flatMap(([k, c]) => [...k, ...c]));
    const io = device.createBuffer({
      size: data.byteLength,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST |
        GPUBufferUsage.COPY_SRC,
    });
    const staging = device.createBuffer({
      size: data.byteLength,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(io, 0, data);
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(
      0,
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: io } }],
      }),
    );
    pass.dispatchWorkgroups(Math.ceil(rows.length / 64));
    pass.end();
    encoder.copyBufferToBuffer(io, 0, staging, 0, data.byteLength);
    device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    return new Uint32Array(staging.getMappedRange().slice(0));
  } finally {
    device.destroy();
  }
}

Deno.test("the WGSL threefry2x32 matches the known answers and core/rng.ts word for word", async () => {
  const rows: [RandomKey, [number, number]][] = [
    [[0, 0], [0, 0]],
    [[0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff]],
    [[0x13198a2e, 0x03707344], [0x243f6a88, 0x85a308d3]],
  ];
  for (let i = 0; i < 200; i++) {
    const [a, b] = threefry2x32([i, 7], i, 3);
    rows.push([[a, b], threefry2x32([b, a], i, 0)]);
  }
  const words = await threefryOnGpu(rows);
  assert.deepEqual([words[0], words[1]], [0x6b200159, 0x99ba4efe]);
  assert.deepEqual([words[4], words[5]], [0x1cb996fc, 0xbb002be7]);
  assert.deepEqual([words[8], words[9]], [0xc4923a9c, 0x483df7a0]);
  rows.forEach(([key, [c0, c1]], r) => {
    const expected = threefry2x32(key, c0, c1);
    assert.deepEqual(
      [words[4 * r], words[4 * r + 1]],
      expected,
      `row ${r}: key ${key}, counter ${c0}, ${c1}`,
    );
  });
});

Deno.test("uniform() on the GPU equals the TypeScript stream for any count and offset", async () => {
  const dev = await gpuDevice();
  const cases: [RandomKey, number, number][] = [
    [randomKey(0), 1, 0],
    [randomKey(0), 2, 1],
    [randomKey(1), 3, 0],
    [randomKey(2), 255, 7],
    [randomKey(3), 256, 2],
    [randomKey(4), 257, 1],
    [randomKey(5), 1000, 0],
    [randomKey(6), 1001, 12345],
    [[0xffffffff, 0xffffffff], 513, 3],
    // Offsets past 2^32: block counters near the top of the u32 range.
    [randomKey(7), 100, 2 ** 32 + 1],
    [randomKey(8), 64, 2 ** 33 - 64],
    [randomKey(9), 65, 2 ** 33 - 65],
  ];
  for (const [key, count, offset] of cases) {
    const t = dev.kernels.uniform(key, count, offset);
    assert.deepEqual(t.shape, [count]);
    const what = `key ${key}, count ${count}, offset ${offset}`;
    const actual = await t.read();
    assertSameBits(actual, uniform(key, count, offset), what);
    assertSameBits(
      actual,
      await referenceDevice.kernels.uniform(key, count, offset).read(),
      `${what} (reference device)`,
    );
  }
});

Deno.test("uniform() on the GPU fills many workgroups from an odd offset", async () => {
  const dev = await gpuDevice();
  const key = randomKey(2024);
  assertSameBits(
    await dev.kernels.uniform(key, 70_001, 5).read(),
    uniform(key, 70_001, 5),
    "70001 from offset 5",
  );
});

Deno.test("uniform() on the GPU returns an empty tensor for count 0", async () => {
  const dev = await gpuDevice();
  const t = dev.kernels.uniform(randomKey(1), 0, 0);
  assert.deepEqual(t.shape, [0]);
  assert.equal((await t.read()).length, 0);
});

Deno.test("uniform() on the GPU rejects bad keys, counts and offsets, naming the value", async () => {
  const dev = await gpuDevice();
  const k = dev.kernels;
  assert.throws(
    () => k.uniform([1, -1] as unknown as RandomKey, 4, 0),
    (e: Error) => e instanceof TypeError && e.message.includes("[1,-1]"),
  );
  assert.throws(
    () => k.uniform(randomKey(1), 2.5, 0),
    (e: Error) => e instanceof RangeError && e.message.includes("2.5"),
  );
  assert.throws(
    () => k.uniform(randomKey(1), 4, 2 ** 33 - 3),
    (e: Error) =>
      e instanceof RangeError && e.message.includes(`${2 ** 33 - 3}`),
  );
});

Deno.test("the GPU device of the RNG tests can be disposed", async () => {
  const dev = await gpuDevice();
  dev.dispose();
  assert.throws(() => dev.kernels.uniform(randomKey(1), 4, 0), /disposed/);
});
