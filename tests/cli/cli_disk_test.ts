import assert from "node:assert/strict";
import { main } from "../../cli/main.ts";
import { loadSnapshot } from "../../io/snapshot.ts";
import { attempt, ROOT } from "./_helpers.ts";
import { listDir, withTempDir } from "../_io_fixtures.ts";

/**
 * Null if a private tmpfs can be mounted here (in a new user and mount
 * namespace: `unshare -rm`, no root needed where the kernel allows it),
 * else why not.
 */
async function tmpfsUnavailable(): Promise<string | null> {
  const dir = await Deno.makeTempDir();
  try {
    const probe = await new Deno.Command("unshare", {
      args: ["-rm", "sh", "-c", 'mount -t tmpfs -o size=16k tmpfs "$0"', dir],
      stdout: "null",
      stderr: "piped",
    }).output();
    const why = new TextDecoder().decode(probe.stderr).trim().split("\n")[0];
    return probe.success ? null : `unshare -rm cannot mount a tmpfs: ${why}`;
  } catch (error) {
    return `no unshare command: ${(error as Error).message}`;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Why a private tmpfs cannot be mounted here, or null. */
const NO_TMPFS = await tmpfsUnavailable();

/**
 * Runs the CLI inside a new mount namespace on a tmpfs mounted (with
 * `options`) at `mount`; then, if `copy` is given, copies what the tmpfs
 * holds there (`cp -a`, hidden files included), as the tmpfs vanishes with
 * the namespace.
 */
async function cliOnTmpfs(
  options: string,
  mount: string,
  copy: string,
  args: string[],
): Promise<{ code: number; stderr: string }> {
  const script = [
    'mount -t tmpfs -o "$1" tmpfs "$2" || exit 99',
    'deno="$0"; mnt="$2"; copy="$3"; shift 3',
    '"$deno" run --no-check --allow-read --allow-write cli/main.ts "$@"',
    "s=$?",
    'if [ -n "$copy" ]; then cp -a "$mnt/." "$copy/"; fi',
    "exit $s",
  ].join("\n");
  const run = await new Deno.Command("unshare", {
    args: [
      "-rm",
      "sh",
      "-c",
      script,
      Deno.execPath(),
      options,
      mount,
      copy,
      ...args,
    ],
    cwd: ROOT,
    stdout: "null",
    stderr: "piped",
  }).output();
  return { code: run.code, stderr: new TextDecoder().decode(run.stderr) };
}

/** Float flags that would train for a while if the output were not checked first. */
const FLOAT = ["float", "--limit", "256", "--epochs", "3", "--threads", "1"];

Deno.test("float --out that cannot be a directory fails before any training, creating nothing", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "x");
    const cases: [string, RegExp][] = [
      [`${dir}/file`, /^--out .*\/file is not a directory$/],
      [
        `${dir}/file/run`,
        /^--out .*\/file\/run cannot be created: ".*\/file" is not a directory$/,
      ],
    ];
    for (const [out, message] of cases) {
      const run = await attempt(() => main([...FLOAT, "--out", out]));
      assert.match(String(run.error?.message), message, out);
      assert.equal(run.err + run.out, "", "nothing trained, nothing printed");
    }
    assert.deepEqual(await listDir(dir), ["file"]);
  });
});

Deno.test({
  name: `float --out on a read-only file system fails before any training${
    NO_TMPFS ? ` (not run here: ${NO_TMPFS})` : ""
  }`,
  ignore: NO_TMPFS !== null,
  fn: async () => {
    await withTempDir(async (dir) => {
      const run = await cliOnTmpfs("ro,size=64k", dir, "", [
        ...FLOAT,
        ...["--out", `${dir}/run`],
      ]);
      assert.equal(run.code, 1, run.stderr);
      assert.match(
        run.stderr,
        new RegExp(
          `^error: Cannot create --out ${dir}/run: .*Read-only file system`,
        ),
      );
      assert.doesNotMatch(run.stderr, /float training|epoch/);
    });
  },
});

Deno.test({
  name:
    `train on a full disk fails naming the file it could not write, keeping the last checkpoint and leaving no temporary file or lock${
      NO_TMPFS ? ` (not run here: ${NO_TMPFS})` : ""
    }`,
  ignore: NO_TMPFS !== null,
  fn: async () => {
    await withTempDir(async (dir) => {
      const [mount, copy] = [`${dir}/tmpfs`, `${dir}/copy`];
      await Deno.mkdir(mount);
      await Deno.mkdir(copy);
      // 10 MiB: the first 7 MB checkpoint fits, a second beside it does not.
      const run = await cliOnTmpfs("size=10m", mount, copy, [
        ...["train", "--limit", "64", "--batch-size", "16", "--threads", "1"],
        ...["--epochs", "2", "--out", `${mount}/run`],
      ]);
      assert.equal(run.code, 1, run.stderr);
      assert.match(
        run.stderr,
        new RegExp(
          `\\nerror: Cannot write "${mount}/run/checkpoint\\.safetensors": No space left on device`,
        ),
      );
      assert.match(run.stderr, /\[bayesian-bits\] epoch 1\/2: test/);
      assert.deepEqual(await listDir(`${copy}/run`), [
        "checkpoint.safetensors",
        "report.json",
        "report.md",
      ]);
      const { snapshot } = await loadSnapshot(
        `${copy}/run/checkpoint.safetensors`,
      );
      assert.equal(snapshot.epoch, 1);
    });
  },
});
