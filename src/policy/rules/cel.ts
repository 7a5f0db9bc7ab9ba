/**
 * CEL conditions of policy rules: compiled once per policy version (parse, a static check of
 * names and types, plan), evaluated per check against the request context.
 *
 * Variables:
 *   principal  {subject: string, tenant: string, roles: list(string)}
 *   request    {operation: string, labels: map(string, string), model: string (empty when the
 *               operation names none), estimated_tokens: int (0 when unknown)}
 *   now        timestamp (from the Clock, when the check runs)
 *
 * @bufbuild/cel 0.6.1 has no usable type checker (its checker only knows constants and
 * identifiers), and its planner accepts unknown variables, fields and functions, failing only
 * when evaluated. A rule that cannot work must be refused when the policy loads, with the place
 * of the mistake, so this module checks the expression itself: every identifier is declared,
 * every field of `principal`/`request` exists, every function is known, and operand types agree
 * where they are known (`dyn` where they are not, e.g. a list literal's elements).
 */
import { celEnv, CelScalar, isCelError, mapType, parse, plan, type CelResult } from "@bufbuild/cel";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";

type ParsedExpr = ReturnType<typeof parse>;
type Expr = ParsedExpr["expr"];

/** A position inside the condition's text, 1-based. */
export interface ExpressionPosition {
  readonly offset: number;
  readonly line: number;
  readonly column: number;
}

export interface ConditionError {
  readonly message: string;
  readonly position: ExpressionPosition | undefined;
}

/** What a condition sees. Built once per check, only when a condition is evaluated. */
export interface ConditionBindings {
  readonly principal: { readonly subject: string; readonly tenant: string; readonly roles: ReadonlyArray<string> };
  readonly request: {
    readonly operation: string;
    readonly labels: Readonly<Record<string, string>>;
    readonly model: string;
    readonly estimated_tokens: bigint;
  };
  readonly now?: ReturnType<typeof timestampFromMs>;
}

export interface CompiledCondition {
  readonly source: string;
  /** Reads `now`: the check takes the time from the Clock only when some condition does. */
  readonly usesNow: boolean;
  readonly evaluate: (bindings: ConditionBindings) => CelResult;
}

const env = celEnv({
  variables: {
    principal: mapType(CelScalar.STRING, CelScalar.DYN),
    request: mapType(CelScalar.STRING, CelScalar.DYN),
    now: CelScalar.DYN,
  },
});

export const nowBinding = (ms: number) => timestampFromMs(ms);

// --- the static check ---------------------------------------------------------------------

type Ty =
  | { readonly k: "bool" | "int" | "uint" | "double" | "string" | "bytes" | "null" | "timestamp" | "duration" | "type" | "dyn" }
  | { readonly k: "list"; readonly elem: Ty }
  | { readonly k: "map"; readonly key: Ty; readonly value: Ty }
  | { readonly k: "object"; readonly name: string; readonly fields: Readonly<Record<string, Ty>> };

const t = {
  bool: { k: "bool" },
  int: { k: "int" },
  uint: { k: "uint" },
  double: { k: "double" },
  string: { k: "string" },
  bytes: { k: "bytes" },
  null: { k: "null" },
  timestamp: { k: "timestamp" },
  duration: { k: "duration" },
  type: { k: "type" },
  dyn: { k: "dyn" },
} as const satisfies Record<string, Ty>;

const listOf = (elem: Ty): Ty => ({ k: "list", elem });
const mapOf = (key: Ty, value: Ty): Ty => ({ k: "map", key, value });

const declared: ReadonlyMap<string, Ty> = new Map<string, Ty>([
  ["principal", { k: "object", name: "principal", fields: { subject: t.string, tenant: t.string, roles: listOf(t.string) } }],
  [
    "request",
    { k: "object", name: "request", fields: { operation: t.string, labels: mapOf(t.string, t.string), model: t.string, estimated_tokens: t.int } },
  ],
  ["now", t.timestamp],
]);

const show = (ty: Ty): string =>
  ty.k === "list" ? `list(${show(ty.elem)})` : ty.k === "map" ? `map(${show(ty.key)}, ${show(ty.value)})` : ty.k === "object" ? ty.name : ty.k;

const numeric = (ty: Ty) => ty.k === "int" || ty.k === "uint" || ty.k === "double";
const isDyn = (ty: Ty) => ty.k === "dyn";
/** Could a value of type a equal one of type b (CEL compares numbers across kinds)? */
const comparable = (a: Ty, b: Ty) => isDyn(a) || isDyn(b) || a.k === b.k || (numeric(a) && numeric(b)) || a.k === "null" || b.k === "null";
const same = (a: Ty, b: Ty): Ty => (a.k === b.k && a.k !== "list" && a.k !== "map" && a.k !== "object" ? a : t.dyn);

class CheckError {
  constructor(
    readonly id: bigint,
    readonly message: string,
  ) {}
}

const operatorNames: Readonly<Record<string, string>> = {
  "_==_": "==",
  "_!=_": "!=",
  "_<_": "<",
  "_<=_": "<=",
  "_>_": ">",
  "_>=_": ">=",
  "_+_": "+",
  "_-_": "-",
  "_*_": "*",
  "_/_": "/",
  "_%_": "%",
  "-_": "unary -",
  "!_": "!",
  "_&&_": "&&",
  "_||_": "||",
  "@in": "in",
  "_[_]": "[]",
  "_?_:_": "?:",
};

const stringMethods = new Set(["startsWith", "endsWith", "contains", "matches"]);
const timeAccessors = new Set([
  "getFullYear",
  "getMonth",
  "getDayOfYear",
  "getDayOfMonth",
  "getDate",
  "getDayOfWeek",
  "getHours",
  "getMinutes",
  "getSeconds",
  "getMilliseconds",
]);
const conversions: Readonly<Record<string, Ty>> = {
  int: t.int,
  uint: t.uint,
  double: t.double,
  string: t.string,
  bytes: t.bytes,
  bool: t.bool,
  timestamp: t.timestamp,
  duration: t.duration,
  dyn: t.dyn,
  type: t.type,
};

type Scope = ReadonlyMap<string, Ty>;

function infer(e: Expr, scope: Scope): Ty {
  const kind = e.exprKind;
  switch (kind.case) {
    case "constExpr": {
      switch (kind.value.constantKind.case) {
        case "boolValue":
          return t.bool;
        case "int64Value":
          return t.int;
        case "uint64Value":
          return t.uint;
        case "doubleValue":
          return t.double;
        case "stringValue":
          return t.string;
        case "bytesValue":
          return t.bytes;
        case "nullValue":
          return t.null;
        case "durationValue":
          return t.duration;
        case "timestampValue":
          return t.timestamp;
        default:
          return t.dyn;
      }
    }
    case "identExpr": {
      const ty = scope.get(kind.value.name) ?? declared.get(kind.value.name);
      if (ty === undefined) {
        throw new CheckError(e.id, `undeclared reference to '${kind.value.name}' (the variables are principal, request and now)`);
      }
      return ty;
    }
    case "selectExpr": {
      const operand = kind.value.operand;
      if (operand === undefined) throw new CheckError(e.id, "a field selection without an operand");
      const ty = infer(operand, scope);
      const field = kind.value.field;
      const result = fieldType(e.id, ty, field);
      return kind.value.testOnly ? t.bool : result;
    }
    case "listExpr": {
      const elems = kind.value.elements.map((x) => infer(x, scope));
      const first = elems[0];
      return listOf(first !== undefined && elems.every((x) => x.k === first.k && x.k !== "list" && x.k !== "map") ? first : t.dyn);
    }
    case "structExpr": {
      if (kind.value.messageName !== "") throw new CheckError(e.id, `message types are not available (${kind.value.messageName})`);
      for (const entry of kind.value.entries) {
        if (entry.keyKind.case === "mapKey") infer(entry.keyKind.value, scope);
        if (entry.value !== undefined) infer(entry.value, scope);
      }
      return mapOf(t.dyn, t.dyn);
    }
    case "comprehensionExpr": {
      const c = kind.value;
      if (c.iterRange === undefined || c.accuInit === undefined || c.loopStep === undefined || c.result === undefined) return t.dyn;
      const range = infer(c.iterRange, scope);
      let v1: Ty;
      let v2: Ty | undefined;
      if (range.k === "list") {
        v1 = c.iterVar2 === "" ? range.elem : t.int;
        v2 = c.iterVar2 === "" ? undefined : range.elem;
      } else if (range.k === "map") {
        v1 = range.key;
        v2 = c.iterVar2 === "" ? undefined : range.value;
      } else if (range.k === "dyn") {
        v1 = t.dyn;
        v2 = c.iterVar2 === "" ? undefined : t.dyn;
      } else {
        throw new CheckError(c.iterRange.id, `cannot iterate over ${show(range)} (a list or a map is needed)`);
      }
      const accu = infer(c.accuInit, scope);
      const inner = new Map(scope);
      inner.set(c.accuVar, accu.k === "list" ? listOf(t.dyn) : accu);
      inner.set(c.iterVar, v1);
      if (v2 !== undefined) inner.set(c.iterVar2, v2);
      if (c.loopCondition !== undefined) infer(c.loopCondition, inner);
      infer(c.loopStep, inner);
      const outer = new Map(scope);
      outer.set(c.accuVar, accu.k === "list" ? listOf(t.dyn) : accu);
      return infer(c.result, outer);
    }
    case "callExpr":
      return inferCall(e.id, kind.value.function, kind.value.target, kind.value.args, scope);
    default:
      throw new CheckError(e.id, "an empty expression");
  }
}

function fieldType(id: bigint, ty: Ty, field: string): Ty {
  switch (ty.k) {
    case "object": {
      const f = ty.fields[field];
      if (f === undefined || !Object.hasOwn(ty.fields, field)) {
        throw new CheckError(id, `${ty.name} has no field '${field}' (its fields: ${Object.keys(ty.fields).join(", ")})`);
      }
      return f;
    }
    case "map":
      return ty.value;
    case "dyn":
      return t.dyn;
    default:
      throw new CheckError(id, `cannot select '${field}' from a ${show(ty)}`);
  }
}

function inferCall(id: bigint, fn: string, target: Expr | undefined, argExprs: ReadonlyArray<Expr>, scope: Scope): Ty {
  const self = target === undefined ? undefined : infer(target, scope);
  const args = argExprs.map((a) => infer(a, scope));
  const op = operatorNames[fn];
  const fail = (message: string): never => {
    throw new CheckError(id, message);
  };
  const need = (ty: Ty, ok: (x: Ty) => boolean, what: string, where: string) => {
    if (!isDyn(ty) && !ok(ty)) fail(`${where} needs ${what}, got ${show(ty)}`);
  };
  const [a = t.dyn, b = t.dyn] = args;
  switch (fn) {
    case "_&&_":
    case "_||_":
      for (const x of args) need(x, (y) => y.k === "bool", "bool operands", op!);
      return t.bool;
    case "!_":
      need(a, (y) => y.k === "bool", "a bool", "!");
      return t.bool;
    case "@not_strictly_false":
      return t.bool;
    case "_==_":
    case "_!=_":
      if (!comparable(a, b)) fail(`cannot compare ${show(a)} with ${show(b)} using ${op}`);
      return t.bool;
    case "_<_":
    case "_<=_":
    case "_>_":
    case "_>=_": {
      const ordered = (x: Ty) => x.k !== "list" && x.k !== "map" && x.k !== "object" && x.k !== "null" && x.k !== "type";
      need(a, ordered, "ordered operands", op!);
      need(b, ordered, "ordered operands", op!);
      if (!comparable(a, b)) fail(`cannot compare ${show(a)} with ${show(b)} using ${op}`);
      return t.bool;
    }
    case "@in": {
      if (b.k === "list") {
        if (!comparable(a, b.elem)) fail(`'in' looks for a ${show(a)} in a ${show(b)}`);
      } else if (b.k === "map") {
        if (!comparable(a, b.key)) fail(`'in' looks for a ${show(a)} key in a ${show(b)}`);
      } else if (!isDyn(b)) {
        fail(`'in' needs a list or a map on its right, got ${show(b)}`);
      }
      return t.bool;
    }
    case "_[_]":
      if (a.k === "list") {
        need(b, (y) => y.k === "int" || y.k === "uint", "an int index", "[]");
        return a.elem;
      }
      if (a.k === "map") return a.value;
      if (a.k === "object") {
        const key = argExprs[1]?.exprKind;
        return key?.case === "constExpr" && key.value.constantKind.case === "stringValue" ? fieldType(id, a, key.value.constantKind.value) : t.dyn;
      }
      if (!isDyn(a)) fail(`cannot index a ${show(a)}`);
      return t.dyn;
    case "_?_:_": {
      need(a, (y) => y.k === "bool", "a bool condition", "?:");
      const [, x = t.dyn, y = t.dyn] = args;
      return same(x, y);
    }
    case "_+_":
      if (isDyn(a) || isDyn(b)) return t.dyn;
      if (a.k === "list" && b.k === "list") return listOf(t.dyn);
      if ((a.k === "string" || a.k === "bytes" || numeric(a) || a.k === "duration") && a.k === b.k) return a;
      if ((a.k === "timestamp" && b.k === "duration") || (a.k === "duration" && b.k === "timestamp")) return t.timestamp;
      return fail(`no + for ${show(a)} and ${show(b)}`);
    case "_-_":
      if (isDyn(a) || isDyn(b)) return t.dyn;
      if ((numeric(a) || a.k === "duration") && a.k === b.k) return a;
      if (a.k === "timestamp" && b.k === "timestamp") return t.duration;
      if (a.k === "timestamp" && b.k === "duration") return t.timestamp;
      return fail(`no - for ${show(a)} and ${show(b)}`);
    case "_*_":
    case "_/_":
    case "_%_":
      if (isDyn(a) || isDyn(b)) return t.dyn;
      if (numeric(a) && a.k === b.k && !(fn === "_%_" && a.k === "double")) return a;
      return fail(`no ${op} for ${show(a)} and ${show(b)}${numeric(a) && numeric(b) ? " (convert one side with int() or double())" : ""}`);
    case "-_":
      need(a, (y) => y.k === "int" || y.k === "double" || y.k === "duration", "a signed number", "unary -");
      return a;
    case "size": {
      const arg = self ?? a;
      need(arg, (y) => y.k === "string" || y.k === "bytes" || y.k === "list" || y.k === "map", "a string, bytes, list or map", "size");
      return t.int;
    }
  }
  if (stringMethods.has(fn)) {
    if (self === undefined || args.length !== 1) fail(`${fn} is called as <string>.${fn}(<string>)`);
    need(self!, (y) => y.k === "string", "a string", fn);
    need(a, (y) => y.k === "string", "a string argument", fn);
    return t.bool;
  }
  if (timeAccessors.has(fn)) {
    if (self === undefined || args.length > 1) fail(`${fn} is called as <timestamp>.${fn}() or .${fn}(<time zone>)`);
    need(self!, (y) => y.k === "timestamp" || y.k === "duration", "a timestamp or a duration", fn);
    if (args.length === 1) need(a, (y) => y.k === "string", "a time zone string", fn);
    return t.int;
  }
  const conversion = conversions[fn];
  if (conversion !== undefined && Object.hasOwn(conversions, fn)) {
    if (self !== undefined || args.length !== 1) fail(`${fn}() takes one argument`);
    return conversion;
  }
  if (env.funcs.find(fn) !== undefined) return t.dyn;
  return fail(`unknown function '${fn}'`);
}

/** Which variables an expression reads (for `now`). */
function reads(e: Expr | undefined, name: string): boolean {
  if (e === undefined) return false;
  const kind = e.exprKind;
  switch (kind.case) {
    case "identExpr":
      return kind.value.name === name;
    case "selectExpr":
      return reads(kind.value.operand, name);
    case "callExpr":
      return reads(kind.value.target, name) || kind.value.args.some((a) => reads(a, name));
    case "listExpr":
      return kind.value.elements.some((x) => reads(x, name));
    case "structExpr":
      return kind.value.entries.some((x) => reads(x.value, name) || (x.keyKind.case === "mapKey" && reads(x.keyKind.value, name)));
    case "comprehensionExpr": {
      const c = kind.value;
      return [c.iterRange, c.accuInit, c.loopCondition, c.loopStep, c.result].some((x) => reads(x, name));
    }
    default:
      return false;
  }
}

export function positionAt(source: string, offset: number): ExpressionPosition {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < source.length; i++) {
    if (source[i] === "\n") {
      line++;
      start = i + 1;
    }
  }
  return { offset, line, column: offset - start + 1 };
}

/** Parses, checks and plans a condition; on failure says what and where. */
export function compileCondition(source: string): CompiledCondition | ConditionError {
  let parsed: ParsedExpr;
  try {
    parsed = parse(source);
  } catch (e) {
    const location = (e as { location?: { start?: { offset?: number } } }).location?.start;
    const raw = e instanceof Error ? e.message : String(e);
    return {
      // "<input>:1:30: found & but …": the position is reported separately.
      message: raw.replace(/^<input>:\d+:\d+: /, ""),
      position: typeof location?.offset === "number" ? positionAt(source, location.offset) : undefined,
    };
  }
  try {
    const ty = infer(parsed.expr, new Map());
    if (ty.k !== "bool" && ty.k !== "dyn") {
      return { message: `a condition must be a bool, not ${show(ty)}`, position: positionAt(source, 0) };
    }
  } catch (e) {
    if (!(e instanceof CheckError)) throw e;
    const offset = parsed.sourceInfo?.positions[String(e.id)];
    return { message: e.message, position: offset === undefined ? undefined : positionAt(source, offset) };
  }
  let evaluate: (bindings: ConditionBindings) => CelResult;
  try {
    const program = plan(env, parsed);
    evaluate = (bindings) => program(bindings as never);
  } catch (e) {
    return { message: e instanceof Error ? e.message : String(e), position: undefined };
  }
  return { source, usesNow: reads(parsed.expr, "now"), evaluate };
}

export const isConditionError = (c: CompiledCondition | ConditionError): c is ConditionError => !("evaluate" in c);

export { isCelError };
