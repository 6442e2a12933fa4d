import assert from "node:assert/strict";
import { DEFAULT_CONFIG, parseTrainArgs } from "../../cli/config.ts";
import { trainCommand } from "../../cli/train.ts";
import { parseReport } from "../../io/report.ts";
import { loadSnapshot } from "../../io/snapshot.ts";
import { quietly } from "./_helpers.ts";

Deno.test("parseTrainArgs() defaults to the paper's recipe", async () => {
  const parsed = await parseTrainArgs([]);
  assert.deepEqual(parsed.config, DEFAULT_CONFIG);
  assert.equal(parsed.config.epochs, 100);
  assert.equal(parsed.config.mu, 0.01);
  assert.deepEqual(parsed.config.initialLogits, {
    2: 6,
    4: 6,
    8: 6,
    16: -6,
    32: -6,
  });
  assert.equal(parsed.given.size, 0);
});

Deno.test("parseTrainArgs() reads every recipe flag and a config file, flags winning", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/c.json`,
    JSON.stringify({ mu: 0.1, epochs: 7, fullPrecision: ["fc2"] }),
  );
  const parsed = await parseTrainArgs([
    "--",
    "--config",
    `${dir}/c.json`,
    "--epochs",
    "3",
    "--fine-tune-epochs",
    "2",
    "--no-pruning",
    "--prior",
    "const",
    "--init-logits",
    "2=4,16=-5",
    "--lr-logits",
    "0.01",
    "--weight-schedule",
    "constant",
    "--seed",
    "5",
    "--limit",
    "1000",
  ]);
  const c = parsed.config;
  assert.equal(c.mu, 0.1);
  assert.equal(c.epochs, 3);
  assert.equal(c.fineTuneEpochs, 2);
  assert.equal(c.pruning, false);
  assert.equal(c.prior, "const");
  assert.deepEqual(c.initialLogits, { 2: 4, 4: 6, 8: 6, 16: -5, 32: -6 });
  assert.deepEqual(c.fullPrecision, ["fc2"]);
  assert.equal(c.lrLogits, 0.01);
  assert.equal(c.weightSchedule, "constant");
  assert.equal(c.seed, 5);
  assert.equal(c.limit, 1000);
  assert.ok(parsed.given.has("mu") && parsed.given.has("epochs"));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("parseTrainArgs() rejects bad values, unknown flags and bad config files clearly", async () => {
  await assert.rejects(
    parseTrainArgs(["--mu=-1"]),
    /--mu must be a finite number >= 0, got "-1"/,
  );
  await assert.rejects(
    parseTrainArgs(["--epochs", "2.5"]),
    /--epochs must be a positive integer/,
  );
  await assert.rejects(
    parseTrainArgs(["--init-logits", "4:6"]),
    /--init-logits must look like/,
  );
  await assert.rejects(parseTrainArgs(["--bits", "4"]), /bits/);
  await assert.rejects(
    parseTrainArgs(["--post-training", "logits"]),
    /post-training needs a trained float model: pass --from FILE/,
  );
  await assert.rejects(
    parseTrainArgs(["--config", "/no/such.json"]),
    /Cannot read the config file "\/no\/such.json"/,
  );
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/bad.json`, JSON.stringify({ muu: 1 }));
  await assert.rejects(
    parseTrainArgs(["--config", `${dir}/bad.json`]),
    /unknown option "muu"/,
  );
  await Deno.writeTextFile(`${dir}/broken.json`, "{ mu: ");
  await assert.rejects(
    parseTrainArgs(["--config", `${dir}/broken.json`]),
    /is not valid JSON/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("deno task train writes a checkpoint and reports; --resume of a finished run re-reports, a changed recipe is refused", async () => {
  const dir = await Deno.makeTempDir();
  const out = `${dir}/run`;
  const args = [
    "--epochs",
    "1",
    "--limit",
    "256",
    "--lr-logits",
    "0.05",
    "--init-logits",
    "2=1,4=1,8=1",
    "--mu",
    "0.1",
    "--out",
    out,
    "--threads",
    "1",
  ];
  const first = await quietly(() => trainCommand(args));
  assert.equal(first.value, 0);
  assert.match(first.err, /\[bayesian-bits\] epoch 1\/1 step 2\/2 loss/);
  assert.match(first.err, /GBOPs/);
  const report = parseReport(await Deno.readTextFile(`${out}/report.json`));
  assert.equal(report.history.length, 1);
  assert.equal(report.layers.length, 4);
  assert.equal(report.method, "bayesian-bits");
  assert.deepEqual(report.methodOptions, { mu: 0.1 });
  assert.match(await Deno.readTextFile(`${out}/report.md`), /\| conv1 \|/);
  const { snapshot } = await loadSnapshot(`${out}/checkpoint.safetensors`);
  assert.equal(snapshot.epoch, 1);
  assert.equal(snapshot.optimizerState.step, 2);

  // A second fresh run into the same directory is refused.
  await assert.rejects(
    quietly(() => trainCommand(args)),
    /exists: pass --resume/,
  );
  // Resuming with a different recipe is refused, naming the option.
  await assert.rejects(
    quietly(() => trainCommand(["--resume", "--out", out, "--mu", "0.2"])),
    /Cannot resume with mu = 0.2: the run in .* has mu = 0.1/,
  );
  const again = await quietly(() =>
    trainCommand(["--resume", "--out", out, "--threads", "1"])
  );
  assert.equal(again.value, 0);
  assert.deepEqual(
    parseReport(await Deno.readTextFile(`${out}/report.json`)).history,
    report.history,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("post-training from a float checkpoint learns only gate logits: the weights stay as trained", async () => {
  const { main } = await import("../../cli/main.ts");
  const dir = await Deno.makeTempDir();
  const float = await quietly(() =>
    main([
      "float",
      "--epochs",
      "1",
      "--limit",
      "256",
      "--threads",
      "1",
      "--out",
      `${dir}/float`,
    ])
  );
  assert.equal(float.value, 0);
  const post = await quietly(() =>
    trainCommand([
      "--post-training",
      "logits",
      "--from",
      `${dir}/float/float.safetensors`,
      "--epochs",
      "1",
      "--limit",
      "256",
      "--lr-logits",
      "0.05",
      "--threads",
      "1",
      "--out",
      `${dir}/post`,
    ])
  );
  assert.equal(post.value, 0);
  assert.match(post.err, /\[post-training\] epoch 1\/1/);
  const { loadCheckpoint } = await import("../../io/checkpoint.ts");
  const trained = (await loadCheckpoint(`${dir}/float/float.safetensors`))
    .tensors;
  const { snapshot } = await loadSnapshot(`${dir}/post/checkpoint.safetensors`);
  for (const name of ["conv1.weight", "fc1.bias", "fc2.weight"]) {
    assert.deepEqual(
      snapshot.state.params[name].toFloat32Array(),
      trained[`param/${name}`].data,
      name,
    );
  }
  assert.notDeepEqual(
    [...snapshot.state.params["fc1.weight.prune"].toFloat32Array()],
    new Array(512).fill(6),
  );
  // A missing float checkpoint is a clear error.
  const missing = await quietly(() =>
    trainCommand([
      "--post-training",
      "logits",
      "--from",
      `${dir}/missing.safetensors`,
      "--epochs",
      "1",
      "--out",
      `${dir}/post2`,
    ])
  ).catch((error) => error);
  assert.match(String(missing), /missing\.safetensors.*no such file/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("--device picks where a run trains: a tiny run on the reference device matches the same run on the WASM device", async () => {
  const dir = await Deno.makeTempDir();
  const args = (device: string) => [
    "--device",
    device,
    "--epochs",
    "1",
    "--limit",
    "16",
    "--batch-size",
    "8",
    "--threads",
    "1",
    "--out",
    `${dir}/${device}`,
  ];
  const reference = await quietly(() => trainCommand(args("reference")));
  assert.equal(reference.value, 0);
  assert.match(reference.err, /on reference;/);
  assert.match(reference.err, /\[bayesian-bits\] epoch 1\/1 step 2\/2 loss/);
  assert.match(reference.out, /^conv1 +conv /m); // the report table
  const wasm = await quietly(() => trainCommand(args("wasm")));
  assert.equal(wasm.value, 0);
  assert.match(wasm.err, /on wasm \(1 thread/);
  const [r, w] = await Promise.all(
    ["reference", "wasm"].map(async (device) =>
      parseReport(await Deno.readTextFile(`${dir}/${device}/report.json`))
        .history[0]
    ),
  );
  // Same init, batches and gate noise; only the devices' summation orders
  // differ, so the losses agree to float32 rounding and the predictions of
  // 16 test images to all but a near tie.
  const losses = (h: typeof r) => ({
    loss: h.loss,
    crossEntropy: h.crossEntropy,
    prior: h.metrics.prior,
  });
  const [rl, wl] = [losses(r), losses(w)];
  for (const key of ["loss", "crossEntropy", "prior"] as const) {
    assert.ok(
      Math.abs(rl[key] - wl[key]) <= 1e-4 * Math.abs(wl[key]),
      `${key}: reference ${rl[key]}, wasm ${wl[key]}`,
    );
  }
  assert.equal(r.relativeGbops, w.relativeGbops);
  assert.ok(
    Math.abs(r.testAccuracy - w.testAccuracy) <= 1 / 16,
    `test accuracy: reference ${r.testAccuracy}, wasm ${w.testAccuracy}`,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("--device rejects an unknown device kind, naming it, in train and float", async () => {
  assert.equal((await parseTrainArgs([])).device, "wasm");
  assert.equal(
    (await parseTrainArgs(["--device", "reference"])).device,
    "reference",
  );
  const message = /--device must be wasm, reference or webgpu, got "bogus"/;
  await assert.rejects(parseTrainArgs(["--device", "bogus"]), message);
  await assert.rejects(
    quietly(() => trainCommand(["--device", "bogus", "--epochs", "1"])),
    message,
  );
  const { main } = await import("../../cli/main.ts");
  await assert.rejects(
    quietly(() => main(["float", "--device", "bogus", "--limit", "16"])),
    message,
  );
  // From the shell: exit code 1 and the message on stderr, no stack trace.
  for (const command of ["train", "float"]) {
    const run = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-check",
        "--allow-read",
        "--allow-env",
        "cli/main.ts",
        command,
        "--device",
        "bogus",
        "--limit",
        "16",
      ],
      cwd: new URL("../../", import.meta.url),
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(run.stderr);
    assert.equal(run.code, 2, `${command}: ${stderr}`);
    assert.equal(
      stderr,
      'error: --device must be wasm, reference or webgpu, got "bogus"\n',
      command,
    );
  }
});

Deno.test("--device webgpu trains end to end: checkpoint, report, export, resume; losses within 1e-4 of the same run on WASM", async () => {
  // The software adapter (llvmpipe) runs a LeNet-5 step at a few samples
  // a second: 16 images in batches of 8 keep this test short.
  const dir = await Deno.makeTempDir();
  const args = (device: string) => [
    "--device",
    device,
    "--epochs",
    "1",
    "--limit",
    "16",
    "--batch-size",
    "8",
    "--threads",
    "1",
    "--out",
    `${dir}/${device}`,
  ];
  const gpu = await quietly(() => trainCommand(args("webgpu")));
  assert.equal(gpu.value, 0);
  assert.match(gpu.err, /on webgpu \(/);
  assert.match(gpu.err, /\[bayesian-bits\] epoch 1\/1 step 2\/2 loss/);
  assert.match(gpu.out, /its test accuracy run from the file's contents/);
  const out = `${dir}/webgpu`;
  const report = parseReport(await Deno.readTextFile(`${out}/report.json`));
  assert.equal(report.history.length, 1);
  assert.equal(report.layers.length, 4);
  const { snapshot } = await loadSnapshot(`${out}/checkpoint.safetensors`);
  assert.equal(snapshot.optimizerState.step, 2);
  assert.ok((await Deno.stat(`${out}/quantized.safetensors`)).size > 0);
  // Resuming the finished run on the GPU re-reports the same history.
  const again = await quietly(() =>
    trainCommand(["--resume", "--out", out, "--device", "webgpu"])
  );
  assert.equal(again.value, 0);
  assert.deepEqual(
    parseReport(await Deno.readTextFile(`${out}/report.json`)).history,
    report.history,
  );
  const wasm = await quietly(() => trainCommand(args("wasm")));
  assert.equal(wasm.value, 0);
  const w = parseReport(await Deno.readTextFile(`${dir}/wasm/report.json`))
    .history[0];
  const g = report.history[0];
  // Same init, batches and gate noise; float32 sums in other orders.
  for (
    const [a, b, what] of [
      [g.loss, w.loss, "loss"],
      [g.crossEntropy, w.crossEntropy, "cross-entropy"],
      [g.metrics.prior, w.metrics.prior, "prior"],
    ] as const
  ) {
    assert.ok(Math.abs(a - b) <= 1e-4 * Math.abs(b), `${what}: ${a} vs ${b}`);
  }
  assert.equal(g.relativeGbops, w.relativeGbops);
  await Deno.remove(dir, { recursive: true });
});
