/**
 * examples/ run against a real server process, so they never rot: the TypeScript client
 * (node --import tsx), the Python client (.tools/venv from .ci/setup; stubs generated here with
 * grpc_tools.protoc), the Go client (its own module; stubs generated here by buf with the Go
 * plugins of .ci/setup; grpc-go was downloaded and compiled by .ci/setup for test/interop/go,
 * same versions) and the grpcurl one-liners (.tools/bin/grpcurl). Every example authenticates
 * with an API key, as a real caller would.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot, spawnServer, type ServerProcess } from "../support/server.js";
import { requireTool, run, runOk } from "../interop/run.js";
import { cli } from "../cli/run.js";

let server: ServerProcess;
let token: string;
const env = () => ({ ORCHESTRATOR_ADDRESS: server.address, ORCHESTRATOR_TOKEN: token });

beforeAll(async () => {
  server = await spawnServer(["--demo-operations", "--auth", "api-keys"]);
  const made = await cli(["keys", "create", "--data-dir", server.dataDir, "--subject", "examples", "--roles", "operator", "-o", "json"]);
  token = (JSON.parse(made.stdout) as { key: string }).key;
});
afterAll(async () => {
  await server?.stop();
});

/** The lines every example prints, whatever its language (enum spellings differ). */
function expectTour(stdout: string, language: string): void {
  const lines = stdout.trimEnd().split("\n");
  expect(lines[0]).toBe("health SERVING");
  const accepted = /^event accepted ([0-9a-f-]{36})$/.exec(lines[1] ?? "");
  expect(accepted, stdout).not.toBeNull();
  const id = accepted![1]!;
  expect(lines).toContain(`event succeeded {"echo":{"message":"hello from ${language}"}}`);
  expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^execution ${id} (EXECUTION_STATE_)?SUCCEEDED attempts=1$`)));
  expect(lines.at(-1)).toMatch(/^error (INVALID_ARGUMENT|InvalidArgument) reason=INVALID_ARGUMENT violations=input\.message$/);
}

describe("examples/", () => {
  it("typescript/client.ts", async () => {
    const r = await runOk(process.execPath, ["--import", "tsx", "examples/typescript/client.ts"], { env: env() });
    expectTour(r.stdout, "TypeScript");
  });

  it("python/client.py", async () => {
    const python = requireTool("venv/bin/python");
    const stubs = mkdtempSync(join(tmpdir(), "orchestrator-example-py-"));
    try {
      const protos = readdirSync(join(repoRoot, "proto/orchestrator/v1")).filter((f) => f.endsWith(".proto")).map((f) => `orchestrator/v1/${f}`);
      const wkt = (await runOk(python, ["-c", "import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'))"])).stdout.trim();
      // The command of the example's docstring (plus the well-known types' include path).
      await runOk(python, ["-m", "grpc_tools.protoc", "-Iproto", "-Inode_modules/google-proto-files", `-I${wkt}`, `--python_out=${stubs}`, `--grpc_python_out=${stubs}`, ...protos, "google/rpc/status.proto", "google/rpc/error_details.proto"]);
      const r = await run(python, ["examples/python/client.py"], { env: { ...env(), ORCHESTRATOR_STUBS: stubs, PYTHONDONTWRITEBYTECODE: "1" } });
      expect(r.code, r.stderr).toBe(0);
      expectTour(r.stdout, "Python");
    } finally {
      rmSync(stubs, { recursive: true, force: true });
    }
  });

  it("go (go run .)", async () => {
    requireTool("bin/protoc-gen-go");
    requireTool("bin/protoc-gen-go-grpc");
    // The command of the example's buf.gen.yaml.
    await runOk("npx", ["buf", "generate", "proto", "--template", "examples/go/buf.gen.yaml", "-o", "examples/go"], { timeoutMs: 60_000 });
    const r = await run("go", ["run", "."], { cwd: join(repoRoot, "examples/go"), env: { ...env(), GOFLAGS: "-buildvcs=false -mod=readonly" }, timeoutMs: 150_000 });
    expect(r.code, r.stderr).toBe(0);
    expectTour(r.stdout, "Go");
  }, 180_000);

  it("grpcurl/examples.sh", async () => {
    const grpcurl = requireTool("bin/grpcurl");
    const r = await run("bash", ["examples/grpcurl/examples.sh"], { env: { ...env(), GRPCURL: grpcurl } });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain("orchestrator.v1.ExecutionService\n");
    expect(r.stdout).toContain('"status": "SERVING"');
    expect(r.stdout).toContain("rpc Execute ( .orchestrator.v1.ExecuteRequest ) returns ( stream .orchestrator.v1.ExecuteResponse );");
    expect(r.stdout).toContain("message ExecuteRequest {");
    expect(r.stdout).toMatch(/"succeeded": \{\s+"result": \{\s+"echo": \{\s+"message": "hello from grpcurl"/);
    expect(r.stdout).toMatch(/"state": "EXECUTION_STATE_RUNNING"/);
    expect(r.stdout).toMatch(/"state": "EXECUTION_STATE_CANCELLED"/);
    // grpcurl prints the error and its decoded details on stderr.
    expect(r.stderr).toMatch(/Code: InvalidArgument/);
    expect(r.stderr).toMatch(/"reason": "INVALID_ARGUMENT"/);
    expect(r.stderr).toMatch(/"field": "input\.message"/);
  });
});
