#!/usr/bin/env node
// The `orchestrator` command (package.json "bin"): loads the TypeScript sources through tsx,
// then runs src/cli/main.ts. Exit codes: README, "Command line".
import { register } from "tsx/esm/api";

register();
const { main } = await import("./main.ts");
const code = await main(process.argv.slice(2));
if (code !== "serving") {
  // Exit once stdout has drained: open HTTP/2 sessions would otherwise keep the process alive.
  process.exitCode = code;
  process.stdout.write("", () => process.exit(code));
}
