import assert from "node:assert/strict";
import { valueAndGrad } from "../../core/autodiff.ts";
import {
  analyzeGraph,
  initGraph,
  type ModelGraph,
  runGraph,
} from "../../core/graph.ts";
import { lenet5, mobilenetV2, resnet18, vgg7 } from "../../core/models.ts";
import { softmaxCrossEntropy } from "../../core/ops/loss.ts";
import { randomKey } from "../../core/rng.ts";
import { Tensor } from "../../core/tensor.ts";
import { assertClose, randomValues } from "../_fixtures.ts";

Deno.test("lenet5() has the spec's layers, shapes and MAC counts", () => {
  const { layers, shapes } = analyzeGraph(lenet5());
  assert.deepEqual(layers.map((l) => [l.name, l.weightShape]), [
    ["conv1", [32, 1, 5, 5]],
    ["conv2", [64, 32, 5, 5]],
    ["fc1", [512, 1024]],
    ["fc2", [10, 512]],
  ]);
  assert.deepEqual(shapes.get("pool2"), [64, 4, 4]);
  // 24*24*32*25, 8*8*64*25*32, 1024*512, 512*10
  assert.deepEqual(layers.map((l) => l.macs), [
    460_800,
    3_276_800,
    524_288,
    5_120,
  ]);
});

Deno.test("vgg7() ends in dense 8192 -> 1024 -> 10 with batch norm on every conv", () => {
  const { layers } = analyzeGraph(vgg7());
  assert.equal(layers.length, 8);
  assert.ok(layers.slice(0, 6).every((l) => l.batchNorm && l.kind === "conv"));
  assert.deepEqual(layers.slice(6).map((l) => l.weightShape), [[1024, 8192], [
    10,
    1024,
  ]]);
  // conv2: 32*32 outputs * 128 * 128 * 9
  assert.equal(layers[1].macs, 32 * 32 * 128 * 128 * 9);
});

Deno.test("resnet18() and mobilenetV2() have the published MAC totals and parameter counts", () => {
  const count = (g: ModelGraph) => {
    const { layers } = analyzeGraph(g);
    return {
      macs: layers.reduce((s, l) => s + l.macs, 0),
      // weights + biases of conv/dense layers (batch-norm parameters not counted)
      params: layers.reduce(
        (s, l) => s + l.weightShape.reduce((a, b) => a * b, 1),
        0,
      ),
    };
  };
  const r = count(resnet18());
  assertClose(r.macs / 1e9, 1.814, 0, 0.001);
  assertClose(r.params / 1e6, 11.68, 0, 0.01); // 11.69M incl. BN and biases
  const m = count(mobilenetV2());
  assertClose(m.macs / 1e6, 300.8, 0, 1);
  assertClose(m.params / 1e6, 3.47, 0, 0.03);
});

Deno.test("runGraph() calls the weight and activation hooks on every conv/dense layer", () => {
  const model = lenet5();
  const { params } = initGraph(model, randomKey(1));
  const seen: string[] = [];
  const { output } = runGraph(model, params, Tensor.zeros([1, 1, 28, 28]), {
    weight: (layer, w) => {
      seen.push(`w:${layer.name}`);
      return w;
    },
    activation: (layer, a) => {
      seen.push(`a:${layer.name}:${layer.activation}`);
      return a;
    },
  });
  assert.deepEqual(output.shape, [1, 10]);
  assert.deepEqual(seen, [
    "w:conv1",
    "a:conv1:relu",
    "w:conv2",
    "a:conv2:relu",
    "w:fc1",
    "a:fc1:relu",
    "w:fc2",
    "a:fc2:none",
  ]);
});

Deno.test("a tiny graph with batch norm and a residual add trains: gradients match finite differences", () => {
  const model: ModelGraph = {
    name: "tiny",
    inputShape: [2, 4, 4],
    nodes: [
      {
        op: "conv",
        name: "c1",
        input: "input",
        outChannels: 2,
        kernel: 3,
        padding: 1,
        batchNorm: true,
        activation: "relu",
      },
      { op: "add", name: "res", inputs: ["c1", "input"] },
      { op: "avgpool", name: "gap", input: "res" },
      { op: "dense", name: "fc", input: "gap", outFeatures: 3 },
    ],
  };
  const { params, stats } = initGraph(model, randomKey(2));
  const x = Tensor.from(randomValues(3, 3 * 2 * 16), [3, 2, 4, 4]);
  const labels = [0, 2, 1];
  const loss = (p: typeof params) =>
    softmaxCrossEntropy(
      runGraph(model, p, x, { mode: "train", stats }).output,
      labels,
    );
  const { grads } = valueAndGrad(loss)(params);
  for (const name of ["c1.weight", "c1.bn.gamma", "fc.weight", "fc.bias"]) {
    const data = params[name].toFloat32Array();
    for (let i = 0; i < Math.min(data.length, 6); i++) {
      const at = (d: number) => {
        const copy = data.slice();
        copy[i] += d;
        return loss({
          ...params,
          [name]: Tensor.from(copy, params[name].shape),
        }).get(0);
      };
      const h = 1e-2;
      assertClose(
        grads[name].toFloat32Array()[i],
        (at(h) - at(-h)) / (2 * h),
        3e-2,
        2e-3,
        `${name}[${i}]`,
      );
    }
  }
});

Deno.test("graphs with unknown inputs or misfit shapes are rejected with the layer's name", () => {
  assert.throws(
    () =>
      analyzeGraph({
        name: "bad",
        inputShape: [1, 8, 8],
        nodes: [{ op: "flatten", name: "f", input: "nope" }],
      }),
    /Layer "f": unknown input "nope"/,
  );
  assert.throws(
    () =>
      analyzeGraph({
        name: "bad",
        inputShape: [1, 4, 4],
        nodes: [{
          op: "conv",
          name: "c",
          input: "input",
          outChannels: 2,
          kernel: 5,
        }],
      }),
    /Layer "c": kernel 5 does not fit 4x4/,
  );
  const { params } = initGraph(lenet5(), randomKey(0));
  assert.throws(
    () => runGraph(lenet5(), params, Tensor.zeros([1, 3, 28, 28])),
    /expects a batch \[N, 1, 28, 28\]/,
  );
});
