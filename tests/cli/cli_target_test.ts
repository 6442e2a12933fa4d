/**
 * `train --post-training logits --target-gbops X`: mu found by bisection
 * over short post-training runs, the run landing within 1 % below X, and
 * the run itself repeating the chosen search run exactly.
 */

import assert from "node:assert/strict";
import { main } from "../../cli/main.ts";
import { targetOf } from "../../cli/target.ts";
import { parseReport } from "../../io/report_json.ts";
import { quietly } from "./_helpers.ts";
import { withTempDir } from "../_io_fixtures.ts";

Deno.test("targetOf splits --target-gbops off a train command line, strictly", () => {
  assert.deepEqual(targetOf(["--epochs", "1", "--target-gbops", "0.5"]), {
    target: 0.5,
    rest: ["--epochs", "1"],
  });
  assert.deepEqual(targetOf(["--target-gbops=2"]), { target: 2, rest: [] });
  assert.deepEqual(targetOf(["--mu", "1"]), {
    target: null,
    rest: ["--mu", "1"],
  });
  assert.throws(
    () => targetOf(["--target-gbops", "0"]),
    /--target-gbops must be a positive number/,
  );
  assert.throws(() => targetOf(["--target-gbops", ""]), /--target-gbops/);
});

Deno.test("a post-training run with --target-gbops lands within 1 % below it, as its search's run did", async () => {
  await withTempDir(async (dir) => {
    const tiny = ["--limit", "1024", "--threads", "2"];
    const float = await quietly(() =>
      main(["float", "--epochs", "1", ...tiny, "--out", `${dir}/float`])
    );
    assert.equal(float.value, 0);
    const post = [
      "train",
      "--post-training",
      "logits",
      "--from",
      `${dir}/float/float.safetensors`,
      "--epochs",
      "3",
      "--batch-size",
      "32",
      "--lr-logits",
      "0.1",
      "--init-logits",
      "2=3,4=3,8=3",
      ...tiny,
    ];
    const run = await quietly(() =>
      main([...post, "--target-gbops", "1", "--out", `${dir}/post`])
    );
    assert.equal(run.value, 0, run.err);
    const found =
      /\[target 1 %\] mu ([\d.e+-]+): ([\d.]+) % \(within 1 % below the target\)/
        .exec(run.err);
    assert.ok(found, run.err);
    const report = parseReport(
      await Deno.readTextFile(`${dir}/post/report.json`),
    );
    assert.ok(report.relativeGbops <= 1 && report.relativeGbops >= 0.99);
    assert.equal(report.relativeGbops.toFixed(3), found[2]);
    assert.equal(report.run.targetGbops, 1);
    // The usage errors: no post-training, --mu beside it, --resume.
    const refusals: [string[], RegExp][] = [
      [["train", "--target-gbops", "1", ...tiny], /needs --post-training/],
      [[...post, "--mu", "0.1", "--target-gbops", "1"], /leave --mu out/],
      [
        ["train", "--resume", "--target-gbops", "1", "--out", `${dir}/post`],
        /a resumed run continues/,
      ],
    ];
    for (const [args, pattern] of refusals) {
      await assert.rejects(() => quietly(() => main(args)), pattern);
    }
  });
});
