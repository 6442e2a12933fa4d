import assert from "node:assert/strict";
import { initGraph } from "../../core/graph.ts";
import { lenet5 } from "../../core/models.ts";
import { floatMethod } from "../../core/methods/float.ts";
import { frozenReport } from "../../core/report.ts";
import { randomKey } from "../../core/rng.ts";
import {
  bitsChartSvg,
  display,
  escapeHtml,
  JUPYTER_DISPLAY,
  progressDisplay,
  reportHtml,
  showBits,
  showPareto,
  showReport,
} from "../../io/notebook.ts";

function floatReport() {
  const method = floatMethod();
  const model = method.attach(lenet5());
  const frozen = method.freeze(model, initGraph(lenet5(), randomKey(0)));
  return frozenReport(frozen, {
    testAccuracy: 0.5,
    run: { note: "<b>&'\"" },
  });
}

Deno.test("reportHtml: the summary, layer and history tables, text escaped", () => {
  const html = reportHtml(floatReport());
  assert.ok(html.includes("<h3>float report: lenet5</h3>"), html);
  assert.ok(
    html.includes(
      '<tr><td style="text-align:left">conv1</td><td style="text-align:left">conv</td><td style="text-align:right">460,800</td>',
    ),
    html,
  );
  assert.ok(html.includes("&#60;b&#62;&#38;&#39;&#34;"), "run values escaped");
  assert.ok(!html.includes("<b>&"), "nothing unescaped");
  assert.ok(html.includes("<p>No epochs recorded.</p>"));
  assert.equal([...html.matchAll(/<table>/g)].length, 2);
  assert.equal(
    escapeHtml(`a<b>"c"&'d'`),
    "a&#60;b&#62;&#34;c&#34;&#38;&#39;d&#39;",
  );
});

Deno.test("bitsChartSvg: three bars per layer, heights proportional to bits", () => {
  const svg = bitsChartSvg(floatReport());
  const bars = [
    ...svg.matchAll(
      /<rect x="[\d.]+" y="([\d.]+)" width="22" height="([\d.]+)"/g,
    ),
  ]
    .map((m) => Number(m[2]));
  assert.equal(bars.length, 12);
  // A float layer: 32-bit weights (full height), no activation grid (0),
  // every channel kept (full height).
  assert.deepEqual(bars.slice(0, 3), [bars[0], 0, bars[0]]);
  assert.ok(bars[0] > 0);
});

Deno.test("show* objects render in a notebook and read as data elsewhere", () => {
  const report = floatReport();
  const shown = showReport(report);
  assert.equal(shown.html, reportHtml(report));
  const bundle = shown[JUPYTER_DISPLAY]();
  assert.deepEqual(Object.keys(bundle).sort(), ["text/html", "text/plain"]);
  assert.ok(bundle["text/plain"].startsWith("lenet5: "));
  const bits = showBits(report);
  assert.equal(bits.svg, bitsChartSvg(report));
  assert.match(bits.text, /^conv1: w fp32, a -, kept 32\/32$/m);
  const pareto = showPareto([
    { label: "x", method: "bsq", relativeGbops: 1, accuracy: 0.9 },
  ]);
  assert.ok(pareto[JUPYTER_DISPLAY]()["image/svg+xml"].startsWith("<svg"));
  assert.equal(pareto.text, "bsq x: 90.00 % at 1.000 %");
});

Deno.test("progressDisplay: lines outside a notebook, one display updated in place inside", async () => {
  const lines: string[] = [];
  const plain = progressDisplay({ write: (l) => lines.push(l) });
  plain.update("step 1");
  plain.update("step 2");
  assert.equal(plain.inNotebook, false);
  assert.deepEqual(lines, ["step 1", "step 2"]);
  const calls: {
    bundle: Record<string, string>;
    options: Record<string, unknown>;
  }[] = [];
  const fake = {
    display: (
      bundle: Record<string, string>,
      options: Record<string, unknown>,
    ) => {
      calls.push({ bundle, options });
      return Promise.resolve();
    },
  };
  const shown = progressDisplay({ jupyter: fake });
  shown.update("epoch 1 <50 %>");
  shown.update("epoch 2");
  assert.equal(shown.inNotebook, true);
  assert.equal(calls.length, 2);
  assert.equal(calls[0].options.display_id, calls[1].options.display_id);
  assert.deepEqual([calls[0].options.update, calls[1].options.update], [
    false,
    true,
  ]);
  const id = calls[0].options.display_id;
  assert.ok(
    typeof id === "string" && /^bbits-progress-[\w-]+$/.test(id),
    `${id}`,
  );
  assert.equal(
    calls[0].bundle["text/html"],
    `<pre class="bbits-progress" data-display-id="${id}">epoch 1 &#60;50 %&#62;</pre>`,
  );
  assert.equal(calls[1].bundle["text/plain"], "epoch 2");
  // Outside a notebook, Deno.jupyter is not usable: lines.
  assert.equal(progressDisplay({ write: () => {} }).inNotebook, false);
  await Promise.resolve();
});

Deno.test("display: each output in order through the notebook, its text elsewhere", async () => {
  const report = floatReport();
  const sent: { bundle: Record<string, string>; raw: boolean }[] = [];
  let pending = 0;
  const fake = {
    display: (bundle: Record<string, string>, options: { raw: boolean }) => {
      pending++;
      // Sent later: display waits for each one before the next.
      return new Promise<void>((resolve) =>
        setTimeout(() => {
          sent.push({ bundle, raw: options.raw });
          pending--;
          resolve();
        }, 5)
      );
    },
  };
  await display([showReport(report), showBits(report)], { jupyter: fake });
  assert.equal(pending, 0);
  assert.deepEqual(sent.map((s) => Object.keys(s.bundle)), [
    ["text/html", "text/plain"],
    ["image/svg+xml", "text/plain"],
  ]);
  assert.equal(sent[0].bundle["text/html"], reportHtml(report));
  assert.equal(sent[1].bundle["image/svg+xml"], bitsChartSvg(report));
  assert.ok(sent.every((s) => s.raw));
  const lines: string[] = [];
  await display([showReport(report), showBits(report)], {
    jupyter: null,
    write: (line) => lines.push(line),
  });
  assert.deepEqual(lines, [showReport(report).text, showBits(report).text]);
});
