/**
 * The policy document: what a policy file (YAML or JSON, `--policy-file`) holds once parsed.
 * Shared by the rules engine (src/policy/rules/) and the token ledger (src/policy/budgets/).
 *
 * File shape:
 *
 *   rules:                         # global rules
 *     - name: deny-prod-viewers    # unique within its list
 *       effect: deny               # allow | deny
 *       priority: 100              # higher first; deny wins ties
 *       operations: ["reports.*"]  # globs; absent = any
 *       roles: ["viewer"]          # any of; absent = any
 *       tenants: ["acme"]          # any of; absent = any
 *       condition: 'request.labels.env == "prod"'   # CEL, optional
 *   default: allow                 # when no rule matches: allow | deny (default allow)
 *   budgets:                       # token budgets, rolling windows
 *     - scope: principal           # principal | tenant | model
 *       match: "*"                 # subject / tenant / model name, or "*" = each one separately
 *       window: 1d                 # duration: 1m, 1h, 1d, 30d …
 *       tokens: 100000
 *   models:                        # per-model limits (requests and tokens per minute)
 *     gpt-4o: { rpm: 500, tpm: 30000 }
 *   tenants:
 *     acme:                        # extends the global policy for this tenant
 *       rules: [...]               # added to the global rules
 *       budgets: [...]             # added
 *       models: { gpt-4o: { rpm: 100 } }   # overrides the global model limits for acme
 *       principals:
 *         alice: { models: { gpt-4o: { tpm: 5000 } } }   # overrides for one principal
 */

export type RuleEffect = "allow" | "deny";

export interface RuleConfig {
  readonly name: string;
  readonly effect: RuleEffect;
  readonly priority: number;
  readonly operations?: ReadonlyArray<string>;
  readonly roles?: ReadonlyArray<string>;
  readonly tenants?: ReadonlyArray<string>;
  readonly condition?: string;
}

export type BudgetScope = "principal" | "tenant" | "model";

export interface BudgetConfig {
  readonly scope: BudgetScope;
  /** A subject, tenant or model name; "*" applies the budget to each one separately. */
  readonly match: string;
  readonly windowMs: number;
  readonly tokens: number;
}

export interface ModelLimits {
  /** Requests per minute. */
  readonly rpm?: number;
  /** Tokens per minute. */
  readonly tpm?: number;
}

export interface PrincipalPolicy {
  readonly models?: Readonly<Record<string, ModelLimits>>;
}

export interface TenantPolicy {
  readonly rules?: ReadonlyArray<RuleConfig>;
  readonly budgets?: ReadonlyArray<BudgetConfig>;
  readonly models?: Readonly<Record<string, ModelLimits>>;
  readonly principals?: Readonly<Record<string, PrincipalPolicy>>;
}

export interface PolicyDocument {
  readonly rules: ReadonlyArray<RuleConfig>;
  readonly default: RuleEffect;
  readonly budgets: ReadonlyArray<BudgetConfig>;
  readonly models: Readonly<Record<string, ModelLimits>>;
  readonly tenants: Readonly<Record<string, TenantPolicy>>;
}

export const emptyPolicy: PolicyDocument = { rules: [], default: "allow", budgets: [], models: {}, tenants: {} };
