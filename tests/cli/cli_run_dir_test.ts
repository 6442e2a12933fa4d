import assert from "node:assert/strict";
import { trainCommand } from "../../cli/train.ts";
import { main } from "../../cli/main.ts";
import { loadSnapshot } from "../../io/snapshot.ts";
import { LOCK_NAME, RunDirectoryLockedError } from "../../io/run_dir.ts";
import {
  checkpointContents,
  quietly,
  spawnCli,
  watchStderr,
  withoutTimings,
} from "./_helpers.ts";
import { listDir, withTempDir } from "../_io_fixtures.ts";

/** A tiny run: 64 images, 4 steps, one thread (bit-reproducible). */
const TINY = [
  ...["--limit", "64", "--batch-size", "16", "--threads", "1"],
  ...["--epochs", "1", "--init-logits", "2=1,4=1,8=1", "--mu", "0.1"],
];

/** The files a finished train run leaves in its --out. */
const RUN_FILES = [
  "checkpoint.safetensors",
  "model.onnx",
  "quantized.safetensors",
  "report.json",
  "report.md",
];

/** Every file of a directory with its bytes (hidden ones included). */
async function filesOf(dir: string): Promise<Record<string, Uint8Array>> {
  const files: Record<string, Uint8Array> = {};
  for (const name of await listDir(dir)) {
    files[name] = await Deno.readFile(`${dir}/${name}`);
  }
  return files;
}

Deno.test("train --replace refused on a bad input keeps the earlier run byte for byte; an accepted one replaces it, leaving nothing aside", async () => {
  await withTempDir(async (dir) => {
    const run = `${dir}/run`;
    assert.equal(
      (await quietly(() => trainCommand([...TINY, "--out", run]))).value,
      0,
    );
    const before = await filesOf(run);
    assert.deepEqual(Object.keys(before), RUN_FILES);
    await Deno.writeTextFile(`${dir}/corrupt.safetensors`, "not a checkpoint");
    const post = ["--post-training", "logits", "--from"];
    const cases: [string[], RegExp][] = [
      [
        [...post, `${dir}/missing.safetensors`],
        /missing\.safetensors: no such file/,
      ],
      [
        [...post, `${dir}/corrupt.safetensors`],
        /corrupt\.safetensors.*corrupt/,
      ],
      [[...post, dir], /is a directory, not a regular file/],
      [["--model", "vgg7"], /The model vgg7 takes 3x32x32 images/],
      [["--full-precision", "nosuch"], /nosuch/],
    ];
    for (const [flags, message] of cases) {
      await assert.rejects(
        quietly(() =>
          trainCommand([...TINY, ...flags, "--replace", "--out", run])
        ),
        message,
        flags.join(" "),
      );
      assert.deepEqual(await filesOf(run), before, flags.join(" "));
    }
    const replaced = await quietly(() =>
      trainCommand([...TINY, "--seed", "1", "--replace", "--out", run])
    );
    assert.equal(replaced.value, 0);
    assert.match(
      replaced.err,
      /Set the earlier run aside in .*\/run\/\.replaced-/,
    );
    const after = await filesOf(run);
    assert.deepEqual(Object.keys(after), RUN_FILES);
    assert.notDeepEqual(
      after["checkpoint.safetensors"],
      before["checkpoint.safetensors"],
    );
  });
});

/** Resolves when `stderr` shows a line `until` accepts; rejects if the child ends first. */
function childReady(
  child: Deno.ChildProcess,
  until: (line: string) => boolean,
): { ready: Promise<void>; stderr: Promise<string> } {
  let seen!: () => void;
  const shown = new Promise<void>((resolve) => (seen = resolve));
  const stderr = watchStderr(child, until, () => seen());
  const ended = stderr.then((text) => {
    throw new Error(`the child ended before it was ready:\n${text}`);
  });
  return { ready: Promise.race([shown, ended]), stderr };
}

Deno.test("a second writer of a held --out is refused naming the holder; SIGINT releases the lock and restores the run a --replace set aside", async () => {
  await withTempDir(async (dir) => {
    const run = `${dir}/run`;
    assert.equal(
      (await quietly(() => trainCommand([...TINY, "--out", run]))).value,
      0,
    );
    const before = await filesOf(run);
    await Deno.mkdir(`${dir}/copy`);
    await Deno.copyFile(
      `${run}/checkpoint.safetensors`,
      `${dir}/copy/checkpoint.safetensors`,
    );
    // A long first epoch: it is interrupted long before its checkpoint.
    const child = spawnCli([
      ...["train", "--replace", "--limit", "20000", "--batch-size", "8"],
      ...["--threads", "1", "--epochs", "1", "--out", run],
    ]);
    const { ready, stderr } = childReady(
      child,
      (line) => line.startsWith("Set the earlier run aside"),
    );
    await ready;
    const holder = JSON.parse(await Deno.readTextFile(`${run}/${LOCK_NAME}`));
    assert.equal(holder.pid, child.pid);
    assert.equal(holder.command, "train");
    const held = new RegExp(
      `--out ${run} is held by train \\(process ${child.pid}, since ${holder.since}\\)`,
    );
    const writers: string[][] = [
      ["train", ...TINY, "--out", run],
      ["train", "--resume", "--threads", "1", "--out", run],
      ["train", ...TINY, "--replace", "--out", run],
      ["float", "--limit", "16", "--threads", "1", "--out", run],
      ["export", "--from", `${dir}/copy`, "--out", `${run}/q.safetensors`],
    ];
    for (const args of writers) {
      const error = await quietly(() => main(args)).catch((e) => e);
      assert.ok(error instanceof RunDirectoryLockedError, `${args}: ${error}`);
      assert.match(error.message, held, args.join(" "));
    }
    Deno.kill(child.pid, "SIGINT");
    const status = await child.status;
    const text = await stderr;
    assert.equal(status.code, 130, text);
    assert.match(
      text,
      /Restored the earlier run of .*: the new run ended before its first checkpoint/,
    );
    assert.match(text, /Interrupted \(SIGINT\): run directories released/);
    assert.deepEqual(await filesOf(run), before);
  });
});

Deno.test("a run killed with SIGKILL after a checkpoint resumes (taking over its stale lock, removing its leftovers) to the files of an uninterrupted run", async () => {
  await withTempDir(async (dir) => {
    const recipe = [...TINY, "--epochs", "4"];
    const killed = `${dir}/killed`;
    const child = spawnCli(["train", ...recipe, "--out", killed]);
    // Killed as soon as its first epoch's checkpoint and reports are written.
    const text = await watchStderr(
      child,
      (line) => /^\[bayesian-bits\] epoch \d+\/4: test/.test(line),
      () => Deno.kill(child.pid, "SIGKILL"),
    );
    const status = await child.status;
    assert.equal(status.signal, "SIGKILL", `not killed mid-run:\n${text}`);
    const { snapshot } = await loadSnapshot(`${killed}/checkpoint.safetensors`);
    assert.ok(snapshot.epoch >= 1 && snapshot.epoch < 4, `${snapshot.epoch}`);
    assert.ok((await listDir(killed)).includes(LOCK_NAME));
    // A write the kill cut short.
    const leftover = `report.json.tmp-${crypto.randomUUID()}`;
    await Deno.writeTextFile(`${killed}/${leftover}`, "{");

    const resumed = await quietly(() =>
      trainCommand(["--resume", "--threads", "1", "--out", killed])
    );
    assert.equal(resumed.value, 0);
    assert.match(
      resumed.err,
      new RegExp(
        `Taking over the stale lock of .*: train \\(process ${child.pid}, since .*\\) is no longer running`,
      ),
    );
    assert.match(resumed.err, /Removed 1 temporary file\(s\) \(1 bytes\)/);
    assert.match(
      resumed.err,
      new RegExp(`Resuming .*: bayesian-bits epoch ${snapshot.epoch}/4 done`),
    );
    const whole = `${dir}/whole`;
    const uninterrupted = await quietly(() =>
      trainCommand([...recipe, "--out", whole])
    );
    assert.equal(uninterrupted.value, 0);
    assert.deepEqual(await listDir(killed), RUN_FILES);
    // The exported model byte for byte; the checkpoint's tensors byte for
    // byte and its state, like the report, but for timings and the command.
    assert.deepEqual(
      await Deno.readFile(`${killed}/quantized.safetensors`),
      await Deno.readFile(`${whole}/quantized.safetensors`),
    );
    assert.deepEqual(
      await checkpointContents(`${killed}/checkpoint.safetensors`),
      await checkpointContents(`${whole}/checkpoint.safetensors`),
    );
    const report = async (run: string) =>
      withoutTimings(JSON.parse(await Deno.readTextFile(`${run}/report.json`)));
    assert.deepEqual(await report(killed), await report(whole));
  });
});
