import assert from "node:assert/strict";
import {
  formatParetoTable,
  paretoFront,
  type ParetoPoint,
  paretoSvg,
  pointOf,
} from "../../io/pareto.ts";
import type { QuantizationReport } from "../../core/report.ts";

const P = (
  label: string,
  method: string,
  relativeGbops: number,
  accuracy: number,
): ParetoPoint => ({ label, method, relativeGbops, accuracy });

const POINTS = [
  P("mu=0.1", "bayesian-bits", 0.4, 0.9927),
  P("mu=0.01", "bayesian-bits", 0.8, 0.9931),
  P("a=1e-2", "bsq", 0.9, 0.9925), // dominated by mu=0.1 and mu=0.01
  P("T=1.04", "fracbits", 1.04, 0.9935),
  P("T=0.52", "fracbits", 0.52, 0.9929), // cheaper than mu=0.01, less accurate
  P("twin", "bsq", 0.4, 0.9927), // equal to mu=0.1: both optimal
];

Deno.test("paretoFront keeps the points nothing else beats in cost and accuracy at once", () => {
  assert.deepEqual(paretoFront(POINTS), [true, true, false, true, true, true]);
  assert.deepEqual(paretoFront([]), []);
});

Deno.test("formatParetoTable sorts by method and cost and marks the frontier", () => {
  const lines = formatParetoTable(POINTS).trimEnd().split("\n");
  assert.deepEqual(lines[0].split(/ {2,}/), [
    "method",
    "run",
    "test acc %",
    "rel GBOPs %",
    "MACs x bw x ba %",
    "front",
  ]);
  assert.deepEqual(
    lines.slice(1).map((l) => l.split(/ {2,}/).slice(0, 2).join(" ")),
    [
      "bayesian-bits mu=0.1",
      "bayesian-bits mu=0.01",
      "bsq twin",
      "bsq a=1e-2",
      "fracbits T=0.52",
      "fracbits T=1.04",
    ],
  );
  assert.match(lines[4], /^bsq +a=1e-2 +99\.25 +0\.900 +- *$/);
  assert.match(lines[6], /^fracbits +T=1\.04 +99\.35 +1\.040 +- +\*$/);
  const md = formatParetoTable(POINTS, { markdown: true });
  assert.ok(md.startsWith("| method | run | test acc % |"), md);
});

Deno.test("paretoSvg places points on a log cost axis and a linear accuracy axis", () => {
  const svg = paretoSvg([
    P("a", "m", 1, 0.98),
    P("b", "m", 10, 0.99),
    P("c", "m", 100, 0.995),
    P("d", "n <&>", 10, 0.97),
  ]);
  assert.ok(svg.startsWith("<svg") && svg.trimEnd().endsWith("</svg>"));
  const dots = [
    ...svg.matchAll(
      /<circle cx="([\d.]+)" cy="([\d.]+)" r="4" fill="[^"]+"><title>/g,
    ),
  ]
    .map((m) => [Number(m[1]), Number(m[2])]);
  assert.equal(dots.length, 4);
  // Decades are equally wide; more accurate is higher (smaller y).
  assert.ok(
    Math.abs((dots[1][0] - dots[0][0]) - (dots[2][0] - dots[1][0])) < 1e-9,
  );
  assert.ok(dots[2][1] < dots[1][1] && dots[1][1] < dots[0][1]);
  assert.ok(dots[3][1] > dots[0][1]);
  // Three points of "m" on its frontier, ringed (d is dominated by b).
  assert.equal([...svg.matchAll(/r="7"/g)].length, 3);
  assert.ok(svg.includes("n &#60;&#38;&#62;"), "method names are escaped");
  assert.throws(() => paretoSvg([]), /no points/);
  assert.throws(() => paretoSvg([P("z", "m", 0, 0.5)]), /Cannot plot "z"/);
});

Deno.test("pointOf reads a report's method, cost and accuracy", () => {
  const report = {
    method: "fracbits",
    relativeGbops: 0.5,
    testAccuracy: 0.99,
    costs: {
      macsBitsRelativeGbops: 0.6,
      executableRelativeGbops: 1,
      weightBytes: 1,
      floatWeightBytes: 4,
    },
  } as unknown as QuantizationReport;
  assert.deepEqual(pointOf(report, "run1"), {
    label: "run1",
    method: "fracbits",
    relativeGbops: 0.5,
    accuracy: 0.99,
    macsBitsRelativeGbops: 0.6,
  });
});
