import assert from "node:assert/strict";
import { referenceDevice } from "../../core/reference/device.ts";
import { shapeSize, Tensor } from "../../core/tensor.ts";

Deno.test("Tensor.from() copies its input so later writes do not leak in", () => {
  const source = new Float32Array([1, 2, 3]);
  const t = Tensor.from(source);
  source[0] = 99;
  assert.equal(t.get(0), 1);
  const copy = t.toFloat32Array();
  copy[1] = 99;
  assert.equal(t.get(1), 2);
});

Deno.test("read() returns a copy the caller owns, on the tensor's device", async () => {
  const t = Tensor.from([1, 2, 3]);
  assert.equal(t.device, referenceDevice);
  assert.equal(t.dtype, "float32");
  const values = await t.read();
  values[0] = 99;
  assert.deepEqual([...await t.read()], [1, 2, 3]);
  const labels = referenceDevice.upload([2, 0], [2], "int32");
  assert.ok((await labels.read()) instanceof Int32Array);
  assert.equal(await t.to(referenceDevice), t);
});

Deno.test("Tensor is frozen: shape and fields cannot be reassigned", () => {
  const t = Tensor.from([1, 2, 3, 4], [2, 2]);
  assert.throws(() => {
    (t.shape as number[])[0] = 4;
  }, TypeError);
  assert.throws(() => {
    (t as unknown as { size: number }).size = 3;
  }, TypeError);
});

Deno.test("Tensor rejects shapes that do not match the data", () => {
  assert.throws(
    () => Tensor.from([1, 2, 3], [2, 2]),
    /shape \[2, 2\] \(4 elements\) from 3 values/,
  );
  assert.throws(() => shapeSize([2, -1]), /dimension -1/);
  assert.throws(() => Tensor.zeros([2, 3]).reshape([4, 2]), /Cannot reshape/);
  assert.throws(
    () => Tensor.zeros([2, 3]).get(2, 0),
    /Index 2 is out of range/,
  );
  assert.throws(
    () => referenceDevice.upload([1.5], [1], "int32"),
    /Cannot store 1.5 \(element 0\) in an int32 tensor/,
  );
});

Deno.test("a scope frees what it made except what it returns; a freed tensor throws when used", () => {
  let temporary: Tensor | undefined;
  const kept = referenceDevice.scope(() => {
    temporary = Tensor.from([1, 2]);
    const result = referenceDevice.kernels.add(temporary, temporary);
    return { result: result.reshape([2, 1]) };
  });
  assert.deepEqual([...kept.result.toFloat32Array()], [2, 4]);
  assert.throws(() => temporary!.get(0), /used after its device scope ended/);
  const t = Tensor.from([5]);
  const view = t.reshape([1, 1]);
  referenceDevice.free(t);
  assert.throws(() => view.get(0, 0), /used after its device scope ended/);
  assert.throws(
    () => referenceDevice.scope(() => Promise.resolve(1)),
    /needs a synchronous body/,
  );
});

Deno.test("each device module loads first on its own and makes tensors (no import-order cycle)", async () => {
  const entries: [string, string][] = [
    ["../../core/device.ts", `m.device("reference")`],
    ["../../asm/device.ts", `m.createWasmDevice({ threads: 1 })`],
    ["../../gpu/device.ts", `m.createGpuDevice()`],
  ];
  for (const [path, open] of entries) {
    const url = new URL(path, import.meta.url).href;
    const command = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `const m = await import(${JSON.stringify(url)});
         const dev = await ${open};
         console.log([...await dev.upload([1, 2], [2]).read()].join(","));
         dev.dispose();`,
      ],
      stdout: "piped",
      stderr: "piped",
    });
    const { code, stdout, stderr } = await command.output();
    assert.equal(code, 0, `${path}: ${new TextDecoder().decode(stderr)}`);
    assert.equal(new TextDecoder().decode(stdout).trim(), "1,2", path);
  }
});
