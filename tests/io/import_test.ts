/**
 * importFloatWeights maps PyTorch-layout safetensors (F32, F16, BF16) and
 * ONNX initializers onto a model-zoo graph by name and shape, and names
 * every mismatch.
 */

import assert from "node:assert/strict";
import {
  device,
  floatMethod,
  initGraph,
  lenet5,
  randomKey,
  vgg7,
} from "../../mod.ts";
import type { ModelGraph } from "../../core/graph.ts";
import {
  encodeSafetensors,
  type SafetensorsInput,
} from "../../core/safetensors.ts";
import { hostF32 } from "../../core/tensor.ts";
import { importFloatWeights } from "../../io/import.ts";
import { exportOnnx } from "../../io/onnx.ts";
import { randomValues } from "../_fixtures.ts";
import { withTempDir } from "../_io_fixtures.ts";
import { fixedGatesLenet } from "./_onnx_helpers.ts";

const TINY: ModelGraph = {
  name: "tiny",
  inputShape: [1, 1, 2],
  nodes: [
    { op: "flatten", name: "f", input: "input" },
    { op: "dense", name: "fc", input: "f", outFeatures: 2 },
  ],
};

/** Hand-made bit patterns: F16 0x3c00 = 1, 0xc000 = -2, 0x3800 = 0.5, 0x0001 = 2^-24. */
const HALVES: [string, number[], number[]][] = [
  ["F16", [0x3c00, 0xc000, 0x3800, 0x0001], [1, -2, 0.5, 2 ** -24]],
  // BF16 is the top half of a float32: 0x3f80 = 1, 0xc040 = -3, 0x3e00 = 0.125.
  ["BF16", [0x3f80, 0xc040, 0x3e00, 0x0000], [1, -3, 0.125, 0]],
];

Deno.test("importFloatWeights() reads F32, F16 and BF16 tensors by their PyTorch names", async () => {
  for (const [dtype, bits, values] of HALVES) {
    const bytes = encodeSafetensors({
      "fc.weight": {
        shape: [2, 2],
        data: Uint16Array.from(bits),
        dtype: dtype as "F16",
      },
      "fc.bias": { shape: [2], data: new Float32Array([0.25, -1]) },
    });
    const { params, stats } = await importFloatWeights(bytes, TINY);
    assert.deepEqual([...hostF32(params["fc.weight"])], values, dtype);
    assert.deepEqual([...hostF32(params["fc.bias"])], [0.25, -1]);
    assert.deepEqual(params["fc.weight"].shape, [2, 2]);
    assert.deepEqual(stats, {});
  }
});

Deno.test("importFloatWeights() round-trips LeNet-5 through safetensors and ONNX files, and batch norm through bn.* names", async () => {
  const float = initGraph(lenet5(), randomKey(4));
  const tensors: Record<string, SafetensorsInput> = {};
  for (const [name, t] of Object.entries(float.params)) {
    tensors[name] = { shape: t.shape, data: hostF32(t) };
  }
  const onnx = exportOnnx(floatMethod().freeze(lenet5(), float)).bytes;
  await withTempDir(async (dir) => {
    await Deno.writeFile(`${dir}/m.safetensors`, encodeSafetensors(tensors));
    await Deno.writeFile(`${dir}/m.onnx`, onnx);
    for (const file of ["m.safetensors", "m.onnx"]) {
      const { params } = await importFloatWeights(`${dir}/${file}`, lenet5());
      assert.deepEqual(
        Object.keys(params).sort(),
        Object.keys(float.params).sort(),
      );
      for (const [name, t] of Object.entries(float.params)) {
        assert.deepEqual(hostF32(params[name]), hostF32(t), `${file} ${name}`);
      }
    }
  });
  // VGG-7's batch norm: gamma, beta and the running statistics.
  const vgg = initGraph(vgg7(), randomKey(5));
  const bn: Record<string, SafetensorsInput> = {};
  const put = (name: string, shape: readonly number[], fill: number) =>
    bn[name] = {
      shape,
      data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(fill),
    };
  for (const [name, t] of Object.entries(vgg.params)) {
    put(
      name.replace(".bn.gamma", ".bn.weight").replace(".bn.beta", ".bn.bias"),
      t.shape,
      0.5,
    );
  }
  for (const layer of Object.keys(vgg.stats)) {
    const c = vgg.stats[layer].mean.shape;
    put(`${layer}.bn.running_mean`, c, 0.25);
    put(`${layer}.bn.running_var`, c, 2);
    bn[`${layer}.bn.num_batches_tracked`] = {
      shape: [],
      data: new Int32Array([9]),
    };
  }
  const got = await importFloatWeights(encodeSafetensors(bn), vgg7());
  assert.deepEqual(
    Object.keys(got.stats).sort(),
    Object.keys(vgg.stats).sort(),
  );
  assert.equal(hostF32(got.stats.conv1.variance)[0], 2);
  assert.equal(hostF32(got.stats.conv1.mean)[127], 0.25);
  assert.equal(hostF32(got.params["conv1.bn.gamma"])[3], 0.5);
});

Deno.test("importFloatWeights() names every missing, extra, misshapen and non-float tensor, and refuses malformed files", async () => {
  const bytes = encodeSafetensors({
    "fc.weight": { shape: [2, 3], data: new Float32Array(6) },
    "fc.scale": { shape: [1], data: new Float32Array(1) },
    "other.bias": { shape: [2], data: new Int32Array(2) },
  });
  await assert.rejects(
    importFloatWeights(bytes, TINY),
    (e: Error) => {
      assert.ok(e instanceof RangeError);
      for (
        const part of [
          `Cannot import float weights from safetensors bytes into tiny`,
          `"fc.weight" has shape [2, 3], tiny needs [2, 2]`,
          `missing "fc.bias" [2]`,
          `"fc.scale" is not a parameter of tiny`,
          `"other.bias" is not a parameter of tiny`,
        ]
      ) assert.ok(e.message.includes(part), `${part} in ${e.message}`);
      return true;
    },
  );
  const wrongType = encodeSafetensors({
    "fc.weight": { shape: [2, 2], data: new Int32Array(4) },
    "fc.bias": { shape: [2], data: new Float32Array(2) },
  });
  await assert.rejects(
    importFloatWeights(wrongType, TINY),
    /"fc.weight" has dtype I32, expected F32, F16 or BF16/,
  );
  const good = encodeSafetensors({
    "fc.weight": { shape: [2, 2], data: new Float32Array(4) },
    "fc.bias": { shape: [2], data: new Float32Array(2) },
  });
  await assert.rejects(
    importFloatWeights(good.subarray(0, good.length - 3), TINY),
    /Cannot import float weights .*trailing|truncated|data_offsets/,
  );
  const unknown = new TextEncoder().encode(
    '{"fc.weight":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}',
  );
  const file = new Uint8Array(8 + unknown.length + 8);
  new DataView(file.buffer).setBigUint64(0, BigInt(unknown.length), true);
  file.set(unknown, 8);
  await assert.rejects(importFloatWeights(file, TINY), /unknown dtype "F64"/);
  const onnx = exportOnnx(
    floatMethod().freeze(lenet5(), initGraph(lenet5(), randomKey(4))),
  ).bytes;
  await assert.rejects(
    importFloatWeights(onnx.subarray(0, 1000), lenet5(), { format: "onnx" }),
    /Cannot import float weights from onnx bytes into lenet5: .*truncated/,
  );
});

Deno.test("importFloatWeights() reads a QDQ ONNX file as its dequantized weights, and names the shapes a pruned one lacks", async () => {
  const wasm = await device("wasm", { threads: 1 });
  const float = initGraph(lenet5(), randomKey(6), wasm);
  const x = wasm.upload(randomValues(8, 16 * 784, 0, 1), [16, 1, 28, 28]);
  const frozen = await fixedGatesLenet(float, x, 4, 8, false);
  const { params } = await importFloatWeights(
    exportOnnx(frozen).bytes,
    lenet5(),
    {
      format: "onnx",
    },
  );
  for (const [name, t] of Object.entries(params)) {
    const expected = hostF32(frozen.params[name]);
    const got = hostF32(t);
    const tolerance = 1e-6 *
      expected.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(
      got.every((v, i) => Math.abs(v - expected[i]) <= tolerance),
      name,
    );
  }
  const pruned = exportOnnx(await fixedGatesLenet(float, x, 4)).bytes;
  await assert.rejects(
    importFloatWeights(pruned, lenet5()),
    /"conv1.weight" has shape \[21, 1, 5, 5\], lenet5 needs \[32, 1, 5, 5\]/,
  );
});
