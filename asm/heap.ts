/**
 * The WASM device's allocator: first-fit over a sorted free list, blocks
 * aligned to 64 bytes (a cache line), neighbours merged on free, the memory
 * grown when no free block fits. Every tensor of the device lives in one of
 * these blocks; a training step allocates and frees the same sizes in the
 * same order each time, so after the first step it reuses the same blocks.
 *
 * @module
 */

const PAGE_BYTES = 65536;
/** Alignment and granularity of every block. */
export const HEAP_ALIGN = 64;
/** The module declares at most 65536 pages (4 GiB). */
const MAX_PAGES = 65536;
/** Grow by at least this many pages at once (1 MiB). */
const MIN_GROWTH_PAGES = 16;

interface Block {
  offset: number;
  size: number;
}

/** A free-list allocator over `memory` from byte `base` on. */
export class Heap {
  readonly #memory: WebAssembly.Memory;
  readonly #free: Block[] = [];
  readonly #used = new Map<number, number>();
  #end: number;
  #inUse = 0;
  #peak = 0;

  /**
   * Manages `memory` from byte `base` to its end (and beyond, growing it).
   *
   * @param memory The module's memory.
   * @param base The first byte the heap may use (a multiple of 64).
   */
  constructor(memory: WebAssembly.Memory, base: number) {
    if (!Number.isInteger(base) || base < 0 || base % HEAP_ALIGN !== 0) {
      throw new RangeError(
        `The heap's base must be a non-negative multiple of ${HEAP_ALIGN}, got ${base}`,
      );
    }
    this.#memory = memory;
    const have = memory.buffer.byteLength;
    if (have > base) this.#free.push({ offset: base, size: have - base });
    this.#end = have > base ? have : base;
  }

  /** Bytes in live blocks. */
  get bytesInUse(): number {
    return this.#inUse;
  }

  /** The most bytes ever in live blocks at once. */
  get peakBytes(): number {
    return this.#peak;
  }

  /**
   * Reserves `bytes` (rounded up to 64, at least 64).
   *
   * @param bytes The size.
   * @returns The block's byte offset (64-byte aligned).
   * @throws {RangeError} When 4 GiB would not hold it.
   */
  alloc(bytes: number): number {
    const size = Math.max(
      HEAP_ALIGN,
      Math.ceil(bytes / HEAP_ALIGN) * HEAP_ALIGN,
    );
    for (let i = 0; i < this.#free.length; i++) {
      const block = this.#free[i];
      if (block.size < size) continue;
      const offset = block.offset;
      if (block.size === size) this.#free.splice(i, 1);
      else {
        block.offset += size;
        block.size -= size;
      }
      return this.#take(offset, size);
    }
    // Grow: extend a free block that ends at the end of memory, if any.
    const last = this.#free[this.#free.length - 1];
    const tail = last && last.offset + last.size === this.#end ? last : null;
    const start = tail ? tail.offset : this.#end;
    // Measured from the memory's real end: `start` may lie past it when the
    // heap's base is beyond the initial memory.
    const have = this.#memory.buffer.byteLength;
    const needed = start + size - have;
    const pages = Math.max(MIN_GROWTH_PAGES, Math.ceil(needed / PAGE_BYTES));
    const havePages = have / PAGE_BYTES;
    if (havePages + pages > MAX_PAGES) {
      throw new RangeError(
        `Cannot allocate ${bytes} bytes in the WASM memory: ${this.#inUse} bytes are in use and the limit is 4 GiB`,
      );
    }
    this.#memory.grow(pages);
    const grownEnd = this.#memory.buffer.byteLength;
    if (tail) this.#free.pop();
    const rest = grownEnd - (start + size);
    if (rest > 0) this.#free.push({ offset: start + size, size: rest });
    this.#end = grownEnd;
    return this.#take(start, size);
  }

  #take(offset: number, size: number): number {
    this.#used.set(offset, size);
    this.#inUse += size;
    if (this.#inUse > this.#peak) this.#peak = this.#inUse;
    return offset;
  }

  /**
   * Returns a block.
   *
   * @param offset A block's offset from {@link Heap.alloc}.
   * @throws {Error} If it is not a live block.
   */
  free(offset: number): void {
    const size = this.#used.get(offset);
    if (size === undefined) {
      throw new Error(`WASM heap: no live block at byte ${offset}`);
    }
    this.#used.delete(offset);
    this.#inUse -= size;
    const list = this.#free;
    // First free block after this one.
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid].offset < offset) lo = mid + 1;
      else hi = mid;
    }
    const before = lo > 0 ? list[lo - 1] : null;
    const after = lo < list.length ? list[lo] : null;
    if (before && before.offset + before.size === offset) {
      before.size += size;
      if (after && before.offset + before.size === after.offset) {
        before.size += after.size;
        list.splice(lo, 1);
      }
    } else if (after && offset + size === after.offset) {
      after.offset = offset;
      after.size += size;
    } else {
      list.splice(lo, 0, { offset, size });
    }
  }
}
