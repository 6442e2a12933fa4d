/**
 * Run directories: the folder a command of the command line writes into
 * (`train --out DIR`, `float --out DIR`, the folder of `export --out FILE`),
 * held by one process at a time, so that nothing a user finished is lost.
 *
 * - **Lock.** {@link RunDirectory.open} creates `DIR/.bbits.lock` with
 *   `createNew` (atomic: of two processes one wins), holding the holder's
 *   PID, the command and the time it took the lock, and keeps the file
 *   open under an exclusive advisory lock (`flock`) for as long as it holds
 *   the directory. The kernel drops that lock when the process ends in any
 *   way, `kill -9` included, so a lock file nobody has locked is stale
 *   whatever its PID says (a reused PID cannot fool it, and no process
 *   table is read: Deno grants `/proc` only with `--allow-all`). A second
 *   process is refused with a message naming the holder; a stale lock is
 *   reported and taken over. Checking and taking a lock happen under a
 *   short `flock` of the directory itself, so two processes cannot both
 *   take over one stale lock, nor judge a lock file being created.
 * - **Release.** {@link RunDirectory.close} (also `await using`) removes
 *   the lock, on success and on errors; SIGINT, SIGTERM and SIGHUP (a
 *   closed terminal) release every open directory before the process exits
 *   (130, 143, 129). `kill -9` cannot
 *   be caught: its lock file stays, unlocked, and is taken over at the next
 *   start.
 * - **Replacing a run.** {@link RunDirectory.setAside} moves the earlier
 *   run's files into `DIR/.replaced-<time>/`; {@link RunDirectory.commit}
 *   (after the new run's first checkpoint) deletes them; closing before the
 *   commit moves them back. A set-aside run found at the next start (the
 *   process was killed) is moved back too, unless newer files of the same
 *   names are there (then it is left, and reported).
 * - **Leftovers.** The temporary files of a killed atomic write
 *   (`*.tmp-<uuid>`, see `io/atomic.ts`) are removed at the next start.
 * - **Writability.** Opening creates the directory and the lock file, so a
 *   directory that cannot be written fails there, before any work; and
 *   {@link checkOutputPath} refuses a path that cannot be a directory
 *   before anything is loaded.
 *
 * Needs `--allow-read` and `--allow-write`.
 *
 * @module
 */

import { errorNaming, isAtomicTemp } from "./atomic.ts";

/** The lock file's name in a run directory. */
export const LOCK_NAME = ".bbits.lock";

/** The prefix of the folder an earlier run is set aside in by `--replace`. */
export const SET_ASIDE_PREFIX = ".replaced-";

/** What a lock file holds. */
export interface LockHolder {
  /** The holder's process id. */
  readonly pid: number;
  /** When the holder took the lock (ISO 8601). */
  readonly since: string;
  /** The command holding it (`train`). */
  readonly command: string;
}

/** Options of {@link RunDirectory.open}. */
export interface RunDirectoryOptions {
  /** The command that writes there, named to others (`train`). */
  readonly command: string;
  /** The flag that names the directory, for messages (`--out`). */
  readonly flag?: string;
  /** Where notices go (a lock taken over, leftovers removed): stderr unless given. */
  readonly notice?: (line: string) => void;
}

/** Thrown when a live process holds a run directory's lock. */
export class RunDirectoryLockedError extends Error {
  /** The lock's holder, or null if its lock file could not be read. */
  readonly holder: LockHolder | null;

  /**
   * @param message The message.
   * @param holder The lock's holder, if known.
   */
  constructor(message: string, holder: LockHolder | null) {
    super(message);
    this.name = "RunDirectoryLockedError";
    this.holder = holder;
  }
}

/**
 * Throws unless `path` is a directory or could be made one: it must not be
 * a file, nor lie below one. Creates nothing; whether the directory can be
 * written is known when {@link RunDirectory.open} makes its lock file.
 *
 * @param flag The flag naming the path, for the message (`--out`).
 * @param path The directory.
 * @throws {RangeError} If `path` or one of its ancestors is not a directory.
 */
export async function checkOutputPath(
  flag: string,
  path: string,
): Promise<void> {
  let at = path;
  for (;;) {
    const info = await Deno.stat(at).catch((error) => {
      if (error instanceof Deno.errors.NotFound) return null;
      if (error instanceof Deno.errors.NotADirectory) return "below a file";
      throw errorNaming(error, `${flag} ${path}: cannot examine "${at}"`);
    });
    if (info !== null && info !== "below a file") {
      if (info.isDirectory) return;
      throw new RangeError(
        at === path
          ? `${flag} ${path} is not a directory`
          : `${flag} ${path} cannot be created: "${at}" is not a directory`,
      );
    }
    const parent = parentOf(at);
    if (parent === at) return;
    at = parent;
  }
}

/** The parent of a path (`.` for a bare name, `/` for `/`). */
function parentOf(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  if (trimmed === "") return "/";
  const cut = trimmed.lastIndexOf("/");
  return cut < 0 ? "." : cut === 0 ? "/" : trimmed.slice(0, cut);
}

/** Every directory held by this process, released on SIGINT, SIGTERM and SIGHUP. */
const held = new Set<RunDirectory>();

/** The signals that release the held directories, with their exit codes. */
const SIGNALS: readonly [Deno.Signal, number][] = Deno.build.os === "windows"
  ? [["SIGINT", 130]]
  : [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]];

/** The installed signal handlers (none while nothing is held). */
const handlers: [Deno.Signal, () => void][] = [];

/** Starts or stops listening for signals as directories are held. */
function updateSignalHandlers(): void {
  if (held.size > 0 && handlers.length === 0) {
    for (const [signal, code] of SIGNALS) {
      const handler = () => {
        for (const dir of [...held]) dir.releaseSync();
        console.error(`Interrupted (${signal}): run directories released`);
        Deno.exit(code);
      };
      Deno.addSignalListener(signal, handler);
      handlers.push([signal, handler]);
    }
  } else if (held.size === 0) {
    for (const [signal, handler] of handlers.splice(0)) {
      Deno.removeSignalListener(signal, handler);
    }
  }
}

/**
 * A directory held for writing by this process: see the module's text.
 *
 * @example
 * ```ts
 * import { RunDirectory } from "./run_dir.ts";
 * import assert from "node:assert/strict";
 *
 * const root = await Deno.makeTempDir();
 * {
 *   await using dir = await RunDirectory.open(`${root}/run`, { command: "example" });
 *   await Deno.writeTextFile(`${dir.path}/result.txt`, "done");
 *   await assert.rejects(
 *     RunDirectory.open(`${root}/run`, { command: "second" }),
 *     /held by example \(process \d+/,
 *   );
 * }
 * assert.deepEqual([...Deno.readDirSync(`${root}/run`)].map((e) => e.name), ["result.txt"]);
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export class RunDirectory implements AsyncDisposable {
  /** The directory. */
  readonly path: string;
  /** Its lock file. */
  readonly lockPath: string;
  readonly #holder: LockHolder;
  readonly #created: string[];
  readonly #notice: (line: string) => void;
  /** The lock file, open and locked while the directory is held. */
  #lockFile: Deno.FsFile | null = null;
  /** The folder an earlier run is set aside in, and the names moved there. */
  #aside: { readonly folder: string; readonly names: string[] } | null = null;
  #open = true;

  private constructor(
    path: string,
    holder: LockHolder,
    created: string[],
    notice: (line: string) => void,
  ) {
    this.path = path;
    this.lockPath = `${path}/${LOCK_NAME}`;
    this.#holder = holder;
    this.#created = created;
    this.#notice = notice;
  }

  /**
   * Creates the directory (and its parents) if needed and takes its lock;
   * then removes the temporary files of killed writes and moves back a run
   * that an interrupted `--replace` set aside.
   *
   * @param path The directory.
   * @param options The command, the flag and where notices go.
   * @returns The held directory; close it (or `await using`) to release.
   * @throws {RunDirectoryLockedError} If a running process holds the lock.
   * @throws {Error} If the directory cannot be made or written, naming it.
   */
  static async open(
    path: string,
    options: RunDirectoryOptions,
  ): Promise<RunDirectory> {
    const flag = options.flag ?? "--out";
    const notice = options.notice ?? ((line: string) => console.error(line));
    await checkOutputPath(flag, path);
    const created = await makeDirectories(path, flag);
    const holder: LockHolder = {
      pid: Deno.pid,
      since: new Date().toISOString(),
      command: options.command,
    };
    const dir = new RunDirectory(path, holder, created, notice);
    try {
      await withDirectoryGuard(path, () => dir.#acquire(flag));
    } catch (error) {
      dir.#removeCreated();
      throw error;
    }
    held.add(dir);
    updateSignalHandlers();
    try {
      await dir.#removeLeftovers();
      await dir.#recoverSetAside();
    } catch (error) {
      dir.releaseSync();
      throw error;
    }
    return dir;
  }

  /**
   * Creates the lock file and locks it, taking over a stale one. A lock
   * file that vanishes while it is examined (its holder just released it:
   * releasing takes no guard) is simply tried again; a few tries bound the
   * loop.
   */
  async #acquire(flag: string): Promise<void> {
    for (let attempt = 1;; attempt++) {
      let file: Deno.FsFile;
      try {
        file = await Deno.open(this.lockPath, {
          read: true,
          write: true,
          createNew: true,
        });
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists) || attempt === 3) {
          throw errorNaming(error, `Cannot lock ${flag} ${this.path}`);
        }
        await this.#takeOverIfStale(flag);
        continue;
      }
      try {
        if (!(await file.tryLock(true))) {
          throw new Error("another process locked the new lock file");
        }
        await writeAll(file, JSON.stringify(this.#holder) + "\n");
      } catch (error) {
        file.close();
        await Deno.remove(this.lockPath).catch(() => {});
        throw errorNaming(error, `Cannot lock ${flag} ${this.path}`);
      }
      this.#lockFile = file;
      return;
    }
  }

  /** Removes the lock file if no process holds its lock; throws if one does. */
  async #takeOverIfStale(flag: string): Promise<void> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(this.lockPath, { read: true, write: true });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      throw errorNaming(error, `Cannot examine the lock ${this.lockPath}`);
    }
    try {
      const free = await file.tryLock(true);
      const holder = await readHolder(this.lockPath);
      if (!free) {
        throw new RunDirectoryLockedError(
          lockedMessage(flag, this.path, holder),
          holder,
        );
      }
      this.#notice(
        holder === null
          ? `Removing the unreadable lock ${this.lockPath} (its writer was killed while writing it)`
          : `Taking over the stale lock of ${this.path}: ${
            describeHolder(holder)
          } is no longer running`,
      );
      await Deno.remove(this.lockPath).catch((error) => {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      });
    } finally {
      file.close();
    }
  }

  /** Removes the temporary files of atomic writes killed mid-write. */
  async #removeLeftovers(): Promise<void> {
    let count = 0;
    let bytes = 0;
    for await (const entry of Deno.readDir(this.path)) {
      if (!entry.isFile || !isAtomicTemp(entry.name)) continue;
      const file = `${this.path}/${entry.name}`;
      bytes += (await Deno.stat(file)).size;
      await Deno.remove(file);
      count++;
    }
    if (count > 0) {
      this.#notice(
        `Removed ${count} temporary file(s) (${bytes} bytes) left in ${this.path} by an interrupted write`,
      );
    }
  }

  /** Moves back runs that an interrupted `--replace` set aside. */
  async #recoverSetAside(): Promise<void> {
    for await (const entry of Deno.readDir(this.path)) {
      if (!entry.isDirectory || !entry.name.startsWith(SET_ASIDE_PREFIX)) {
        continue;
      }
      const folder = `${this.path}/${entry.name}`;
      const names = [...Deno.readDirSync(folder)].map((e) => e.name);
      const clash = names.filter((n) => exists(`${this.path}/${n}`));
      if (clash.length > 0) {
        this.#notice(
          `${folder} holds a run set aside by an interrupted --replace, and ${this.path} has newer ${
            clash.join(", ")
          }: left as it is (move its files back, or delete it)`,
        );
        continue;
      }
      restore(this.path, folder, names);
      this.#notice(
        `Restored the run in ${this.path} that an interrupted --replace had set aside (${
          names.join(", ")
        })`,
      );
    }
  }

  /**
   * Moves an earlier run's files into `.replaced-<time>/` (for `--replace`),
   * where they stay until {@link commit} deletes them or closing moves them
   * back. Names that do not exist are skipped.
   *
   * @param names The files of a run, relative to the directory.
   * @returns Whether any file was set aside.
   * @throws {Error} If a file cannot be moved (those moved are moved back
   *   first).
   */
  async setAside(names: readonly string[]): Promise<boolean> {
    this.#checkOpen();
    if (this.#aside !== null) throw new Error("A run is already set aside");
    const present = names.filter((n) => exists(`${this.path}/${n}`));
    if (present.length === 0) return false;
    const stamp = new Date().toISOString().replaceAll(":", "-");
    const folder = `${this.path}/${SET_ASIDE_PREFIX}${stamp}`;
    await Deno.mkdir(folder);
    const moved: string[] = [];
    this.#aside = { folder, names: moved };
    try {
      for (const name of present) {
        await Deno.rename(`${this.path}/${name}`, `${folder}/${name}`);
        moved.push(name);
      }
    } catch (error) {
      this.#aside = null;
      restore(this.path, folder, moved);
      throw errorNaming(
        error,
        `Cannot set the earlier run of ${this.path} aside`,
      );
    }
    this.#notice(
      `Set the earlier run aside in ${folder} until the new run's first checkpoint`,
    );
    return true;
  }

  /** Deletes the run set aside (the new run has its first checkpoint). */
  async commit(): Promise<void> {
    const aside = this.#aside;
    if (aside === null) return;
    await Deno.remove(aside.folder, { recursive: true });
    this.#aside = null;
  }

  /**
   * Releases the directory: moves back a run set aside and not committed,
   * removes the lock, and removes the directories {@link open} created if
   * they are empty. Safe to call twice. Synchronous, so that a signal
   * handler can run it.
   */
  releaseSync(): void {
    if (!this.#open) return;
    this.#open = false;
    held.delete(this);
    updateSignalHandlers();
    const aside = this.#aside;
    this.#aside = null;
    if (aside !== null) {
      try {
        restore(this.path, aside.folder, aside.names);
        this.#notice(
          `Restored the earlier run of ${this.path}: the new run ended before its first checkpoint`,
        );
      } catch (error) {
        // Kept where it is: the next start in this directory tries again.
        this.#notice(
          `Could not move the earlier run back from ${aside.folder} (${
            (error as Error).message
          }): it stays there`,
        );
      }
    }
    this.#releaseLock();
    this.#removeCreated();
  }

  /** Same as {@link releaseSync}. */
  close(): Promise<void> {
    this.releaseSync();
    return Promise.resolve();
  }

  /** Same as {@link releaseSync}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Removes the lock file (if it is still ours), then unlocks it. */
  #releaseLock(): void {
    const file = this.#lockFile;
    if (file === null) return;
    this.#lockFile = null;
    try {
      const text = Deno.readTextFileSync(this.lockPath);
      if (text.trim() === JSON.stringify(this.#holder)) {
        Deno.removeSync(this.lockPath);
      }
    } catch {
      // Gone already: nothing to remove.
    }
    file.close(); // Closing the handle drops the flock.
  }

  /** Removes the directories `open` made, deepest first, if empty. */
  #removeCreated(): void {
    for (const dir of this.#created) {
      try {
        Deno.removeSync(dir);
      } catch {
        return; // Not empty (or gone): it stays, and so do its parents.
      }
    }
  }

  #checkOpen(): void {
    if (!this.#open) throw new Error(`${this.path} was released`);
  }
}

/** Whether a path exists (without following a final link's target). */
function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Moves `names` from `folder` back into `dir`, then removes `folder`. */
function restore(dir: string, folder: string, names: readonly string[]) {
  for (const name of names) {
    Deno.renameSync(`${folder}/${name}`, `${dir}/${name}`);
  }
  Deno.removeSync(folder);
}

/** Makes `path` and missing parents; returns those it made, deepest first. */
async function makeDirectories(path: string, flag: string): Promise<string[]> {
  const missing: string[] = [];
  for (let at = path; !exists(at); at = parentOf(at)) {
    missing.push(at);
    if (parentOf(at) === at) break;
  }
  try {
    await Deno.mkdir(path, { recursive: true });
  } catch (error) {
    throw errorNaming(error, `Cannot create ${flag} ${path}`);
  }
  return missing;
}

/** Runs `body` under an exclusive `flock` of the directory, where one can be taken. */
async function withDirectoryGuard<T>(
  dir: string,
  body: () => Promise<T>,
): Promise<T> {
  let guard: Deno.FsFile | undefined;
  try {
    guard = await Deno.open(dir, { read: true });
    await guard.lock(true);
  } catch {
    // No directory handles here (Windows): the lock file alone decides.
    guard?.close();
    guard = undefined;
  }
  try {
    return await body();
  } finally {
    guard?.close(); // Closing the handle releases the flock.
  }
}

/** Writes all of `bytes` (a text as UTF-8) to `file`. */
async function writeAll(file: Deno.FsFile, text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  let written = 0;
  while (written < bytes.length) {
    written += await file.write(bytes.subarray(written));
  }
}

/** The holder a lock file names, or null if it cannot be read or holds none. */
async function readHolder(path: string): Promise<LockHolder | null> {
  let value: unknown;
  try {
    value = JSON.parse(await Deno.readTextFile(path));
  } catch {
    return null; // Unreadable (e.g. Windows locks reads too) or not JSON.
  }
  const h = value as Partial<LockHolder> | null;
  const valid = typeof h === "object" && h !== null &&
    Number.isSafeInteger(h.pid) && (h.pid as number) > 0 &&
    typeof h.since === "string" && typeof h.command === "string";
  return valid ? { pid: h.pid!, since: h.since!, command: h.command! } : null;
}

/** `train (process 1234, since 2026-...)`. */
function describeHolder(holder: LockHolder): string {
  return `${holder.command} (process ${holder.pid}, since ${holder.since})`;
}

/** The message of {@link RunDirectoryLockedError}. */
function lockedMessage(
  flag: string,
  dir: string,
  holder: LockHolder | null,
): string {
  const who = holder === null
    ? "another process (its lock file cannot be read)"
    : describeHolder(holder);
  return `${flag} ${dir} is held by ${who}: wait for it to finish, or choose another ${flag}`;
}
