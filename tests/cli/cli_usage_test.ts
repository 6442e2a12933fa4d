import assert from "node:assert/strict";
import {
  gitCommit,
  suggestFlag,
  UsageError,
  usageStage,
} from "../../cli/usage.ts";
import { VERSION } from "../../core/version.ts";

const ROOT = new URL("../../", import.meta.url);

/** Runs the CLI as a process under the tasks' permissions. */
async function cli(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "cli/main.ts", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, out: text(out.stdout), err: text(out.stderr) };
}

Deno.test("suggestFlag finds the flag a person meant", () => {
  const known = ["epochs", "fine-tune-epochs", "mu", "lr-logits", "out"];
  assert.equal(suggestFlag("--fine-tune-epoch", known), "--fine-tune-epochs");
  assert.equal(suggestFlag("--epoch", known), "--epochs");
  assert.equal(suggestFlag("--lr-logit=0.1", known), "--lr-logits");
  assert.equal(suggestFlag("--mx", known), "--mu");
  assert.equal(suggestFlag("--completely-else", known), null);
});

Deno.test("usage errors exit with 2 and name the nearest flag; failures exit with 1", async () => {
  const misspelt = await cli("train", "--fine-tune-epoch", "1");
  assert.equal(misspelt.code, 2);
  assert.match(
    misspelt.err,
    /Unknown option '--fine-tune-epoch' \(did you mean --fine-tune-epochs\?\)/,
  );
  const value = await cli("float", "--epochs", "0");
  assert.equal(value.code, 2);
  assert.match(value.err, /--epochs must be a positive integer, got "0"/);
  assert.equal((await cli("export")).code, 2);
  assert.equal((await cli("nonsense")).code, 2);
  const dir = await Deno.makeTempDir();
  try {
    const failure = await cli(
      "train",
      "--from",
      `${dir}/missing.safetensors`,
      "--out",
      `${dir}/run`,
    );
    assert.equal(failure.code, 1, failure.err);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  await assert.rejects(
    () =>
      usageStage(() => {
        throw new TypeError("bad");
      }),
    (e) =>
      e instanceof UsageError && e instanceof RangeError && e.message === "bad",
  );
});

Deno.test("--version prints the library's version, the one deno.json publishes", async () => {
  const config = JSON.parse(
    await Deno.readTextFile(new URL("deno.json", ROOT)),
  );
  assert.equal(VERSION, config.version);
  for (
    const args of [["--version"], ["train", "--", "--version"], [
      "float",
      "--version",
    ]]
  ) {
    const r = await cli(...args);
    assert.equal(r.code, 0);
    assert.equal(
      r.out.trim(),
      `@bbits/core ${VERSION} (deno ${Deno.version.deno})`,
    );
  }
});

Deno.test("gitCommit reads HEAD through a ref, packed refs and a worktree's .git file", async () => {
  const dir = await Deno.makeTempDir();
  const sha = (c: string) => c.repeat(40);
  try {
    const root = new URL(`file://${dir}/repo/`);
    await Deno.mkdir(`${dir}/repo/.git/refs/heads`, { recursive: true });
    await Deno.writeTextFile(`${dir}/repo/.git/HEAD`, "ref: refs/heads/main\n");
    await Deno.writeTextFile(
      `${dir}/repo/.git/refs/heads/main`,
      `${sha("a")}\n`,
    );
    assert.equal(await gitCommit(root), sha("a"));
    await Deno.remove(`${dir}/repo/.git/refs/heads/main`);
    await Deno.writeTextFile(
      `${dir}/repo/.git/packed-refs`,
      `# pack-refs\n${sha("b")} refs/heads/other\n${
        sha("c")
      } refs/heads/main\n`,
    );
    assert.equal(await gitCommit(root), sha("c"));
    // A worktree: .git is a file naming its git dir, which names the common one.
    await Deno.mkdir(`${dir}/repo/.git/worktrees/wt`, { recursive: true });
    await Deno.writeTextFile(
      `${dir}/repo/.git/worktrees/wt/HEAD`,
      "ref: refs/heads/main\n",
    );
    await Deno.writeTextFile(
      `${dir}/repo/.git/worktrees/wt/commondir`,
      "../..\n",
    );
    await Deno.mkdir(`${dir}/wt`);
    await Deno.writeTextFile(
      `${dir}/wt/.git`,
      `gitdir: ${dir}/repo/.git/worktrees/wt\n`,
    );
    assert.equal(await gitCommit(new URL(`file://${dir}/wt/`)), sha("c"));
    await Deno.writeTextFile(`${dir}/repo/.git/HEAD`, `${sha("d")}\n`);
    assert.equal(await gitCommit(root), sha("d"));
    assert.equal(await gitCommit(new URL(`file://${dir}/nowhere/`)), null);
    assert.equal(await gitCommit(new URL("https://example.com/x/")), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
