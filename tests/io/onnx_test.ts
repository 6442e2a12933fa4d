/**
 * exportOnnx writes a frozen model as ONNX with integer weights at their
 * widths: the reader gets back what was written, the codes times the
 * scales are the frozen weights of the kept channels and inputs, and ONNX
 * Runtime (`npm:onnxruntime-node`, needs `--allow-ffi`) predicts what our
 * frozen model predicts on MNIST test images.
 */

import assert from "node:assert/strict";
import { device, initGraph, lenet5, randomKey, vgg7 } from "../../mod.ts";
import { hostF32 } from "../../core/tensor.ts";
import { floatMethod } from "../../core/methods/float.ts";
import { loadMnist } from "../../io/mnist.ts";
import {
  exportOnnx,
  onnxSizes,
  readOnnxExport,
  saveOnnx,
} from "../../io/onnx.ts";
import { encodeOnnx } from "../../io/onnx_proto.ts";
import { withTempDir } from "../_io_fixtures.ts";
import {
  FFI_GRANTED,
  fixedGatesLenet,
  frozenPredictions,
  onnxRuntimePredictions,
} from "./_onnx_helpers.ts";

const data = await loadMnist();
const wasm = await device("wasm", { threads: 1 });
const float = initGraph(lenet5(), randomKey(1), wasm);
const firstBatch = wasm.upload(
  data.train.images.subarray(0, 64 * 784),
  [64, 1, 28, 28],
);

/** Expected stored type and opset per weight width. */
const WIDTHS = [
  { bits: 2, type: "INT2", opset: 25 },
  { bits: 4, type: "INT4", opset: 21 },
  { bits: 8, type: "INT8", opset: 21 },
] as const;

Deno.test("exportOnnx() stores codes whose dequantized values are the frozen weights of the kept channels, and readOnnxExport() reads them back", async () => {
  for (const { bits, type, opset } of WIDTHS) {
    const frozen = await fixedGatesLenet(float, firstBatch, bits);
    const exported = exportOnnx(frozen);
    assert.equal(exported.opset, opset);
    const back = readOnnxExport(exported.bytes);
    assert.equal(back.opset, opset);
    assert.equal(back.method, "bayesian-bits");
    assert.deepEqual(
      back.layers,
      exported.layers.map(({ notes: _, ...stored }) => stored),
    );
    const kept = (c: number) => c % 3 !== 1;
    for (const layer of back.layers) {
      const plan = frozen.plan.layers.find((l) => l.name === layer.name)!;
      assert.equal(layer.weightType, type, layer.name);
      assert.deepEqual(layer.kept, plan.keptChannels, layer.name);
      const w = hostF32(frozen.params[`${layer.name}.weight`]);
      const shape = frozen.params[`${layer.name}.weight`].shape;
      const row = w.length / shape[0];
      const tolerance = 1e-6 * w.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const inputs = layer.keptInputs;
      const columns = layer.dims.slice(1).reduce((a, b) => a * b, 1);
      const span = inputs ? columns / inputs.length : row;
      // Every stored code times the one scale is the frozen weight at the
      // original row and column.
      layer.kept.forEach((o, r) => {
        for (let k = 0; k < columns; k++) {
          const col = inputs
            ? inputs[Math.floor(k / span)] * span + (k % span)
            : k;
          const value = layer.codes![r * columns + k] * layer.scales[0];
          assert.ok(
            Math.abs(value - w[o * row + col]) <= tolerance,
            `${layer.name}[${o}, ${col}]`,
          );
        }
      });
      if (layer.name !== "fc2") {
        assert.ok(layer.kept.every(kept) && layer.kept.length < shape[0]);
      }
    }
    // conv1 -> conv2 and conv2 -> flatten -> fc1 lose the pruned inputs.
    const [conv1, conv2, fc1] = back.layers;
    assert.deepEqual(conv2.keptInputs, conv1.kept);
    assert.deepEqual(conv2.dims.slice(1), [conv1.kept.length, 5, 5]);
    assert.deepEqual(fc1.dims, [fc1.kept.length, conv2.kept.length * 16]);
  }
});

Deno.test("onnxSizes() puts the 2-, 4- and 8-bit files beside the float model, smaller at fewer bits", async () => {
  const sizes = [];
  for (const { bits } of WIDTHS) {
    sizes.push(onnxSizes(await fixedGatesLenet(float, firstBatch, bits)));
  }
  const floatOnly = exportOnnx(
    floatMethod().freeze(lenet5(), float),
  ).bytes.length;
  for (const s of sizes) assert.equal(s.floatBytes, floatOnly);
  // 4 bytes per float parameter: LeNet-5 has 582,026.
  assert.ok(floatOnly > 4 * 582_026 && floatOnly < 4 * 582_026 + 8192);
  assert.ok(sizes[0].bytes < sizes[1].bytes && sizes[1].bytes < sizes[2].bytes);
  assert.ok(sizes[2].ratio < 0.25 * (2 / 3) + 0.01); // 8 bits, a third pruned
});

Deno.test({
  name:
    "ONNX Runtime predicts what the frozen model predicts at 2-, 4- and 8-bit weights (all 10,000 MNIST test images)",
  ignore: !FFI_GRANTED,
  fn: async () => {
    for (const { bits } of WIDTHS) {
      const frozen = await fixedGatesLenet(float, firstBatch, bits);
      const ours = await frozenPredictions(frozen, data.test);
      const theirs = await onnxRuntimePredictions(
        exportOnnx(frozen).bytes,
        data.test,
      );
      assert.deepEqual(theirs, ours, `${bits}-bit weights`);
    }
  },
});

Deno.test("readOnnxExport() refuses truncated files and files without what exportOnnx writes", async () => {
  const frozen = await fixedGatesLenet(float, firstBatch, 4);
  const { bytes, model } = exportOnnx(frozen);
  assert.throws(
    () => readOnnxExport(bytes.subarray(0, bytes.length - 7)),
    /truncated/,
  );
  const plain = encodeOnnx({ ...model, metadata: {} });
  assert.throws(() => readOnnxExport(plain), /no "bbits.layers" metadata/);
  const badMeta = encodeOnnx({
    ...model,
    metadata: { "bbits.layers": '[{"name":"conv1"}]' },
  });
  assert.throws(() => readOnnxExport(badMeta), /Bad "bbits.layers" metadata/);
  const noScale = encodeOnnx({
    ...model,
    initializers: model.initializers.filter((t) =>
      t.name !== "conv2.weight_scale"
    ),
  });
  assert.throws(
    () => readOnnxExport(noScale),
    /missing initializer "conv2.weight_scale"/,
  );
});

Deno.test("exportOnnx() refuses batch norm, a layer the plan lacks and a pruned channel with nonzero weights", async () => {
  const withBn = floatMethod().freeze(vgg7(), initGraph(vgg7(), randomKey(2)));
  assert.throws(() => exportOnnx(withBn), /layer "conv1" has batch norm/);
  const frozen = await fixedGatesLenet(float, firstBatch, 8);
  const noFc2 = {
    ...frozen,
    plan: { ...frozen.plan, layers: frozen.plan.layers.slice(0, 3) },
  };
  assert.throws(() => exportOnnx(noFc2), /the plan has no layer "fc2"/);
  const alive = {
    ...frozen,
    params: { ...frozen.params, "conv1.weight": float.params["conv1.weight"] },
  };
  assert.throws(
    () => exportOnnx(alive),
    /pruned channel 1 of "conv1" has nonzero weights/,
  );
});

Deno.test("saveOnnx() writes the file exportOnnx makes; a layer with every channel pruned stays as zeros", async () => {
  const frozen = await fixedGatesLenet(float, firstBatch, 4);
  const layers = frozen.plan.layers.map((l) =>
    l.name === "fc1" ? { ...l, keptChannels: [] } : l
  );
  const fc1 = frozen.params["fc1.weight"];
  const emptied = {
    ...frozen,
    params: { ...frozen.params, "fc1.weight": wasm.zeros(fc1.shape) },
    plan: { ...frozen.plan, layers },
  };
  await withTempDir(async (dir) => {
    const saved = await saveOnnx(`${dir}/m.onnx`, emptied);
    const bytes = await Deno.readFile(`${dir}/m.onnx`);
    assert.deepEqual(bytes, saved.bytes);
    assert.deepEqual(bytes, exportOnnx(emptied).bytes);
    const [, , back] = readOnnxExport(bytes).layers;
    assert.equal(back.kept.length, 512);
    assert.ok(back.codes!.every((k) => k === 0));
    assert.ok(
      saved.layers[2].notes.includes(
        "512 pruned channels stay as zeros: every channel is pruned",
      ),
    );
  });
});
