/**
 * `train --method fracbits` (and the other peers) through the command line:
 * options as flags and config keys, strict values, a kill and `--resume`
 * ending where an uninterrupted run ends, and the resumed recipe checked.
 */

import assert from "node:assert/strict";
import { main } from "../../cli/main.ts";
import { methodOf } from "../../cli/methods.ts";
import { loadSnapshot } from "../../io/snapshot.ts";
import { parseReport } from "../../io/report_json.ts";
import {
  checkpointContents,
  quietly,
  spawnCli,
  watchStderr,
  withoutTimings,
} from "./_helpers.ts";
import { withTempDir } from "../_io_fixtures.ts";

const FRACBITS = [
  "--method",
  "fracbits",
  "--target-gbops",
  "1.0371",
  "--limit",
  "256",
  "--batch-size",
  "64",
  "--assign-after",
  "2",
  "--threads",
  "1",
  "--progress-every",
  "1000",
];

Deno.test("methodOf splits --method off a train command line and names the nearest method", () => {
  assert.deepEqual(methodOf(["--", "--epochs", "1"]), {
    method: "bayesian-bits",
    rest: ["--epochs", "1"],
  });
  assert.deepEqual(methodOf(["--method=fracbits", "--kappa", "2"]), {
    method: "fracbits",
    rest: ["--kappa", "2"],
  });
  assert.throws(
    () => methodOf(["--method", "fracbit"]),
    /did you mean fracbits\?/,
  );
  assert.throws(
    () => methodOf(["--method"]),
    /--method must be bayesian-bits, /,
  );
});

Deno.test("train --method fracbits refuses bad options before anything is written", async () => {
  await withTempDir(async (dir) => {
    const cases: [string[], RegExp][] = [
      [["--method", "fracbits", "--out", `${dir}/a`], /needs --target-gbops/],
      [
        [...FRACBITS, "--kappa=-1", "--out", `${dir}/a`],
        /--kappa must be a positive number, got "-1"/,
      ],
      [
        [...FRACBITS, "--granularity", "row", "--out", `${dir}/a`],
        /--granularity must be layer or kernel/,
      ],
      [[...FRACBITS, "--target-gbops", "7", "--out", `${dir}/a`], /target/],
      [[...FRACBITS, "--min-bits", "0", "--out", `${dir}/a`], /kernel/],
    ];
    for (const [args, pattern] of cases) {
      await assert.rejects(
        () => quietly(() => main(["train", ...args])),
        pattern,
      );
    }
    assert.deepEqual([...Deno.readDirSync(dir)], []);
    const config = `${dir}/c.json`;
    await Deno.writeTextFile(config, JSON.stringify({ targetGbops: "1" }));
    await assert.rejects(
      () =>
        quietly(() =>
          main([
            "train",
            "--method",
            "fracbits",
            "--config",
            config,
            "--out",
            `${dir}/a`,
          ])
        ),
      /targetGbops must be a JSON number, got "1"/,
    );
    await Deno.writeTextFile(config, JSON.stringify({ constructor: 1 }));
    await assert.rejects(
      () =>
        quietly(() =>
          main([
            "train",
            "--method",
            "fracbits",
            "--config",
            config,
            "--out",
            `${dir}/a`,
          ])
        ),
      /unknown key "constructor"/,
    );
  });
});

Deno.test("train --method fracbits killed after a checkpoint resumes to the files of an uninterrupted run", async () => {
  await withTempDir(async (dir) => {
    const recipe = [...FRACBITS, "--epochs", "3"];
    const killed = `${dir}/killed`;
    const child = spawnCli(["train", ...recipe, "--out", killed]);
    const text = await watchStderr(
      child,
      (line) => /^\[fracbits\] epoch 1\/3: test/.test(line),
      () => Deno.kill(child.pid, "SIGKILL"),
    );
    assert.equal((await child.status).signal, "SIGKILL", text);
    const { snapshot } = await loadSnapshot(`${killed}/checkpoint.safetensors`);
    assert.ok(snapshot.epoch >= 1 && snapshot.epoch < 3);
    await assert.rejects(
      () =>
        quietly(() =>
          main([
            "train",
            "--method",
            "fracbits",
            "--resume",
            "--kappa",
            "5",
            "--out",
            killed,
          ])
        ),
      /Cannot resume with kappa = 5: the run in .* has kappa = 1/,
    );
    const resumed = await quietly(() =>
      main([
        "train",
        "--method",
        "fracbits",
        "--resume",
        "--threads",
        "1",
        "--out",
        killed,
      ])
    );
    assert.equal(resumed.value, 0);
    assert.match(resumed.err, /Resuming .*: fracbits epoch [12]\/3 done/);
    const whole = `${dir}/whole`;
    assert.equal(
      (await quietly(() => main(["train", ...recipe, "--out", whole]))).value,
      0,
    );
    assert.deepEqual(
      await checkpointContents(`${killed}/checkpoint.safetensors`),
      await checkpointContents(`${whole}/checkpoint.safetensors`),
    );
    const report = async (run: string) =>
      withoutTimings(JSON.parse(await Deno.readTextFile(`${run}/report.json`)));
    assert.deepEqual(await report(killed), await report(whole));
    const r = parseReport(await Deno.readTextFile(`${whole}/report.json`));
    assert.equal(r.method, "fracbits");
    assert.equal(r.history.length, 3);
    // Assigned after epoch 2: within 1 % of the target, never far above.
    assert.ok(
      Math.abs(r.relativeGbops - 1.0371) / 1.0371 < 0.01,
      `${r.relativeGbops}`,
    );
    assert.equal(r.methodOptions.targetGbops, 1.0371);
  });
});

/**
 * A float LeNet-5 trained one short epoch, written as PyTorch-layout
 * safetensors and as a float ONNX file; its weights by PyTorch name.
 */
async function foreignFloatFiles(dir: string, tiny: string[]) {
  const { encodeSafetensors } = await import("../../core/safetensors.ts");
  const { loadCheckpoint } = await import("../../io/checkpoint.ts");
  const { exportOnnx } = await import("../../io/onnx.ts");
  const { floatMethod } = await import("../../core/methods/float.ts");
  const { referenceDevice } = await import("../../core/reference/device.ts");
  const { lenet5 } = await import("../../core/models.ts");
  const float = await quietly(() =>
    main(["float", "--epochs", "1", ...tiny, "--out", `${dir}/float`])
  );
  assert.equal(float.value, 0);
  const { tensors } = await loadCheckpoint(`${dir}/float/float.safetensors`);
  const weights = Object.fromEntries(
    Object.entries(tensors)
      .filter(([name]) => name.startsWith("param/"))
      .map(([name, t]) => [name.slice("param/".length), t]),
  );
  // PyTorch's names, no bbits metadata.
  await Deno.writeFile(`${dir}/model.safetensors`, encodeSafetensors(weights));
  // ONNX: the float model's graph with its initializers.
  const params = Object.fromEntries(
    Object.entries(weights).map(([n, t]) => [
      n,
      referenceDevice.upload(t.data as Float32Array, t.shape),
    ]),
  );
  const m = floatMethod();
  const frozen = m.freeze(m.attach(lenet5()), { params });
  await Deno.writeFile(
    `${dir}/model.onnx`,
    exportOnnx(frozen, { quantize: false }).bytes,
  );
  return { weights, encodeSafetensors };
}

Deno.test("--from takes PyTorch-layout safetensors and ONNX float weights: post-training keeps them exactly", async () => {
  await withTempDir(async (dir) => {
    const tiny = ["--limit", "128", "--threads", "1"];
    const { weights, encodeSafetensors } = await foreignFloatFiles(dir, tiny);
    for (const file of ["model.safetensors", "model.onnx"]) {
      const out = `${dir}/post-${file}`;
      const run = await quietly(() =>
        main([
          "train",
          "--post-training",
          "logits",
          "--from",
          `${dir}/${file}`,
          "--epochs",
          "1",
          ...tiny,
          "--out",
          out,
        ])
      );
      assert.equal(run.value, 0, run.err);
      assert.match(
        run.err,
        new RegExp(`Imported float weights for lenet5 from .*${file}`),
      );
      const { snapshot } = await loadSnapshot(`${out}/checkpoint.safetensors`);
      for (const name of ["conv1.weight", "fc2.bias"]) {
        assert.deepEqual(
          snapshot.state.params[name].toFloat32Array(),
          weights[name].data,
          `${file}: ${name}`,
        );
      }
    }
    // A file whose shapes do not fit is refused, naming the tensor.
    const wrong = {
      ...weights,
      "fc2.bias": { shape: [5], data: new Float32Array(5) },
    };
    await Deno.writeFile(`${dir}/wrong.safetensors`, encodeSafetensors(wrong));
    await assert.rejects(
      () =>
        quietly(() =>
          main([
            "train",
            "--post-training",
            "logits",
            "--from",
            `${dir}/wrong.safetensors`,
            ...tiny,
            "--out",
            `${dir}/w`,
          ])
        ),
      /fc2\.bias/,
    );
  });
});

Deno.test("train --method bsq runs its planes phases and the fixed scheme, reports every phase, and refuses a resume with another alpha", async () => {
  await withTempDir(async (dir) => {
    const out = `${dir}/bsq`;
    const args = [
      "train",
      "--method",
      "bsq",
      "--alpha",
      "0.001",
      "--epochs",
      "2",
      "--fine-tune-epochs",
      "1",
      "--requantize-every",
      "1",
      "--limit",
      "128",
      "--threads",
      "1",
      "--out",
      out,
    ];
    const run = await quietly(() => main(args));
    assert.equal(run.value, 0, run.err);
    const r = parseReport(await Deno.readTextFile(`${out}/report.json`));
    assert.equal(r.method, "bsq");
    assert.deepEqual(r.history.map((h) => h.phase), ["bsq-1", "fine-tune"]);
    assert.equal(r.methodOptions.alpha, 0.001);
    // N = 8 planes count 9 bits (spec bsq.md section 7).
    assert.ok(r.layers.every((l) => l.weightBits <= 9));
    await assert.rejects(
      () =>
        quietly(() =>
          main([
            "train",
            "--method",
            "bsq",
            "--resume",
            "--alpha",
            "0.1",
            "--out",
            out,
          ])
        ),
      /Cannot resume with alpha = 0.1/,
    );
    await assert.rejects(
      () =>
        quietly(() =>
          main([
            ...args.slice(0, 5),
            "--epochs",
            "1",
            "--fine-tune-epochs",
            "2",
            "--out",
            `${dir}/x`,
          ])
        ),
      /--fine-tune-epochs 2 exceeds --epochs 1/,
    );
  });
});
