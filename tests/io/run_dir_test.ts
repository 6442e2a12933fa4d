import assert from "node:assert/strict";
import { errorNaming, isAtomicTemp, writeFileAtomic } from "../../io/atomic.ts";
import {
  checkOutputPath,
  LOCK_NAME,
  RunDirectory,
  RunDirectoryLockedError,
  SET_ASIDE_PREFIX,
} from "../../io/run_dir.ts";
import { listDir, withTempDir } from "../_io_fixtures.ts";

/** Opens `path` for `command`, collecting the notices. */
async function openNoting(path: string, command = "test") {
  const notices: string[] = [];
  const dir = await RunDirectory.open(path, {
    command,
    notice: (line) => notices.push(line),
  });
  return { dir, notices };
}

/** The PID of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["--version"],
    stdout: "null",
  }).spawn();
  await child.status;
  return child.pid;
}

/** Writes a lock file as another process would have. */
async function writeLockFile(dir: string, holder: object): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/${LOCK_NAME}`, JSON.stringify(holder));
}

Deno.test("RunDirectory.open() makes the directory and a lock naming this process; a second open is refused naming the holder; close releases it", async () => {
  await withTempDir(async (root) => {
    const path = `${root}/a/b/run`;
    const { dir, notices } = await openNoting(path, "train");
    assert.deepEqual(await listDir(path), [LOCK_NAME]);
    const lock = JSON.parse(await Deno.readTextFile(dir.lockPath));
    assert.equal(lock.pid, Deno.pid);
    assert.equal(lock.command, "train");
    assert.ok(!Number.isNaN(Date.parse(lock.since)), lock.since);
    assert.deepEqual(Object.keys(lock), ["pid", "since", "command"]);
    const refused = await RunDirectory.open(path, { command: "float" })
      .catch((e) => e);
    assert.ok(refused instanceof RunDirectoryLockedError, String(refused));
    assert.equal(
      refused.message,
      `--out ${path} is held by train (process ${Deno.pid}, since ${lock.since}): wait for it to finish, or choose another --out`,
    );
    assert.deepEqual(refused.holder, lock);
    await dir.close();
    await dir.close(); // twice is harmless
    // Released: the lock is gone, and so are the empty folders open made.
    assert.deepEqual(await listDir(root), []);
    assert.deepEqual(notices, []);
  });
});

Deno.test("a lock file nobody has locked is stale whatever PID it names (a dead one, a live one, none) and is reported and taken over", async () => {
  await withTempDir(async (root) => {
    const since = "2026-01-01T00:00:00.000Z";
    const dead = await deadPid();
    const cases: [object | string, RegExp][] = [
      [
        { pid: dead, since, command: "train" },
        new RegExp(
          `^Taking over the stale lock of .*: train \\(process ${dead}, since ${since}\\) is no longer running$`,
        ),
      ],
      // This PID is alive (a reused PID), but it does not hold the lock.
      [
        { pid: Deno.pid, since, command: "float" },
        /float \(process \d+, since .*\) is no longer running/,
      ],
      ["", /^Removing the unreadable lock .*\.bbits\.lock/],
    ];
    for (const [holder, notice] of cases) {
      const path = `${root}/run`;
      if (typeof holder === "string") {
        await Deno.mkdir(path, { recursive: true });
        await Deno.writeTextFile(`${path}/${LOCK_NAME}`, holder);
      } else {
        await writeLockFile(path, holder);
      }
      await Deno.writeTextFile(`${path}/kept.txt`, "x");
      const { dir, notices } = await openNoting(path);
      assert.equal(notices.length, 1, notices.join("\n"));
      assert.match(notices[0], notice);
      assert.equal(
        JSON.parse(await Deno.readTextFile(dir.lockPath)).pid,
        Deno.pid,
      );
      await dir.close();
      assert.deepEqual(await listDir(path), ["kept.txt"]);
    }
  });
});

Deno.test("temporary files of a killed atomic write are removed at the next open; other files stay", async () => {
  await withTempDir(async (root) => {
    const uuid = "0b8e2f7c-3d4a-4c1e-9f00-123456789abc";
    const leftovers = [
      `checkpoint.safetensors.tmp-${uuid}`,
      `report.json.tmp-${crypto.randomUUID()}`,
    ];
    const kept = ["notes.tmp", `x.tmp-${uuid.slice(1)}`, "report.json"];
    await Deno.mkdir(root, { recursive: true });
    for (const name of [...leftovers, ...kept]) {
      await Deno.writeTextFile(`${root}/${name}`, "12345");
    }
    assert.ok(leftovers.every(isAtomicTemp));
    assert.ok(!kept.some(isAtomicTemp));
    const { dir, notices } = await openNoting(root);
    assert.deepEqual(notices, [
      `Removed 2 temporary file(s) (10 bytes) left in ${root} by an interrupted write`,
    ]);
    await dir.close();
    assert.deepEqual(await listDir(root), kept.sort());
  });
});

Deno.test("setAside() moves a run aside, commit() deletes it, and closing before the commit moves it back", async () => {
  await withTempDir(async (root) => {
    const files = { "checkpoint.safetensors": "old ckpt", "report.md": "old" };
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${root}/${name}`, text);
    }
    await Deno.writeTextFile(`${root}/mine.txt`, "not a run file");
    const names = ["checkpoint.safetensors", "report.json", "report.md"];
    // Closed before the commit: the earlier run comes back, byte for byte.
    const first = await openNoting(root);
    assert.equal(await first.dir.setAside(names), true);
    const listed = await listDir(root);
    const aside = listed.find((n) => n.startsWith(SET_ASIDE_PREFIX));
    assert.ok(aside, listed.join());
    assert.deepEqual(await listDir(`${root}/${aside}`), [
      "checkpoint.safetensors",
      "report.md",
    ]);
    await first.dir.close();
    assert.match(first.notices.at(-1)!, /^Restored the earlier run of /);
    assert.deepEqual(await listDir(root), [
      "checkpoint.safetensors",
      "mine.txt",
      "report.md",
    ]);
    for (const [name, text] of Object.entries(files)) {
      assert.equal(await Deno.readTextFile(`${root}/${name}`), text, name);
    }
    // Committed: the earlier run is gone, other files stay.
    const second = await openNoting(root);
    await second.dir.setAside(names);
    await Deno.writeTextFile(`${root}/checkpoint.safetensors`, "new ckpt");
    await second.dir.commit();
    await second.dir.close();
    assert.deepEqual(await listDir(root), [
      "checkpoint.safetensors",
      "mine.txt",
    ]);
    assert.equal(
      await Deno.readTextFile(`${root}/checkpoint.safetensors`),
      "new ckpt",
    );
    // Nothing to set aside.
    const third = await openNoting(root);
    assert.equal(await third.dir.setAside(["report.json"]), false);
    await third.dir.close();
  });
});

Deno.test("a run set aside by a killed --replace comes back at the next open, unless newer files of its names are there", async () => {
  await withTempDir(async (root) => {
    const since = "2026-01-01T00:00:00.000Z";
    const holder = { pid: await deadPid(), since };
    const folder = `${root}/${SET_ASIDE_PREFIX}2026-01-01T00-00-00.000Z`;
    await Deno.mkdir(folder, { recursive: true });
    await Deno.writeTextFile(`${folder}/checkpoint.safetensors`, "old");
    await writeLockFile(root, { ...holder, command: "train" });
    const first = await openNoting(root);
    await first.dir.close();
    assert.equal(first.notices.length, 2, first.notices.join("\n"));
    assert.match(first.notices[1], /^Restored the run in .* \(checkpoint/);
    assert.deepEqual(await listDir(root), ["checkpoint.safetensors"]);
    assert.equal(
      await Deno.readTextFile(`${root}/checkpoint.safetensors`),
      "old",
    );
    // Newer files of the same name: both are kept, and the user is told.
    await Deno.mkdir(folder);
    await Deno.writeTextFile(`${folder}/checkpoint.safetensors`, "older");
    const second = await openNoting(root);
    await second.dir.close();
    assert.match(
      second.notices.join("\n"),
      /holds a run set aside by an interrupted --replace, and .* has newer checkpoint\.safetensors: left as it is/,
    );
    assert.equal(
      await Deno.readTextFile(`${root}/checkpoint.safetensors`),
      "old",
    );
    assert.equal(
      await Deno.readTextFile(`${folder}/checkpoint.safetensors`),
      "older",
    );
  });
});

Deno.test("checkOutputPath() refuses a file and a path below a file, creating nothing; open() names a folder it cannot make", async () => {
  await withTempDir(async (root) => {
    await Deno.writeTextFile(`${root}/file`, "x");
    await checkOutputPath("--out", `${root}/new/deeper`);
    await checkOutputPath("--out", root);
    await assert.rejects(
      checkOutputPath("--out", `${root}/file`),
      new RegExp(`^RangeError: --out ${root}/file is not a directory$`),
    );
    await assert.rejects(
      checkOutputPath("--out", `${root}/file/run/x`),
      new RegExp(
        `--out ${root}/file/run/x cannot be created: "${root}/file" is not a directory`,
      ),
    );
    await assert.rejects(
      RunDirectory.open(`${root}/file/run`, { command: "t" }),
      /cannot be created: ".*\/file" is not a directory/,
    );
    assert.deepEqual(await listDir(root), ["file"]);
  });
});

Deno.test("writeFileAtomic() errors name the path and keep their class; errorNaming() does not name twice", async () => {
  await withTempDir(async (root) => {
    const error = await writeFileAtomic(`${root}/none/a.txt`, "x").catch((
      e,
    ) => e);
    assert.ok(error instanceof Deno.errors.NotFound, String(error));
    assert.ok(
      error.message.startsWith(`Cannot write "${root}/none/a.txt": `),
      error.message,
    );
    assert.equal(
      errorNaming(error, `Cannot write "${root}/none/a.txt"`),
      error,
    );
    assert.equal(errorNaming("text", "Doing x").message, "Doing x: text");
    assert.deepEqual(await listDir(root), []);
  });
});

/** The module under test, for a child process to import. */
const RUN_DIR_MODULE = new URL("../../io/run_dir.ts", import.meta.url).href;

/**
 * A child process that holds `path` (command "other") until it is
 * signalled; resolved once it holds it.
 */
async function holdInChild(path: string) {
  const code = [
    `import { RunDirectory } from "${RUN_DIR_MODULE}";`,
    'await RunDirectory.open(Deno.args[0], { command: "other" });',
    'console.log("held");',
    "for await (const _ of Deno.stdin.readable) break;",
  ].join("\n");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", code, path],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  const first = new TextDecoder().decode((await reader.read()).value);
  assert.equal(first, "held\n");
  return { child, reader };
}

/** Waits for a child of {@link holdInChild} to end; returns its status and stderr. */
async function ended(
  { child, reader }: Awaited<ReturnType<typeof holdInChild>>,
) {
  const status = await child.status;
  reader.releaseLock();
  await child.stdout.cancel();
  await child.stdin.close().catch(() => {});
  const stderr = await new Response(child.stderr).text();
  return { status, stderr };
}

Deno.test("SIGTERM and SIGHUP release a held directory before the process exits (143, 129)", async () => {
  await withTempDir(async (root) => {
    for (const [signal, code] of [["SIGTERM", 143], ["SIGHUP", 129]] as const) {
      const held = await holdInChild(`${root}/run`);
      held.child.kill(signal);
      const { status, stderr } = await ended(held);
      assert.equal(status.code, code, `${signal}: ${stderr}`);
      assert.match(stderr, new RegExp(`Interrupted \\(${signal}\\)`));
      // Released, and the folder it made (left empty) removed.
      assert.deepEqual(await listDir(root), [], signal);
    }
  });
});

Deno.test("a lock held by another process refuses the directory, naming its holder, until that process ends in any way", async () => {
  await withTempDir(async (root) => {
    const { child, reader } = await holdInChild(`${root}/run`);
    const refused = await RunDirectory.open(`${root}/run`, { command: "me" })
      .catch((e) => e);
    assert.ok(refused instanceof RunDirectoryLockedError, String(refused));
    assert.match(
      refused.message,
      new RegExp(`is held by other \\(process ${child.pid}, since .*\\): wait`),
    );
    // Killed: no release ran, the file stays, but its lock went with it.
    child.kill("SIGKILL");
    await ended({ child, reader });
    assert.deepEqual(await listDir(`${root}/run`), [LOCK_NAME]);
    const { dir, notices } = await openNoting(`${root}/run`);
    assert.match(notices[0], new RegExp(`other \\(process ${child.pid},`));
    await dir.close();
  });
});
