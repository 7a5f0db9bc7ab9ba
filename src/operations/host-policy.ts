/**
 * Which hosts `http.request` may reach, and which resolved addresses it refuses.
 *
 * Two independent checks, both needed: the allowlist says which *names* an operator trusts;
 * the address check stops a trusted-looking name (or a DNS answer that changed since the
 * operator looked) from pointing the server at its own network (loopback, RFC 1918, cloud
 * metadata at 169.254.169.254, …).
 */
import { isIP, isIPv4, isIPv6 } from "node:net";

/**
 * One parsed allowlist entry. Every form may carry `:port`; without one any port matches.
 * - `host`: exactly that DNS name (case-insensitive, a trailing dot ignored).
 * - `wildcard` (`*.example.com`): any name strictly below the suffix (`a.example.com`,
 *   `a.b.example.com`), never the suffix itself.
 * - `ip` (`127.0.0.1`, `[::1]`, bare `::1`): a URL whose host is that literal address. Naming an
 *   address explicitly also exempts it from the private-address check: the operator meant it.
 */
export type AllowlistEntry =
  | { readonly kind: "host"; readonly host: string; readonly port?: number; readonly source: string }
  | { readonly kind: "wildcard"; readonly suffix: string; readonly port?: number; readonly source: string }
  | { readonly kind: "ip"; readonly address: string; readonly port?: number; readonly source: string };

/** Where a URL points, normalised the same way allowlist entries are. */
export interface Target {
  /** Lowercase, no brackets around IPv6, no trailing dot. */
  readonly hostname: string;
  /** Effective port: the URL's, or 80/443 by scheme. */
  readonly port: number;
  readonly isIp: boolean;
}

const hostPort = /^(\[[^\]]*\]|[^:[\]]*)(?::(\d{1,5}))?$/;

/** Parses one entry; a string result explains why it is invalid. */
export const parseAllowlistEntry = (raw: string): AllowlistEntry | string => {
  const source = raw.trim();
  let text = source.toLowerCase();
  if (text === "") return "an allowlist entry is empty";
  // A bare IPv6 literal cannot carry a port, and its colons would read as one.
  if (isIPv6(text)) return { kind: "ip", address: canonicalHost(`[${text}]`) ?? text, source };
  const wildcard = text.startsWith("*.");
  if (wildcard) text = text.slice(2);
  const m = hostPort.exec(text);
  if (m === null) return `allowlist entry "${source}" is not host, host:port, *.suffix or an IP literal`;
  const hostPart = m[1] ?? "";
  let port: number | undefined;
  if (m[2] !== undefined) {
    port = Number(m[2]);
    if (port < 1 || port > 65535) return `allowlist entry "${source}" has an invalid port`;
  }
  const host = canonicalHost(hostPart);
  if (host === undefined || host === "" || host.includes("*")) return `allowlist entry "${source}" has an invalid host`;
  const withPort = port === undefined ? {} : { port };
  if (isIP(host) !== 0) {
    if (wildcard) return `allowlist entry "${source}": a wildcard cannot apply to an IP address`;
    return { kind: "ip", address: host, ...withPort, source };
  }
  return wildcard ? { kind: "wildcard", suffix: host, ...withPort, source } : { kind: "host", host, ...withPort, source };
};

/** Parses every entry, or throws naming the first bad one (a startup configuration error). */
export const parseAllowlist = (entries: ReadonlyArray<string>): ReadonlyArray<AllowlistEntry> =>
  entries.map((raw) => {
    const entry = parseAllowlistEntry(raw);
    if (typeof entry === "string") throw new Error(entry);
    return entry;
  });

/**
 * Hosts go through the WHATWG URL parser so entries and request URLs agree on one spelling:
 * `0x7f.1` and `2130706433` both become `127.0.0.1`, IPv6 is compressed, IDNs become punycode.
 */
function canonicalHost(host: string): string | undefined {
  let url: URL;
  try {
    url = new URL(`http://${host}/`);
  } catch {
    return undefined;
  }
  if (url.username !== "" || url.password !== "" || url.port !== "" || url.pathname !== "/") return undefined;
  return normaliseHostname(url.hostname);
}

const normaliseHostname = (hostname: string): string => {
  const bare = hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
  return (bare.endsWith(".") ? bare.slice(0, -1) : bare).toLowerCase();
};

export const targetOf = (url: URL): Target => {
  const hostname = normaliseHostname(url.hostname);
  const port = url.port !== "" ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
  return { hostname, port, isIp: isIP(hostname) !== 0 };
};

/** The first entry that allows the target, if any. An empty allowlist allows nothing. */
export const matchAllowlist = (entries: ReadonlyArray<AllowlistEntry>, target: Target): AllowlistEntry | undefined =>
  entries.find((entry) => {
    if (entry.port !== undefined && entry.port !== target.port) return false;
    switch (entry.kind) {
      case "ip":
        return target.isIp && target.hostname === entry.address;
      case "host":
        return !target.isIp && target.hostname === entry.host;
      case "wildcard":
        return !target.isIp && target.hostname.endsWith(`.${entry.suffix}`);
    }
  });

/**
 * Why an address must not be called without explicit permission, or undefined for a public
 * address. IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by
 * the embedded address, since that is where the packets can end up.
 */
export const addressRisk = (address: string): string | undefined => {
  const zone = address.indexOf("%");
  const plain = zone === -1 ? address : address.slice(0, zone);
  if (isIPv4(plain)) return ipv4Risk(plain.split(".").map(Number));
  const g = parseIpv6(plain);
  if (g === undefined) return "not an IP address";
  const zeroUpTo = (n: number) => g.slice(0, n).every((x) => x === 0);
  const embedded = (hi: number, lo: number) => [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff];
  const at = (i: number) => g[i] ?? 0;
  if (zeroUpTo(8)) return "unspecified";
  if (zeroUpTo(7) && at(7) === 1) return "loopback";
  if (zeroUpTo(5) && at(5) === 0xffff) return ipv4Risk(embedded(at(6), at(7)));
  if (zeroUpTo(6)) return ipv4Risk(embedded(at(6), at(7)));
  if (at(0) === 0x64 && at(1) === 0xff9b && g.slice(2, 6).every((x) => x === 0)) return ipv4Risk(embedded(at(6), at(7)));
  if (at(0) === 0x2002) return ipv4Risk(embedded(at(1), at(2)));
  if ((at(0) & 0xfe00) === 0xfc00) return "private (unique local)";
  if ((at(0) & 0xffc0) === 0xfe80) return "link-local";
  if ((at(0) & 0xffc0) === 0xfec0) return "private (site-local)";
  if ((at(0) & 0xff00) === 0xff00) return "multicast";
  return undefined;
};

function ipv4Risk(octets: ReadonlyArray<number>): string | undefined {
  const [a = 0, b = 0, c = 0, d = 0] = octets;
  if (a === 0) return "unspecified";
  if (a === 127) return "loopback";
  if (a === 10 || (a === 172 && (b & 0xf0) === 16) || (a === 192 && b === 168)) return "private";
  if (a === 169 && b === 254) return c === 169 && d === 254 ? "link-local (cloud metadata)" : "link-local";
  if (a === 100 && (b & 0xc0) === 64) return "private (carrier-grade NAT)";
  if (a === 192 && b === 0 && c === 0) return "reserved";
  if (a === 198 && (b & 0xfe) === 18) return "reserved";
  if (a >= 224 && a <= 239) return "multicast";
  if (a >= 240) return "reserved";
  return undefined;
}

/** The eight 16-bit groups of a valid IPv6 literal. */
function parseIpv6(text: string): number[] | undefined {
  if (!isIPv6(text)) return undefined;
  let s = text;
  const lastColon = s.lastIndexOf(":");
  const tail = s.slice(lastColon + 1);
  if (tail.includes(".")) {
    const [a = 0, b = 0, c = 0, d = 0] = tail.split(".").map(Number);
    s = `${s.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = s.split("::");
  const head = halves[0] ? halves[0].split(":") : [];
  const rest = halves.length > 1 && halves[1] ? halves[1].split(":") : [];
  const zeros = new Array<string>(8 - head.length - rest.length).fill("0");
  return [...head, ...(halves.length > 1 ? zeros : []), ...rest].map((h) => parseInt(h, 16));
}
