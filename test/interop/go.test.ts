/**
 * grpc-go against a real server process. The client's stubs are generated at test time from
 * proto/ by buf with protoc-gen-go and protoc-gen-go-grpc (.tools/bin, from .ci/setup) into
 * go/gen (git-ignored); managed mode supplies go_package, so the .proto files carry no Go option.
 * go/main.go makes the calls and prints a JSON summary. Its modules are pinned in go.mod/go.sum
 * and were downloaded (and compiled) by .ci/setup, so this test does not touch the network.
 * The server runs with --demo-operations and --auth none (the test
 * helper's default), so every caller is the local admin.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { repoRoot, spawnServer, type ServerProcess } from "../support/server.js";
import { requireTool, run, runOk, summaryLine, stopServer } from "./run.js";

const goDir = join(repoRoot, "test/interop/go");

/** Build settings for every go command here: no VCS stamping, go.mod/go.sum as committed. */
const goEnv: NodeJS.ProcessEnv = { GOFLAGS: "-buildvcs=false -mod=readonly" };

let server: ServerProcess;

beforeAll(async () => {
  // Fail, not skip, when a tool is missing.
  requireTool("bin/protoc-gen-go");
  requireTool("bin/protoc-gen-go-grpc");
  await runOk("go", ["version"], { timeoutMs: 10_000 });
  // npx buf generate proto --template test/interop/go/buf.gen.yaml -o test/interop/go
  await runOk("npx", ["buf", "generate", "proto", "--template", "test/interop/go/buf.gen.yaml", "-o", "test/interop/go"], {
    timeoutMs: 60_000,
  });
  server = await spawnServer(["--demo-operations"]);
}, 120_000);

afterAll(async () => {
  await stopServer(server);
});

describe("grpc-go", () => {
  it("has stubs generated from proto/ with managed go_package", async () => {
    const { stdout } = await runOk("go", ["list", "-f", "{{.ImportPath}} {{.Name}}", "./gen/..."], { cwd: goDir, env: goEnv, timeoutMs: 60_000 });
    expect(stdout.trim()).toBe("orchestrator.test/interop/gen/orchestrator/v1 orchestratorv1");
  });

  it("streams Execute, reads GetExecution, and decodes ErrorInfo and BadRequest (go run .)", async () => {
    // Compiling the client takes ~1 s once .ci/setup has compiled grpc-go; allow for a cold cache.
    const result = await run("go", ["run", ".", server.address], { cwd: goDir, env: goEnv, timeoutMs: 150_000 });
    expect(result.code, `go run exited ${result.code}\n${result.stdout}${result.stderr}`).toBe(0);
    const summary = summaryLine(result.stdout);
    expect(summary).toMatchObject({
      health: "SERVING",
      failures: [],
      execute: { events: ["accepted", "attempt_started", "succeeded"], result: { echo: { message: "hi" } }, attempts: 1 },
      get_execution: { state: "EXECUTION_STATE_SUCCEEDED", result: { echo: { message: "hi" } }, attempts: 1 },
      get_execution_unknown: {
        code: "NotFound",
        reason: "EXECUTION_NOT_FOUND",
        domain: "orchestrator.v1",
        metadata: { execution_id: "no-such-execution" },
      },
      execute_invalid: { code: "InvalidArgument", reason: "INVALID_ARGUMENT", domain: "orchestrator.v1", violations: ["input.message"] },
      get_schedule: {
        code: "NotFound",
        reason: "SCHEDULE_NOT_FOUND",
        domain: "orchestrator.v1",
        metadata: { schedule_id: "x" },
      },
    });
    expect((summary["get_schedule"] as { message: string }).message).toBe('no schedule "x"');
  }, 180_000);
});
