import { describe, expect, it } from "@effect/vitest";
import { addressRisk, matchAllowlist, parseAllowlistEntry, targetOf } from "../../src/operations/host-policy.js";
import { parseRetryAfter, utf8Prefix } from "../../src/operations/http-request.js";

describe("addressRisk", () => {
  it.each([
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["::1", "loopback"],
    ["0.0.0.0", "unspecified"],
    ["::", "unspecified"],
    ["10.1.2.3", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["192.168.1.1", "private"],
    ["100.64.0.1", "private (carrier-grade NAT)"],
    ["169.254.169.254", "link-local (cloud metadata)"],
    ["169.254.1.1", "link-local"],
    ["fe80::1", "link-local"],
    ["fe80::1%eth0", "link-local"],
    ["fd12:3456::1", "private (unique local)"],
    ["fc00::1", "private (unique local)"],
    ["224.0.0.1", "multicast"],
    ["ff02::1", "multicast"],
    ["255.255.255.255", "reserved"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:a9fe:a9fe", "link-local (cloud metadata)"],
    ["::ffff:10.0.0.1", "private"],
    ["::127.0.0.1", "loopback"],
    ["64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"],
    ["2002:c0a8:0101::1", "private"],
  ])("%s is %s", (address, risk) => {
    expect(addressRisk(address)).toBe(risk);
  });

  it.each(["93.184.215.14", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8", "2001:db8::1"])("%s is public", (address) => {
    expect(addressRisk(address)).toBeUndefined();
  });
});

describe("allowlist entries", () => {
  it("parses host, host:port, wildcards and IP literals into canonical form", () => {
    expect(parseAllowlistEntry("API.Example.com")).toEqual({ kind: "host", host: "api.example.com", source: "API.Example.com" });
    expect(parseAllowlistEntry("api.example.com.:8443")).toMatchObject({ kind: "host", host: "api.example.com", port: 8443 });
    expect(parseAllowlistEntry("*.example.com")).toMatchObject({ kind: "wildcard", suffix: "example.com" });
    expect(parseAllowlistEntry("*.example.com:443")).toMatchObject({ kind: "wildcard", suffix: "example.com", port: 443 });
    expect(parseAllowlistEntry("127.0.0.1:80")).toMatchObject({ kind: "ip", address: "127.0.0.1", port: 80 });
    expect(parseAllowlistEntry("2130706433")).toMatchObject({ kind: "ip", address: "127.0.0.1" });
    expect(parseAllowlistEntry("[::1]:8080")).toMatchObject({ kind: "ip", address: "::1", port: 8080 });
    expect(parseAllowlistEntry("0:0::1")).toMatchObject({ kind: "ip", address: "::1" });
    expect(parseAllowlistEntry("[::ffff:127.0.0.1]")).toMatchObject({ kind: "ip", address: "::ffff:7f00:1" });
  });

  it.each(["", "  ", "*", "*.", "a.*.com", "host:0", "host:65536", "host:port", "http://host", "host/path", "user@host", "*.10.0.0.1", "[not-ip]"])(
    "rejects %j",
    (entry) => {
      expect(typeof parseAllowlistEntry(entry)).toBe("string");
    },
  );

  it("matches by effective port and canonical address", () => {
    const entries = ["[::1]:8080", "example.com:443", "*.svc.example.com"].map((e) => parseAllowlistEntry(e)).filter((e) => typeof e !== "string");
    const match = (url: string) => matchAllowlist(entries, targetOf(new URL(url)))?.source;
    expect(match("http://[0:0::1]:8080/")).toBe("[::1]:8080");
    expect(match("http://[::1]:8081/")).toBeUndefined();
    expect(match("https://example.com/")).toBe("example.com:443");
    expect(match("http://example.com/")).toBeUndefined();
    expect(match("http://a.svc.example.com:9000/")).toBe("*.svc.example.com");
    expect(match("http://svc.example.com/")).toBeUndefined();
  });
});

describe("Retry-After and truncation helpers", () => {
  it("reads delta-seconds and HTTP-dates relative to the given time", () => {
    const now = Date.parse("2030-01-01T00:00:00Z");
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter(" 0 ", now)).toBe(0);
    expect(parseRetryAfter("Tue, 01 Jan 2030 00:01:00 GMT", now)).toBe(60_000);
    expect(parseRetryAfter("Mon, 31 Dec 2029 00:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter("-5", now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });

  it("never leaves a partial UTF-8 character at the end", () => {
    const bytes = Buffer.from("a€😀", "utf8"); // 1 + 3 + 4 bytes
    expect([...Array(bytes.length + 1).keys()].map((n) => utf8Prefix(bytes.subarray(0, n)).toString("utf8"))).toEqual([
      "", "a", "a", "a", "a€", "a€", "a€", "a€", "a€😀",
    ]);
  });
});
