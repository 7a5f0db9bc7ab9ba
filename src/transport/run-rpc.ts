/**
 * The bridge from a handler to the core: runs an Effect (unary) or a Stream (server streaming) on
 * the app's runtime under the RPC's span; the call's abort signal interrupts it; typed failures
 * become gRPC statuses.
 */
import { Effect, Exit, Stream, Tracer, type Cause, type ManagedRuntime } from "effect";
import { ConnectError, type HandlerContext } from "@connectrpc/connect";
import { causeToConnectError, type CoreError } from "./error-mapping.js";
import { inRpcSpan, rpcParentSpan } from "./tracing-interceptor.js";

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

/** Completes when the call is cancelled or its deadline passes. */
const aborted = (signal: AbortSignal) =>
  Effect.async<void>((resume) => {
    if (signal.aborted) return resume(Effect.void);
    const onAbort = () => resume(Effect.void);
    signal.addEventListener("abort", onAbort, { once: true });
    return Effect.sync(() => signal.removeEventListener("abort", onAbort));
  });

/**
 * The call's end as a stream failure: its deadline passing is DEADLINE_EXCEEDED (connect-node
 * aborts the signal with that ConnectError), not a stream that ends OK just before the client's
 * own deadline fires; a client that went away has no status to read, and the stream just ends.
 */
const callEnded = (signal: AbortSignal): Effect.Effect<void, ConnectError> =>
  Effect.flatMap(aborted(signal), () => (signal.reason instanceof ConnectError ? Effect.fail(signal.reason) : Effect.void));

/**
 * A server stream from the core: typed failures end it with their gRPC status, and a client
 * cancel or deadline ends it (interrupting the stream's fibers), under the RPC's span.
 */
export async function* runStream<A, R>(
  runtime: ManagedRuntime.ManagedRuntime<R, unknown>,
  ctx: HandlerContext,
  stream: Stream.Stream<A, CoreError, R>,
): AsyncGenerator<A> {
  const items: Stream.Stream<A, ConnectError, R> = stream.pipe(
    Stream.catchAllCause((cause) => Stream.fail(causeToConnectError(cause as Cause.Cause<CoreError>))),
    Stream.interruptWhen(callEnded(ctx.signal)),
  );
  const rt = await runtime.runtime();
  const parent = rpcParentSpan(ctx.values);
  yield* Stream.toAsyncIterableRuntime(parent === undefined ? items : Stream.provideService(items, Tracer.ParentSpan, parent), rt);
}
