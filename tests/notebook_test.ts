/**
 * The example notebook (examples/post_training.ipynb) runs: its code cells,
 * in order, with smaller sizes in place of its `parameters` cell, are
 * type-checked against the library and run; the notebook's own assertions
 * (weights unchanged by post-training, exported accuracy equal to the gated
 * accuracy) run with them, and its results are checked here.
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

Deno.test("the post-training notebook type-checks and runs (small sizes)", async () => {
  const source = notebookModule(
    [
      "const mnistImages = 1_024;",
      "const floatEpochs = 1;",
      "const calibrationImages = 1_024;",
      "const postTrainingEpochs = 10;",
      "const threads = 2;",
    ].join("\n"),
    ["accuracy", "exportedAccuracy", "floatAccuracy", "report", "run"],
  );
  assert.ok(!source.includes('"@bbits/core'), "every import is rewritten");
  const dir = await Deno.makeTempDir({ prefix: "bbits-notebook-" });
  try {
    const file = `${dir}/post_training.ts`;
    await Deno.writeTextFile(file, source);
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
    const result = await import(new URL(`file://${file}`).href) as {
      accuracy: number;
      exportedAccuracy: number;
      floatAccuracy: number;
      report: {
        relativeGbops: number;
        layers: readonly { name: string }[];
        history: readonly unknown[];
      };
      run: { epoch: number; phase: string };
    };
    assert.equal(result.run.phase, "post-training");
    assert.equal(result.run.epoch, 10);
    assert.equal(result.report.history.length, 10);
    assert.deepEqual(
      result.report.layers.map((l) => l.name),
      ["conv1", "conv2", "fc1", "fc2"],
    );
    assert.equal(result.exportedAccuracy, result.accuracy);
    // Even one float epoch on 1,024 images learns something (chance: 10 %).
    assert.ok(result.floatAccuracy > 0.5, `float ${result.floatAccuracy}`);
    assert.ok(result.accuracy > 0.5, `post-trained ${result.accuracy}`);
    // 80 steps at the notebook's logit learning rate move gates below 8 bits.
    assert.ok(
      result.report.relativeGbops > 0 && result.report.relativeGbops < 6.25,
      `relative GBOPs ${result.report.relativeGbops}`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
