/**
 * Two server processes on one PostgreSQL (--database-url): an execution run on one is visible
 * from the other, and when one is SIGKILLed mid-execution the other marks that execution
 * INTERRUPTED once the dead instance's lease has run out (no restart needed).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ExecutionService, ExecutionState } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { collect } from "../support/rpc.js";
import { spawnServer, type ServerProcess } from "../support/server.js";
import { startPostgres, type PostgresServer } from "../support/postgres.js";

let pg: PostgresServer;
beforeAll(async () => (pg = await startPostgres()));
afterAll(() => pg?.stop());

const client = (baseUrl: string) => createClient(ExecutionService, createGrpcTransport({ baseUrl }));

describe("several instances on one PostgreSQL", () => {
  it("share executions, and a killed instance's running execution is interrupted by the survivor", async () => {
    const url = await pg.createDatabase();
    const servers: ServerProcess[] = [];
    try {
      const a = await spawnServer(["--demo-operations", "--database-url", url]);
      servers.push(a);
      const b = await spawnServer(["--demo-operations", "--database-url", url]);
      servers.push(b);

      const done = await collect(client(a.baseUrl), { operation: "demo.echo", input: { message: "from a" } });
      const fromB = await client(b.baseUrl).getExecution({ executionId: done[0]!.executionId });
      expect(fromB.execution?.state).toBe(ExecutionState.SUCCEEDED);

      const it = client(a.baseUrl).execute({ operation: "demo.sleep", input: { durationMs: 600_000 } })[Symbol.asyncIterator]();
      const runningId = (await it.next()).value!.event!.executionId;
      expect((await it.next()).value?.event?.kind.case).toBe("attemptStarted");
      expect((await client(b.baseUrl).getExecution({ executionId: runningId })).execution?.state).toBe(ExecutionState.RUNNING);
      a.child.kill("SIGKILL");
      await a.exited;
      await it.next().catch(() => undefined);

      // B sweeps every lease (10 s): poll, bounded, until it has taken A's execution over.
      let state: ExecutionState | undefined;
      for (let i = 0; i < 120 && state !== ExecutionState.INTERRUPTED; i++) {
        state = (await client(b.baseUrl).getExecution({ executionId: runningId })).execution?.state;
        if (state !== ExecutionState.INTERRUPTED) await new Promise((r) => setTimeout(r, 250));
      }
      expect(state).toBe(ExecutionState.INTERRUPTED);
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
    }
  });
});
