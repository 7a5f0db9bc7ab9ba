/**
 * The policy in force: one Ref holding {version, document, compiled rules}, replaced whole.
 *
 * A new policy (the file changed, or `apply` from code) is read, validated and compiled entirely
 * first; only a wholly valid one is swapped in, as the next version (1, 2, …), with the token
 * ledger reconfigured and the change audited (POLICY_UPDATED). A check reads the Ref once and
 * keeps what it read: a swap applies to checks that start after it, and one in flight finishes
 * under the version it started with. A bad file keeps the previous version; why (with the
 * position) is logged and audited.
 *
 * The file is watched (fs.watch on its directory, so that editors replacing it by rename are
 * seen) with a periodic stat as a fallback for file systems where watching misses changes;
 * events are debounced, and a file whose content did not change makes no new version.
 */
import { createHash } from "node:crypto";
import { watch, type FSWatcher } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { Clock, Context, Duration, Effect, Either, Layer, Queue, Ref, Schedule } from "effect";
import { AuditLogger } from "../ports/AuditLogger.js";
import { TokenLedger } from "../ports/TokenLedger.js";
import { emptyPolicy, type PolicyDocument } from "./config.js";
import { compilePolicy, parsePolicy, policyFormatOf, PolicyInvalid, type CompiledPolicy } from "./file.js";
import type { CompiledRules } from "./rules/compile.js";

export interface ActivePolicy {
  /** 0 = no policy file (the empty policy: default allow, no budgets); 1, 2, … each applied version. */
  readonly version: number;
  readonly document: PolicyDocument;
  readonly rules: CompiledRules;
  /** sha256 of the source. */
  readonly digest: string;
  /** The file it came from, or what applied it. */
  readonly source: string;
  /** When it was applied (ms since the epoch). */
  readonly appliedAt: number;
}

export type ReloadResult =
  | { readonly _tag: "Applied"; readonly policy: ActivePolicy }
  | { readonly _tag: "Unchanged"; readonly policy: ActivePolicy };

export interface PolicyEngineShape {
  /** The policy new checks use. */
  readonly current: Effect.Effect<ActivePolicy>;
  /** Compiles a document given in-process and applies it as the next version, all or nothing. */
  readonly apply: (document: PolicyDocument, source?: string) => Effect.Effect<ActivePolicy, PolicyInvalid>;
  /**
   * Reads the policy file now (the watcher calls this). Unchanged content makes no new version;
   * a bad file keeps the current one and fails with why.
   */
  readonly reload: Effect.Effect<ReloadResult, PolicyInvalid>;
}

export interface PolicyEngineOptions {
  /** `--policy-file`; undefined = the empty policy (default allow, no budgets), version 0. */
  readonly file?: string | undefined;
  /** Watch the file and reload on change (default true when there is a file). */
  readonly watch?: boolean;
  /** Stat fallback period (default 2 s). */
  readonly pollIntervalMs?: number;
  /** Quiet time after a change before reloading (default 200 ms): one reload per burst of writes. */
  readonly debounceMs?: number;
}

const emptyCompiled: CompiledPolicy = Either.getOrThrow(compilePolicy(emptyPolicy, "empty policy"));

export class PolicyEngine extends Context.Tag("orchestrator/PolicyEngine")<PolicyEngine, PolicyEngineShape>() {
  static readonly layer = (options: PolicyEngineOptions = {}): Layer.Layer<PolicyEngine, PolicyInvalid, TokenLedger | AuditLogger> =>
    Layer.scoped(PolicyEngine, make(options));
}

const make = (options: PolicyEngineOptions) =>
  Effect.gen(function* () {
    const ledger = yield* TokenLedger;
    const audit = yield* AuditLogger;
    const file = options.file;
    const lock = yield* Effect.makeSemaphore(1);
    const active = yield* Ref.make<ActivePolicy>({
      version: 0,
      document: emptyCompiled.document,
      rules: emptyCompiled.rules,
      digest: emptyCompiled.digest,
      source: "no policy file",
      appliedAt: yield* Clock.currentTimeMillis,
    });
    let lastRefused: string | undefined;

    /** Swaps in a compiled policy as the next version. Callers hold the lock. */
    const install = (compiled: CompiledPolicy, source: string) =>
      Effect.gen(function* () {
        const previous = yield* Ref.get(active);
        // Budgets first: once the new rules are visible, so are the budgets that go with them.
        yield* ledger.configure(compiled.document);
        const next: ActivePolicy = {
          version: previous.version + 1,
          document: compiled.document,
          rules: compiled.rules,
          digest: compiled.digest,
          source,
          appliedAt: yield* Clock.currentTimeMillis,
        };
        yield* Ref.set(active, next);
        lastRefused = undefined;
        const summary = {
          policy_version: next.version,
          previous_version: previous.version,
          source,
          sha256: compiled.digest,
          rules: compiled.rules.ruleCount,
          budgets: compiled.document.budgets.length + Object.values(compiled.document.tenants).reduce((n, t) => n + (t.budgets?.length ?? 0), 0),
          default: compiled.document.default,
        };
        yield* audit.log({ type: "POLICY_UPDATED", decision: "ALLOW", details: summary });
        yield* Effect.logInfo("policy applied").pipe(Effect.annotateLogs(summary));
        return next;
      });

    const refused = (e: PolicyInvalid, digest: string | undefined) =>
      Effect.gen(function* () {
        const current = yield* Ref.get(active);
        // The same bad content seen again (a second watch event, the poll) is not news.
        if (digest !== undefined && digest === lastRefused) return;
        lastRefused = digest;
        const details = { policy_version: current.version, source: e.source, problems: e.problems.length };
        yield* audit.log({ type: "POLICY_UPDATED", decision: "DENY", reason: e.message, details });
        yield* Effect.logWarning(`policy refused, version ${current.version} stays in force: ${e.message}`).pipe(Effect.annotateLogs(details));
      });

    const readAndCompile = (path: string) =>
      Effect.gen(function* () {
        const format = policyFormatOf(path);
        if (format === undefined) {
          return { digest: undefined, result: Either.left(new PolicyInvalid({ source: path, problems: [{ path: "", message: "a policy file ends in .yaml, .yml or .json" }] })) };
        }
        const text = yield* Effect.tryPromise(() => readFile(path, "utf8")).pipe(Effect.either);
        if (Either.isLeft(text)) {
          const cause = text.left.error;
          const message = `cannot read it: ${cause instanceof Error ? cause.message : String(cause)}`;
          return { digest: `unreadable:${message}`, result: Either.left(new PolicyInvalid({ source: path, problems: [{ path: "", message }] })) };
        }
        return { digest: createHash("sha256").update(text.right).digest("hex"), result: parsePolicy(text.right, { source: path, format }) };
      });

    const reload: Effect.Effect<ReloadResult, PolicyInvalid> =
      file === undefined
        ? Effect.map(Ref.get(active), (policy) => ({ _tag: "Unchanged" as const, policy }))
        : lock.withPermits(1)(
            Effect.gen(function* () {
              const { digest, result } = yield* readAndCompile(file);
              if (Either.isLeft(result)) {
                yield* refused(result.left, digest);
                return yield* Effect.fail(result.left);
              }
              const current = yield* Ref.get(active);
              if (current.version > 0 && current.digest === result.right.digest) {
                lastRefused = undefined;
                return { _tag: "Unchanged" as const, policy: current };
              }
              return { _tag: "Applied" as const, policy: yield* install(result.right, file) };
            }),
          );

    const apply = (document: PolicyDocument, source = "in-process") =>
      lock.withPermits(1)(
        Effect.gen(function* () {
          const compiled = compilePolicy(document, source);
          if (Either.isLeft(compiled)) {
            yield* refused(compiled.left, undefined);
            return yield* Effect.fail(compiled.left);
          }
          return yield* install(compiled.right, source);
        }),
      );

    if (file === undefined) {
      yield* ledger.configure(emptyPolicy);
    } else {
      // At start a bad file is fatal: the server refuses to start rather than run without it.
      yield* lock.withPermits(1)(
        Effect.gen(function* () {
          const { result } = yield* readAndCompile(file);
          if (Either.isLeft(result)) return yield* Effect.fail(result.left);
          yield* install(result.right, file);
        }),
      );
      if (options.watch !== false) yield* watchFile(file, reload, options);
    }

    return PolicyEngine.of({ current: Ref.get(active), apply, reload });
  });

/** Reloads on change: fs.watch events and a periodic stat, debounced. */
const watchFile = (file: string, reload: Effect.Effect<ReloadResult, PolicyInvalid>, options: PolicyEngineOptions) =>
  Effect.gen(function* () {
    const changed = yield* Queue.sliding<void>(1);
    const name = basename(file);
    yield* Effect.acquireRelease(
      Effect.sync((): FSWatcher | undefined => {
        try {
          const w = watch(dirname(file), { persistent: false }, (_event, f) => {
            if (f === null || f === name) Queue.unsafeOffer(changed, undefined);
          });
          w.on("error", () => undefined); // the directory went away: the poll still runs
          return w;
        } catch {
          return undefined;
        }
      }),
      (w) => Effect.sync(() => w?.close()),
    );

    const fingerprint = Effect.tryPromise(() => stat(file)).pipe(
      Effect.map((s) => `${s.ino}:${s.size}:${s.mtimeMs}`),
      Effect.orElseSucceed(() => "missing"),
    );
    let seen = yield* fingerprint;
    yield* fingerprint.pipe(
      Effect.flatMap((now) => (now === seen ? Effect.void : Effect.zipRight(Effect.sync(() => void (seen = now)), Queue.offer(changed, undefined)))),
      Effect.repeat(Schedule.spaced(Duration.millis(options.pollIntervalMs ?? 2000))),
      Effect.forkScoped,
    );

    yield* Queue.take(changed).pipe(
      Effect.zipRight(Effect.sleep(Duration.millis(options.debounceMs ?? 200))),
      Effect.zipRight(Queue.takeAll(changed)),
      Effect.zipRight(fingerprint),
      Effect.tap((f) => Effect.sync(() => void (seen = f))),
      Effect.zipRight(reload),
      Effect.catchAll(() => Effect.void), // refused: already logged and audited
      Effect.forever,
      Effect.forkScoped,
    );
  });
