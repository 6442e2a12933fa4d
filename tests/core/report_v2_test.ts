/**
 * Version 2 reports: built from any frozen model's plan (a float model's
 * has no gates and costs 100 %), history entries from the loop's epochs,
 * and version 1 reports (0.1.0) read as version 2.
 */

import assert from "node:assert/strict";
import { initGraph } from "../../core/graph.ts";
import { lenet5 } from "../../core/models.ts";
import { floatMethod } from "../../core/methods/float.ts";
import {
  bayesianBits,
  freezeGated,
  gatedReport,
  initGated,
} from "../../core/methods/bayesian_bits/mod.ts";
import { randomKey } from "../../core/rng.ts";
import { Tensor } from "../../core/tensor.ts";
import {
  frozenReport,
  historyEntry,
  type QuantizationReport,
} from "../../core/report.ts";
import {
  formatReportMarkdown,
  formatReportTable,
  parseHistory,
  parseReport,
  reportToJson,
} from "../../io/report.ts";

/** LeNet-5's MACs per sample: 460,800 + 3,276,800 + 524,288 + 5,120. */
const LENET_MACS = 4_267_008;

function floatReport(): QuantizationReport {
  const method = floatMethod();
  const model = method.attach(lenet5());
  const frozen = method.freeze(model, initGraph(lenet5(), randomKey(0)));
  const epoch = {
    epoch: 1,
    loss: 0.25,
    metrics: { crossEntropy: 0.25 },
    testAccuracy: 0.5,
    measured: {},
    seconds: 4,
    samplesPerSecond: 1000,
  };
  return frozenReport(frozen, {
    testAccuracy: 0.5,
    history: [historyEntry("train", epoch, 100)],
    run: { seed: 0 },
  });
}

Deno.test("frozenReport() of a float model: method float, 32-bit everything, 100 % of the baseline, no gates", () => {
  const report = floatReport();
  assert.equal(report.method, "float");
  assert.deepEqual(report.methodOptions, {});
  assert.equal(report.relativeGbops, 100);
  assert.equal(report.gbops, LENET_MACS * 32 * 32 / 1e9);
  assert.equal(report.baselineGbops, report.gbops);
  assert.deepEqual(
    report.layers.map((l) => [l.name, l.macs, l.keptChannels]),
    [["conv1", 460_800, 32], ["conv2", 3_276_800, 64], ["fc1", 524_288, 512], [
      "fc2",
      5_120,
      10,
    ]],
  );
  for (const layer of report.layers) {
    assert.equal(layer.weightQuantized, false, layer.name);
    assert.equal(layer.weightBits, 32, layer.name);
    assert.equal(layer.activationBits, null, layer.name);
    assert.equal(layer.inputBits, 32, layer.name);
    assert.ok(!("weightGates" in layer) && !("activationGates" in layer));
  }
  assert.deepEqual(report.history[0].metrics, {});
});

Deno.test("a float report renders without gate columns, legend or metric columns", () => {
  const report = floatReport();
  const lines = formatReportTable(report).split("\n");
  assert.equal(
    lines[0],
    "lenet5: test accuracy 50.00 %, relative GBOPs 100.000 %, GBOPs 4.369 (baseline 4.369)",
  );
  assert.deepEqual(lines[2].trim().split(/ {2,}/), [
    "layer",
    "kind",
    "MACs",
    "w bits",
    "a bits",
    "kept/total",
    "in bits",
    "GBOPs",
  ]);
  assert.match(
    lines[4],
    /^conv1 +conv +460,800 +fp32 +- +32\/32 +32 +0\.4719$/,
  );
  assert.ok(!lines.some((l) => l.startsWith("gates:")), lines.join("\n"));
  const historyHeader = lines.find((l) => l.startsWith("epoch"))!;
  assert.deepEqual(historyHeader.trim().split(/ {2,}/), [
    "epoch",
    "phase",
    "loss",
    "cross-entropy",
    "test acc %",
    "rel GBOPs %",
    "seconds",
    "samples/s",
  ]);
  const markdown = formatReportMarkdown(report);
  assert.ok(markdown.startsWith("# Float report: lenet5\n"), markdown);
  assert.ok(
    markdown.includes(
      "| layer | kind | MACs | w bits | a bits | kept/total | in bits | GBOPs |\n",
    ),
  );
  assert.ok(!markdown.includes("Gates:"), markdown);
  assert.ok(markdown.includes("| baseline GBOPs | 4.369 |\n| seed | 0 |"));
});

Deno.test("a float report round-trips through JSON with its gate fields still absent", () => {
  const report = floatReport();
  const json = reportToJson(report);
  assert.ok(
    json.startsWith(
      '{\n  "schema": "bbits.report/2",\n  "model": "lenet5",\n  "method": "float",\n  "methodOptions": {},',
    ),
    json.slice(0, 120),
  );
  assert.ok(!json.includes("Gates"));
  assert.deepStrictEqual(parseReport(json), report);
});

Deno.test("gatedReport() is the report of the frozen gated model with mu as the method's option", async () => {
  const gated = bayesianBits(lenet5(), { mu: 0.05 });
  const x = Tensor.from(
    new Float32Array(2 * 784).map((_, i) => (i % 7) / 7),
    [2, 1, 28, 28],
  );
  const state = await initGated(gated, initGraph(lenet5(), randomKey(3)), x);
  const facts = { testAccuracy: 0.25, run: { seed: 3 } };
  const report = gatedReport(gated, state, facts);
  assert.equal(report.method, "bayesian-bits");
  assert.deepEqual(report.methodOptions, { mu: 0.05 });
  assert.deepStrictEqual(
    report,
    frozenReport(freezeGated(gated, state), {
      ...facts,
      methodOptions: { mu: 0.05 },
    }),
  );
  // Every layer carries both gate fields; the logits have no quantizer.
  assert.ok(report.layers.every((l) => l.weightGates !== undefined));
  assert.equal(report.layers[3].activationGates, null);
  assert.equal(report.layers[0].inputBits, 8);
  assert.equal(report.relativeGbops, 6.25); // 8-bit everywhere
});

Deno.test("historyEntry() names the cross-entropy, keeps the method's other metrics, and needs relative GBOPs", () => {
  const epoch = {
    epoch: 2,
    loss: 1.5,
    metrics: { crossEntropy: 1.25, prior: 25 },
    testAccuracy: 0.75,
    measured: { relativeGbops: 6.25, prior: 24 },
    seconds: 2.5,
    samplesPerSecond: 400,
  };
  assert.deepStrictEqual(historyEntry("bayesian-bits", epoch), {
    epoch: 2,
    phase: "bayesian-bits",
    loss: 1.5,
    crossEntropy: 1.25,
    metrics: { prior: 25 },
    testAccuracy: 0.75,
    relativeGbops: 6.25,
    seconds: 2.5,
    samplesPerSecond: 400,
  });
  assert.equal(historyEntry("x", epoch, 50).relativeGbops, 50);
  assert.throws(
    () => historyEntry("train", { ...epoch, measured: {} }),
    new RangeError(
      'Epoch 2 of "train" has no relative GBOPs: the method does not measure them, pass them',
    ),
  );
});

/** A report as version 0.1.0 wrote it (schema 1: mu on top, prior named). */
const VERSION_1 = {
  schema: "bbits.report/1",
  model: "tiny-net",
  mu: 0.01,
  testAccuracy: 0.9876,
  relativeGbops: 2.873,
  gbops: 0.00003648,
  baselineGbops: 0.00126976,
  layers: [{
    name: "fc",
    kind: "dense",
    macs: 40,
    weightBits: 4,
    weightQuantized: true,
    activationBits: null,
    inputBits: 8,
    keptChannels: 3,
    totalChannels: 4,
    keptInputFraction: 1,
    gbops: 0.00003648,
    weightGates: { chain: [1, 0.25, 0.01, 0], prune: [0.9, 0.8, 0.1, 1] },
    activationGates: null,
  }],
  history: [{
    epoch: 1,
    phase: "bayesian-bits",
    loss: 0.5,
    crossEntropy: 0.25,
    prior: 12.5,
    testAccuracy: 0.9876,
    relativeGbops: 2.873,
    seconds: 61.25,
    samplesPerSecond: 980.4,
  }],
  run: { seed: 7 },
};

Deno.test("parseReport() reads a version 1 report as version 2: method bayesian-bits, mu an option, prior a metric", () => {
  const report = parseReport(JSON.stringify(VERSION_1));
  const { mu: _, history, ...rest } = VERSION_1;
  const { prior, ...entry } = history[0];
  assert.deepStrictEqual(report, {
    ...rest,
    schema: "bbits.report/2",
    method: "bayesian-bits",
    methodOptions: { mu: 0.01 },
    history: [{ ...entry, metrics: { prior } }],
  });
  // Written back, it is a version 2 report that reads back the same.
  const json = reportToJson(report);
  assert.ok(json.startsWith('{\n  "schema": "bbits.report/2",'));
  assert.deepStrictEqual(parseReport(json), report);
  assert.equal(
    formatReportTable(report).split("\n")[0],
    "tiny-net: mu 0.01, test accuracy 98.76 %, relative GBOPs 2.873 %, GBOPs 0.00003648 (baseline 0.001270)",
  );
});

Deno.test("parseReport() checks a version 1 report's own fields: mu, and gates on every layer", () => {
  const broken = structuredClone(VERSION_1) as Record<string, unknown>;
  delete broken.mu;
  assert.throws(
    () => parseReport(JSON.stringify(broken)),
    new TypeError("Invalid report: mu is missing (expected a number)"),
  );
  const noGates = structuredClone(VERSION_1);
  delete (noGates.layers[0] as Record<string, unknown>).weightGates;
  assert.throws(
    () => parseReport(JSON.stringify(noGates)),
    new TypeError(
      "Invalid report: layers[0].weightGates is missing (expected an object)",
    ),
  );
});

Deno.test("parseHistory() reads entries of both versions and names a bad one", () => {
  const v2 = { ...VERSION_1.history[0], prior: undefined, metrics: { a: 1 } };
  const [old, current] = parseHistory(
    [VERSION_1.history[0], JSON.parse(JSON.stringify(v2))],
    "run.json",
  );
  assert.deepEqual(old.metrics, { prior: 12.5 });
  assert.equal("prior" in old, false);
  assert.deepEqual(current.metrics, { a: 1 });
  assert.throws(
    () => parseHistory([{ ...VERSION_1.history[0], loss: "x" }], "run.json"),
    new TypeError('run.json: history[0].loss must be a number, got string "x"'),
  );
});

Deno.test("a report states its cost in the other conventions, renders them, and round-trips them through JSON", () => {
  const report = floatReport();
  // A float model: every convention at 100 %, the weights at 4 bytes.
  const weights = 800 + 51_200 + 524_288 + 5_120;
  assert.deepEqual(report.costs, {
    macsBitsRelativeGbops: 100,
    executableRelativeGbops: 100,
    weightBytes: 4 * weights,
    floatWeightBytes: 4 * weights,
  });
  assert.ok(
    formatReportTable(report).includes(
      "relative GBOPs as MACs x bw x ba 100.000 %, with executable widths (2/4/8/16/32) 100.000 %; weights 2271.1 KiB of 2271.1 KiB in float32",
    ),
  );
  assert.ok(
    formatReportMarkdown(report).includes(
      "| relative GBOPs, executable widths | 100.000 % |",
    ),
  );
  assert.deepEqual(parseReport(reportToJson(report)), report);
  const json = JSON.parse(reportToJson(report));
  json.costs.weightBytes = -1;
  assert.throws(
    () => parseReport(JSON.stringify(json)),
    /costs\.weightBytes must be non-negative, got -1/,
  );
  delete json.costs;
  assert.equal(parseReport(JSON.stringify(json)).costs, undefined);
});
