import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseDurationMs } from "../../src/config.js";

describe("configuration", () => {
  it("has safe defaults: loopback, 50051, ./data, info, 4 MiB, 10 s drain, no TLS", () => {
    const c = loadConfig([], {});
    expect(c).toMatchObject({ host: "127.0.0.1", port: 50051, logLevel: "info", maxMessageBytes: 4 * 1024 * 1024, drainTimeoutMs: 10_000, tls: undefined });
    expect(c.dataDir.endsWith("/data")).toBe(true);
  });

  it("reads the environment, and flags win over it", () => {
    const env = { ORCHESTRATOR_PORT: "7000", ORCHESTRATOR_LOG_LEVEL: "debug", ORCHESTRATOR_HOST: "0.0.0.0" };
    expect(loadConfig([], env)).toMatchObject({ port: 7000, logLevel: "debug", host: "0.0.0.0" });
    expect(loadConfig(["--port", "7001", "--log-level=warn"], env)).toMatchObject({ port: 7001, logLevel: "warn" });
  });

  it.each([
    [["--port", "70000"], /--port \/ ORCHESTRATOR_PORT/],
    [["--log-level", "loud"], /--log-level/],
    [["--max-message-bytes", "12"], /--max-message-bytes/],
    [["--drain-timeout", "forever"], /--drain-timeout/],
    [["--tls-cert", "c.pem"], /both --tls-cert and --tls-key/],
    [["--bogus"], /bogus/],
  ])("rejects %j with the setting named", (argv, message) => {
    expect(() => loadConfig(argv, {})).toThrow(ConfigError);
    expect(() => loadConfig(argv, {})).toThrow(message);
  });

  it("parses durations", () => {
    expect(parseDurationMs("250ms")).toBe(250);
    expect(parseDurationMs("1.5s")).toBe(1500);
    expect(parseDurationMs("2m")).toBe(120_000);
    expect(parseDurationMs("3")).toBe(3000);
    expect(parseDurationMs("-1s")).toBeUndefined();
  });
});
