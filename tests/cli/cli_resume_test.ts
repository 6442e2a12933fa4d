import assert from "node:assert/strict";
import { exportCommand } from "../../cli/export.ts";
import { trainCommand } from "../../cli/train.ts";
import { loadCheckpoint, saveCheckpoint } from "../../io/checkpoint.ts";
import { attempt, quietly, ROOT } from "./_helpers.ts";
import { listDir, withTempDir } from "../_io_fixtures.ts";

/** A checkpoint's JSON state, loosely typed for editing. */
// deno-lint-ignore no-explicit-any
type State = any;

/**
 * Edits of a finished run's checkpoint (1 Bayesian Bits epoch, then 1
 * fixed-gate epoch), each with the message that must refuse it: the
 * checksum is recomputed, as an editor would.
 */
const EDITS: [string, (s: State) => void, RegExp][] = [
  [
    "mu null",
    (s) => (s.run.config.mu = null),
    /run\.config: mu must be a finite number >= 0, got null/,
  ],
  ["mu missing", (s) => delete s.run.config.mu, /run\.config\.mu is missing/],
  [
    "mu a string",
    (s) => (s.run.config.mu = "0.1"),
    /run\.config: mu must be .*, got the string "0\.1"/,
  ],
  [
    "lrWeights negative",
    (s) => (s.run.config.lrWeights = -1),
    /run\.config: lrWeights must be a finite number >= 0, got -1/,
  ],
  [
    "an unknown key",
    (s) => (s.run.config.constructor = 1),
    /run\.config: unknown option "constructor"/,
  ],
  [
    "an unknown model",
    (s) => (s.run.config.model = "alexnet"),
    /run\.config: model must be lenet5, vgg7/,
  ],
  [
    "no recipe",
    (s) => delete s.run.config,
    /: run\.config is missing or not an object/,
  ],
  ["no run record", (s) => delete s.run, /: run is missing or not an object/],
  [
    "no earlier history",
    (s) => delete s.run.earlierHistory,
    /run\.earlierHistory: history is missing/,
  ],
  [
    "earlier history short",
    (s) => (s.run.earlierHistory = []),
    /run\.earlierHistory has 0 entries, expected 1/,
  ],
  ["no history", (s) => delete s.history, /history is missing/],
  [
    "history short",
    (s) => (s.history = []),
    /state\.history must hold one entry per completed epoch \(1\), got 0/,
  ],
  [
    "epoch beyond epochs",
    (s) => (s.epoch = 5),
    /state\.epoch must be at most state\.epochs \(1\), got 5/,
  ],
  [
    "epoch not an integer",
    (s) => (s.epoch = "1"),
    /state\.epoch must be an integer >= 0, got string "1"/,
  ],
  [
    "epochs not the recipe's",
    (s) => (s.epochs = 3),
    /: epochs is 3, but its recipe gives the fixed-gates phase 1/,
  ],
  [
    "a phase the recipe lacks",
    (s) => (s.run.config.fineTuneEpochs = 0),
    /: phase "fixed-gates" is not a phase of its recipe \(bayesian-bits\)/,
  ],
  [
    "wall seconds negative",
    (s) => (s.run.wallSeconds = -1),
    /run\.wallSeconds must be a finite number >= 0, got -1/,
  ],
  [
    "threads beyond 64",
    (s) => (s.run.threads = 65),
    /run\.threads must be a positive integer <= 64, got 65/,
  ],
];

Deno.test("--resume and export check an edited checkpoint's recipe as a fresh run's, and its epochs and history against it, naming the field", async () => {
  await withTempDir(async (dir) => {
    const run = `${dir}/run`;
    const recipe = [
      ...["--limit", "32", "--batch-size", "16", "--threads", "1"],
      ...["--epochs", "1", "--fine-tune-epochs", "1", "--out", run],
    ];
    assert.equal((await quietly(() => trainCommand(recipe))).value, 0);
    const { tensors, state } = await loadCheckpoint(
      `${run}/checkpoint.safetensors`,
    );
    for (const [name, edit, message] of EDITS) {
      const edited = structuredClone(state);
      edit(edited);
      const out = `${dir}/${name.replaceAll(" ", "-")}`;
      await Deno.mkdir(out);
      const path = `${out}/checkpoint.safetensors`;
      await saveCheckpoint(path, { tensors, state: edited });
      const bytes = await Deno.readFile(path);
      const resumed = await attempt(() =>
        trainCommand(["--resume", "--threads", "1", "--out", out])
      );
      assert.match(String(resumed.error?.message), message, name);
      assert.ok(resumed.error?.message.includes(path), name);
      assert.doesNotMatch(resumed.err, /Resuming|epoch/, name);
      assert.deepEqual(await Deno.readFile(path), bytes, name);
      assert.deepEqual(await listDir(out), ["checkpoint.safetensors"], name);
      const exported = await attempt(() =>
        exportCommand(["--from", out, "--out", `${out}/q.safetensors`])
      );
      assert.match(String(exported.error?.message), message, `export: ${name}`);
    }
  });
});

/** The permission flags of a `deno task` command line. */
function permissionFlags(task: string): string[] {
  return task.split(/\s+/).filter((word) => /^(-A|--allow-)/.test(word));
}

Deno.test("the CLI's deno tasks ask for read and write only (the tests add run), and train, float and export work under them", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("deno.json", ROOT)),
  );
  for (const task of ["train", "float", "export", "demo"]) {
    assert.deepEqual(
      permissionFlags(config.tasks[task]),
      ["--allow-read", "--allow-write"],
      task,
    );
  }
  // Only the tests spawn processes (the CLI, Jupyter, a private tmpfs),
  // listen (on 127.0.0.1, serving the library as a registry would) and load
  // ONNX Runtime's native binding (the export's oracle); the sweep spawns
  // its points.
  assert.deepEqual(permissionFlags(config.tasks.test), [
    "--allow-read",
    "--allow-write",
    "--allow-run",
    "--allow-net=127.0.0.1",
    "--allow-ffi",
  ]);
  assert.deepEqual(permissionFlags(config.tasks.sweep), [
    "--allow-read",
    "--allow-write",
    "--allow-run",
  ]);
  await withTempDir(async (dir) => {
    const tiny = ["--limit", "16", "--batch-size", "8", "--threads", "2"];
    const commands = [
      ["float", ...tiny, "--out", `${dir}/float`],
      ["train", ...tiny, "--epochs", "1", "--out", `${dir}/run`],
      [
        "export",
        "--from",
        `${dir}/run`,
        "--out",
        `${dir}/q.safetensors`,
        "--evaluate",
        "--threads",
        "2",
      ],
    ];
    for (const [task, ...args] of commands) {
      const run = await new Deno.Command(Deno.execPath(), {
        args: ["task", "--quiet", task, "--", ...args],
        cwd: ROOT,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(run.stderr);
      assert.equal(run.code, 0, `deno task ${task}: ${stderr}`);
      assert.doesNotMatch(stderr, /NotCapable|Requires .* access/, task);
    }
    assert.deepEqual(await listDir(dir), ["float", "q.safetensors", "run"]);
  });
});
