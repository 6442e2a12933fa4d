/** Reports render as terminal tables, Markdown and JSON, and JSON reads back validated. */

import assert from "node:assert/strict";
import {
  type HistoryEntry,
  type QuantizationReport,
  REPORT_SCHEMA,
} from "../../core/report.ts";
import {
  formatReportMarkdown,
  formatReportTable,
  parseReport,
  reportToJson,
  summarizeLayerBits,
} from "../../io/report.ts";

// Two layers worked out by hand (spec section 4):
// conv1: 1,200 MACs * 8 (input) * 4 (weights) * 3/4 kept = 28,800 BOPs
// fc:    40 MACs * 8 * 32 (full precision) * 1 * 3/4 kept inputs = 7,680 BOPs
// baseline (1,200 + 40) * 1024 = 1,269,760 BOPs; 36,480 / 1,269,760 = 2.873 %.
function historyEntry(epoch: number): HistoryEntry {
  return {
    epoch,
    phase: epoch <= 8 ? "bayesian-bits" : "fixed-gates",
    loss: 0.5 / epoch,
    crossEntropy: 0.25 / epoch,
    metrics: { prior: 12.5 },
    testAccuracy: 0.9 + epoch / 1000,
    relativeGbops: 10 - epoch / 4,
    seconds: 61.25,
    samplesPerSecond: 980.4,
  };
}

function twoLayerReport(historyLength = 3): QuantizationReport {
  return {
    schema: REPORT_SCHEMA,
    model: "tiny-net",
    method: "bayesian-bits",
    methodOptions: { mu: 0.01 },
    testAccuracy: 0.9876,
    relativeGbops: 100 * 36_480 / 1_269_760,
    gbops: 36_480e-9,
    baselineGbops: 1_269_760e-9,
    layers: [
      {
        name: "conv1",
        kind: "conv",
        macs: 1_200,
        weightBits: 4,
        weightQuantized: true,
        activationBits: 8,
        inputBits: 8,
        keptChannels: 3,
        totalChannels: 4,
        keptInputFraction: 1,
        gbops: 28_800e-9,
        weightGates: { chain: [1, 0.25, 0.01, 0], prune: [0.9, 0.8, 0.1, 1] },
        activationGates: { chain: [1, 1, 0.03, 0], prune: null },
      },
      {
        name: "fc",
        kind: "dense",
        macs: 40,
        weightBits: 32,
        weightQuantized: false,
        activationBits: null,
        inputBits: 8,
        keptChannels: 10,
        totalChannels: 10,
        keptInputFraction: 0.75,
        gbops: 7_680e-9,
        weightGates: null,
        activationGates: null,
      },
    ],
    history: Array.from(
      { length: historyLength },
      (_, i) => historyEntry(i + 1),
    ),
    run: { command: "train --mu 0.01", seed: 7, resumed: false, note: null },
  };
}

/** Cells of a terminal table line: columns are separated by two or more spaces. */
function columnsOf(line: string): string[] {
  return line.trim().split(/ {2,}/);
}

/** Removes ANSI SGR escape sequences. */
function stripAnsi(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, "");
}

Deno.test("formatReportTable() opens with model, mu, accuracy %, relative GBOPs % and GBOPs", () => {
  const header = formatReportTable(twoLayerReport()).split("\n")[0];
  assert.equal(
    header,
    "tiny-net: mu 0.01, test accuracy 98.76 %, relative GBOPs 2.873 %, GBOPs 0.00003648 (baseline 0.001270)",
  );
});

Deno.test("formatReportTable() writes one row per layer with fp32, '-' and kept/total where they belong", () => {
  const lines = formatReportTable(twoLayerReport()).split("\n");
  const headerAt = lines.findIndex((l) => l.startsWith("layer"));
  assert.deepEqual(columnsOf(lines[headerAt]), [
    "layer",
    "kind",
    "MACs",
    "w bits",
    "a bits",
    "kept/total",
    "in bits",
    "GBOPs",
    "w gates",
    "a gates",
  ]);
  assert.deepEqual(columnsOf(lines[headerAt + 2]), [
    "conv1",
    "conv",
    "1,200",
    "4",
    "8",
    "3/4",
    "8",
    "0.00002880",
    "1.00/0.25/0.01/0.00 q2 0.10/0.70/1.00",
    "1.00/1.00/0.03/0.00",
  ]);
  assert.deepEqual(columnsOf(lines[headerAt + 3]), [
    "fc",
    "dense",
    "40",
    "fp32",
    "-",
    "10/10",
    "8",
    "0.000007680",
    "-",
    "-",
  ]);
});

Deno.test("formatReportTable() right-aligns numeric columns and left-aligns names", () => {
  const lines = formatReportTable(twoLayerReport()).split("\n");
  const headerAt = lines.findIndex((l) => l.startsWith("layer"));
  const [header, , conv1, fc] = lines.slice(headerAt, headerAt + 4);
  const macsEnd = header.indexOf("MACs") + "MACs".length;
  assert.equal(conv1.indexOf("1,200") + "1,200".length, macsEnd);
  assert.equal(fc.indexOf(" 40 ") + " 40".length, macsEnd);
  const keptEnd = header.indexOf("kept/total") + "kept/total".length;
  assert.equal(conv1.indexOf("3/4") + "3/4".length, keptEnd);
  assert.equal(fc.indexOf("10/10") + "10/10".length, keptEnd);
  assert.equal(conv1.indexOf("conv "), fc.indexOf("dense"));
});

Deno.test("formatReportTable() uses colour codes only when asked, without shifting columns", () => {
  const report = twoLayerReport();
  const plain = formatReportTable(report);
  const colored = formatReportTable(report, { color: true });
  assert.ok(!plain.includes("\x1b"), "plain output contains an escape code");
  assert.equal(formatReportTable(report, { color: false }), plain);
  assert.ok(colored.includes("\x1b[1m"), "colour output has no bold code");
  assert.notEqual(colored, plain);
  assert.equal(stripAnsi(colored), plain);
});

Deno.test("formatReportTable() shows up to 10 epochs of history in full", () => {
  const lines = formatReportTable(twoLayerReport(10)).split("\n");
  assert.ok(lines.includes("history (10 epochs):"), lines.join("\n"));
  const epochs = lines.filter((l) => /^ *\d+ {2}(bayesian-bits|fixed)/.test(l))
    .map((l) => Number(columnsOf(l)[0]));
  assert.deepEqual(epochs, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.ok(!lines.some((l) => l.includes("hidden")));
  const first = columnsOf(lines.find((l) => /^ *1 {2}/.test(l))!);
  assert.deepEqual(first, [
    "1",
    "bayesian-bits",
    "0.5000",
    "0.2500",
    "12.500",
    "90.10",
    "9.750",
    "61.3",
    "980",
  ]);
});

Deno.test("formatReportTable() shows the last 5 of more than 10 epochs and says how many are hidden", () => {
  const lines = formatReportTable(twoLayerReport(12)).split("\n");
  assert.ok(lines.includes("history (last 5 of 12 epochs):"), lines.join("\n"));
  const epochs = lines.filter((l) => /^ *\d+ {2}(bayesian-bits|fixed)/.test(l))
    .map((l) => Number(columnsOf(l)[0]));
  assert.deepEqual(epochs, [8, 9, 10, 11, 12]);
  assert.equal(lines[lines.length - 1], "(7 earlier epochs hidden)");
});

Deno.test("formatReportTable() says so when there is no history", () => {
  const lines = formatReportTable(twoLayerReport(0)).split("\n");
  assert.equal(lines[lines.length - 1], "history: none");
});

Deno.test("summarizeLayerBits() lists weight/activation bits and kept/total per layer", () => {
  assert.equal(
    summarizeLayerBits(twoLayerReport()),
    "conv1 w4/a8 3/4, fc wfp32/- 10/10",
  );
});

Deno.test("reportToJson() writes 2-space JSON with schema first", () => {
  const { schema, ...rest } = twoLayerReport();
  const json = reportToJson({ ...rest, schema }); // schema last in the input
  assert.ok(
    json.startsWith(`{\n  "schema": "bbits.report/2",\n  "model": "tiny-net",`),
    json.slice(0, 80),
  );
  assert.equal(json, JSON.stringify(JSON.parse(json), null, 2));
});

Deno.test("a report round-trips exactly through reportToJson() and parseReport()", () => {
  const report = twoLayerReport(12);
  const json = reportToJson(report);
  const parsed = parseReport(json);
  assert.deepStrictEqual(parsed, report);
  assert.equal(reportToJson(parsed), json);
});

Deno.test("parseReport() drops unknown fields", () => {
  const raw = JSON.parse(reportToJson(twoLayerReport()));
  raw.extra = 1;
  raw.layers[0].extra = "x";
  assert.deepStrictEqual(parseReport(JSON.stringify(raw)), twoLayerReport());
});

/** A report's JSON, parsed: breaking it in arbitrary ways is untyped by nature. */
// deno-lint-ignore no-explicit-any
type RawReport = any;

/** A way to break a report's JSON, and the error parseReport must throw. */
const INVALID: readonly {
  readonly what: string;
  readonly breakIt: (raw: RawReport) => void;
  readonly error: Error;
}[] = [
  {
    what: "a wrong schema",
    breakIt: (r) => r.schema = "bbits.report/3",
    error: new RangeError(
      'Invalid report: unsupported schema "bbits.report/3", expected "bbits.report/2" or "bbits.report/1"',
    ),
  },
  {
    what: "a missing schema",
    breakIt: (r) => delete r.schema,
    error: new TypeError(
      "Invalid report: schema is missing (expected a string)",
    ),
  },
  {
    what: "a missing layer name",
    breakIt: (r) => delete r.layers[0].name,
    error: new TypeError(
      "Invalid report: layers[0].name is missing (expected a string)",
    ),
  },
  {
    what: "a missing history",
    breakIt: (r) => delete r.history,
    error: new TypeError(
      "Invalid report: history is missing (expected an array)",
    ),
  },
  {
    what: "a string where a number is required",
    breakIt: (r) => r.history[1].loss = "0.25",
    error: new TypeError(
      'Invalid report: history[1].loss must be a number, got string "0.25"',
    ),
  },
  {
    what: "null where a number is required",
    breakIt: (r) => r.gbops = null,
    error: new TypeError("Invalid report: gbops must be a number, got null"),
  },
  {
    what: "an object where an array is required",
    breakIt: (r) => r.layers = { 0: r.layers[0] },
    error: new TypeError(
      "Invalid report: layers must be an array, got an object",
    ),
  },
  {
    what: "a number overflowing to Infinity",
    breakIt: (r) => r.layers[1].gbops = "__OVERFLOW__",
    error: new RangeError(
      "Invalid report: layers[1].gbops must be a finite number, got Infinity",
    ),
  },
  {
    what: "a gate chain of 3 probabilities",
    breakIt: (r) => r.layers[0].weightGates.chain.pop(),
    error: new RangeError(
      "Invalid report: layers[0].weightGates.chain must be 4 probabilities [q4, q8, q16, q32], got an array of length 3",
    ),
  },
  {
    what: "a pruning probability above 1",
    breakIt: (r) => r.layers[0].weightGates.prune[2] = 1.5,
    error: new RangeError(
      "Invalid report: layers[0].weightGates.prune[2] must be in [0, 1], got 1.5",
    ),
  },
  {
    what: "more kept than total channels",
    breakIt: (r) => r.layers[0].keptChannels = 5,
    error: new RangeError(
      "Invalid report: layers[0].keptChannels must be at most totalChannels (4), got 5",
    ),
  },
  {
    what: "a fractional channel count",
    breakIt: (r) => r.layers[1].totalChannels = 9.5,
    error: new RangeError(
      "Invalid report: layers[1].totalChannels must be a non-negative integer, got 9.5",
    ),
  },
  {
    what: "an unknown layer kind",
    breakIt: (r) => r.layers[1].kind = "pool",
    error: new RangeError(
      'Invalid report: layers[1].kind must be "conv" or "dense", got string "pool"',
    ),
  },
  {
    what: "a missing method",
    breakIt: (r) => delete r.method,
    error: new TypeError(
      "Invalid report: method is missing (expected a string)",
    ),
  },
  {
    what: "method options that are not an object",
    breakIt: (r) => r.methodOptions = [0.01],
    error: new TypeError(
      "Invalid report: methodOptions must be an object, got an array of length 1",
    ),
  },
  {
    what: "a history metric that is not a number",
    breakIt: (r) => r.history[0].metrics.prior = "12.5",
    error: new TypeError(
      'Invalid report: history[0].metrics.prior must be a number, got string "12.5"',
    ),
  },
  {
    what: "an array as a run value",
    breakIt: (r) => r.run["wall time"] = [1],
    error: new TypeError(
      'Invalid report: run["wall time"] must be a string, number, boolean or null, got an array of length 1',
    ),
  },
];

for (const { what, breakIt, error } of INVALID) {
  Deno.test(`parseReport() rejects ${what}`, () => {
    const raw = JSON.parse(reportToJson(twoLayerReport()));
    breakIt(raw);
    // JSON has no Infinity literal; 1e999 is how one arrives in a file.
    const json = JSON.stringify(raw).replace('"__OVERFLOW__"', "1e999");
    assert.throws(() => parseReport(json), error);
  });
}

Deno.test("parseReport() rejects a document that is not an object", () => {
  assert.throws(
    () => parseReport("[1, 2]"),
    new TypeError(
      "Invalid report: the report must be an object, got an array of length 2",
    ),
  );
  assert.throws(() => parseReport("{"), SyntaxError);
});

Deno.test("reportToJson() rejects a non-finite number, naming its path", () => {
  const report = twoLayerReport();
  const cases: readonly [QuantizationReport, string][] = [
    [
      {
        ...report,
        layers: [report.layers[0], { ...report.layers[1], gbops: NaN }],
      },
      "layers[1].gbops must be a finite number, got NaN",
    ],
    [
      {
        ...report,
        layers: [
          {
            ...report.layers[0],
            weightGates: { chain: [1, 1, 0, 0], prune: [1, 1, -Infinity, 1] },
          },
          report.layers[1],
        ],
      },
      "layers[0].weightGates.prune[2] must be a finite number, got -Infinity",
    ],
    [
      {
        ...report,
        history: [report.history[0], {
          ...report.history[1],
          seconds: Infinity,
        }],
      },
      "history[1].seconds must be a finite number, got Infinity",
    ],
    [
      { ...report, run: { ...report.run, wallSeconds: NaN } },
      "run.wallSeconds must be a finite number, got NaN",
    ],
  ];
  for (const [bad, message] of cases) {
    assert.throws(
      () => reportToJson(bad),
      new RangeError(`Cannot write report JSON: ${message}`),
    );
  }
});

Deno.test("reportToJson() leaves its input untouched", () => {
  const report = twoLayerReport();
  const copy = structuredClone(report);
  reportToJson(report);
  assert.deepStrictEqual(report, copy);
});

/** Cells of a Markdown table row, honouring `\` escapes. */
function markdownCells(row: string): string[] {
  const cells: string[] = [];
  let cell = "";
  for (let i = 1; i < row.length; i++) {
    if (row[i] === "\\") {
      cell += row[i] + row[i + 1];
      i++;
    } else if (row[i] === "|") {
      cells.push(cell.trim());
      cell = "";
    } else {
      cell += row[i];
    }
  }
  return cells;
}

/** The table rows (lines starting with `|`) of each `## ` section. */
function markdownSections(markdown: string): Map<string, string[]> {
  const sections = new Map<string, string[]>();
  let current = "";
  for (const line of markdown.split("\n")) {
    if (line.startsWith("## ")) {
      current = line.slice(3);
      sections.set(current, []);
    } else if (line.startsWith("|")) {
      sections.get(current)!.push(line);
    }
  }
  return sections;
}

function pipedReport(): QuantizationReport {
  const report = twoLayerReport(3);
  return {
    ...report,
    layers: [{ ...report.layers[0], name: "conv|1" }, report.layers[1]],
    run: { ...report.run, command: "train | tee log", path: "C:\\" },
  };
}

Deno.test("formatReportMarkdown() has summary, layer and history tables with one row each", () => {
  const sections = markdownSections(formatReportMarkdown(pipedReport()));
  assert.deepEqual([...sections.keys()], ["Summary", "Layers", "History"]);
  // header + delimiter + 5 fixed rows + 5 run entries
  assert.equal(sections.get("Summary")!.length, 2 + 5 + 5);
  assert.equal(sections.get("Layers")!.length, 2 + 2);
  assert.equal(sections.get("History")!.length, 2 + 3);
  for (const [name, rows] of sections) {
    const columns = markdownCells(rows[0]).length;
    for (const row of rows) {
      assert.equal(markdownCells(row).length, columns, `${name}: ${row}`);
    }
  }
});

Deno.test("formatReportMarkdown() fills the tables with the report's values", () => {
  const sections = markdownSections(formatReportMarkdown(pipedReport()));
  const summary = sections.get("Summary")!.slice(2).map(markdownCells);
  assert.deepEqual(summary, [
    ["test accuracy", "98.76 %"],
    ["relative GBOPs", "2.873 %"],
    ["GBOPs", "0.00003648"],
    ["baseline GBOPs", "0.001270"],
    ["mu", "0.01"],
    ["command", "train \\| tee log"],
    ["seed", "7"],
    ["resumed", "false"],
    ["note", "null"],
    ["path", "C:\\\\"],
  ]);
  const layers = sections.get("Layers")!;
  assert.deepEqual(markdownCells(layers[0]), [
    "layer",
    "kind",
    "MACs",
    "w bits",
    "a bits",
    "kept/total",
    "in bits",
    "GBOPs",
    "w gates",
    "a gates",
  ]);
  assert.equal(layers[1], "|---|---|---:|---:|---:|---:|---:|---:|---|---|");
  assert.deepEqual(markdownCells(layers[2]).slice(0, 6), [
    "conv\\|1",
    "conv",
    "1,200",
    "4",
    "8",
    "3/4",
  ]);
  assert.deepEqual(markdownCells(layers[3]).slice(3, 6), [
    "fp32",
    "-",
    "10/10",
  ]);
  const history = sections.get("History")!;
  assert.deepEqual(markdownCells(history[0]), [
    "epoch",
    "phase",
    "loss",
    "cross-entropy",
    "prior",
    "test acc %",
    "rel GBOPs %",
    "seconds",
    "samples/s",
  ]);
  assert.deepEqual(markdownCells(history[4]), [
    "3",
    "bayesian-bits",
    "0.1667",
    "0.0833",
    "12.500",
    "90.30",
    "9.250",
    "61.3",
    "980",
  ]);
});

Deno.test("formatReportMarkdown() escapes pipes and backslashes in cell text", () => {
  const markdown = formatReportMarkdown(pipedReport());
  assert.ok(markdown.includes("| conv\\|1 | conv |"), markdown);
  assert.ok(markdown.includes("| command | train \\| tee log |"), markdown);
  assert.ok(markdown.includes("| path | C:\\\\ |"), markdown);
  assert.ok(!markdown.includes("conv|1"), "unescaped pipe in a layer name");
});

Deno.test("formatReportMarkdown() replaces the history table by a sentence when there is none", () => {
  const markdown = formatReportMarkdown(twoLayerReport(0));
  assert.deepEqual(markdownSections(markdown).get("History"), []);
  assert.ok(markdown.endsWith("## History\n\nNo epochs recorded.\n"), markdown);
});
