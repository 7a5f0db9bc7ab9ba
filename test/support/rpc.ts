/**
 * Small helpers for tests that call the server through the generated Connect clients.
 */
import { ConnectError, type Client } from "@connectrpc/connect";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type {
  ExecuteRequestSchema,
  ExecutionEvent,
  ExecutionService,
} from "../../gen/orchestrator/v1/execution_service_pb.js";

/** Reads an Execute stream to its end and returns its events. */
export async function collect(
  client: Client<typeof ExecutionService>,
  req: MessageInitShape<typeof ExecuteRequestSchema>,
): Promise<ExecutionEvent[]> {
  const out: ExecutionEvent[] = [];
  for await (const r of client.execute(req)) out.push(r.event!);
  return out;
}

/** The ConnectError a call fails with; throws if it succeeds. */
export async function failure(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("expected the call to fail");
}
