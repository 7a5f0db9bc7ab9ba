/**
 * A throwaway PostgreSQL for tests (and benches): Debian's server binaries, a cluster made by
 * initdb in a temp dir, on a free loopback port, trust auth for the loopback only, fsync off.
 * A missing PostgreSQL is an error, not a skip: `bash .ci/setup` installs it.
 *
 *   let pg: PostgresServer;
 *   beforeAll(async () => (pg = await startPostgres()));
 *   afterAll(() => pg.stop());
 *   const url = await pg.createDatabase();   // a fresh, empty database per test
 *
 * PostgreSQL refuses to run as root, so as root the cluster is made and run as the `postgres`
 * user that Debian's package creates (spawn's uid/gid: no wrapper process, so signals reach the
 * server itself). No vitest import here, so that benches can use it.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, mkdtempSync, readdirSync, rmSync, existsSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";

export interface PostgresServer {
  readonly port: number;
  /** The `postgres` database, for administration. */
  readonly url: string;
  readonly child: ChildProcess;
  /** Creates an empty database (a random name unless given) and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** Runs SQL through psql against a database of this server; returns stdout (unaligned, tuples only). */
  psql(database: string, sql: string): string;
  /** Stops it (fast shutdown, then SIGKILL after 10 s) and removes its dir. Safe to call twice. */
  stop(): Promise<void>;
}

/** The directory of initdb/postgres/psql: pg_config's bindir, or the newest /usr/lib/postgresql/N/bin. */
export function postgresBinDir(): string {
  const fromConfig = spawnSync("pg_config", ["--bindir"], { encoding: "utf8" });
  const candidates: string[] = [];
  if (fromConfig.status === 0) candidates.push(fromConfig.stdout.trim());
  if (existsSync("/usr/lib/postgresql")) {
    for (const v of readdirSync("/usr/lib/postgresql").sort((a, b) => Number(b) - Number(a))) candidates.push(`/usr/lib/postgresql/${v}/bin`);
  }
  const found = candidates.find((d) => existsSync(join(d, "initdb")) && existsSync(join(d, "postgres")));
  if (found === undefined) {
    throw new Error("PostgreSQL server binaries (initdb, postgres) are not installed: run `bash .ci/setup`, or `apt-get install -y postgresql`");
  }
  return found;
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

function ownerIds(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(spawnSync("id", ["-u", "postgres"], { encoding: "utf8" }).stdout.trim());
  const gid = Number(spawnSync("id", ["-g", "postgres"], { encoding: "utf8" }).stdout.trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid <= 0) {
    throw new Error("running as root needs the `postgres` user (Debian's postgresql package creates it)");
  }
  return { uid, gid };
}

function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.setTimeout(500, () => (socket.destroy(), resolve(false)));
    socket.once("error", () => resolve(false));
    socket.once("connect", () => (socket.destroy(), resolve(true)));
  });
}

export async function startPostgres(): Promise<PostgresServer> {
  const bin = postgresBinDir();
  const owner = ownerIds();
  const dir = mkdtempSync(join(tmpdir(), "orchestrator-pg-"));
  chmodSync(dir, 0o700);
  if (owner !== undefined) chownSync(dir, owner.uid, owner.gid);
  const data = join(dir, "data");
  const init = spawnSync(join(bin, "initdb"), ["-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"], {
    encoding: "utf8",
    cwd: dir,
    ...owner,
  });
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status}): ${init.stderr || init.stdout}`);
  }

  let lastError = "";
  // A free port can be taken between probing and binding: try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const args = [
      "-D", data,
      "-p", String(port),
      "-c", "listen_addresses=127.0.0.1",
      "-c", `unix_socket_directories=${dir}`,
      "-c", "fsync=off",
      "-c", "synchronous_commit=off",
      "-c", "full_page_writes=off",
      "-c", "max_connections=200",
      "-c", "log_min_messages=warning",
    ];
    const child = spawn(join(bin, "postgres"), args, { stdio: ["ignore", "pipe", "pipe"], cwd: dir, ...owner });
    let output = "";
    child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    let up = false;
    for (let i = 0; i < 400 && child.exitCode === null && !up; i++) {
      up = (await connects(port)) && psqlRun(bin, port, "postgres", "SELECT 1").ok;
      if (!up) await new Promise((r) => setTimeout(r, 25));
    }
    if (!up) {
      lastError = output;
      child.kill("SIGKILL");
      await exited;
      continue;
    }
    let stopped: Promise<void> | undefined;
    // A test process that exits without stop() (a crash, a killed worker) takes its server along.
    const onExit = () => child.kill("SIGKILL");
    process.once("exit", onExit);
    const url = (db: string) => `postgres://postgres@127.0.0.1:${port}/${db}`;
    return {
      port,
      url: url("postgres"),
      child,
      async createDatabase(name?: string) {
        const db = name ?? `t_${randomBytes(6).toString("hex")}`;
        if (!/^[a-z_][a-z0-9_]*$/.test(db)) throw new Error(`database name ${db}: use [a-z0-9_]`);
        const r = psqlRun(bin, port, "postgres", `CREATE DATABASE ${db}`);
        if (!r.ok) throw new Error(`CREATE DATABASE ${db}: ${r.output}`);
        return url(db);
      },
      psql(database: string, sql: string) {
        const r = psqlRun(bin, port, database, sql);
        if (!r.ok) throw new Error(`psql: ${r.output}`);
        return r.output;
      },
      stop() {
        stopped ??= (async () => {
          process.off("exit", onExit);
          if (child.exitCode === null && child.signalCode === null) {
            // SIGINT = fast shutdown (SIGTERM, "smart", would wait for clients to leave).
            child.kill("SIGINT");
            const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
            await exited;
            clearTimeout(timer);
          }
          rmSync(dir, { recursive: true, force: true });
        })();
        return stopped;
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`postgres did not start: ${lastError}`);
}

function psqlRun(bin: string, port: number, database: string, sql: string): { ok: boolean; output: string } {
  const r = spawnSync(join(bin, "psql"), ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", database, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql], {
    encoding: "utf8",
    timeout: 30_000,
  });
  return { ok: r.status === 0, output: r.status === 0 ? r.stdout.trim() : r.stderr || r.stdout };
}

let shared: Promise<PostgresServer> | undefined;

/**
 * One server for the whole test file (each vitest worker is one file), started on first use;
 * the caller registers `stopSharedPostgres` in afterAll. Each test still takes its own database.
 */
export function sharedPostgres(): Promise<PostgresServer> {
  return (shared ??= startPostgres());
}

export async function stopSharedPostgres(): Promise<void> {
  const s = shared;
  shared = undefined;
  if (s !== undefined) await (await s).stop();
}
