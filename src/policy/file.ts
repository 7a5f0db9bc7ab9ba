/**
 * A policy file (`--policy-file`): YAML (.yaml, .yml) or JSON (.json), the shape documented in
 * ./config.ts and README.md ("Policy"). Parsing, validating (Effect Schema, unknown fields
 * refused) and compiling the rules' CEL conditions all happen here, before anything is applied:
 * a file is either wholly valid or refused with every problem and where it is (file line and
 * column; for a condition, also the line and column inside the expression).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { extname } from "node:path";
import { Data, Either, ParseResult, Schema } from "effect";
import { isNode, LineCounter, parseDocument, type Document } from "yaml";
import type { PolicyDocument } from "./config.js";
import { compileRules, isCompiled, type CompiledRules, type RuleProblem } from "./rules/compile.js";

export type PolicyFormat = "yaml" | "json";

/** By extension: .yaml/.yml → YAML, .json → JSON; anything else is refused. */
export function policyFormatOf(file: string): PolicyFormat | undefined {
  const ext = extname(file).toLowerCase();
  return ext === ".yaml" || ext === ".yml" ? "yaml" : ext === ".json" ? "json" : undefined;
}

export interface PolicyProblem {
  /** Where in the document, e.g. `tenants.acme.rules[0].condition`; empty for the whole file. */
  readonly path: string;
  /** The rule concerned, when there is one. */
  readonly rule?: string;
  /** In the file, 1-based. */
  readonly line?: number;
  readonly column?: number;
  /** For a condition: where inside the expression, 1-based. */
  readonly expression?: { readonly line: number; readonly column: number; readonly offset: number };
  readonly message: string;
}

export const formatProblem = (source: string, p: PolicyProblem): string => {
  const at = p.line === undefined ? source : `${source}:${p.line}:${p.column ?? 1}`;
  const what = [p.path, p.rule === undefined ? undefined : `(rule "${p.rule}")`].filter((x) => x !== undefined && x !== "").join(" ");
  const inExpr = p.expression === undefined ? "" : `at ${p.expression.line}:${p.expression.column} of the condition: `;
  return `${at}: ${what === "" ? "" : `${what}: `}${inExpr}${p.message}`;
};

/** A policy refused: nothing of it was applied. */
export class PolicyInvalid extends Data.TaggedError("PolicyInvalid")<{
  /** The file, or what supplied the document. */
  readonly source: string;
  readonly problems: ReadonlyArray<PolicyProblem>;
}> {
  override get message() {
    return this.problems.map((p) => formatProblem(this.source, p)).join("\n");
  }
}

/** A policy ready to apply: the document and its compiled rules. */
export interface CompiledPolicy {
  readonly document: PolicyDocument;
  readonly rules: CompiledRules;
  /** sha256 of the file's bytes (or of the document's JSON): a reload of the same content is no new version. */
  readonly digest: string;
}

// --- the document's schema (what the file holds) -------------------------------------------

const unitMs: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

const Duration = Schema.transformOrFail(Schema.String, Schema.Number, {
  strict: true,
  decode: (text, _, ast) => {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
    const ms = m === null ? undefined : Math.round(Number(m[1]) * unitMs[m[2]!]!);
    return ms === undefined || ms <= 0
      ? ParseResult.fail(new ParseResult.Type(ast, text, `expected a duration like 1m, 1h, 1d or 30d, got "${text}"`))
      : ParseResult.succeed(ms);
  },
  encode: (ms) => ParseResult.succeed(`${ms}ms`),
});

const Name = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_.:/@-]{0,127}$/, {
    message: () => "names are 1-128 of [A-Za-z0-9_.:/@-], starting with a letter or digit",
  }),
);
const NonEmpty = Schema.String.pipe(Schema.minLength(1, { message: () => "must not be empty" }));
const List = (item: typeof NonEmpty) =>
  Schema.Array(item).pipe(Schema.minItems(1, { message: () => "must not be empty (leave the field out to match any)" }));
const Count = Schema.Number.pipe(
  Schema.int({ message: () => "expected a whole number" }),
  Schema.positive({ message: () => "must be positive" }),
  Schema.lessThanOrEqualTo(Number.MAX_SAFE_INTEGER),
);
const exact = { exact: true } as const;

const RuleEffectSchema = Schema.Literal("allow", "deny").annotations({ message: () => ({ message: "expected allow or deny", override: true }) });

const Rule = Schema.Struct({
  name: Name,
  effect: RuleEffectSchema,
  priority: Schema.optionalWith(
    Schema.Number.pipe(Schema.int({ message: () => "expected a whole number" }), Schema.between(-1_000_000, 1_000_000)),
    { default: () => 0 },
  ),
  operations: Schema.optionalWith(List(NonEmpty), exact),
  roles: Schema.optionalWith(List(NonEmpty), exact),
  tenants: Schema.optionalWith(List(NonEmpty), exact),
  condition: Schema.optionalWith(NonEmpty, exact),
});

const Budget = Schema.Struct({
  scope: Schema.Literal("principal", "tenant", "model").annotations({ message: () => ({ message: "expected principal, tenant or model", override: true }) }),
  match: NonEmpty,
  windowMs: Schema.propertySignature(Duration).pipe(Schema.fromKey("window")),
  tokens: Count,
});

const ModelLimits = Schema.Struct({ rpm: Schema.optionalWith(Count, exact), tpm: Schema.optionalWith(Count, exact) });
const Models = Schema.Record({ key: NonEmpty, value: ModelLimits });

const Tenant = Schema.Struct({
  rules: Schema.optionalWith(Schema.Array(Rule), exact),
  budgets: Schema.optionalWith(Schema.Array(Budget), exact),
  models: Schema.optionalWith(Models, exact),
  principals: Schema.optionalWith(Schema.Record({ key: NonEmpty, value: Schema.Struct({ models: Schema.optionalWith(Models, exact) }) }), exact),
});

const PolicyFile = Schema.Struct({
  rules: Schema.optionalWith(Schema.Array(Rule), { default: () => [] }),
  default: Schema.optionalWith(RuleEffectSchema, { default: () => "allow" as const }),
  budgets: Schema.optionalWith(Schema.Array(Budget), { default: () => [] }),
  models: Schema.optionalWith(Models, { default: () => ({}) }),
  tenants: Schema.optionalWith(Schema.Record({ key: NonEmpty, value: Tenant }), { default: () => ({}) }),
});

// The decoded file is exactly a PolicyDocument.
const decodeFile: (u: unknown) => Either.Either<PolicyDocument, ParseResult.ParseError> = Schema.decodeUnknownEither(PolicyFile, {
  errors: "all",
  onExcessProperty: "error",
});

// --- positions ----------------------------------------------------------------------------

type Path = ReadonlyArray<string | number | symbol>;

const pathText = (path: Path): string =>
  path.reduce<string>((out, k) => (typeof k === "number" ? `${out}[${k}]` : `${out}${out === "" ? "" : "."}${String(k)}`), "");

/** Where a path's node starts in the file (or its nearest existing parent's). */
function locate(doc: Document | undefined, lc: LineCounter, path: Path): { line: number; column: number } | undefined {
  if (doc === undefined) return undefined;
  for (let n = path.length; n >= 0; n--) {
    const node: unknown = n === 0 ? doc.contents : doc.getIn(path.slice(0, n) as Array<string | number>, true);
    if (isNode(node) && node.range !== undefined && node.range !== null) {
      const pos = lc.linePos(node.range[0]);
      return { line: pos.line, column: pos.col };
    }
  }
  return undefined;
}

const ruleNameAt = (value: unknown, path: Path): string | undefined => {
  // rules[i] or tenants.<t>.rules[i]
  const i = path[0] === "rules" ? 2 : path[0] === "tenants" && path[2] === "rules" ? 4 : 0;
  if (i === 0 || path.length < i) return undefined;
  let v: unknown = value;
  for (const k of path.slice(0, i)) v = typeof v === "object" && v !== null ? (v as Record<string | number, unknown>)[k as string | number] : undefined;
  const name = typeof v === "object" && v !== null ? (v as Record<string, unknown>)["name"] : undefined;
  return typeof name === "string" ? name : undefined;
};

const jsonPosition = (text: string, message: string): { line: number; column: number } | undefined => {
  const m = /position (\d+)/.exec(message);
  if (m === null) return undefined;
  const offset = Number(m[1]);
  const before = text.slice(0, offset).split("\n");
  return { line: before.length, column: before.at(-1)!.length + 1 };
};

// --- parse, validate, compile --------------------------------------------------------------

/** Compiles a document given in-process (tests, embedding): the rules' problems, if any. */
export function compilePolicy(document: PolicyDocument, source = "policy"): Either.Either<CompiledPolicy, PolicyInvalid> {
  return compileWith(document, source, createHash("sha256").update(JSON.stringify(document)).digest("hex"), undefined, new LineCounter());
}

function compileWith(
  document: PolicyDocument,
  source: string,
  digest: string,
  doc: Document | undefined,
  lc: LineCounter,
): Either.Either<CompiledPolicy, PolicyInvalid> {
  const rules = compileRules(document);
  if (isCompiled(rules)) return Either.right({ document, rules, digest });
  return Either.left(
    new PolicyInvalid({
      source,
      problems: rules.problems.map((p: RuleProblem) => ({
        path: pathText(p.path),
        ...(p.rule === undefined ? {} : { rule: p.rule }),
        ...locate(doc, lc, p.path),
        ...(p.expression === undefined ? {} : { expression: p.expression }),
        message: p.message,
      })),
    }),
  );
}

/** Parses a policy file's text: syntax, schema and every rule's condition, all or nothing. */
export function parsePolicy(text: string, options: { readonly source: string; readonly format: PolicyFormat }): Either.Either<CompiledPolicy, PolicyInvalid> {
  const { source } = options;
  const refuse = (problems: ReadonlyArray<PolicyProblem>) => Either.left(new PolicyInvalid({ source, problems }));
  const digest = createHash("sha256").update(text).digest("hex");
  const lc = new LineCounter();
  let value: unknown;
  let doc: Document | undefined;
  if (options.format === "json") {
    try {
      value = JSON.parse(text);
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      // V8 does not always say where; the YAML parser (JSON is YAML) usually can.
      const yamlError = parseDocument(text, { lineCounter: lc }).errors[0]?.linePos?.[0];
      const at = jsonPosition(text, message) ?? (yamlError === undefined ? undefined : { line: yamlError.line, column: yamlError.col });
      return refuse([{ path: "", ...at, message: `not valid JSON: ${message.replace(/, ".*" is not valid JSON$/s, "")}` }]);
    }
    // JSON is YAML: parsed again only to find where a schema problem is.
    const located = parseDocument(text, { lineCounter: lc });
    doc = located.errors.length === 0 ? located : undefined;
  } else {
    doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true });
    if (doc.errors.length > 0) {
      return refuse(
        doc.errors.map((e) => ({
          path: "",
          ...(e.linePos === undefined ? {} : { line: e.linePos[0].line, column: e.linePos[0].col }),
          // The pretty form appends " at line L, column C:" and a snippet: the position is kept apart.
          message: `not valid YAML: ${e.message.split("\n")[0]!.replace(/ at line \d+, column \d+:?$/, "")}`,
        })),
      );
    }
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      return refuse([{ path: "", message: `not valid YAML: ${e instanceof Error ? e.message : String(e)}` }]);
    }
  }
  if (value === null || value === undefined) {
    // An empty file is refused, not read as "allow everything": it is also what a file being
    // rewritten in place looks like for a moment. An empty policy is `{}`.
    return refuse([{ path: "", message: "the file is empty (an empty policy is written {})" }]);
  }
  if (typeof value !== "object" || Array.isArray(value)) {
    return refuse([{ path: "", line: 1, column: 1, message: "expected a mapping with rules, default, budgets, models, tenants" }]);
  }
  const decoded = decodeFile(value);
  if (Either.isLeft(decoded)) {
    const issues = ParseResult.ArrayFormatter.formatErrorSync(decoded.left);
    // An optional field's schema is a union with `undefined`: its "Expected undefined" branch
    // only repeats that the field's value is wrong, which another issue already says.
    const relevant = issues.filter((i) => !i.message.startsWith("Expected undefined, actual"));
    const problems: ReadonlyArray<PolicyProblem> = (relevant.length > 0 ? relevant : issues).map((issue) => {
      const rule = ruleNameAt(value, issue.path);
      return {
        path: pathText(issue.path),
        ...(rule === undefined ? {} : { rule }),
        ...locate(doc, lc, issue.path),
        message: issue.message,
      };
    });
    // In file order, as a reader fixes them.
    return refuse([...problems].sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0)));
  }
  return compileWith(decoded.right, source, digest, doc, lc);
}

/** Reads and parses a policy file (at start, to refuse a bad one before serving). */
export function readPolicyFile(file: string): Either.Either<CompiledPolicy, PolicyInvalid> {
  const format = policyFormatOf(file);
  if (format === undefined) {
    return Either.left(new PolicyInvalid({ source: file, problems: [{ path: "", message: "a policy file ends in .yaml, .yml or .json" }] }));
  }
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    return Either.left(new PolicyInvalid({ source: file, problems: [{ path: "", message: `cannot read it: ${e instanceof Error ? e.message : String(e)}` }] }));
  }
  return parsePolicy(text, { source: file, format });
}
