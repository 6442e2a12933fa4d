/**
 * The ONNX Runtime agreement measurement behind the README's figures (a
 * script, not a test; about a minute on two cores):
 *
 * ```sh
 * deno run --allow-read --allow-env --allow-ffi tests/onnx_agreement.ts
 * ```
 *
 * 1. A float LeNet-5 trained for one epoch on the first 6,000 MNIST
 *    training images (WASM, 2 threads), frozen with Bayesian Bits gates
 *    fixed at 2-, 4- and 8-bit weights and 8-bit activations, every third
 *    channel of conv1, conv2 and fc1 pruned: ONNX file size next to the
 *    float model's, and ONNX Runtime's predictions on all 10,000 test
 *    images against the frozen model's.
 * 2. How often a residual activation grid differs from the uniform grid of
 *    the same step that the ONNX graph runs: every activation of the float
 *    model on 1,000 test images, at 2, 4, 8 and 16 bits.
 */

import {
  device,
  initGraph,
  lenet5,
  randomKey,
  runGraph,
  trainFloat,
} from "../mod.ts";
import { makeDataset } from "../core/data.ts";
import { gridScale } from "../core/export.ts";
import { evaluateFrozen } from "../core/frozen.ts";
import { gridGates } from "../core/ops/grid.ts";
import type { Tensor } from "../core/tensor.ts";
import { loadMnist } from "../io/mnist.ts";
import { exportOnnx, onnxSizes } from "../io/onnx.ts";
import {
  fixedGatesLenet,
  frozenPredictions,
  onnxRuntimePredictions,
} from "./io/_onnx_helpers.ts";

const data = await loadMnist();
using wasm = await device("wasm", { threads: 2 });
const n = 6000;
const train = makeDataset(
  data.train.images.slice(0, n * 784),
  data.train.labels.slice(0, n),
  [1, 28, 28],
);
const trained = await trainFloat(
  lenet5(),
  initGraph(lenet5(), randomKey(7), wasm),
  {
    train,
    test: makeDataset(
      data.test.images.slice(0, 784 * 100),
      data.test.labels.slice(0, 100),
      [1, 28, 28],
    ),
  },
  { epochs: 1, key: randomKey(3) },
);
const first = wasm.upload(data.train.images.subarray(0, 64 * 784), [
  64,
  1,
  28,
  28,
]);
console.log(
  "| weights | opset | file bytes | float bytes | ratio | frozen accuracy | ONNX Runtime accuracy | disagreements |",
);
console.log("|---|---|---|---|---|---|---|---|");
for (const bits of [2, 4, 8]) {
  const frozen = await fixedGatesLenet({ params: trained.params }, first, bits);
  const sizes = onnxSizes(frozen);
  const ours = await frozenPredictions(frozen, data.test);
  const theirs = await onnxRuntimePredictions(
    exportOnnx(frozen).bytes,
    data.test,
  );
  let disagree = 0;
  let correct = 0;
  for (let i = 0; i < ours.length; i++) {
    if (ours[i] !== theirs[i]) disagree++;
    if (theirs[i] === data.test.labels[i]) correct++;
  }
  const accuracy = await evaluateFrozen(frozen, data.test);
  console.log(
    `| ${bits} | ${
      exportOnnx(frozen).opset
    } | ${sizes.bytes} | ${sizes.floatBytes} | ${sizes.ratio.toFixed(4)} | ${
      (100 * accuracy).toFixed(2)
    } % | ${
      (100 * correct / ours.length).toFixed(2)
    } % | ${disagree} / ${ours.length} |`,
  );
}

// Every activation (after its ReLU) of the float model on 1,000 images.
const activations: Tensor[] = [];
const x = wasm.upload(data.test.images.subarray(0, 1000 * 784), [
  1000,
  1,
  28,
  28,
]);
runGraph(lenet5(), trained.params, x, {
  activation: (layer, a) => {
    if (layer.name !== "fc2") activations.push(a);
    return a;
  },
});
for (const bits of [2, 4, 8, 16]) {
  let differ = 0;
  let total = 0;
  for (const a of activations) {
    const values = await a.read() as Float32Array;
    const xmax = values.reduce((m, v) => Math.max(m, v), 0);
    const k = wasm.kernels;
    const residual = await k.residualQuantize(
      a,
      wasm.upload([xmax], [1]),
      wasm.upload(gridGates(bits), [4]),
      null,
      false,
    ).read();
    const uniform = await k.uniformQuantize(
      a,
      wasm.upload([gridScale(xmax, false, bits as 2)], [1]),
      0,
      2 ** bits - 1,
    ).read();
    const step = gridScale(xmax, false, bits as 2);
    for (let i = 0; i < values.length; i++) {
      if (Math.abs(residual[i] - uniform[i]) > step / 2) differ++;
    }
    total += values.length;
  }
  console.log(
    `${bits}-bit grids: residual and uniform activations differ by a step at ${differ} of ${total} elements`,
  );
}
