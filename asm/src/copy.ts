/**
 * Plain copy `y[i] = x[i]` for `i` in `[begin, end)`: the memory-bandwidth
 * yardstick of the benchmark (reads x, writes y, nothing else).
 *
 * Contract
 * - `x`, `y`: byte offsets of float32 arrays in this module's memory; no
 *   alignment required (16-byte aligned arrays are fastest).
 * - Lengths: any; a v128 main loop moves 16 elements per step, a v128 loop 4,
 *   and a scalar tail the last 0 to 3.
 * - Aliasing: `x` and `y` must not overlap partially (equal is fine).
 *   Concurrent calls must use disjoint ranges. Never allocates.
 */

// @ts-nocheck: AssemblyScript, not TypeScript.

/** Copies float32 elements `[begin, end)` of `x` into `y`. */
export function copy(x: usize, y: usize, begin: i32, end: i32): void {
  let i = begin;
  for (; i + 16 <= end; i += 16) {
    const p = (<usize>i) << 2;
    const a = v128.load(x + p);
    const b = v128.load(x + p, 16);
    const c = v128.load(x + p, 32);
    const d = v128.load(x + p, 48);
    v128.store(y + p, a);
    v128.store(y + p, b, 16);
    v128.store(y + p, c, 32);
    v128.store(y + p, d, 48);
  }
  for (; i + 4 <= end; i += 4) {
    const p = (<usize>i) << 2;
    v128.store(y + p, v128.load(x + p));
  }
  for (; i < end; i++) {
    const p = (<usize>i) << 2;
    store<f32>(y + p, load<f32>(x + p));
  }
}
