/**
 * The seeded mutators of the fuzz test (`fuzz_test.ts`): byte-level
 * mutations of a file, and structural mutations of its JSON state and its
 * tensors (re-saved with a valid checksum, as a hostile editor would), all
 * drawn from one deterministic generator.
 */

import assert from "node:assert/strict";
import type { SafetensorsTensor } from "../../core/safetensors.ts";

/** A small seeded generator (mulberry32): the same seed, the same cases. */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** A uniform float in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** One of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
}

/** A byte-level mutation of `bytes` (a fresh array). */
export function mutateBytes(bytes: Uint8Array, rng: Rng): Uint8Array {
  const out = bytes.slice();
  const at = rng.int(Math.max(out.length, 1));
  switch (rng.int(7)) {
    case 0: // flip one bit
      if (out.length > 0) out[at] ^= 1 << rng.int(8);
      return out;
    case 1: // set a byte
      if (out.length > 0) out[at] = rng.pick([0, 0xff, 0x22, 0x7b, 0x5b, 0x30]);
      return out;
    case 2: // truncate
      return out.subarray(0, at);
    case 3: { // delete a chunk
      const n = 1 + rng.int(16);
      return Uint8Array.from([...out.subarray(0, at), ...out.subarray(at + n)]);
    }
    case 4: { // insert random bytes
      const extra = Array.from({ length: 1 + rng.int(16) }, () => rng.int(256));
      return Uint8Array.from([
        ...out.subarray(0, at),
        ...extra,
        ...out.subarray(at),
      ]);
    }
    case 5: { // duplicate a chunk
      const chunk = out.subarray(at, at + 1 + rng.int(32));
      return Uint8Array.from([
        ...out.subarray(0, at),
        ...chunk,
        ...out.subarray(at),
      ]);
    }
    default: { // overwrite 8 bytes with a little-endian size
      const view = new DataView(out.buffer);
      if (out.length >= at + 8) {
        view.setBigUint64(
          at,
          BigInt(rng.pick([0, 1, 8, 2 ** 31, 2 ** 53 - 1])),
          true,
        );
      }
      return out;
    }
  }
}

/** Values a JSON field may be replaced with. */
const ODD_VALUES: readonly unknown[] = [
  null,
  -1,
  0,
  0.5,
  3,
  7,
  2 ** 53,
  1e308,
  -1e-30,
  "",
  "x",
  "bayesian-bits",
  true,
  [],
  {},
  [null],
  { kind: "conv" },
  JSON.parse("[".repeat(200) + "]".repeat(200)),
];

/** Every path (list of keys) into a JSON value, the root included. */
function paths(
  value: unknown,
  prefix: (string | number)[] = [],
): (string | number)[][] {
  const out = [prefix];
  if (Array.isArray(value)) {
    value.forEach((v, i) => out.push(...paths(v, [...prefix, i])));
  } else if (typeof value === "object" && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      out.push(...paths(v, [...prefix, k]));
    }
  }
  return out;
}

/** A structural mutation of a JSON value (a fresh copy). */
export function mutateJson(value: unknown, rng: Rng): unknown {
  const root = { v: structuredClone(value) };
  const path = ["v", ...rng.pick(paths(root.v))];
  const key = path[path.length - 1];
  let parent: Record<string | number, unknown> = root as Record<
    string,
    unknown
  >;
  for (const k of path.slice(0, -1)) {
    parent = parent[k] as Record<string | number, unknown>;
  }
  const target = parent[key];
  switch (rng.int(4)) {
    case 0:
      parent[key] = structuredClone(rng.pick(ODD_VALUES));
      break;
    case 1:
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else if (parent === root) root.v = null; // the state itself stays
      else delete parent[key];
      break;
    case 2:
      if (Array.isArray(target) && target.length > 0) {
        target.push(structuredClone(target[0]));
      } else if (typeof target === "number") parent[key] = -target;
      break;
    default:
      if (typeof target === "number") {
        parent[key] = target * rng.pick([0, 2, 1e6, 1e-6]) + rng.pick([0, 0.5]);
      } else if (typeof target === "string") parent[key] = target + "~";
      else parent[key] = rng.pick([null, 1, "s"]);
  }
  return root.v;
}

/** A structural mutation of a file's tensors: one dropped, reshaped, retyped or added. */
export function mutateTensors(
  tensors: Record<string, SafetensorsTensor>,
  rng: Rng,
): Record<string, SafetensorsTensor> {
  const out = { ...tensors };
  const names = Object.keys(out);
  const name = rng.pick(names);
  const t = out[name];
  switch (rng.int(4)) {
    case 0:
      delete out[name];
      break;
    case 1:
      out[name] = { ...t, shape: [t.data.length] } as SafetensorsTensor;
      break;
    case 2:
      out[name] = {
        dtype: "I32",
        shape: t.shape,
        data: Int32Array.from(t.data),
      };
      break;
    default:
      out[`${name}x`] = t;
  }
  return out;
}

/** The most characters a rejection's message may have. */
export const MAX_MESSAGE = 1000;

/**
 * Asserts `error` is a clean rejection: one of `classes`, with a short
 * message that names its source as the decoder or loader does (`opening`),
 * not a crash of code that trusted the input (`Cannot read properties of
 * null` is a TypeError too).
 */
export function assertCleanRejection(
  error: unknown,
  classes: readonly ErrorConstructor[],
  opening: RegExp,
  what: string,
): void {
  assert.ok(
    classes.some((c) => error instanceof c),
    `${what}: ${error instanceof Error ? error.stack : String(error)}`,
  );
  const message = (error as Error).message;
  assert.match(message, opening, `${what}: ${(error as Error).stack}`);
  assert.ok(
    message.length > 0 && message.length <= MAX_MESSAGE,
    `${what}: a message of ${message.length} characters`,
  );
}

/** Typed arrays compared element by element with Object.is (NaN equal, -0 apart). */
export function sameElements(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return false;
  return true;
}
