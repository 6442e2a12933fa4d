/**
 * The `export` command: turns a Bayesian Bits run's checkpoint into the
 * exported mixed-precision model (spec section 8: per layer the bit width,
 * the grid's scale, the integer codes of the kept output channels and the
 * pruned channels), written atomically with `io/quantized.ts`.
 *
 * @module
 */

import {
  type Device,
  device,
  evaluateGated,
  evaluateQuantized,
  exportQuantized,
  type GatedState,
  type QuantizedModel,
  type Tensor,
} from "../mod.ts";
import { loadMnist } from "../io/mnist.ts";
import { saveQuantized } from "../io/quantized.ts";
import { loadSnapshot } from "../io/snapshot.ts";
import { gatedModelOf } from "./config.ts";
import { storedRunOf } from "./run_record.ts";
import { checkOutputPath, RunDirectory } from "../io/run_dir.ts";
import { checkRegularFile, MAX_THREADS, parseNumber } from "./values.ts";
import { parseFlags, UsageError, usageStage } from "./usage.ts";

/** The `export` command's help text. */
export const EXPORT_USAGE = `Usage: deno task export -- --from PATH [options]

Exports the checkpoint of a Bayesian Bits run (\`deno task train -- --out DIR\`)
as a mixed-precision model under its deterministic gates: per conv/dense layer
the weight bit width, the grid's scale, the integer codes of the kept output
channels, which channels are pruned, and each quantized activation's bits,
range and scale. Written atomically as safetensors with a checksum; read it
with loadQuantized from "@bbits/core/quantized".

Options:
  --from PATH     a run directory (its checkpoint.safetensors) or a checkpoint file
  --out FILE      where to write (default: quantized.safetensors beside the checkpoint)
  --evaluate      run the exported model on the MNIST test set, next to the
                  checkpoint's own (gated) evaluation
  --threads N     WASM threads for --evaluate (default: all cores)
  -h, --help      this text
`;

/**
 * One line per layer: `conv1: w4 (32/32 kept, scale 0.0123), a2 (scale 0.51)`.
 *
 * @param model An exported model.
 * @returns The summary lines.
 */
export function summarizeExport(model: QuantizedModel): string[] {
  return model.layers.map((l) => {
    const w = l.weight;
    const weights = w.bits === "float"
      ? "w float32"
      : `w${w.bits} ${w.signed ? "signed" : "unsigned"} (${w.kept.length}/${
        w.shape[0]
      } kept, scale ${w.scale.toPrecision(4)})`;
    const act = l.activation
      ? `a${l.activation.bits} ${
        l.activation.signed ? "signed" : "unsigned"
      } (scale ${l.activation.scale.toPrecision(4)})`
      : "output not quantized";
    return `${l.name}: ${weights}, ${act}`;
  });
}

/** `--from`: a run directory or a regular file (a FIFO would block the read). */
async function checkFromPath(path: string): Promise<void> {
  if (path === "") throw new RangeError(`--from must name a file, got ""`);
  const info = await Deno.stat(path).catch(() => null);
  if (info?.isDirectory) return;
  await checkRegularFile("--from", path);
}

/** The folder of a file's path (`.` for a bare name). */
function folderOf(path: string): string {
  const slash = path.replace(/\/+$/, "").lastIndexOf("/");
  return slash < 0 ? "." : slash === 0 ? "/" : path.slice(0, slash);
}

/** `--out`: not a directory, in a folder that is or can be made one. */
async function checkOutputFile(path: string): Promise<void> {
  const info = await Deno.stat(path).catch(() => null);
  if (info?.isDirectory) {
    throw new RangeError(
      `--out ${path} is a directory: give the file to write, e.g. ${
        path.replace(/\/+$/, "")
      }/quantized.safetensors`,
    );
  }
  await checkOutputPath("the folder of --out", folderOf(path));
}

/** A gated state with its parameters uploaded to `dev`. */
async function stateOn(state: GatedState, dev: Device): Promise<GatedState> {
  const params: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(state.params)) {
    params[name] = await t.to(dev);
  }
  return { params, signed: state.signed };
}

/**
 * Runs the `export` command.
 *
 * @param args The arguments after `export`.
 * @returns The exit code.
 * @throws {RangeError | TypeError} On bad flags or a file that is not a training snapshot.
 * @throws {RunDirectoryLockedError} If another process writes into the
 *   folder of `--out` (e.g. a run still training there).
 */
export async function exportCommand(args: string[]): Promise<number> {
  const values = await usageStage(() =>
    parseFlags(args[0] === "--" ? args.slice(1) : args, {
      from: { type: "string" },
      out: { type: "string" },
      evaluate: { type: "boolean" },
      threads: { type: "string" },
      help: { type: "boolean", short: "h" },
    })
  );
  if (values.help) {
    console.log(EXPORT_USAGE);
    return 0;
  }
  if (values.from === undefined) {
    throw new UsageError(
      "export needs --from: a run directory or checkpoint file",
    );
  }
  const threads = values.threads === undefined
    ? Math.min(navigator.hardwareConcurrency, MAX_THREADS)
    : parseNumber("--threads", values.threads, "positive-integer", {
      max: MAX_THREADS,
    });
  if (values.out === "") {
    throw new RangeError(`--out must name a file, got ""`);
  }
  let checkpoint = values.from;
  await checkFromPath(checkpoint);
  if ((await Deno.stat(checkpoint)).isDirectory) {
    checkpoint = `${checkpoint.replace(/\/+$/, "")}/checkpoint.safetensors`;
    await checkRegularFile("--from", checkpoint);
  }
  const out = values.out ?? `${folderOf(checkpoint)}/quantized.safetensors`;
  await checkOutputFile(out);
  const stored = await loadSnapshot(checkpoint);
  const { record, snapshot } = storedRunOf(stored, checkpoint);
  const gated = gatedModelOf(record.config);
  const state = snapshot.state;
  const exported = exportQuantized(gated, state);
  {
    await using _dir = await RunDirectory.open(folderOf(out), {
      command: "export",
      flag: "the folder of --out",
    });
    await saveQuantized(out, exported);
  }
  const { phase, epoch, epochs } = snapshot;
  console.log(
    `Exported ${checkpoint} (${phase} epoch ${epoch}/${epochs}) to ${out}:`,
  );
  for (const line of summarizeExport(exported)) console.log(`  ${line}`);
  if (values.evaluate) {
    const data = await loadMnist({ limit: record.config.limit ?? undefined });
    using wasm = await device("wasm", { threads });
    const exportedAccuracy = await evaluateQuantized(exported, data.test, {
      device: wasm,
    });
    const gatedAccuracy = await evaluateGated(
      gated,
      await stateOn(state, wasm),
      data.test,
    );
    console.log(
      `Test accuracy on ${data.test.count} images: exported model ${
        (100 * exportedAccuracy).toFixed(2)
      } %, gated model (checkpoint) ${(100 * gatedAccuracy).toFixed(2)} %`,
    );
  }
  return 0;
}
