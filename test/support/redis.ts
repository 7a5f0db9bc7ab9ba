/**
 * A throwaway Redis for tests (and bench/limiter.ts): Debian's `redis-server` on a free loopback
 * port, with a temp dir, no persistence. A missing redis-server is an error, not a skip: the
 * Redis tests are part of the suite (`bash .ci/setup` installs it).
 *
 *   let redis: RedisServer;
 *   beforeAll(async () => (redis = await startRedisServer()));
 *   afterAll(() => redis.stop());
 *
 * No vitest import here, so that the benchmark can use it too.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  readonly child: ChildProcess;
  /** Stops it (SIGTERM, then SIGKILL after 5 s) and removes its dir. Safe to call twice. */
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** One PING over a raw socket: true on +PONG. */
export function ping(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("error", () => done(false));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (d) => done(d.toString().startsWith("+PONG")));
  });
}

export function redisServerPath(): string {
  const found = spawnSync("sh", ["-c", "command -v redis-server"], { encoding: "utf8" }).stdout.trim();
  if (found === "") {
    throw new Error("redis-server is not installed (the Redis tests need it): run `bash .ci/setup`, or `apt-get install -y redis-server`");
  }
  return found;
}

/** On a free port, or on `port` (to restart one that was stopped). */
export async function startRedisServer(options: { readonly port?: number } = {}): Promise<RedisServer> {
  const bin = redisServerPath();
  let lastError = "";
  // A free port can be taken between probing and binding: try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = options.port ?? (await freePort());
    const dir = mkdtempSync(join(tmpdir(), "orchestrator-redis-"));
    const child = spawn(bin, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    let up = false;
    for (let i = 0; i < 200 && child.exitCode === null && !up; i++) {
      up = await ping(port);
      if (!up) await new Promise((r) => setTimeout(r, 25));
    }
    let stopped: Promise<void> | undefined;
    const stop = () =>
      (stopped ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill("SIGTERM");
          const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
          await exited;
          clearTimeout(timer);
        }
        rmSync(dir, { recursive: true, force: true });
      })());
    if (up) return { port, url: `redis://127.0.0.1:${port}`, child, stop };
    lastError = output;
    await stop();
  }
  throw new Error(`redis-server did not answer PING: ${lastError.slice(-2000)}`);
}
