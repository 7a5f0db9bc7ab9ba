/**
 * README.md's configuration table against the one list of settings (src/config.ts `settings`,
 * which parsing and `--help` read too): every setting has its row with its flag, variable and
 * default, and no row names a setting that does not exist.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { settings } from "../../src/config.js";
import { repoRoot } from "../support/server.js";

const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
const start = readme.indexOf("\n## Configuration\n");
const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
/** `| flag | variable | default | meaning |` rows, as cells. */
const rows = section
  .split("\n")
  .filter((l) => l.startsWith("| `--"))
  .map((l) => l.split(" | ").map((c) => c.replace(/^\| /, "").trim()));

describe("README.md, Configuration", () => {
  it.each(Object.values(settings).map((s) => [s.flag, s] as const))("documents --%s", (flag, s) => {
    const row = rows.find((r) => r[0] === `\`--${flag}\``);
    expect(row, `no row for --${flag} in the README's configuration table`).toBeDefined();
    expect(row![1]).toBe(`\`${s.env}\``);
    if (s.default !== undefined && s.default !== "") expect(row![2]).toContain(`\`${s.default}\``);
  });

  it("has no row for a setting that does not exist", () => {
    const flags = new Set(Object.values(settings).map((s) => `\`--${s.flag}\``));
    expect(rows.map((r) => r[0]).filter((f) => !flags.has(f!))).toEqual([]);
  });
});
