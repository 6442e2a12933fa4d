/**
 * FracBits on LeNet-5 / MNIST (spec `fracbits.md` section 11), short by
 * default: a float start, then the FracBits run with its hard assignment,
 * on the WASM device. Prints one line per epoch and the frozen result
 * (accuracy, relative GBOPs in both conventions, the offset, per-layer
 * widths).
 *
 * ```sh
 * deno run -A examples/fracbits_lenet.ts --limit 4096 --float-epochs 2 \
 *   --epochs 2 --assign-after 1 --target 1.0371 [--granularity kernel]
 *   [--min-bits 0] [--kappa 1] [--clip-init fixed|batch]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { device } from "../core/device.ts";
import { withFrozen } from "../core/frozen.ts";
import { planBops } from "../core/plan_bops.ts";
import { initGraph } from "../core/graph.ts";
import { lenet5 } from "../core/models.ts";
import { trainFloat } from "../core/methods/float.ts";
import {
  clipsFromBatch,
  fracBitsRecipe,
  freezeFracBits,
  initFracBits,
  integerWidths,
  trainFracBits,
  widthBops,
} from "../core/methods/fracbits/mod.ts";
import { randomKey } from "../core/rng.ts";
import { loadMnist } from "../io/mnist.ts";

const { values: a } = parseArgs({
  options: {
    limit: { type: "string", default: "4096" },
    "float-epochs": { type: "string", default: "2" },
    epochs: { type: "string", default: "2" },
    "assign-after": { type: "string", default: "1" },
    target: { type: "string", default: "1.0371" },
    granularity: { type: "string", default: "layer" },
    "min-bits": { type: "string", default: "1" },
    kappa: { type: "string", default: "1" },
    "clip-init": { type: "string", default: "fixed" },
    seed: { type: "string", default: "0" },
    threads: { type: "string", default: "2" },
  },
});
const n = (name: keyof typeof a) => Number(a[name]);

const dev = await device("wasm", { threads: n("threads") });
const data = await loadMnist({ limit: n("limit") });
const model = lenet5();
const float = await trainFloat(
  model,
  initGraph(model, randomKey(n("seed")), dev),
  data,
  { epochs: n("float-epochs"), key: randomKey(n("seed") + 1) },
);
console.log(
  `float: ${float.history.map((h) => (100 * h.testAccuracy).toFixed(2))} %`,
);
const fm = fracBitsRecipe(model, {
  targetRelativeGbops: n("target"),
  granularity: a.granularity as "layer" | "kernel",
  minBits: n("min-bits"),
  kappa: n("kappa"),
  assignAfterEpoch: n("assign-after"),
  clipInit: a["clip-init"] as "fixed" | "batch",
});
const first = dev.upload(data.train.images.slice(0, 128 * 784), [
  128,
  1,
  28,
  28,
]);
const init = fm.options.clipInit === "batch"
  ? await clipsFromBatch(fm, initFracBits(fm, float), first)
  : initFracBits(fm, float);
const run = await trainFracBits(fm, init, data, {
  epochs: n("epochs"),
  key: randomKey(n("seed") + 2),
  onEpoch: (s) => {
    const h = s.history[s.history.length - 1];
    console.log(
      `epoch ${h.epoch}: accuracy ${(100 * h.testAccuracy).toFixed(2)} %, ` +
        `relative GBOPs ${h.relativeGbops.toFixed(4)} %, cost ${
          h.metrics.cost.toExponential(4)
        } GBitOPs, ${h.samplesPerSecond.toFixed(0)} samples/s`,
    );
  },
});
const widths = integerWidths(fm, run.state);
const plan = withFrozen(
  run.state.params,
  () => freezeFracBits(fm, run.state),
  (f) => f.plan,
);
const own = widthBops(fm, widths);
const cost = planBops(model, plan);
const as = run.state.assignment;
console.log({
  target: fm.options.target,
  initBits: fm.options.initBits,
  accuracy: run.history[run.history.length - 1].testAccuracy,
  relativeGbops: cost.relativeGbops,
  macsBitsRelativeGbops: cost.macsBitsRelativeGbops,
  executableRelativeGbops: cost.executableRelativeGbops,
  weightBytes: cost.weightBytes,
  nativeGbitops: own.nativeGbitops,
  offset: as?.offset,
  fractionalCost: as?.fractionalCost,
  converged: as?.converged,
  widths: widths.map((w) => ({
    weight: w.weight.length === 1 ? w.weight[0] : w.weight.join(","),
    input: w.input,
  })),
  fractional: as?.fractional.map((w) => ({
    weight: w.weight.length === 1
      ? w.weight[0].toFixed(3)
      : `${w.weight.length} kernels`,
    input: w.input?.toFixed(3) ?? null,
  })),
});
dev.dispose();
