/**
 * `deno task bench`: what users see, then where the time goes.
 *
 * 1. Real MNIST epochs (`bench/bayesian_bits.ts`): LeNet-5 training through
 *    `trainFloat` and `trainBayesianBits`, and evaluation through
 *    `evaluate` and `evaluateGated`, on the WASM device at each thread
 *    count; sustained samples/s (median of alternating rounds after a
 *    warm-up), thread speed-ups and Bayesian Bits / float ratios from the
 *    same run.
 * 2. Kernels (`bench/kernels.ts`): each kernel of the training step at
 *    LeNet-5 batch-128 shapes, on the reference device and the WASM device,
 *    resident tensors, ratios against the reference from the same run.
 * 3. WebGPU (`bench/gpu.ts`), whenever an adapter exists: the quantizer,
 *    GEMM at the LeNet-5 shapes, LeNet-5 and VGG-7 training and evaluation,
 *    each beside the WASM figure of the same run (the adapter's name
 *    printed; small sizes on a software adapter).
 *
 * Options:
 *
 * - `--limit N`: training images per epoch (default 60000, a full epoch;
 *   the test split holds `min(N, 10000)`);
 * - `--threads 1,2`: WASM thread counts;
 * - `--only train,eval,kernels,gpu`: sections to run (comma-separated);
 * - `--rounds 3`: timed rounds of the epoch section (at least);
 * - `--min-seconds 0.3`: each figure timed over at least this long;
 * - `--warmup-seconds 30`: warm-up before the first timed section;
 * - `--json FILE`: also write every figure as JSON.
 *
 * `bench/README.md` explains the method and holds the latest figures;
 * `bench/compare.ts` times the same epochs against another checkout.
 *
 * @module
 */

import {
  benchEpochs,
  type EpochRow,
  kindsOf,
  loadBenchData,
  printEpochTables,
} from "./bayesian_bits.ts";
import { benchKernels, type KernelRow } from "./kernels.ts";
import { benchGpu } from "./gpu.ts";
import { benchMethods, printMethodTable } from "./methods.ts";
import { logLine } from "./timing.ts";
import { type BenchArgs, benchArgsOrExit } from "./args.ts";
import { referenceDevice } from "../core/reference/device.ts";
import { type Device, device } from "../core/device.ts";

/** Warm-up of the kernel section when the epoch section ran before it. */
const WARM_AFTER_EPOCHS_SECONDS = 3;

async function runEpochs(args: BenchArgs): Promise<EpochRow[]> {
  const only = args.only.filter((s) =>
    s !== "kernels" && s !== "gpu" && s !== "methods"
  );
  if (only.length === 0) return [];
  const data = await loadBenchData(args.limit);
  logLine(
    `epochs: ${data.train.count} training images, ${data.test.count} test images, threads ${args.threads}`,
  );
  const options = {
    threads: args.threads,
    kinds: kindsOf(only),
    rounds: args.rounds,
    minSeconds: args.minSeconds,
    warmupSeconds: args.warmupSeconds,
  };
  const rows = await benchEpochs(data, options);
  printEpochTables(rows, data, options);
  return rows;
}

async function runKernels(
  args: BenchArgs,
  warm: boolean,
): Promise<KernelRow[]> {
  if (!args.only.includes("kernels")) return [];
  const devices: Device[] = [referenceDevice];
  try {
    for (const threads of args.threads) {
      devices.push(await device("wasm", { threads }));
    }
    return await benchKernels(devices, {
      minSeconds: args.minSeconds,
      warmupSeconds: warm ? WARM_AFTER_EPOCHS_SECONDS : args.warmupSeconds,
    });
  } finally {
    for (const dev of devices.slice(1)) dev.dispose();
  }
}

const args = benchArgsOrExit(Deno.args, {
  threads: "1,2",
  sections: ["train", "eval", "kernels", "gpu", "methods"],
});
const epochs = await runEpochs(args);
const kernels = await runKernels(args, epochs.length > 0);
const gpu = args.only.includes("gpu")
  ? await benchGpu(
    await loadBenchData(Math.max(args.limit, 8192)),
    Math.max(...args.threads),
    args.minSeconds,
  )
  : [];
const methods = args.only.includes("methods")
  ? await benchMethods(await loadBenchData(args.limit), args.threads)
  : [];
if (methods.length > 0) printMethodTable(methods);
if (args.json) {
  await Deno.writeTextFile(
    args.json,
    JSON.stringify(
      { args, epochs, kernels, gpu, methods },
      null,
      2,
    ),
  );
}
