/**
 * `rpc.server.duration` (ms, the RPC semantic conventions' histogram), recorded once per call
 * with the final status as the caller saw it — for every call the port answered, including
 * those refused before any interceptor ran (malformed bytes, unknown methods: their service and
 * method are `_OTHER`, so a scanner cannot grow the series without bound).
 */
import type { Meter } from "@opentelemetry/api";
import type { FinishedRpc } from "./rpc-handler.js";
import { rpcSystemOf, statusAttributes } from "./tracing-interceptor.js";

/** The conventions' advice for rpc.server.duration in milliseconds. */
const boundariesMs = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000];

export function rpcDurationRecorder(meter: Meter): (rpc: FinishedRpc) => void {
  const histogram = meter.createHistogram("rpc.server.duration", {
    description: "Duration of inbound RPCs, from the request's arrival to the end of the response (streams included)",
    unit: "ms",
    advice: { explicitBucketBoundaries: boundariesMs },
  });
  return (rpc) => {
    const system = rpcSystemOf(rpc.protocol);
    histogram.record(
      rpc.durationMs,
      statusAttributes(system, rpc.code, {
        "rpc.system": system,
        "rpc.service": rpc.service ?? "_OTHER",
        "rpc.method": rpc.method ?? "_OTHER",
      }),
    );
  };
}
