import assert from "node:assert/strict";
import { MODELS, parseTrainArgs } from "../../cli/config.ts";
import { exportCommand } from "../../cli/export.ts";
import { main } from "../../cli/main.ts";
import { trainCommand } from "../../cli/train.ts";
import { parseReport } from "../../io/report.ts";
import { loadCheckpoint, saveCheckpoint } from "../../io/checkpoint.ts";
import { loadQuantized } from "../../io/quantized.ts";
import { loadSnapshot, saveSnapshot } from "../../io/snapshot.ts";
import { assertBitwise, assertParamsBitwise } from "../_fixtures.ts";
import { withTempDir } from "../_io_fixtures.ts";
import { quietly } from "./_helpers.ts";

/** Tiny runs: 64 images, batches of 16, one epoch, one thread. */
const TINY = [
  "--epochs",
  "1",
  "--limit",
  "64",
  "--batch-size",
  "16",
  "--threads",
  "1",
];

const UNKNOWN =
  /--model must be lenet5, vgg7, resnet18 or mobilenetv2, got "alexnet"/;

const MISFIT =
  "The model vgg7 takes 3x32x32 images, but the MNIST images are 1x28x28 (models for 1x28x28 images: lenet5)";

Deno.test("--model: lenet5 by default, every zoo name accepted and listed in --help, an unknown name refused listing them", async () => {
  assert.equal((await parseTrainArgs([])).config.model, "lenet5");
  for (const name of Object.keys(MODELS)) {
    const parsed = await parseTrainArgs(["--model", name]);
    assert.equal(parsed.config.model, name);
    assert.equal(MODELS[name].build().name, name);
    assert.ok(parsed.given.has("model"));
  }
  await assert.rejects(parseTrainArgs(["--model", "alexnet"]), UNKNOWN);
  await assert.rejects(
    quietly(() => main(["float", "--model", "alexnet", "--limit", "16"])),
    UNKNOWN,
  );
  // Not an own key of the zoo, though every object has it.
  await assert.rejects(parseTrainArgs(["--model", "toString"]), /--model must/);
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/c.json`, '{"model": "alexnet"}');
    await assert.rejects(
      parseTrainArgs(["--config", `${dir}/c.json`]),
      /config ".*c\.json": model must be lenet5, vgg7, resnet18 or mobilenetv2, got "alexnet"/,
    );
  });
  const help = [
    (await quietly(() => main(["train", "--help"]))).out,
    (await quietly(() => main(["float", "--help"]))).out,
  ];
  for (const text of help) {
    assert.match(text, /--model NAME/);
    for (const name of Object.keys(MODELS)) assert.ok(text.includes(name));
  }
});

Deno.test("--model whose input shape is not the images' is refused before a file is touched; exit 2 (a usage error) from the shell", async () => {
  await withTempDir(async (dir) => {
    // In process: --replace does not remove the earlier run when refused.
    await Deno.mkdir(`${dir}/run`);
    await Deno.writeTextFile(`${dir}/run/report.md`, "earlier");
    await assert.rejects(
      quietly(() =>
        trainCommand([
          ...["--model", "vgg7", "--replace", "--device", "reference"],
          ...["--out", `${dir}/run`, ...TINY],
        ])
      ),
      (error: Error) => error.message === MISFIT,
    );
    assert.equal(await Deno.readTextFile(`${dir}/run/report.md`), "earlier");
    // From the shell, without write permission: nothing is written.
    for (const command of ["train", "float"]) {
      const run = await new Deno.Command(Deno.execPath(), {
        args: [
          ...["run", "--no-check", "--allow-read", "--allow-env"],
          ...["cli/main.ts", command, "--model", "vgg7", "--limit", "16"],
          ...["--device", "reference", "--out", `${dir}/${command}`],
        ],
        cwd: new URL("../../", import.meta.url),
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(run.stderr);
      assert.equal(run.code, 2, `${command}: ${stderr}`);
      assert.equal(stderr, `error: ${MISFIT}\n`, command);
    }
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name),
      ["run"],
    );
  });
});

/** A report's history without its timings. */
async function historyOf(out: string) {
  const report = parseReport(await Deno.readTextFile(`${out}/report.json`));
  return {
    model: report.model,
    layers: report.layers,
    history: report.history.map(({ seconds: _s, samplesPerSecond: _r, ...h }) =>
      h
    ),
  };
}

Deno.test("--model lenet5 trains the same run as no flag; the checkpoint remembers the model, and one without it means LeNet-5", async () => {
  await withTempDir(async (dir) => {
    const runs = [[], ["--model", "lenet5"]].map((flag, i) => [
      ...flag,
      ...TINY,
      ...["--out", `${dir}/bb${i}`, "--init-logits", "2=1,4=1,8=1"],
    ]);
    for (const args of runs) {
      assert.equal((await quietly(() => trainCommand(args))).value, 0);
    }
    const [a, b] = await Promise.all(
      [0, 1].map((i) => loadSnapshot(`${dir}/bb${i}/checkpoint.safetensors`)),
    );
    assert.equal(
      (a.run as { config: { model: string } }).config.model,
      "lenet5",
    );
    await assertParamsBitwise(b.snapshot.state.params, a.snapshot.state.params);
    assert.deepEqual(
      await historyOf(`${dir}/bb1`),
      await historyOf(`${dir}/bb0`),
    );
    assert.equal((await historyOf(`${dir}/bb0`)).model, "lenet5");
    assert.deepEqual(
      await loadQuantized(`${dir}/bb1/quantized.safetensors`),
      await loadQuantized(`${dir}/bb0/quantized.safetensors`),
    );

    // A checkpoint written before --model existed: no `model` in its recipe.
    const { model: _, ...oldConfig } = (a.run as { config: object }).config as {
      model: string;
    };
    const oldPath = `${dir}/bb0/checkpoint.safetensors`;
    await saveSnapshot(oldPath, {
      snapshot: a.snapshot,
      run: { ...(a.run as object), config: oldConfig },
    });
    await assert.rejects(
      quietly(() =>
        trainCommand(["--resume", "--out", `${dir}/bb0`, "--model", "vgg7"])
      ),
      /Cannot resume with model = "vgg7": the run in .* has model = "lenet5"/,
    );
    const resumed = await quietly(() =>
      trainCommand(["--resume", "--out", `${dir}/bb0`, "--threads", "1"])
    );
    assert.equal(resumed.value, 0);
    assert.match(resumed.err, /Bayesian Bits, LeNet-5 on MNIST: 64 train/);
    assert.deepEqual(
      await historyOf(`${dir}/bb0`),
      await historyOf(`${dir}/bb1`),
    );
    assert.equal(
      (await quietly(() =>
        exportCommand(["--from", oldPath, "--out", `${dir}/old.safetensors`])
      )).value,
      0,
    );
    assert.deepEqual(
      await loadQuantized(`${dir}/old.safetensors`),
      await loadQuantized(`${dir}/bb1/quantized.safetensors`),
    );
  });
});

Deno.test("float --model lenet5 trains the same model as no flag; train --from refuses a float model of another model", async () => {
  await withTempDir(async (dir) => {
    for (const [i, flag] of [[], ["--model", "lenet5"]].entries()) {
      const run = await quietly(() =>
        main(["float", ...flag, ...TINY, "--out", `${dir}/f${i}`])
      );
      assert.equal(run.value, 0);
      assert.match(run.err, /^LeNet-5 float training: 64 train \/ 64 test/);
    }
    const [a, b] = await Promise.all(
      [0, 1].map((i) => loadCheckpoint(`${dir}/f${i}/float.safetensors`)),
    );
    assert.deepEqual(b.state, a.state);
    assert.equal((a.state as { model: string }).model, "lenet5");
    assert.deepEqual(Object.keys(b.tensors), Object.keys(a.tensors));
    for (const name of Object.keys(a.tensors)) {
      assertBitwise(b.tensors[name].data, a.tensors[name].data, name);
    }
    const other = `${dir}/other.safetensors`;
    await saveCheckpoint(other, {
      tensors: a.tensors,
      state: { ...(a.state as object), model: "vgg7" },
    });
    await assert.rejects(
      quietly(() =>
        trainCommand([
          ...["--post-training", "logits", "--from", other],
          ...TINY,
          ...["--out", `${dir}/post`],
        ])
      ),
      /other\.safetensors holds a vgg7 model, but the run trains lenet5/,
    );
  });
});
