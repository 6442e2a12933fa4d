/**
 * A worker thread of the multi-threaded WASM backend
 * (`createWasmBackend({ threads })` in `asm/backend.ts`). It instantiates the
 * kernel module over the shared memory it is sent, answers `"ready"`, then
 * loops: wait for a job in its control slot, run the kernel, signal done.
 * The backend's `dispose()` posts the quit op (a worker blocked in
 * `Atomics.wait` is not woken by `terminate()` alone), then terminates it.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { decodeBase64 } from "./base64.ts";
import { KERNELS_WASM_BASE64 } from "./kernels.generated.ts";
import {
  argsOffset,
  CONTROL,
  CONTROL_WORDS,
  type KernelExports,
  MAX_ARGS,
  Op,
  runOp,
} from "./protocol.ts";

interface Start {
  memory: WebAssembly.Memory;
  slot: number;
  threads: number;
}

self.onmessage = (event: MessageEvent<Start>) => {
  const { memory, slot, threads } = event.data;
  let kernels: KernelExports;
  try {
    const module = new WebAssembly.Module(
      decodeBase64(KERNELS_WASM_BASE64),
    );
    kernels = new WebAssembly.Instance(module, { env: { memory } })
      .exports as unknown as KernelExports;
  } catch (error) {
    self.postMessage(String(error));
    return;
  }
  self.postMessage("ready");
  // Let the "ready" message go out before this thread blocks for good.
  setTimeout(() => {
    serve(memory, kernels, slot, threads);
    self.close();
  }, 0);
};

function serve(
  memory: WebAssembly.Memory,
  kernels: KernelExports,
  slot: number,
  threads: number,
): void {
  // Control and argument slots sit below the first page, so these views stay
  // valid when the memory grows.
  const control = new Int32Array(
    memory.buffer,
    slot * CONTROL_WORDS * 4,
    CONTROL_WORDS,
  );
  const args = new Float64Array(
    memory.buffer,
    argsOffset(slot, threads),
    MAX_ARGS,
  );
  // Sequence numbers start at 1; a job may be posted before this loop starts.
  let seen = 0;
  for (;;) {
    let sequence = Atomics.load(control, CONTROL.sequence);
    while (sequence === seen) {
      Atomics.wait(control, CONTROL.sequence, seen);
      sequence = Atomics.load(control, CONTROL.sequence);
    }
    seen = sequence;
    const op = control[CONTROL.op] as Op;
    if (op === Op.quit) return;
    let failed = 0;
    try {
      runOp(kernels, op, args.subarray(0, control[CONTROL.argCount]));
    } catch (error) {
      failed = 1;
      console.error(`WASM worker ${slot}: ${error}`);
    }
    control[CONTROL.failed] = failed;
    Atomics.store(control, CONTROL.done, sequence);
    Atomics.notify(control, CONTROL.done);
  }
}
