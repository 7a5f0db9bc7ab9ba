/**
 * How the CLI reaches a server: the connection flags every remote command takes, and the
 * generated clients over a connect-node transport (gRPC by default; Connect or gRPC-Web on
 * request) carrying the bearer token.
 */
import { readFileSync } from "node:fs";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { Options } from "@effect/cli";
import * as Config from "effect/Config";
import * as Option from "effect/Option";
import { ExecutionService } from "../../gen/orchestrator/v1/execution_service_pb.js";
import { ScheduleService } from "../../gen/orchestrator/v1/schedule_service_pb.js";
import { AuditService } from "../../gen/orchestrator/v1/audit_service_pb.js";
import { PolicyService } from "../../gen/orchestrator/v1/policy_service_pb.js";
import { UsageError } from "./output.js";

export const defaultAddress = "127.0.0.1:50051";

const fromEnv = (name: string) => Options.withFallbackConfig(Config.string(name));

/** The flags of every command that talks to a server. */
export const connectionOptions = {
  address: Options.text("address").pipe(
    Options.withDescription(`Server address: host:port (cleartext unless a TLS flag is given), http://host:port or https://host:port. Env ORCHESTRATOR_ADDRESS; default ${defaultAddress}.`),
    fromEnv("ORCHESTRATOR_ADDRESS"),
    Options.withDefault(defaultAddress),
  ),
  token: Options.text("token").pipe(
    Options.withDescription("Bearer token (an API key ork_… or a JWT) sent as `authorization: Bearer …`. Env ORCHESTRATOR_TOKEN."),
    fromEnv("ORCHESTRATOR_TOKEN"),
    Options.optional,
  ),
  tlsCaFile: Options.text("tls-ca-file").pipe(
    Options.withDescription("PEM file of the CA(s) to trust for the server's certificate (implies TLS). Env ORCHESTRATOR_TLS_CA_FILE."),
    fromEnv("ORCHESTRATOR_TLS_CA_FILE"),
    Options.optional,
  ),
  tlsInsecureSkipVerify: Options.boolean("tls-insecure-skip-verify").pipe(
    Options.withDescription("Use TLS but do not verify the server's certificate (development only)."),
  ),
  protocol: Options.choice("protocol", ["grpc", "connect", "grpc-web"]).pipe(
    Options.withDescription("Wire protocol. Default grpc (HTTP/2)."),
    Options.withDefault("grpc" as const),
  ),
  output: Options.choice("output", ["text", "json"]).pipe(
    Options.withAlias("o"),
    Options.withDescription("text (for people) or json (one JSON document, or one per line for streams). Env ORCHESTRATOR_OUTPUT."),
    Options.withFallbackConfig(Config.literal("text", "json")("ORCHESTRATOR_OUTPUT")),
    Options.withDefault("text" as const),
  ),
};

export type OutputFormat = "text" | "json";

export interface ConnectionArgs {
  readonly address: string;
  readonly token: Option.Option<string>;
  readonly tlsCaFile: Option.Option<string>;
  readonly tlsInsecureSkipVerify: boolean;
  readonly protocol: "grpc" | "connect" | "grpc-web";
  readonly output: OutputFormat;
}

export interface Connection {
  readonly baseUrl: string;
  readonly output: OutputFormat;
  readonly executions: Client<typeof ExecutionService>;
  readonly schedules: Client<typeof ScheduleService>;
  readonly audit: Client<typeof AuditService>;
  readonly policy: Client<typeof PolicyService>;
}

/** `host:port` → a base URL; `http(s)://…` as is. */
export function baseUrlOf(address: string, tls: boolean): string {
  const trimmed = address.trim();
  if (/^https?:\/\//.test(trimmed)) {
    if (tls && trimmed.startsWith("http://")) throw new UsageError(`--address ${trimmed} is http:// but a TLS flag was given`);
    return trimmed.replace(/\/+$/, "");
  }
  if (!/^(\[[0-9a-fA-F:.]+\]|[^\s/:]+):\d{1,5}$/.test(trimmed)) {
    throw new UsageError(`--address: expected host:port, http://host:port or https://host:port, got "${address}"`);
  }
  return `${tls ? "https" : "http"}://${trimmed}`;
}

export function connect(args: ConnectionArgs): Connection {
  const tls = Option.isSome(args.tlsCaFile) || args.tlsInsecureSkipVerify;
  const baseUrl = baseUrlOf(args.address, tls);
  let ca: Buffer | undefined;
  if (Option.isSome(args.tlsCaFile)) {
    try {
      ca = readFileSync(args.tlsCaFile.value);
    } catch (e) {
      throw new UsageError(`--tls-ca-file: cannot read ${args.tlsCaFile.value}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const interceptors: Interceptor[] = [];
  if (Option.isSome(args.token) && args.token.value !== "") {
    const header = `Bearer ${args.token.value.trim()}`;
    interceptors.push((next) => (req) => {
      req.header.set("authorization", header);
      return next(req);
    });
  }
  const nodeOptions = baseUrl.startsWith("https:")
    ? { ...(ca === undefined ? {} : { ca }), ...(args.tlsInsecureSkipVerify ? { rejectUnauthorized: false } : {}) }
    : {};
  const common = { baseUrl, interceptors, nodeOptions };
  const transport: Transport =
    args.protocol === "connect"
      ? createConnectTransport({ ...common, httpVersion: "2" })
      : args.protocol === "grpc-web"
        ? createGrpcWebTransport({ ...common, httpVersion: "2" })
        : createGrpcTransport(common);
  return {
    baseUrl,
    output: args.output,
    executions: createClient(ExecutionService, transport),
    schedules: createClient(ScheduleService, transport),
    audit: createClient(AuditService, transport),
    policy: createClient(PolicyService, transport),
  };
}
