/**
 * The typed face of the kernel module: `asm/build.ts` reads every
 * `export function name(a: i32, b: f32, ...): ret` of the AssemblyScript
 * sources with {@link parseKernelSignatures} and writes, with
 * {@link renderKernelTypes}, an interface of the exports, an interface of
 * their named arguments and a table of parameter names into
 * `asm/kernels.generated.ts`. Callers then name every argument
 * (`{ x, out, begin, end }`) and the table puts them in positional order.
 *
 * AssemblyScript types map to JavaScript as the WebAssembly JS API passes
 * them: `i32`, `u32`, `f32`, `f64`, `usize` (and the narrower integers and
 * `bool`) are numbers, `i64` and `u64` are bigints.
 *
 * @module
 */

/** One parameter of a kernel export. */
export interface KernelParameter {
  /** Its name in the AssemblyScript source. */
  readonly name: string;
  /** Its AssemblyScript type, e.g. `"usize"`. */
  readonly type: string;
}

/** One exported kernel function. */
export interface KernelSignature {
  /** The export's name. */
  readonly name: string;
  /** The source file it is defined in, relative to `asm/src/`. */
  readonly file: string;
  /** The first sentence of its doc comment ("" without one). */
  readonly summary: string;
  /** Parameters in positional order. */
  readonly parameters: readonly KernelParameter[];
  /** The AssemblyScript return type (`"void"` for none). */
  readonly returns: string;
}

const NUMBER_TYPES = new Set([
  "i8",
  "i16",
  "i32",
  "u8",
  "u16",
  "u32",
  "f32",
  "f64",
  "usize",
  "isize",
  "bool",
]);
const BIGINT_TYPES = new Set(["i64", "u64"]);

/**
 * The JavaScript type of an AssemblyScript parameter or result type.
 *
 * @param type An AssemblyScript value type, or `"void"`.
 * @returns `"number"`, `"bigint"` or `"void"`.
 * @throws {TypeError} For a type a kernel export cannot have (a reference
 *   type, `v128`, a class).
 *
 * @example
 * ```ts
 * import { jsType } from "./signatures.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(jsType("usize"), "number");
 * assert.equal(jsType("u64"), "bigint");
 * ```
 */
export function jsType(type: string): "number" | "bigint" | "void" {
  if (NUMBER_TYPES.has(type)) return "number";
  if (BIGINT_TYPES.has(type)) return "bigint";
  if (type === "void") return "void";
  throw new TypeError(
    `Cannot type the AssemblyScript type "${type}" for JavaScript: kernel exports take and return numbers only`,
  );
}

/** The first sentence of the doc comment that ends right before `index`. */
function summaryBefore(source: string, index: number): string {
  const before = source.slice(0, index).trimEnd();
  if (!before.endsWith("*/")) return "";
  const start = before.lastIndexOf("/**");
  if (start < 0) return "";
  const text = before.slice(start + 3, -2)
    .split("\n")
    .map((line) => line.replace(/^\s*\*\s?/, "").trim())
    .filter((line) => line !== "")
    .join(" ");
  const end = text.search(/\.(\s|$)/);
  return end < 0 ? text : text.slice(0, end + 1);
}

/**
 * Every `export function` of one AssemblyScript source, in source order.
 *
 * @param source The file's text.
 * @param file Its path relative to `asm/src/` (recorded in the result).
 * @returns The signatures.
 * @throws {SyntaxError} If a parameter has no type annotation.
 * @throws {TypeError} If a parameter or result has a non-numeric type.
 *
 * @example
 * ```ts
 * import { parseKernelSignatures } from "./signatures.ts";
 * import assert from "node:assert/strict";
 *
 * const [s] = parseKernelSignatures(
 *   "/** Copies. *\/\nexport function copy(x: usize, y: usize,\n  n: i32): void {}",
 *   "copy.ts",
 * );
 * assert.deepEqual(s.parameters.map((p) => p.name), ["x", "y", "n"]);
 * assert.equal(s.summary, "Copies.");
 * ```
 */
export function parseKernelSignatures(
  source: string,
  file: string,
): KernelSignature[] {
  const found: KernelSignature[] = [];
  const pattern = /export\s+function\s+(\w+)\s*\(([^)]*)\)\s*:\s*(\w+)/g;
  for (const match of source.matchAll(pattern)) {
    const [, name, list, returns] = match;
    const parameters = list
      .replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/\/\/[^\n]*/g, "")
      .split(",")
      .map((part) => part.trim())
      .filter((part) => part !== "")
      .map((part) => {
        const m = /^(\w+)\s*:\s*(\w+)$/.exec(part);
        if (!m) {
          throw new SyntaxError(
            `Cannot read parameter "${part}" of export ${name} in asm/src/${file}: expected "name: type"`,
          );
        }
        jsType(m[2]);
        return { name: m[1], type: m[2] };
      });
    jsType(returns);
    found.push({
      name,
      file,
      summary: summaryBefore(source, match.index),
      parameters,
      returns,
    });
  }
  return found;
}

/**
 * The TypeScript declarations of the kernel exports: `KernelExports`
 * (positional, as the module exports them), `KernelArguments` (one object
 * type of named arguments per export) and `KERNEL_PARAMETERS` (each
 * export's parameter names in positional order).
 *
 * @param signatures The exports, e.g. from {@link parseKernelSignatures}.
 * @returns TypeScript source text.
 *
 * @example
 * ```ts
 * import { parseKernelSignatures, renderKernelTypes } from "./signatures.ts";
 * import assert from "node:assert/strict";
 *
 * const text = renderKernelTypes(
 *   parseKernelSignatures("export function f(a: i32, b: u64): f64 {}", "f.ts"),
 * );
 * assert.match(text, /f\(a: number, b: bigint\): number;/);
 * assert.match(text, /f: \["a", "b"\]/);
 * ```
 */
export function renderKernelTypes(
  signatures: readonly KernelSignature[],
): string {
  const sorted = [...signatures].sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : 0
  );
  const doc = (s: KernelSignature) =>
    `  /** \`asm/src/${s.file}\`${
      s.summary === "" ? "" : `: ${s.summary.replaceAll("*/", "* /")}`
    } */`;
  const exports = sorted.map((s) =>
    `${doc(s)}\n  ${s.name}(${
      s.parameters.map((p) => `${p.name}: ${jsType(p.type)}`).join(", ")
    }): ${jsType(s.returns)};`
  );
  const args = sorted.map((s) =>
    `${doc(s)}\n  ${s.name}: { ${
      s.parameters.map((p) => `readonly ${p.name}: ${jsType(p.type)};`).join(
        " ",
      )
    } };`
  );
  const table = sorted.map((s) =>
    `  ${s.name}: [${s.parameters.map((p) => `"${p.name}"`).join(", ")}],`
  );
  return [
    "/** The exports of the kernel module, typed from their AssemblyScript signatures. */",
    "export interface KernelExports {",
    ...exports,
    "}",
    "",
    "/** The named arguments of each export (see `KERNEL_PARAMETERS` for their order). */",
    "export interface KernelArguments {",
    ...args,
    "}",
    "",
    "/** Each export's parameter names in positional order. */",
    "export const KERNEL_PARAMETERS: {",
    "  readonly [N in keyof KernelExports]: readonly (keyof KernelArguments[N])[];",
    "} = {",
    ...table,
    "};",
    "",
  ].join("\n");
}
