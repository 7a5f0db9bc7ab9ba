/**
 * The bridge from a unary handler to the core: runs an Effect on the app's runtime under the
 * RPC's span; the call's abort signal interrupts it; typed failures become gRPC statuses.
 */
import { Exit, type Cause, type Effect, type ManagedRuntime } from "effect";
import type { HandlerContext } from "@connectrpc/connect";
import { causeToConnectError, type CoreError } from "./error-mapping.js";
import { inRpcSpan } from "./tracing-interceptor.js";

/**
 * The runtime's own Layer errors (opening the store) can only happen while it is first built,
 * which the server awaits before it listens; hence `unknown` and the cast below.
 */
export async function runRpc<A, R>(
  runtime: ManagedRuntime.ManagedRuntime<R, unknown>,
  ctx: HandlerContext,
  effect: Effect.Effect<A, CoreError, R>,
): Promise<A> {
  const exit = await runtime.runPromiseExit(inRpcSpan(ctx.values, effect), { signal: ctx.signal });
  if (Exit.isSuccess(exit)) return exit.value;
  throw causeToConnectError(exit.cause as Cause.Cause<CoreError>);
}
