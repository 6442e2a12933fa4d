/**
 * The example notebook (examples/post_training.ipynb) runs, twice:
 *
 * - its code cells, in order, with small sizes in place of its
 *   `parameters` cell, are type-checked against the library and run as one
 *   module; the notebook's own assertions (weights unchanged by
 *   post-training, exported accuracy equal to the gated accuracy, the
 *   budget never exceeded) run with them, and its results are checked here;
 * - the notebook itself is executed headlessly by Jupyter
 *   (`jupyter nbconvert --execute`, Deno's kernel, `BBITS_NOTEBOOK=small`),
 *   and its saved outputs must hold the HTML report, the SVG charts and the
 *   progress displays updated in place. Jupyter and the kernel are required:
 *   without them the test fails and says what to install.
 */

import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);
const notebookUrl = new URL("examples/post_training.ipynb", root);

interface NotebookCell {
  readonly cell_type: string;
  readonly source: string | readonly string[];
  readonly metadata?: { readonly tags?: readonly string[] };
}

/** The specifiers `@bbits/core` and `@bbits/core/<subpath>` as file URLs. */
function packageSpecifiers(): Map<string, string> {
  const config = JSON.parse(
    Deno.readTextFileSync(new URL("deno.json", root)),
  ) as { name: string; exports: Record<string, string> };
  const map = new Map<string, string>();
  for (const [key, path] of Object.entries(config.exports)) {
    const specifier = key === "."
      ? config.name
      : `${config.name}/${key.slice(2)}`;
    map.set(specifier, new URL(path, root).href);
  }
  return map;
}

/** The notebook's code cells as one module, with `parameters` replaced. */
function notebookModule(parameters: string, exports: string[]): string {
  const notebook = JSON.parse(Deno.readTextFileSync(notebookUrl)) as {
    cells: NotebookCell[];
  };
  const code = notebook.cells.filter((c) => c.cell_type === "code");
  assert.ok(code.length > 0, "the notebook has code cells");
  assert.deepEqual(
    code[0].metadata?.tags,
    ["parameters"],
    "the first code cell is the parameters cell",
  );
  const text = (c: NotebookCell) =>
    typeof c.source === "string" ? c.source : c.source.join("");
  const specifiers = packageSpecifiers();
  const body = [parameters, ...code.slice(1).map(text)].join("\n\n")
    .replace(/from "([^"]+)"/g, (whole, specifier: string) => {
      const url = specifiers.get(specifier);
      return url === undefined ? whole : `from "${url}"`;
    });
  return `${body}\n\nexport { ${exports.join(", ")} };\n`;
}

/** The notebook's results that the module run exports. */
interface NotebookResults {
  accuracy: number;
  exportedAccuracy: number;
  floatAccuracy: number;
  floatBytes: number;
  quantizedBytes: number;
  outDir: string;
  report: {
    relativeGbops: number;
    layers: readonly { name: string }[];
    history: readonly unknown[];
  };
  run: { epoch: number; phase: string };
  points: readonly { method: string; relativeGbops: number }[];
  landed: { relativeGbops: number };
}

/** Type-checks a module file against the package's configuration. */
async function typeCheck(file: string): Promise<void> {
  const check = await new Deno.Command(Deno.execPath(), {
    args: [
      "check",
      "--quiet",
      "--config",
      new URL("deno.json", root).pathname,
      file,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(
    check.code,
    0,
    `deno check of the notebook's code failed:\n${
      new TextDecoder().decode(check.stderr)
    }`,
  );
}

/** The figures the small notebook run must reach. */
function checkResults(result: NotebookResults): void {
  assert.equal(result.run.phase, "post-training");
  assert.equal(result.run.epoch, 6);
  assert.equal(result.report.history.length, 6);
  assert.deepEqual(
    result.report.layers.map((l) => l.name),
    ["conv1", "conv2", "fc1", "fc2"],
  );
  assert.equal(result.exportedAccuracy, result.accuracy);
  // Even one float epoch on 1,024 images learns something (chance: 10 %).
  assert.ok(result.floatAccuracy > 0.5, `float ${result.floatAccuracy}`);
  assert.ok(result.accuracy > 0.5, `post-trained ${result.accuracy}`);
  // 48 steps at the notebook's logit learning rate (0.1 from logits of 3)
  // move gates below 8 bits.
  assert.ok(
    result.report.relativeGbops > 0 && result.report.relativeGbops < 6.25,
    `relative GBOPs ${result.report.relativeGbops}`,
  );
  // One plot: the run, the sweep, the budget's run and the greedy path.
  assert.deepEqual(
    [...new Set(result.points.map((p) => p.method))],
    ["bayesian-bits", "bayesian-bits, hard budget", "greedy"],
  );
  assert.ok(result.landed.relativeGbops <= 6.25);
  // The greedy path starts at 8 bits everywhere: 8 x 8 of 32 x 32 bits.
  assert.equal(
    result.points.find((p) => p.method === "greedy")?.relativeGbops,
    6.25,
  );
  // Codes of at most 8 bits take one byte where float32 takes four.
  assert.ok(
    result.quantizedBytes < result.floatBytes / 3,
    `${result.quantizedBytes} bytes against ${result.floatBytes}`,
  );
}

Deno.test("the post-training notebook type-checks and runs (small sizes)", async () => {
  const source = notebookModule(
    [
      "const trainImages = 1_024;",
      "const testImages = 512;",
      "const floatEpochs = 1;",
      "const calibrationImages = 256;",
      "const postTrainingEpochs = 6;",
      "const sweepMus = [0.5];",
      "const shortEpochs = 1;",
      "const targetGbops = 6.25;",
      "const budgetRuns = 1;",
      "const threads = 2;",
    ].join("\n"),
    [
      "accuracy",
      "exportedAccuracy",
      "floatAccuracy",
      "floatBytes",
      "landed",
      "outDir",
      "points",
      "quantizedBytes",
      "report",
      "run",
    ],
  );
  assert.ok(!source.includes('"@bbits/core'), "every import is rewritten");
  const dir = await Deno.makeTempDir({ prefix: "bbits-notebook-" });
  let outDir: string | null = null;
  try {
    const file = `${dir}/post_training.ts`;
    await Deno.writeTextFile(file, source);
    await typeCheck(file);
    const result = await import(
      new URL(`file://${file}`).href
    ) as NotebookResults;
    outDir = result.outDir;
    assert.throws(
      () => Deno.statSync(result.outDir),
      Deno.errors.NotFound,
      "the notebook removes its output folder",
    );
    checkResults(result);
  } finally {
    await Deno.remove(dir, { recursive: true });
    // The notebook removes its own output folder; only a failure leaves it.
    if (outDir) await Deno.remove(outDir, { recursive: true }).catch(() => {});
  }
});

/** One saved output of an executed notebook. */
interface SavedOutput {
  readonly output_type: string;
  readonly data?: Record<string, string | string[]>;
  readonly ename?: string;
  readonly evalue?: string;
}

const INSTALL_JUPYTER =
  "apt-get install -y jupyter-nbconvert python3-jupyter-client python3-ipykernel";
const INSTALL_KERNEL = "npx -y deno@2.9.6 jupyter --install";

/** Runs `jupyter` with `args`; fails naming what to install when it is missing. */
async function jupyter(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("jupyter", {
      args,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      assert.fail(
        `The notebook test needs Jupyter: "jupyter" is not on PATH (Debian: ${INSTALL_JUPYTER})`,
      );
    }
    throw error;
  }
  const text = new TextDecoder();
  return {
    code: output.code,
    stdout: text.decode(output.stdout),
    stderr: text.decode(output.stderr),
  };
}

/** Fails unless `jupyter nbconvert` runs and Deno's kernel is registered. */
async function checkJupyter(): Promise<void> {
  const nbconvert = await jupyter(["nbconvert", "--version"]);
  assert.equal(
    nbconvert.code,
    0,
    `The notebook test needs "jupyter nbconvert" (Debian: ${INSTALL_JUPYTER}):\n${nbconvert.stderr}`,
  );
  const paths = JSON.parse((await jupyter(["--paths", "--json"])).stdout) as {
    data: string[];
  };
  const specs = paths.data.map((dir) => `${dir}/kernels/deno/kernel.json`);
  const found = specs.filter((spec) => {
    try {
      return Deno.statSync(spec).isFile;
    } catch {
      return false;
    }
  });
  assert.ok(
    found.length > 0,
    `The notebook test needs Deno's Jupyter kernel, registered with "${INSTALL_KERNEL}" (no kernel.json in ${
      specs.join(", ")
    })`,
  );
}

/** The text of a MIME bundle entry (a string or a list of lines). */
const joined = (value: string | string[] | undefined) =>
  value === undefined ? "" : typeof value === "string" ? value : value.join("");

Deno.test("the post-training notebook executes headlessly in Jupyter (BBITS_NOTEBOOK=small) and shows its report, charts and progress", async () => {
  await checkJupyter();
  const dir = await Deno.makeTempDir({ prefix: "bbits-nbconvert-" });
  try {
    const run = await jupyter([
      "nbconvert",
      "--to",
      "notebook",
      "--execute",
      notebookUrl.pathname,
      "--output-dir",
      dir,
      "--output",
      "executed",
      "--ExecutePreprocessor.timeout=300",
    ], { BBITS_NOTEBOOK: "small" });
    assert.equal(
      run.code,
      0,
      `jupyter nbconvert --execute of the notebook failed:\n${run.stderr}`,
    );
    const executed = JSON.parse(
      await Deno.readTextFile(`${dir}/executed.ipynb`),
    ) as {
      cells: (NotebookCell & { outputs?: SavedOutput[] })[];
    };
    const cells = executed.cells.filter((c) => c.cell_type === "code");
    const outputs = cells.flatMap((c) => c.outputs ?? []);
    const errors = outputs.filter((o) => o.output_type === "error");
    assert.deepEqual(
      errors.map((o) => `${o.ename}: ${o.evalue}`),
      [],
      "no cell failed",
    );
    const shown = (mime: string) =>
      outputs.map((o) => joined(o.data?.[mime])).filter((t) => t !== "");
    // The report as HTML tables.
    const html = shown("text/html");
    assert.ok(
      html.some((h) =>
        h.includes("<h3>bayesian-bits report: lenet5</h3>") &&
        h.includes("<table>")
      ),
      "an HTML report with its tables",
    );
    // The bits chart and the Pareto plot as SVG.
    const svgs = shown("image/svg+xml");
    assert.ok(svgs.every((s) => s.startsWith("<svg")));
    assert.ok(svgs.some((s) => s.includes("bayesian-bits: bits per layer")));
    assert.ok(svgs.some((s) => s.includes("post-training vs greedy")));
    // Progress: one output per progress display, replaced in place through
    // its display id until the cell's last update. The budget's cell sends
    // many updates (each run's steps and epochs, then each run) and ends
    // with its result; a kernel's first outputs may be lost on a cold
    // start, so later cells are the ones checked.
    const progress = outputs.filter((o) =>
      o.output_type === "display_data" &&
      /<pre class="bbits-progress" data-display-id="bbits-progress-[\w-]+">/
        .test(joined(o.data?.["text/html"]))
    );
    assert.ok(progress.length >= 4, `${progress.length} progress displays`);
    const budgetCell = cells.find((c) =>
      (typeof c.source === "string" ? c.source : c.source.join(""))
        .includes("searchKnob(")
    )!;
    const budgetShown = (budgetCell.outputs ?? []).map((o) =>
      joined(o.data?.["text/plain"])
    );
    assert.equal(budgetShown.length, 1, budgetShown.join("\n---\n"));
    assert.match(
      budgetShown[0],
      /^mu 0\.500: 6\.250 % relative GBOPs\ntarget 6\.25 %: mu 0\.500 lands at 6\.250 % \(within 1 % below the target, 1 run\), [\d.]+ % test accuracy$/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
