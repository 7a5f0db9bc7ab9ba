/**
 * Where a server's CPU went, from a V8 .cpuprofile (node --cpu-prof): busy time by module
 * (each sample charged to its innermost JavaScript frame that has a URL, so a native call such
 * as better-sqlite3's Statement#run counts for the module that made it), then the hottest
 * functions by self time. Idle time is left out of every percentage.
 *
 *   node --import tsx bench/cpuprofile-summary.ts FILE.cpuprofile|DIR [TOP]
 *
 * For a directory, the largest profile in it is read (the main thread; tsx's loader thread
 * writes a small second one).
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: ReadonlyArray<number>;
}
interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>;
  readonly samples: ReadonlyArray<number>;
  readonly timeDeltas: ReadonlyArray<number>;
}

const root = fileURLToPath(new URL("..", import.meta.url));

/** A package name, `node:<module>`, `src/<file>`, or V8's (garbage collector), (program), ... */
export function moduleOf(url: string): string {
  const nm = url.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const parts = url.slice(nm + "/node_modules/".length).split("/");
    return parts[0]!.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  if (url.startsWith("node:")) {
    const m = /^node:(?:internal\/)?([\w-]+)/.exec(url);
    return `node:${m?.[1] ?? url.slice(5)}`;
  }
  if (url.startsWith("file://")) {
    try {
      return relative(root, fileURLToPath(url));
    } catch {
      return url;
    }
  }
  return url;
}

/** A frame's file: `effect/dist/esm/internal/fiberRuntime.js`, `src/core/Orchestrator.ts`, `node:...`. */
export function fileOf(url: string): string {
  const nm = url.lastIndexOf("/node_modules/");
  if (nm >= 0) return url.slice(nm + "/node_modules/".length);
  return url.startsWith("file://") ? moduleOf(url) : url;
}

export function largestProfile(path: string): string {
  if (!statSync(path).isDirectory()) return path;
  const files = readdirSync(path)
    .filter((f) => f.endsWith(".cpuprofile"))
    .map((f) => join(path, f));
  if (files.length === 0) throw new Error(`no .cpuprofile in ${path}`);
  return files.reduce((a, b) => (statSync(b).size > statSync(a).size ? b : a));
}

export function summarizeCpuProfile(path: string, top = 15): { file: string; text: string; json: Record<string, unknown> } {
  const file = largestProfile(path);
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  // Self time per node, from the sample time deltas (microseconds).
  const self = new Map<number, number>();
  profile.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));

  const owner = (id: number): string => {
    const leaf = byId.get(id)!.callFrame;
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur)!.callFrame;
      if (f.url !== "") return moduleOf(f.url);
    }
    return leaf.functionName === "" ? "(native)" : leaf.functionName;
  };

  const byModule = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const f = byId.get(id)!.callFrame;
    total += us;
    if (f.functionName === "(idle)") {
      idle += us;
      continue;
    }
    const m = owner(id);
    byModule.set(m, (byModule.get(m) ?? 0) + us);
    const fn = `${f.functionName || "(anonymous)"} ${f.url === "" ? `[native, in ${m}]` : `${fileOf(f.url)}:${f.lineNumber + 1}`}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
  }
  const busy = total - idle;
  const pct = (us: number): number => Math.round((1000 * us) / busy) / 10;
  const sorted = (m: Map<string, number>) => [...m].sort(([, a], [, b]) => b - a);
  const modules = sorted(byModule).filter(([, us]) => pct(us) >= 0.5);
  const functions = sorted(byFunction).slice(0, top);

  const text = [
    `  busy ${(busy / 1e6).toFixed(1)} s of ${(total / 1e6).toFixed(1)} s sampled; by module (innermost JS frame with a URL):`,
    ...modules.map(([m, us]) => `    ${pct(us).toFixed(1).padStart(5)}%  ${m}`),
    `  top ${top} functions by self time:`,
    ...functions.map(([f, us]) => `    ${pct(us).toFixed(1).padStart(5)}%  ${f}`),
  ].join("\n");
  return {
    file,
    text,
    json: {
      busy_s: Math.round(busy / 1e4) / 100,
      modules_pct: Object.fromEntries(modules.map(([m, us]) => [m, pct(us)])),
      top_functions_pct: Object.fromEntries(functions.map(([f, us]) => [f, pct(us)])),
    },
  };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [path, top] = process.argv.slice(2);
  if (path === undefined) {
    process.stderr.write("usage: node --import tsx bench/cpuprofile-summary.ts FILE.cpuprofile|DIR [TOP]\n");
    process.exit(2);
  }
  const s = summarizeCpuProfile(path, top === undefined ? 15 : Number(top));
  process.stdout.write(`${s.file}\n${s.text}\n`);
}
