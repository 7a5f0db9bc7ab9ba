/**
 * Python grpcio (.tools/venv, from .ci/setup) against a real server process. The stubs are
 * generated at test time with grpc_tools.protoc from proto/ and from google-proto-files'
 * google/rpc (to decode grpc-status-details-bin), into a temporary directory; health comes from
 * grpcio-health-checking. python/client.py makes the calls and prints a JSON summary. The server
 * runs with --demo-operations and --auth none (the test
 * helper's default), so every caller is the local admin.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot, spawnServer, type ServerProcess } from "../support/server.js";
import { requireTool, run, runOk, summaryLine, stopServer } from "./run.js";

let server: ServerProcess;
let python: string;
let stubs: string;

/** python -m grpc_tools.protoc …: Python stubs for proto/ and google/rpc into `out`. */
async function generateStubs(out: string): Promise<void> {
  // grpc_tools ships google/protobuf/*.proto in its package's _proto folder.
  const wkt = (
    await runOk(python, ["-c", "import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'))"])
  ).stdout.trim();
  const ours = readdirSync(join(repoRoot, "proto/orchestrator/v1"))
    .filter((f) => f.endsWith(".proto"))
    .map((f) => `orchestrator/v1/${f}`);
  await runOk(python, [
    "-m",
    "grpc_tools.protoc",
    `-I${join(repoRoot, "proto")}`,
    `-I${join(repoRoot, "node_modules/google-proto-files")}`,
    `-I${wkt}`,
    `--python_out=${out}`,
    `--grpc_python_out=${out}`,
    ...ours,
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
  ]);
}

beforeAll(async () => {
  python = requireTool("venv/bin/python");
  stubs = mkdtempSync(join(tmpdir(), "orchestrator-py-stubs-"));
  await generateStubs(stubs);
  server = await spawnServer(["--demo-operations"]);
});
afterAll(async () => {
  await stopServer(server);
  if (stubs !== undefined) rmSync(stubs, { recursive: true, force: true });
});

describe("Python grpcio", () => {
  it("has stubs generated from proto/, none of them a top-level grpc package", () => {
    // A generated top-level `grpc` package would shadow grpcio.
    expect(readdirSync(stubs).sort()).toEqual(["google", "orchestrator"]);
    expect(readdirSync(join(stubs, "orchestrator/v1"))).toEqual(
      expect.arrayContaining(["execution_service_pb2.py", "execution_service_pb2_grpc.py", "common_pb2.py"]),
    );
    expect(readdirSync(join(stubs, "google/rpc"))).toEqual(expect.arrayContaining(["status_pb2.py", "error_details_pb2.py"]));
  });

  it("streams Execute, reads GetExecution, and decodes ErrorInfo and BadRequest (client.py)", async () => {
    const result = await run(python, [join(repoRoot, "test/interop/python/client.py"), server.address, stubs], {
      timeoutMs: 45_000,
      env: { PYTHONDONTWRITEBYTECODE: "1" },
    });
    expect(result.code, `client.py exited ${result.code}\n${result.stdout}${result.stderr}`).toBe(0);
    const summary = summaryLine(result.stdout);
    expect(summary).toMatchObject({
      grpcio: "1.85.1",
      health: "SERVING",
      failures: [],
      execute: { events: ["accepted", "attempt_started", "succeeded"], result: { echo: { message: "hi" } }, attempts: 1 },
      get_execution: { state: "EXECUTION_STATE_SUCCEEDED", result: { echo: { message: "hi" } }, attempts: 1 },
      get_execution_unknown: {
        code: "NOT_FOUND",
        reason: "EXECUTION_NOT_FOUND",
        domain: "orchestrator.v1",
        metadata: { execution_id: "no-such-execution" },
      },
      execute_invalid: { code: "INVALID_ARGUMENT", reason: "INVALID_ARGUMENT", domain: "orchestrator.v1", violations: ["input.message"] },
      get_schedule: {
        code: "NOT_FOUND",
        reason: "SCHEDULE_NOT_FOUND",
        domain: "orchestrator.v1",
        metadata: { schedule_id: "x" },
      },
    });
    expect((summary["get_schedule"] as { message: string }).message).toBe('no schedule "x"');
  });
});
