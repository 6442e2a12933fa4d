import assert from "node:assert/strict";
import {
  gridPoints,
  mergeSweep,
  pointState,
  sweepCommand,
} from "../../cli/sweep.ts";
import { parseReport } from "../../io/report_json.ts";
import { VERSION } from "../../core/version.ts";
import { quietly } from "./_helpers.ts";

Deno.test("gridPoints is the product of the grids, named key=value", () => {
  assert.deepEqual(gridPoints(["mu=0.1,0.01", "seed=0,1"]), [
    { id: "mu=0.1,seed=0", flags: ["--mu", "0.1", "--seed", "0"] },
    { id: "mu=0.1,seed=1", flags: ["--mu", "0.1", "--seed", "1"] },
    { id: "mu=0.01,seed=0", flags: ["--mu", "0.01", "--seed", "0"] },
    { id: "mu=0.01,seed=1", flags: ["--mu", "0.01", "--seed", "1"] },
  ]);
  assert.throws(() => gridPoints([]), /--grid is required/);
  assert.throws(() => gridPoints(["mu"]), /expected KEY=V1,V2/);
  assert.throws(() => gridPoints(["mu=0.1,../x"]), /expected KEY=V1,V2/);
  assert.throws(() => gridPoints(["mu=1,1"]), /repeated/);
  assert.throws(() => gridPoints(["mu=1", "mu=2"]), /repeated/);
});

Deno.test("sweep --print lists one train command per point, resuming where a checkpoint is", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(`${dir}/mu=0.2`);
  await Deno.writeFile(
    `${dir}/mu=0.2/checkpoint.safetensors`,
    new Uint8Array(),
  );
  const r = await quietly(() =>
    sweepCommand([
      "--out",
      dir,
      "--grid",
      "mu=0.1,0.2",
      "--print",
      "--",
      "--epochs",
      "2",
    ])
  );
  assert.equal(r.value, 0);
  const lines = r.out.trim().split("\n");
  assert.equal(lines.length, 2);
  assert.match(lines[0], / train --epochs 2 --mu 0\.1 --out \S+\/mu=0\.1$/);
  assert.match(lines[1], / --mu 0\.2 --out \S+\/mu=0\.2 --resume$/);
  assert.equal(await pointState(`${dir}/mu=0.1`), "start");
  const usage = await quietly(() =>
    sweepCommand(["--out", dir, "--grid", "mu=1", "--", "--out", "x"])
  );
  assert.equal(usage.value, 2);
  assert.match(usage.err, /must not set --out or --resume/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a sweep runs each point as a process, skips finished points, and merges the reports into a Pareto table and plot", async () => {
  const dir = await Deno.makeTempDir();
  const args = [
    "--out",
    dir,
    "--grid",
    "mu=0.5,0.05",
    "--",
    "--epochs",
    "1",
    "--fine-tune-epochs",
    "0",
    "--limit",
    "256",
    "--threads",
    "1",
    "--progress-every",
    "1000",
  ];
  const first = await quietly(() => sweepCommand(args));
  assert.equal(first.value, 0, first.err);
  assert.match(first.err, /point 1\/2 mu=0\.5: ran in \d+ s/);
  assert.match(first.err, /point 2\/2 mu=0\.05: ran in \d+ s/);
  for (const mu of ["0.5", "0.05"]) {
    const report = parseReport(
      await Deno.readTextFile(`${dir}/mu=${mu}/report.json`),
    );
    assert.equal(report.methodOptions.mu, Number(mu));
    // Reports say what produced them.
    assert.equal(report.run.version, VERSION);
    assert.equal(report.run.deno, Deno.version.deno);
    assert.equal(report.run.threads, 1);
    assert.match(String(report.run.device), /^wasm \(1 thread/);
    assert.match(String(report.run.commit), /^[0-9a-f]{40}$/);
  }
  assert.match(first.out, /^method +run +test acc %/);
  assert.match(first.out, /bayesian-bits +mu=0\.05 /);
  const svg = await Deno.readTextFile(`${dir}/pareto.svg`);
  assert.equal([...svg.matchAll(/r="4" fill="[^"]+"><title>/g)].length, 2);
  assert.ok(
    (await Deno.readTextFile(`${dir}/pareto.md`)).startsWith("| method |"),
  );
  // Again: both points are done; nothing runs.
  const again = await quietly(() => sweepCommand(args));
  assert.match(again.err, /point 1\/2 mu=0\.5: already done/);
  // A point whose run has not finished (no model.onnx yet: report.json is
  // rewritten every epoch) is resumed, not taken as done, and not merged.
  await Deno.remove(`${dir}/mu=0.05/model.onnx`);
  assert.equal(await pointState(`${dir}/mu=0.05`), "resume");
  const partial = await quietly(() => mergeSweep(dir));
  assert.equal(partial.value, 1);
  assert.match(
    partial.err,
    /Not merged \(their runs have not finished\): mu=0\.05/,
  );
  // A damaged report is named by merge.
  await Deno.writeTextFile(`${dir}/mu=0.5/report.json`, "{}");
  await assert.rejects(() => mergeSweep(dir), /mu=0\.5\/report\.json: /);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("compare gives every method the same budget from one float start", async () => {
  const { comparePoints, compareCommand } = await import(
    "../../cli/compare.ts"
  );
  const points = comparePoints(["bayesian-bits", "fracbits"], 30);
  assert.deepEqual(points.map((p) => p.id), [
    "bayesian-bits,mu=0.01",
    "bayesian-bits,mu=0.03",
    "bayesian-bits,mu=0.1",
    "fracbits,target-gbops=1.7312",
    "fracbits,target-gbops=1.0371",
    "fracbits,target-gbops=0.5172",
  ]);
  // 27 epochs of Bayesian Bits and 3 with fixed gates; FracBits assigns its
  // widths after 24 of 30 (the spec's 80 %).
  assert.deepEqual(points[0].flags, [
    "--epochs",
    "27",
    "--fine-tune-epochs",
    "3",
    "--mu",
    "0.01",
  ]);
  assert.deepEqual(points[3].flags, [
    "--method",
    "fracbits",
    "--epochs",
    "30",
    "--assign-after",
    "24",
    "--target-gbops",
    "1.7312",
  ]);
  const printed = await quietly(() =>
    compareCommand([
      "--print",
      "--epochs",
      "3",
      "--methods",
      "fracbits",
      "--out",
      "/tmp/x",
    ])
  );
  const lines = printed.out.trim().split("\n");
  assert.equal(lines.length, 3);
  assert.match(
    lines[0],
    / train --seed 0 --from \/tmp\/x\/float\/float\.safetensors .*--method fracbits --epochs 3 --assign-after 2 --target-gbops 1\.7312 --out \/tmp\/x\/fracbits,target-gbops=1\.7312$/,
  );
  await assert.rejects(
    () => compareCommand(["--methods", "nope"]),
    /--methods takes /,
  );
});
