// Static checks of the Cloud Run deployment in terraform/: every terraform/*.tf file is parsed
// with @cdktf/hcl2json (HCL -> JSON, no Terraform, no provider, no network) and the parsed
// configuration is checked against what books-server needs on Cloud Run.
//
// Run: node --test test_terraform.mjs (with @cdktf/hcl2json installed beside this file, see
// run_test.sh). BOOKS_TERRAFORM_DIR names the directory to check (default ../../terraform).
//
// Each check is a function of the parsed configuration that throws an AssertionError, so the
// same checks also run against mutated copies to show that they catch regressions.

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "@cdktf/hcl2json";

const TF_DIR = resolve(
  process.env.BOOKS_TERRAFORM_DIR ?? fileURLToPath(new URL("../../terraform", import.meta.url)),
);

// The API's proto, beside terraform/ in the source tree: the Book message's fields are what the
// firestore store writes into each book document.
const BOOKS_PROTO = resolve(process.env.BOOKS_PROTO_FILE ?? join(TF_DIR, "..", "proto", "books", "v1", "books.proto"));

// The field names of `message NAME` in a proto file: its own fields and those of its oneofs, not
// those of nested messages or the contents of option blocks.
function protoMessageFields(text, name) {
  const start = text.search(new RegExp(`^message\\s+${name}\\s*\\{`, "m"));
  assert.ok(start >= 0, `message ${name} not found in ${BOOKS_PROTO}`);
  const fields = [];
  const blocks = []; // the kind of each open block: "message", "oneof" or "other"
  for (const line of text.slice(start).split("\n")) {
    const code = line.replace(/\/\/.*$/, "");
    const inFields = blocks.length > 0 && blocks.every((k, i) => (i === 0 ? k === "message" : k === "oneof"));
    const m = /^\s*(?:repeated\s+|optional\s+)?[A-Za-z_][\w.]*\s+([A-Za-z_]\w*)\s*=\s*\d+/.exec(code);
    if (inFields && m) fields.push(m[1]);
    for (const ch of code) {
      if (ch === "{") blocks.push(/^\s*message\b/.test(code) ? "message" : /^\s*oneof\b/.test(code) ? "oneof" : "other");
      else if (ch === "}") blocks.pop();
    }
    if (blocks.length === 0) break;
  }
  return fields;
}

// ---------------------------------------------------------------------------------------------
// Loading: parse each file on its own, then merge, as Terraform reads a module's files as one.

function tfFiles(dir) {
  assert.ok(existsSync(dir), `terraform directory ${dir} does not exist (set BOOKS_TERRAFORM_DIR)`);
  return readdirSync(dir)
    .filter((f) => f.endsWith(".tf"))
    .sort()
    .map((f) => join(dir, f));
}

// Merge the parsed files: top-level arrays (terraform, locals, provider blocks) are
// concatenated; resource/variable/output maps are merged, and a name defined twice is an error.
function mergeInto(target, source, path = []) {
  for (const [key, value] of Object.entries(source)) {
    if (!(key in target)) {
      target[key] = value;
    } else if (Array.isArray(target[key]) && Array.isArray(value)) {
      if (path.length === 0) target[key] = target[key].concat(value);
      else throw new Error(`duplicate definition of ${[...path, key].join(".")}`);
    } else if (isObject(target[key]) && isObject(value)) {
      mergeInto(target[key], value, [...path, key]);
    } else {
      throw new Error(`duplicate definition of ${[...path, key].join(".")}`);
    }
  }
  return target;
}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

async function parseSources(sources) {
  const config = {};
  for (const [name, text] of Object.entries(sources)) {
    mergeInto(config, await parse(name, text));
  }
  return config;
}

function readSources(dir) {
  return Object.fromEntries(tfFiles(dir).map((f) => [f, readFileSync(f, "utf8")]));
}

// ---------------------------------------------------------------------------------------------
// Helpers over the hcl2json shape: blocks are arrays of objects, expressions are "${...}".

const ref = (expr) => "${" + expr + "}";

// The single block of a (possibly missing) block list, failing with a readable message.
function one(blocks, what) {
  assert.ok(Array.isArray(blocks), `${what}: block is missing`);
  assert.equal(blocks.length, 1, `${what}: expected exactly one block, found ${blocks.length}`);
  return blocks[0];
}

function resources(config, type) {
  const byName = config.resource?.[type] ?? {};
  return Object.entries(byName).map(([name, blocks]) => ({ name, body: one(blocks, `${type}.${name}`) }));
}

function allResources(config) {
  return Object.keys(config.resource ?? {}).flatMap((type) =>
    resources(config, type).map((r) => ({ type, ...r })),
  );
}

function variable(config, name) {
  const blocks = config.variable?.[name];
  assert.ok(blocks, `variable "${name}" is not declared`);
  return one(blocks, `variable ${name}`);
}

function locals(config) {
  return Object.assign({}, ...(config.locals ?? []));
}

// The value an attribute has with the default variables: literals stay as they are, and a value
// that is exactly ${var.X} or ${local.X} is replaced by the variable's default or the local.
function resolveDefault(config, value, depth = 0) {
  if (typeof value !== "string" || depth > 8) return value;
  let m = /^\$\{var\.([A-Za-z0-9_]+)\}$/.exec(value);
  if (m) return resolveDefault(config, variable(config, m[1]).default, depth + 1);
  m = /^\$\{local\.([A-Za-z0-9_]+)\}$/.exec(value);
  if (m) {
    const l = locals(config);
    assert.ok(m[1] in l, `local.${m[1]} is not defined`);
    return resolveDefault(config, l[m[1]], depth + 1);
  }
  return value;
}

function service(config) {
  const services = resources(config, "google_cloud_run_v2_service");
  assert.equal(services.length, 1, `expected one google_cloud_run_v2_service, found ${services.length}`);
  return services[0];
}

function template(config) {
  return one(service(config).body.template, "google_cloud_run_v2_service template");
}

function container(config) {
  return one(template(config).containers, "google_cloud_run_v2_service template.containers");
}

// ---------------------------------------------------------------------------------------------
// A small evaluator for the part of Terraform's expression language the module uses in locals,
// preconditions, validations, counts and for_each: literals, templates, var./local. references,
// operators, conditionals, tuples, objects, indexing, for expressions and a few functions. It lets
// the checks ask what a rule decides for given variables (e.g. "postgresql with 10 instances")
// instead of matching the rule's text. A reference to a resource or data source evaluates to an
// Unknown standing for its value at apply time ("<google_sql_database_instance.books[0].name>" in
// a string); a rule that needs one to decide fails loudly. Like HCL, && and || evaluate both sides,
// and a conditional evaluates only the branch it selects.

class Unknown {
  constructor(path) { this.path = path; }
  toString() { return `<${this.path}>`; }
}

class EvalError extends Error {}

function lex(src) {
  const tokens = [];
  let i = 0;
  const punct = ["==", "!=", "<=", ">=", "&&", "||", "=>", "...", "(", ")", "[", "]", "{", "}", ",", ".", "?", ":", "=", "<", ">", "!", "+", "-", "*", "/", "%"];
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) { i++; continue; }
    if (c === '"') {
      const end = scanTemplateEnd(src, i + 1);
      tokens.push({ t: "str", v: parseTemplate(src.slice(i + 1, end)) });
      i = end + 1;
      continue;
    }
    let m = /^[0-9]+(\.[0-9]+)?/.exec(src.slice(i));
    if (m) { tokens.push({ t: "num", v: Number(m[0]) }); i += m[0].length; continue; }
    m = /^[A-Za-z_][A-Za-z0-9_-]*/.exec(src.slice(i));
    if (m) { tokens.push({ t: "id", v: m[0] }); i += m[0].length; continue; }
    const p = punct.find((q) => src.startsWith(q, i));
    if (!p) throw new EvalError(`cannot read ${JSON.stringify(src.slice(i, i + 20))}`);
    tokens.push({ t: p });
    i += p.length;
  }
  tokens.push({ t: "eof" });
  return tokens;
}

// Index of the quote that closes a string whose body starts at i (interpolations may nest strings).
function scanTemplateEnd(src, i) {
  for (; i < src.length; i++) {
    if (src[i] === "\\") { i++; continue; }
    if (src[i] === '"') return i;
    if (src.startsWith("${", i)) i = scanInterpolationEnd(src, i + 2);
  }
  throw new EvalError("unterminated string");
}

// Index of the } that closes an interpolation whose expression starts at i.
function scanInterpolationEnd(src, i) {
  let depth = 0;
  for (; i < src.length; i++) {
    const c = src[i];
    if (c === '"') i = scanTemplateEnd(src, i + 1);
    else if (c === "{") depth++;
    else if (c === "}") { if (depth === 0) return i; depth--; }
  }
  throw new EvalError("unterminated interpolation");
}

// A template body: literal text and ${...} parts, each part parsed as an expression.
function parseTemplate(body) {
  const parts = [];
  let lit = "";
  for (let i = 0; i < body.length; i++) {
    if (body[i] === "\\" && i + 1 < body.length) {
      const e = body[++i];
      lit += { n: "\n", t: "\t", '"': '"', "\\": "\\" }[e] ?? "\\" + e;
    } else if (body.startsWith("$${", i)) {
      lit += "${";
      i += 2;
    } else if (body.startsWith("${", i)) {
      const end = scanInterpolationEnd(body, i + 2);
      if (lit) parts.push(lit);
      lit = "";
      parts.push(parseExpression(body.slice(i + 2, end)));
      i = end;
    } else {
      lit += body[i];
    }
  }
  if (lit || parts.length === 0) parts.push(lit);
  return { k: "template", parts };
}

function parseExpression(src) {
  const tokens = lex(src);
  let pos = 0;
  const peek = (o = 0) => tokens[pos + o];
  const next = () => tokens[pos++];
  const expect = (t) => {
    const tok = next();
    if (tok.t !== t) throw new EvalError(`expected ${t}, found ${tok.t} ${tok.v ?? ""} in ${src}`);
    return tok;
  };
  const accept = (t) => (peek().t === t ? next() : null);
  const binary = [["||"], ["&&"], ["==", "!="], ["<", ">", "<=", ">="], ["+", "-"], ["*", "/", "%"]];

  function expr() {
    const cond = bin(0);
    if (!accept("?")) return cond;
    const yes = expr();
    expect(":");
    return { k: "cond", cond, yes, no: expr() };
  }
  function bin(level) {
    if (level === binary.length) return unary();
    let left = bin(level + 1);
    while (binary[level].includes(peek().t)) {
      const op = next().t;
      left = { k: "bin", op, left, right: bin(level + 1) };
    }
    return left;
  }
  function unary() {
    if (accept("!")) return { k: "not", e: unary() };
    if (accept("-")) return { k: "neg", e: unary() };
    return postfix(primary());
  }
  function postfix(e) {
    for (;;) {
      if (peek().t === "." && peek(1).t === "id") { next(); e = { k: "attr", e, name: next().v }; }
      else if (peek().t === "." && peek(1).t === "num") { next(); e = { k: "index", e, i: { k: "lit", v: next().v } }; }
      else if (peek().t === "[" ) { next(); const i = expr(); expect("]"); e = { k: "index", e, i }; }
      else return e;
    }
  }
  function forExpr(close) {
    // after "for": [k,] v in coll : [key =>] value [if cond]
    const a = expect("id").v;
    const b = accept(",") ? expect("id").v : null;
    expect("id"); // "in"
    const coll = expr();
    expect(":");
    let key = null;
    let value = expr();
    if (accept("=>")) { key = value; value = expr(); }
    let cond = null;
    if (peek().t === "id" && peek().v === "if") { next(); cond = expr(); }
    expect(close);
    return { k: "for", kVar: b ? a : null, vVar: b ?? a, coll, key, value, cond, object: close === "}" };
  }
  function primary() {
    const tok = next();
    switch (tok.t) {
      case "num": return { k: "lit", v: tok.v };
      case "str": return tok.v;
      case "(": { const e = expr(); expect(")"); return e; }
      case "[": {
        if (peek().t === "id" && peek().v === "for") { next(); return forExpr("]"); }
        const items = [];
        while (!accept("]")) { items.push(expr()); accept(","); }
        return { k: "tuple", items };
      }
      case "{": {
        if (peek().t === "id" && peek().v === "for") { next(); return forExpr("}"); }
        const items = [];
        while (!accept("}")) {
          const keyTok = next();
          const key = keyTok.t === "id" ? keyTok.v : keyTok.t === "str" ? evalNode(keyTok.v, {}) : null;
          if (key === null) throw new EvalError(`bad object key in ${src}`);
          if (!accept("=")) expect(":");
          items.push([key, expr()]);
          accept(",");
        }
        return { k: "object", items };
      }
      case "id": {
        if (tok.v === "true" || tok.v === "false") return { k: "lit", v: tok.v === "true" };
        if (tok.v === "null") return { k: "lit", v: null };
        if (accept("(")) {
          const args = [];
          while (!accept(")")) { args.push(expr()); accept(","); }
          return { k: "call", name: tok.v, args };
        }
        return { k: "ref", name: tok.v };
      }
      default:
        throw new EvalError(`unexpected ${tok.t} in ${src}`);
    }
  }
  const e = expr();
  if (peek().t !== "eof") throw new EvalError(`unexpected ${peek().t} ${peek().v ?? ""} after expression in ${src}`);
  return e;
}

const isUnknown = (v) => v instanceof Unknown;

function known(v, what) {
  if (isUnknown(v)) throw new EvalError(`${what} depends on ${v.path}, known only at apply time`);
  return v;
}

function equal(a, b) {
  if (isUnknown(a) || isUnknown(b)) throw new EvalError(`comparison with ${isUnknown(a) ? a.path : b.path}`);
  return JSON.stringify(a) === JSON.stringify(b);
}

function str(v) {
  if (isUnknown(v)) return v.toString();
  if (v === null) throw new EvalError("null in a string template");
  if (typeof v === "object") throw new EvalError(`cannot put ${JSON.stringify(v)} in a string`);
  return String(v);
}

// RE2's (?i) prefix becomes JavaScript's "i" flag; regex() fails when nothing matches, like Terraform's.
function tfRegex(pattern, s) {
  let flags = "";
  if (pattern.startsWith("(?i)")) { flags = "i"; pattern = pattern.slice(4); }
  const m = new RegExp(pattern, flags).exec(known(s, "regex"));
  if (!m) throw new EvalError(`regex ${pattern} does not match ${s}`);
  return m[0];
}

const functions = {
  coalesce: (...a) => { const v = a.find((x) => x !== null && x !== ""); if (v === undefined) throw new EvalError("coalesce: no non-null argument"); return v; },
  lookup: (m, k, d) => { if (m === null || typeof m !== "object") throw new EvalError("lookup: not a map"); return Object.prototype.hasOwnProperty.call(m, k) ? m[k] : d; },
  startswith: (s, p) => known(s, "startswith").startsWith(known(p, "startswith")),
  endswith: (s, p) => known(s, "endswith").endsWith(known(p, "endswith")),
  contains: (list, v) => known(list, "contains").some((x) => equal(x, v)),
  alltrue: (list) => list.every((x) => known(x, "alltrue") === true),
  anytrue: (list) => list.some((x) => known(x, "anytrue") === true),
  length: (v) => (typeof v === "string" ? v.length : Array.isArray(v) ? v.length : Object.keys(known(v, "length")).length),
  join: (sep, list) => list.map(str).join(sep),
  split: (sep, s) => known(s, "split").split(sep),
  slice: (list, a, b) => known(list, "slice").slice(a, b),
  substr: (s, off, len) => known(s, "substr").substr(off, len < 0 ? undefined : len),
  trimprefix: (s, p) => (known(s, "trimprefix").startsWith(p) ? s.slice(p.length) : s),
  tostring: (v) => (v === null ? null : str(v)),
  tonumber: (v) => { if (v === null) return null; const n = Number(known(v, "tonumber")); if (v === "" || Number.isNaN(n)) throw new EvalError(`tonumber(${v})`); return n; },
  trimsuffix: (s, x) => (known(s, "trimsuffix").endsWith(x) ? s.slice(0, s.length - x.length) : s),
  floor: (n) => Math.floor(known(n, "floor")),
  regex: tfRegex,
  merge: (...maps) => Object.assign({}, ...maps.map((m) => { if (m === null || typeof known(m, "merge") !== "object" || Array.isArray(m)) throw new EvalError("merge: not a map"); return m; })),
};

function evalNode(n, scope) {
  switch (n.k) {
    case "lit": return n.v;
    case "template": {
      if (n.parts.length === 1 && typeof n.parts[0] !== "string") return evalNode(n.parts[0], scope);
      const out = n.parts.map((p) => (typeof p === "string" ? p : str(evalNode(p, scope)))).join("");
      return out;
    }
    case "tuple": return n.items.map((e) => evalNode(e, scope));
    case "object": return Object.fromEntries(n.items.map(([k, e]) => [k, evalNode(e, scope)]));
    case "not": return !known(evalNode(n.e, scope), "!");
    case "neg": return -known(evalNode(n.e, scope), "-");
    case "cond": {
      const c = known(evalNode(n.cond, scope), "a condition");
      if (typeof c !== "boolean") throw new EvalError(`condition is ${JSON.stringify(c)}, not a bool`);
      return evalNode(c ? n.yes : n.no, scope);
    }
    case "bin": {
      const a = evalNode(n.left, scope);
      const b = evalNode(n.right, scope);
      switch (n.op) {
        case "==": return equal(a, b);
        case "!=": return !equal(a, b);
        case "||": case "&&": {
          for (const v of [a, b]) {
            if (typeof known(v, n.op) !== "boolean") throw new EvalError(`${n.op} of ${JSON.stringify(v)}`);
          }
          return n.op === "||" ? a || b : a && b;
        }
      }
      const x = known(a, n.op);
      const y = known(b, n.op);
      return { "<": x < y, ">": x > y, "<=": x <= y, ">=": x >= y, "+": x + y, "-": x - y, "*": x * y, "/": x / y, "%": x % y }[n.op];
    }
    case "call": {
      if (n.name === "can") {
        try {
          const v = evalNode(n.args[0], scope);
          return !isUnknown(v);
        } catch (e) {
          if (e instanceof EvalError) return false;
          throw e;
        }
      }
      if (n.name === "try") {
        for (const a of n.args) {
          try {
            return evalNode(a, scope);
          } catch (e) {
            if (!(e instanceof EvalError)) throw e;
          }
        }
        throw new EvalError("try: no argument could be evaluated");
      }
      const f = functions[n.name];
      if (!f) throw new EvalError(`function ${n.name}() is not supported by this evaluator`);
      return f(...n.args.map((a) => evalNode(a, scope)));
    }
    case "for": {
      const coll = known(evalNode(n.coll, scope), "for");
      const entries = Array.isArray(coll) ? coll.map((v, i) => [i, v]) : Object.keys(coll).sort().map((k) => [k, coll[k]]);
      const out = n.object ? {} : [];
      for (const [k, v] of entries) {
        const inner = { ...scope, [n.vVar]: v, ...(n.kVar ? { [n.kVar]: k } : {}) };
        if (n.cond && !known(evalNode(n.cond, inner), "for if")) continue;
        const value = evalNode(n.value, inner);
        if (n.object) out[str(evalNode(n.key, inner))] = value;
        else out.push(value);
      }
      return out;
    }
    case "ref": {
      if (n.name in scope) return scope[n.name];
      return new Unknown(n.name);
    }
    case "attr": case "index": {
      const base = evalNode(n.e, scope);
      const key = n.k === "attr" ? n.name : known(evalNode(n.i, scope), "an index");
      if (isUnknown(base)) return new Unknown(n.k === "attr" ? `${base.path}.${key}` : `${base.path}[${key}]`);
      if (base === null || typeof base !== "object" || !(key in base)) {
        throw new EvalError(`no ${JSON.stringify(key)} in ${JSON.stringify(base)}`);
      }
      return base[key];
    }
  }
  throw new EvalError(`cannot evaluate ${n.k}`);
}

// The variables a plan would see: every default, project_id set, then the scenario's own values.
function scenario(config, values = {}) {
  const vars = { project_id: "my-project" };
  for (const [name, blocks] of Object.entries(config.variable ?? {})) {
    if ("default" in blocks[0]) vars[name] = blocks[0].default;
  }
  for (const name of Object.keys(values)) {
    assert.ok(name in (config.variable ?? {}), `scenario sets undeclared variable ${name}`);
  }
  return { ...vars, ...values };
}

// Evaluates an attribute as hcl2json gives it (a template string, or a JSON literal) under vars.
// local.X is evaluated on demand from the merged locals; extra adds names to the scope (each).
function evaluate(config, value, vars, extra = {}) {
  const l = locals(config);
  const cache = new Map();
  const localScope = new Proxy({}, {
    has: (_, k) => k in l,
    get: (_, k) => {
      if (!(k in l)) throw new EvalError(`local.${String(k)} is not defined`);
      if (!cache.has(k)) cache.set(k, evalValue(l[k]));
      return cache.get(k);
    },
  });
  const scope = { var: vars, local: localScope, ...extra };
  function evalValue(v) {
    if (typeof v === "string") return evalNode(parseTemplate(v), scope);
    if (Array.isArray(v)) return v.map(evalValue);
    if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, evalValue(x)]));
    return v;
  }
  return evalValue(value);
}

// The error messages of the failing preconditions of a lifecycle block, for vars.
function failingPreconditions(config, body, vars) {
  const lifecycle = body.lifecycle?.[0] ?? {};
  return (lifecycle.precondition ?? [])
    .filter((p) => evaluate(config, p.condition, vars) !== true)
    .map((p) => p.error_message);
}

// The error messages of the failing validations of variable `name` for value v.
function failingValidations(config, name, v) {
  const vars = scenario(config, { [name]: v });
  return (variable(config, name).validation ?? [])
    .filter((rule) => evaluate(config, rule.condition, vars) !== true)
    .map((rule) => rule.error_message);
}

// How many instances of a resource (count or for_each) a plan would have: 1 without either.
function countOf(config, body, vars) {
  if ("for_each" in body) return Object.keys(evaluate(config, body.for_each, vars)).length;
  return "count" in body ? evaluate(config, body.count, vars) : 1;
}

// The instances of a for_each resource for vars: each one's key and its attributes (those named
// in attrs) evaluated with each.key and each.value bound.
function forEachInstances(config, body, vars, attrs) {
  const coll = evaluate(config, body.for_each, vars);
  const entries = Array.isArray(coll) ? coll.map((v) => [v, v]) : Object.entries(coll);
  return entries.map(([key, value]) => ({
    key,
    ...Object.fromEntries(attrs.map((a) => [a, evaluate(config, body[a], vars, { each: { key, value } })])),
  }));
}

// The dynamic blocks of a kind in a block body, with how many blocks each makes for vars.
function dynamicBlocks(block, kind) {
  return block.dynamic?.[kind] ?? [];
}

function dynamicCount(config, dyn, vars) {
  const coll = evaluate(config, dyn.for_each, vars);
  return Array.isArray(coll) ? coll.length : Object.keys(coll).length;
}

// Scenarios of the store rules, reused by several checks.
const EXISTING_CONNECTION = "other-project:us-central1:books-pg";
const SCENARIOS = {
  memory: {},
  sqlite: { store: "sqlite", accept_sqlite_data_loss: true },
  postgresqlCreated: { store: "postgresql", max_instance_count: 10 },
  postgresqlExisting: {
    store: "postgresql",
    max_instance_count: 10,
    cloudsql_instance_connection_name: EXISTING_CONNECTION,
    postgresql_password_secret: "projects/other-project/secrets/books-db-password",
  },
  firestore: { store: "firestore", max_instance_count: 10 },
  firestoreExistingDefault: { store: "firestore", max_instance_count: 10, firestore_database: "(default)", firestore_create_database: false },
};
const isFirestore = (values) => values.store === "firestore";

// Every field of the Book message but name (the document's name) must be exempt from indexing in
// the books collection: a field added to the proto is a field the store will write.
function exemptionsCoverBook(config, bookFields) {
  assert.ok(bookFields.includes("display_name") && bookFields.includes("authors"), `the Book message's fields were not read: ${bookFields}`);
  const ex = resources(config, "google_firestore_field").find((r) => !r.body.ttl_config);
  assert.ok(ex, "no google_firestore_field exemptions");
  const vars = scenario(config, SCENARIOS.firestore);
  const exempt = forEachInstances(config, ex.body, vars, ["collection", "field"]).filter((i) => i.collection === "books").map((i) => i.field);
  for (const f of bookFields.filter((x) => x !== "name")) {
    assert.ok(exempt.includes(f), `Book.${f} (${BOOKS_PROTO}) is written by the firestore store but not exempt from indexing: add "book.${f}" to local.firestore_unindexed_fields`);
  }
}

// ---------------------------------------------------------------------------------------------
// The checks. Each takes the merged configuration and throws when the rule is broken.

const checks = {
  "terraform and the google provider are pinned"(config) {
    const tf = one(config.terraform, "terraform");
    assert.match(tf.required_version ?? "", /^\s*>=?\s*1\.\d+/, "terraform.required_version must set a minimum 1.x version");
    const [, major, minor] = /(\d+)\.(\d+)/.exec(tf.required_version).map(Number);
    assert.ok(major === 1 && minor >= 5, `required_version must be >= 1.5, got ${tf.required_version}`);
    const google = one(tf.required_providers, "terraform.required_providers").google;
    assert.ok(isObject(google), "required_providers.google must be an object with source and version");
    assert.equal(google.source, "hashicorp/google");
    assert.match(google.version ?? "", /~>\s*\d+\.\d+|<\s*\d+/, `required_providers.google.version must have an upper bound (~> or <), got ${google.version}`);
    const random = one(tf.required_providers, "terraform.required_providers").random;
    assert.ok(isObject(random), "required_providers.random must be an object with source and version (random_password)");
    assert.equal(random.source, "hashicorp/random");
    assert.match(random.version ?? "", /~>\s*\d+\.\d+|<\s*\d+/, `required_providers.random.version must have an upper bound, got ${random.version}`);
    const provider = one(config.provider?.google, 'provider "google"');
    assert.equal(provider.project, ref("var.project_id"), "provider project must be var.project_id");
    assert.equal(provider.region, ref("var.region"), "provider region must be var.region");
  },

  "every variable's default passes its own validations, and the store inputs check their form"(config) {
    for (const [name, blocks] of Object.entries(config.variable ?? {})) {
      const v = blocks[0];
      assert.ok(typeof v.description === "string" && v.description.length > 20, `variable ${name} needs a description`);
      if (!("default" in v)) continue;
      assert.deepEqual(failingValidations(config, name, v.default), [], `the default of ${name} fails its own validation`);
    }
    const samples = {
      cloudsql_instance_connection_name: [["my-project:us-central1:books-pg", "example.com:books-prod:europe-west1:pg"], ["my-project/us-central1/pg", "books-pg", "my-project:us-central1:"]],
      postgresql_password_secret: [["books-db-password", "projects/other-project/secrets/books-db-password"], ["projects/p/secrets/s/versions/1", "a b"]],
      postgresql_password_secret_version: [["latest", "3"], ["0", "v1"]],
      postgresql_database: [["books", "books_2"], ["Books", "books-db", ""]],
      cloudsql_tier: [["db-f1-micro", "db-custom-1-3840"], ["f1-micro"]],
      cloudsql_availability_type: [["REGIONAL"], ["MULTI_REGIONAL"]],
      cloudsql_disk_size_gb: [[10, 100], [9, 10.5]],
      cloudsql_private_network: [["projects/my-project/global/networks/default"], ["default"]],
      firestore_database: [["books", "(default)", "books-prod-2"], ["abc", "Books", "books-", "1books", "(DEFAULT)", "books_db", "a1b2c3d4-e5f6-a7b8-c9d0-e1f2a3b4c5d6"]],
      firestore_location: [[null, "us-central1", "europe-west1", "nam5", "eur3"], ["US", "us central1", "global"]],
    };
    for (const [name, [good, bad]] of Object.entries(samples)) {
      for (const g of good) assert.deepEqual(failingValidations(config, name, g), [], `${name} = ${JSON.stringify(g)} must be accepted`);
      for (const b of bad) assert.ok(failingValidations(config, name, b).length > 0, `${name} = ${JSON.stringify(b)} must be refused`);
    }
  },

  "project_id is required and region defaults to us-central1"(config) {
    assert.ok(!("default" in variable(config, "project_id")), "project_id must have no default");
    assert.equal(variable(config, "region").default, "us-central1");
    assert.equal(variable(config, "service_name").default, "books-server");
    assert.equal(variable(config, "repository_id").default, "books");
  },

  "the service is public on ingress and keeps deletion protection explicit"(config) {
    const svc = service(config).body;
    assert.equal(svc.ingress, "INGRESS_TRAFFIC_ALL");
    assert.ok("deletion_protection" in svc, "deletion_protection must be set explicitly (the provider defaults it to true)");
    assert.equal(resolveDefault(config, svc.deletion_protection), true, "deletion_protection must default to true");
  },

  "the container port is named h2c and is 8080"(config) {
    const c = container(config);
    const port = one(c.ports, "containers.ports");
    assert.equal(port.name, "h2c", `ports.name must be "h2c" (end-to-end HTTP/2 for gRPC), got ${JSON.stringify(port.name)}`);
    assert.equal(resolveDefault(config, port.container_port), 8080, "ports.container_port must be 8080");
  },

  "no env var named PORT, and the server's env is wired to variables"(config) {
    const c = container(config);
    const env = c.env ?? [];
    const dynamicNames = dynamicBlocks(c, "env").map((d) => one(d.content, "dynamic env content").name);
    const names = [...env.map((e) => e.name), ...dynamicNames];
    assert.ok(!names.some((n) => String(n).toUpperCase() === "PORT"), "env must not set PORT: Cloud Run injects it");
    assert.equal(new Set(names).size, names.length, `env names must be unique: ${names}`);
    const value = (n) => env.find((e) => e.name === n)?.value;
    assert.equal(value("BOOKS_STORE"), ref("local.books_store"), "BOOKS_STORE must be local.books_store (chosen by var.store)");
    assert.equal(value("BOOKS_LOG_LEVEL"), ref("var.log_level"));
    assert.equal(value("GOOGLE_CLOUD_PROJECT"), ref("var.project_id"));
    assert.equal(variable(config, "log_level").default, "info");
  },

  "store chooses BOOKS_STORE, and memory: stays the default"(config) {
    assert.equal(variable(config, "store").default, "memory");
    for (const ok of ["memory", "sqlite", "postgresql", "firestore"]) {
      assert.deepEqual(failingValidations(config, "store", ok), [], `store = "${ok}" must be accepted`);
    }
    assert.ok(failingValidations(config, "store", "redis").length > 0, 'store = "redis" must be refused');
    assert.equal(variable(config, "books_store").default, null, "books_store must default to null (derived from store)");
    const books = (values) => evaluate(config, ref("local.books_store"), scenario(config, values));
    assert.equal(books({}), "memory:", "the default deployment must run BOOKS_STORE=memory:");
    assert.equal(books({ books_store: "memory:" }), "memory:");
    assert.equal(books(SCENARIOS.sqlite), "sqlite:/var/lib/books/books.db", "sqlite must default to the image's WORKDIR");
    assert.equal(books({ ...SCENARIOS.sqlite, books_store: "sqlite:/var/lib/books/b.db?synchronous=normal" }), "sqlite:/var/lib/books/b.db?synchronous=normal");
    assert.match(books(SCENARIOS.postgresqlExisting), /^postgresql:\/\/\//, "postgresql must run a postgresql:// URI");
    assert.equal(books(SCENARIOS.firestore), "firestore://my-project/books?startup_timeout_s=210", "firestore must run firestore://PROJECT/DATABASE, with the start-up wait that fits the probe");
  },

  "the postgresql store connects through Cloud Run's Cloud SQL volume at /cloudsql"(config) {
    const t = template(config);
    const c = container(config);
    for (const [kind, block] of [["volumes", t], ["volume_mounts", c]]) {
      assert.ok(!(block[kind] ?? []).some((v) => JSON.stringify(v).includes("cloud")), `a static ${kind} block must not mount Cloud SQL for every store`);
    }
    const volumes = dynamicBlocks(t, "volumes").filter((d) => one(d.content, "volumes content").cloud_sql_instance);
    assert.equal(volumes.length, 1, "one dynamic volumes block with cloud_sql_instance is expected");
    const volume = one(volumes[0].content, "volumes content");
    const instances = one(volume.cloud_sql_instance, "cloud_sql_instance").instances;
    assert.deepEqual(instances, [ref("volumes.value")], "cloud_sql_instance.instances must be [volumes.value]");
    const mounts = dynamicBlocks(c, "volume_mounts").map((d) => ({ d, m: one(d.content, "volume_mounts content") }));
    const mount = mounts.find(({ m }) => m.name === volume.name);
    assert.ok(mount, `a dynamic volume_mounts block must mount volume ${volume.name}`);
    assert.equal(mount.m.mount_path, "/cloudsql", "Cloud Run requires Cloud SQL volumes at /cloudsql");

    for (const [name, values] of Object.entries(SCENARIOS)) {
      const vars = scenario(config, values);
      const pg = values.store === "postgresql";
      assert.equal(dynamicCount(config, volumes[0], vars), pg ? 1 : 0, `${name}: the Cloud SQL volume must exist exactly with the postgresql store`);
      assert.equal(dynamicCount(config, mount.d, vars), pg ? 1 : 0, `${name}: the /cloudsql mount must exist exactly with the postgresql store`);
    }
    const vars = scenario(config, SCENARIOS.postgresqlExisting);
    assert.deepEqual(evaluate(config, volumes[0].for_each, vars), [EXISTING_CONNECTION], "the volume must mount the given instance");

    // BOOKS_STORE: the socket directory Cloud Run makes for that instance, the database, the user.
    const uri = new URL(evaluate(config, ref("local.books_store"), vars));
    assert.equal(uri.protocol, "postgresql:");
    assert.equal(uri.host, "", "no host name: libpq must take host= (the socket directory)");
    assert.equal(uri.pathname, "/books");
    assert.equal(uri.searchParams.get("host"), `/cloudsql/${EXISTING_CONNECTION}`);
    assert.equal(uri.searchParams.get("user"), "books");
    const created = new URL(evaluate(config, ref("local.books_store"), scenario(config, SCENARIOS.postgresqlCreated)));
    assert.match(created.searchParams.get("host"), /^\/cloudsql\/<google_sql_database_instance\.[A-Za-z0-9_-]+\[0\]\.connection_name>$/, "a created instance must be mounted by its connection_name");
    const tuned = new URL(evaluate(config, ref("local.books_store"), scenario(config, { ...SCENARIOS.postgresqlExisting, postgresql_store_params: { pool: "4" } })));
    assert.equal(tuned.searchParams.get("pool"), "4", "postgresql_store_params must reach the URI");
  },

  "the database password reaches the server only from Secret Manager"(config) {
    const c = container(config);
    for (const e of c.env ?? []) {
      assert.ok(!/PASS|SECRET|TOKEN|KEY/i.test(e.name), `env ${e.name} looks like a credential in plain text`);
    }
    const pg = dynamicBlocks(c, "env").filter((d) => one(d.content, "env content").name === "PGPASSWORD");
    assert.equal(pg.length, 1, "one dynamic env block must set PGPASSWORD");
    const content = one(pg[0].content, "PGPASSWORD content");
    assert.ok(!("value" in content), "PGPASSWORD must not have a literal value");
    const keyRef = one(one(content.value_source, "PGPASSWORD value_source").secret_key_ref, "secret_key_ref");
    for (const [name, values] of Object.entries(SCENARIOS)) {
      assert.equal(dynamicCount(config, pg[0], scenario(config, values)), values.store === "postgresql" ? 1 : 0, `${name}: PGPASSWORD exactly with the postgresql store`);
    }
    const existing = scenario(config, SCENARIOS.postgresqlExisting);
    assert.equal(evaluate(config, keyRef.secret, existing), SCENARIOS.postgresqlExisting.postgresql_password_secret);
    assert.equal(evaluate(config, keyRef.version, existing), "latest");
    const created = scenario(config, SCENARIOS.postgresqlCreated);
    assert.match(String(evaluate(config, keyRef.secret, created)), /^<google_secret_manager_secret\.[A-Za-z0-9_-]+\[0\]\.secret_id>$/);
    assert.match(String(evaluate(config, keyRef.version, created)), /^<google_secret_manager_secret_version\.[A-Za-z0-9_-]+\[0\]\.version>$/, "a created secret must be pinned to the version written");

    // No password in BOOKS_STORE, whatever the store.
    for (const [name, values] of Object.entries(SCENARIOS)) {
      const store = String(evaluate(config, ref("local.books_store"), scenario(config, values)));
      assert.ok(!/password|random_password|secret/i.test(store), `${name}: BOOKS_STORE must hold no password: ${store}`);
      assert.ok(!/:\/\/[^/?#@]*:[^/?#@]*@/.test(store), `${name}: BOOKS_STORE must have no user:password@: ${store}`);
    }
    for (const bad of ["postgresql://books:hunter2@db/books", "postgresql:///books?host=/x&password=hunter2", "sqlite:/x?PASSWORD=y"]) {
      assert.ok(failingValidations(config, "books_store", bad).length > 0, `books_store = ${bad} must be refused`);
    }
    for (const good of [null, "memory:", "sqlite:/var/lib/books/books.db?synchronous=normal"]) {
      assert.deepEqual(failingValidations(config, "books_store", good), [], `books_store = ${good} must be accepted`);
    }
    for (const bad of [{ password: "x" }, { host: "evil" }, { user: "postgres" }, { pool: "4&password=x" }]) {
      assert.ok(failingValidations(config, "postgresql_store_params", bad).length > 0, `postgresql_store_params = ${JSON.stringify(bad)} must be refused`);
    }
    assert.deepEqual(failingValidations(config, "postgresql_store_params", { pool: "4", group_commit: "off", silence_timeout_ms: "10000" }), []);

    // The generated password goes to the database user and the secret version, nowhere else.
    const uses = [];
    const walk = (v, path) => {
      if (typeof v === "string" && /random_password\./.test(v)) uses.push(path);
      else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${path}[${i}]`));
      else if (isObject(v)) for (const [k, x] of Object.entries(v)) walk(x, `${path}.${k}`);
    };
    walk({ resource: config.resource, output: config.output, locals: config.locals }, "");
    const allowed = [/^\.resource\.google_sql_user\.[^.]+\[0\]\.password$/, /^\.resource\.google_secret_manager_secret_version\.[^.]+\[0\]\.secret_data$/];
    for (const u of uses) assert.ok(allowed.some((re) => re.test(u)), `random_password used at ${u}: only the SQL user and the secret version may see it`);
    assert.equal(uses.length, 2, `random_password must feed exactly the SQL user's password and the secret version, found ${uses}`);
    assert.ok(!/secret_data/.test(JSON.stringify(config.output ?? {})), "no output may expose secret_data");
  },

  "the runtime account gets Cloud SQL Client and access to the password secret, nothing more"(config) {
    for (const type of Object.keys(config.resource ?? {})) {
      assert.ok(!/_iam_(binding|policy)$/.test(type), `${type} is authoritative: grant with *_iam_member only`);
    }
    const sa = /^\$\{google_service_account\.([A-Za-z0-9_-]+)\.email\}$/.exec(template(config).service_account ?? "")?.[1];
    assert.ok(sa, "template.service_account must be a google_service_account's email");
    const member = `serviceAccount:${ref(`google_service_account.${sa}.email`)}`;
    const expectMember = (m) => assert.ok(m === member || m === ref(`google_service_account.${sa}.member`), `member must be the runtime account, got ${m}`);

    const projectRoles = resources(config, "google_project_iam_member").map((r) => r.body.role).sort();
    assert.deepEqual(projectRoles, ["roles/cloudsql.client", "roles/datastore.user"], "exactly two google_project_iam_members are expected: roles/cloudsql.client (postgresql) and roles/datastore.user (firestore)");
    const project = resources(config, "google_project_iam_member").filter((r) => r.body.role === "roles/cloudsql.client");
    expectMember(project[0].body.member);
    const secretIam = resources(config, "google_secret_manager_secret_iam_member");
    assert.equal(secretIam.length, 1, "exactly one google_secret_manager_secret_iam_member is expected");
    assert.equal(secretIam[0].body.role, "roles/secretmanager.secretAccessor");
    expectMember(secretIam[0].body.member);

    for (const [name, values] of Object.entries(SCENARIOS)) {
      const vars = scenario(config, values);
      const n = values.store === "postgresql" ? 1 : 0;
      assert.equal(countOf(config, project[0].body, vars), n, `${name}: roles/cloudsql.client exactly with the postgresql store`);
      assert.equal(countOf(config, secretIam[0].body, vars), n, `${name}: the secret grant exactly with the postgresql store`);
    }
    // The role goes to the instance's project; the grant to the one secret.
    assert.equal(evaluate(config, project[0].body.project, scenario(config, SCENARIOS.postgresqlCreated)), "my-project");
    assert.equal(evaluate(config, project[0].body.project, scenario(config, SCENARIOS.postgresqlExisting)), "other-project");
    assert.equal(evaluate(config, project[0].body.project, scenario(config, { ...SCENARIOS.postgresqlExisting, cloudsql_instance_connection_name: "example.com:books-prod:europe-west1:pg" })), "example.com:books-prod");
    assert.equal(evaluate(config, secretIam[0].body.secret_id, scenario(config, SCENARIOS.postgresqlExisting)), SCENARIOS.postgresqlExisting.postgresql_password_secret);
    assert.match(String(evaluate(config, secretIam[0].body.secret_id, scenario(config, SCENARIOS.postgresqlCreated))), /^<google_secret_manager_secret\.[A-Za-z0-9_-]+\[0\]\.id>$/);

    // The revision must not be deployed before its account can read the secret and reach Cloud SQL.
    const deps = service(config).body.depends_on ?? [];
    for (const r of [`google_project_iam_member.${project[0].name}`, `google_secret_manager_secret_iam_member.${secretIam[0].name}`]) {
      assert.ok(deps.includes(ref(r)), `the service must depend_on ${r}`);
    }
  },

  "a Cloud SQL for PostgreSQL instance with backups and deletion protection, only when needed"(config) {
    const instances = resources(config, "google_sql_database_instance");
    assert.equal(instances.length, 1, "one google_sql_database_instance is expected");
    const inst = instances[0].body;
    const counts = Object.fromEntries(Object.entries(SCENARIOS).map(([k, v]) => [k, countOf(config, inst, scenario(config, v))]));
    assert.deepEqual(counts, { memory: 0, sqlite: 0, postgresqlCreated: 1, postgresqlExisting: 0, firestore: 0, firestoreExistingDefault: 0 }, "the instance must be created only for postgresql without an existing instance");
    assert.equal(resolveDefault(config, inst.database_version), "POSTGRES_15");
    assert.equal(inst.region, ref("var.region"), "the instance must be in the service's region");
    assert.equal(resolveDefault(config, inst.deletion_protection), true, "Terraform deletion protection must default to true");
    const settings = one(inst.settings, "settings");
    assert.equal(resolveDefault(config, settings.deletion_protection_enabled), true, "API deletion protection must default to true");
    assert.equal(resolveDefault(config, settings.tier), "db-f1-micro");
    assert.equal(resolveDefault(config, settings.edition), "ENTERPRISE", "shared-core tiers need the ENTERPRISE edition");
    // High availability: ZONAL by default, REGIONAL on request, wired to the instance's settings.
    assert.equal(resolveDefault(config, settings.availability_type), "ZONAL", "the instance must be ZONAL by default (HA doubles its price)");
    assert.equal(evaluate(config, settings.availability_type, scenario(config, { ...SCENARIOS.postgresqlCreated, cloudsql_availability_type: "REGIONAL" })), "REGIONAL", "cloudsql_availability_type must reach settings.availability_type");
    for (const good of ["ZONAL", "REGIONAL"]) assert.deepEqual(failingValidations(config, "cloudsql_availability_type", good), [], `${good} must be accepted`);
    for (const bad of ["regional", "MULTI_REGIONAL", "", "ZONAL "]) assert.ok(failingValidations(config, "cloudsql_availability_type", bad).length > 0, `${JSON.stringify(bad)} must be refused`);
    const ha = variable(config, "cloudsql_availability_type").description;
    for (const [what, re] of [["the standby in another zone", /standby[^.]*second zone/i], ["synchronous replication", /synchronous/i], ["automatic failover", /fails over automatically/i], ["the unchanged IP address and connection name", /same static IP address and connection name/i], ["the dropped connections", /connection is dropped/i], ["the doubled price", /double the price/i], ["the failover time", /sixty seconds|60 seconds/i], ["the zonal default's downtime", /ZONAL[^.]*no failover/i]]) {
      assert.match(ha, re, `cloudsql_availability_type's description must state ${what}`);
    }
    assert.ok(resolveDefault(config, settings.disk_size) >= 10, "disk_size must default to at least 10 GB");
    const backups = one(settings.backup_configuration, "settings.backup_configuration");
    assert.equal(backups.enabled, true, "backups must be enabled, not a variable");
    const ip = one(settings.ip_configuration, "settings.ip_configuration");
    assert.equal(ip.authorized_networks, undefined, "no authorized networks: only the Cloud SQL Auth Proxy path may connect");
    assert.equal(ip.server_ca_mode, "GOOGLE_MANAGED_INTERNAL_CA", "Cloud Run's Cloud SQL connection needs the per-instance CA");
    assert.equal(ip.ssl_mode, "ENCRYPTED_ONLY");
    const pg = scenario(config, SCENARIOS.postgresqlCreated);
    assert.equal(evaluate(config, ip.ipv4_enabled, pg), true, "public IP by default (no VPC needed)");
    const priv = scenario(config, { ...SCENARIOS.postgresqlCreated, cloudsql_private_network: "projects/my-project/global/networks/default" });
    assert.equal(evaluate(config, ip.ipv4_enabled, priv), false, "a private network means no public IP");
    assert.equal(evaluate(config, ip.private_network, priv), "projects/my-project/global/networks/default");
    const egress = dynamicBlocks(template(config), "vpc_access");
    assert.equal(egress.length, 1, "a dynamic vpc_access block must give the service a route to a private instance");
    assert.equal(dynamicCount(config, egress[0], pg), 0);
    assert.equal(dynamicCount(config, egress[0], priv), 1);
    assert.deepEqual(failingPreconditions(config, inst, pg), []);
    assert.equal(failingPreconditions(config, inst, scenario(config, { ...SCENARIOS.postgresqlCreated, cloudsql_availability_type: "REGIONAL", cloudsql_point_in_time_recovery: false })).length, 1, "REGIONAL without point-in-time recovery must fail");

    // Database, user, password and secret: all with the instance, named as the store expects.
    for (const type of ["google_sql_database", "google_sql_user", "random_password", "google_secret_manager_secret", "google_secret_manager_secret_version"]) {
      const rs = resources(config, type);
      assert.equal(rs.length, 1, `one ${type} is expected`);
      assert.equal(rs[0].body.count, inst.count, `${type} must be created exactly with the instance`);
    }
    assert.equal(resolveDefault(config, resources(config, "google_sql_database")[0].body.name), "books");
    const user = resources(config, "google_sql_user")[0].body;
    assert.equal(resolveDefault(config, user.name), "books");
    assert.match(user.password ?? "", /^\$\{random_password\.[A-Za-z0-9_-]+\[0\]\.result\}$/);
    const pw = resources(config, "random_password")[0].body;
    assert.ok(pw.length >= 24, `random_password.length must be >= 24, got ${pw.length}`);
    const secret = resources(config, "google_secret_manager_secret")[0];
    assert.ok(one(one(secret.body.replication, "replication").auto, "replication.auto"), "replication { auto {} } (the provider's 5.x+ syntax)");
    assert.equal(resolveDefault(config, secret.body.deletion_protection), true, "the password secret must be protected like the instance");
    const version = resources(config, "google_secret_manager_secret_version")[0].body;
    assert.equal(version.secret, ref(`google_secret_manager_secret.${secret.name}[0].id`));
    assert.match(version.secret_data ?? "", /^\$\{random_password\.[A-Za-z0-9_-]+\[0\]\.result\}$/);
  },

  "each store allows the instance counts it can serve"(config) {
    const svc = service(config).body;
    const fails = (values) => failingPreconditions(config, svc, scenario(config, values));
    const passes = (what, values) => assert.deepEqual(fails(values), [], `${what} must pass the service's preconditions`);
    const refused = (what, values, pattern) => {
      const f = fails(values);
      assert.ok(f.length > 0, `${what} must fail a precondition`);
      if (pattern) assert.ok(f.some((m) => pattern.test(m)), `${what}: expected a message matching ${pattern}, got ${f}`);
    };
    passes("the defaults (memory, one instance)", {});
    refused("memory with 3 instances", { max_instance_count: 3 }, /memory/);
    passes("memory with 3 instances and allow_split_memory_store", { max_instance_count: 3, allow_split_memory_store: true });
    passes("postgresql (created) with 10 instances", SCENARIOS.postgresqlCreated);
    passes("postgresql (existing) with 10 instances", SCENARIOS.postgresqlExisting);
    passes("postgresql with min 2, max 10", { ...SCENARIOS.postgresqlCreated, min_instance_count: 2 });
    passes("firestore (created) with 10 instances", SCENARIOS.firestore);
    passes("firestore (existing) with 10 instances", SCENARIOS.firestoreExistingDefault);
    passes("firestore with min 2, max 10", { ...SCENARIOS.firestore, min_instance_count: 2 });
    refused("firestore with a literal books_store", { ...SCENARIOS.firestore, books_store: "firestore://my-project/books" }, /books_store/);
    refused("sqlite without accept_sqlite_data_loss", { store: "sqlite" }, /sqlite/);
    passes("sqlite with accept_sqlite_data_loss and one instance", SCENARIOS.sqlite);
    refused("sqlite with accept_sqlite_data_loss and 2 instances", { ...SCENARIOS.sqlite, max_instance_count: 2 }, /sqlite/);
    refused("sqlite with 2 instances and allow_split_memory_store", { ...SCENARIOS.sqlite, max_instance_count: 2, allow_split_memory_store: true });
    refused("min 2 > max 1", { min_instance_count: 2 }, /min_instance_count/);
    refused("postgresql with a literal books_store", { ...SCENARIOS.postgresqlCreated, books_store: "postgresql://db/books" }, /books_store/);
    refused("memory with an sqlite books_store", { books_store: "sqlite:/x.db" }, /books_store/);
    passes("sqlite with its own books_store", { ...SCENARIOS.sqlite, books_store: "file:/var/lib/books/b.db" });
    refused("an existing instance without its secret", { ...SCENARIOS.postgresqlExisting, postgresql_password_secret: null }, /secret/);
    refused("a secret without an existing instance", { ...SCENARIOS.postgresqlCreated, postgresql_password_secret: "x" }, /secret/);
    assert.equal(variable(config, "accept_sqlite_data_loss").default, false, "accept_sqlite_data_loss must default to false");
    assert.equal(variable(config, "allow_split_memory_store").default, false, "allow_split_memory_store must default to false");
  },

  "startup and liveness probes use gRPC health checks on 8080"(config) {
    const c = container(config);
    for (const kind of ["startup_probe", "liveness_probe"]) {
      const probe = one(c[kind], kind);
      const grpc = one(probe.grpc, `${kind}.grpc`);
      assert.equal(resolveDefault(config, grpc.port ?? 8080), 8080, `${kind}.grpc.port must be 8080`);
      assert.ok(!probe.http_get && !probe.tcp_socket, `${kind} must use only grpc (no http_get/tcp_socket)`);
      for (const [name, values] of Object.entries(SCENARIOS)) {
        const vars = scenario(config, values);
        const v = Object.fromEntries(["initial_delay_seconds", "period_seconds", "timeout_seconds", "failure_threshold"].map((k) => [k, evaluate(config, probe[k], vars)]));
        for (const [k, x] of Object.entries(v)) {
          assert.ok(Number.isInteger(x), `${name}: ${kind}.${k} must be set to a whole number, got ${JSON.stringify(x)}`);
        }
        assert.ok(v.timeout_seconds < v.period_seconds, `${name}: ${kind}.timeout_seconds must be below period_seconds`);
      }
    }
  },

  // Cloud Run's limits for a startup probe (the API's Probe fields, and the health-check guides):
  // initial_delay_seconds 0-240, period_seconds 1-240 and at least timeout_seconds,
  // failure_threshold at least 1, and the container is shut down unless the probe succeeds within
  // failure_threshold x period_seconds, at most 240 s (the jobs guide now allows jobs 600 s; a
  // service keeps to 240). Within that window the server must have opened its store: with
  // firestore the URI's startup_timeout_s (the wait for a role still propagating, typically 2
  // minutes) must end 30 s before the window closes.
  "the startup probe stays within Cloud Run's limits and covers each store's start-up wait"(config) {
    const probe = one(container(config).startup_probe, "startup_probe");
    const books = (vars) => evaluate(config, ref("local.books_store"), vars);
    const windows = {};
    for (const [name, values] of Object.entries({ ...SCENARIOS, firestoreTuned: { ...SCENARIOS.firestore, firestore_store_params: { startup_timeout_s: "60", timeout_ms: "5000" } } })) {
      const vars = scenario(config, values);
      const v = Object.fromEntries(["initial_delay_seconds", "period_seconds", "timeout_seconds", "failure_threshold"].map((k) => [k, evaluate(config, probe[k], vars)]));
      assert.equal(v.initial_delay_seconds, 0, `${name}: initial_delay_seconds must be 0: a delay postpones every cold start, however fast the server starts`);
      assert.ok(v.period_seconds >= 1 && v.period_seconds <= 240, `${name}: period_seconds must be 1-240, got ${v.period_seconds}`);
      assert.ok(v.period_seconds <= 5, `${name}: period_seconds ${v.period_seconds} would keep a started instance waiting for its next check`);
      assert.ok(v.timeout_seconds >= 1 && v.timeout_seconds <= v.period_seconds, `${name}: timeout_seconds must be 1..period_seconds`);
      assert.ok(v.failure_threshold >= 1, `${name}: failure_threshold must be at least 1`);
      const window = v.failure_threshold * v.period_seconds;
      assert.ok(window <= 240, `${name}: failure_threshold x period_seconds = ${window} s, above Cloud Run's 240 s for a startup probe`);
      windows[name] = window;
      assert.deepEqual(failingPreconditions(config, service(config).body, vars), [], `${name} must pass the service's preconditions`);
      if (!isFirestore(values)) continue;
      const raw = new URL(books(vars)).searchParams.get("startup_timeout_s");
      assert.ok(raw !== null && /^[0-9]+$/.test(raw), `${name}: BOOKS_STORE must set startup_timeout_s (the server's own default, 600 s, is beyond the probe): ${books(vars)}`);
      const timeout = Number(raw);
      assert.ok(timeout + 30 <= window, `${name}: startup_timeout_s=${timeout} must end at least 30 s inside the probe's ${window} s`);
    }
    // firestore: the whole window, and a wait that covers Google's typical 2 minutes of propagation.
    assert.equal(windows.firestore, 240, "with firestore the startup probe must allow Cloud Run's maximum, 240 s");
    const fsDefault = Number(new URL(books(scenario(config, SCENARIOS.firestore))).searchParams.get("startup_timeout_s"));
    assert.equal(fsDefault, 210, "the firestore store must wait up to 210 s by default (240 s less 30 s)");
    assert.equal(new URL(books(scenario(config, { ...SCENARIOS.firestore, firestore_store_params: { startup_timeout_s: "60" } }))).searchParams.get("startup_timeout_s"), "60", "a lower startup_timeout_s must reach the URI");
    // The postgresql store retries its first connection for 30 s by default: its window is above that.
    assert.ok(windows.postgresqlCreated >= 30 + 15, "the postgresql store's 30 s of start-up retries must end inside its probe window");
    // A longer wait than the window is refused at plan time, and so is a non-number.
    const tooLong = scenario(config, { ...SCENARIOS.firestore, firestore_store_params: { startup_timeout_s: "600" } });
    assert.ok(failingPreconditions(config, service(config).body, tooLong).some((m) => /startup_timeout_s/.test(m)), "startup_timeout_s = 600 must fail a precondition");
    for (const bad of [{ startup_timeout_s: "ten" }, { startup_timeout_s: "-5" }]) {
      assert.ok(failingValidations(config, "firestore_store_params", bad).length > 0, `firestore_store_params = ${JSON.stringify(bad)} must be refused`);
    }
  },

  "scaling bounds come from variables and max_instance_count defaults to 1"(config) {
    const scaling = one(template(config).scaling, "template.scaling");
    assert.equal(scaling.min_instance_count, ref("var.min_instance_count"));
    assert.equal(scaling.max_instance_count, ref("var.max_instance_count"));
    assert.equal(variable(config, "min_instance_count").default, 0);
    const max = variable(config, "max_instance_count");
    assert.equal(max.default, 1, "max_instance_count must default to 1 (the memory: store lives in one instance)");
    assert.match(max.description ?? "", /memory/i, "max_instance_count's description must explain the memory: store limit");
  },

  "a precondition keeps the memory: store on one instance and min <= max"(config) {
    const lifecycle = one(service(config).body.lifecycle, "google_cloud_run_v2_service lifecycle");
    const conditions = (lifecycle.precondition ?? []).map((p) => p.condition);
    assert.ok(
      conditions.some((c) => c.includes("var.store") && c.includes("var.max_instance_count") && c.includes("var.allow_split_memory_store")),
      "a precondition must tie max_instance_count to store (memory), with allow_split_memory_store as the opt-in",
    );
    assert.ok(
      conditions.some((c) => /var\.min_instance_count\s*<=\s*var\.max_instance_count/.test(c)),
      "a precondition must require min_instance_count <= max_instance_count",
    );
  },

  "request concurrency, timeout and cpu/memory limits are set"(config) {
    const t = template(config);
    assert.equal(t.max_instance_request_concurrency, ref("var.max_instance_request_concurrency"));
    assert.equal(t.timeout, ref("var.request_timeout"));
    assert.equal(variable(config, "max_instance_request_concurrency").default, 80);
    assert.equal(variable(config, "request_timeout").default, "30s");
    const limits = one(container(config).resources, "containers.resources").limits;
    assert.ok(isObject(limits), "resources.limits must be a map");
    assert.equal(limits.cpu, ref("var.cpu"));
    assert.equal(limits.memory, ref("var.memory"));
    assert.equal(variable(config, "cpu").default, "1");
    assert.equal(variable(config, "memory").default, "512Mi");
  },

  "the image defaults to the repository this module creates"(config) {
    const c = container(config);
    const image = String(resolveDefault(config, c.image));
    assert.match(image, /coalesce\(var\.image,/, "image must be var.image, else the default image");
    const l = locals(config);
    assert.match(String(l.default_image ?? ""), /\$\{var\.region\}-docker\.pkg\.dev\/\$\{var\.project_id\}\/\$\{var\.repository_id\}\/.+:\$\{var\.image_tag\}/);
    assert.equal(variable(config, "image").default, null);
  },

  "a dedicated service account runs the service"(config) {
    const accounts = resources(config, "google_service_account");
    assert.ok(accounts.length >= 1, "a google_service_account must be declared");
    const sa = template(config).service_account;
    const m = /^\$\{google_service_account\.([A-Za-z0-9_-]+)\.email\}$/.exec(sa ?? "");
    assert.ok(m, `template.service_account must be google_service_account.<name>.email, got ${sa}`);
    assert.ok(accounts.some((a) => a.name === m[1]), `google_service_account.${m[1]} is not declared`);
    // Least privilege: the memory and sqlite stores need no project role for the runtime account;
    // the postgresql store needs Cloud SQL Client alone (checked in detail by its own check).
    for (const type of ["google_project_iam_binding", "google_project_iam_policy"]) {
      assert.equal(resources(config, type).length, 0, `${type} is not expected: grants are non-authoritative members`);
    }
    for (const r of resources(config, "google_project_iam_member")) {
      assert.ok(["roles/cloudsql.client", "roles/datastore.user"].includes(r.body.role), `google_project_iam_member.${r.name}: the runtime account needs no project role but Cloud SQL Client (postgresql) or Cloud Datastore User (firestore), got ${r.body.role}`);
      assert.equal(countOf(config, r.body, scenario(config, {})), 0, `google_project_iam_member.${r.name} must not exist with the default memory store`);
    }
  },

  "an Artifact Registry Docker repository is created"(config) {
    const repos = resources(config, "google_artifact_registry_repository");
    assert.equal(repos.length, 1);
    assert.equal(repos[0].body.format, "DOCKER");
    assert.equal(repos[0].body.repository_id, ref("var.repository_id"));
  },

  "every regional resource sets location"(config) {
    const regional = allResources(config).filter(
      (r) => r.type.startsWith("google_artifact_registry_") || r.type.startsWith("google_cloud_run_v2_"),
    );
    const types = new Set(regional.map((r) => r.type));
    for (const t of ["google_artifact_registry_repository", "google_cloud_run_v2_service", "google_cloud_run_v2_service_iam_member"]) {
      assert.ok(types.has(t), `expected a ${t}`);
    }
    for (const r of regional) {
      assert.ok(r.body.location, `${r.type}.${r.name} must set location`);
    }
    assert.equal(service(config).body.location, ref("var.region"));
    assert.equal(resources(config, "google_artifact_registry_repository")[0].body.location, ref("var.region"));
  },

  "invoker_members get roles/run.invoker, one member resource each"(config) {
    const v = variable(config, "invoker_members");
    assert.equal(v.type, ref("list(string)"));
    assert.deepEqual(v.default, [], "invoker_members must default to []");
    const members = resources(config, "google_cloud_run_v2_service_iam_member");
    const invokers = members.filter((m) => m.body.for_each === ref("toset(var.invoker_members)"));
    assert.equal(invokers.length, 1, "one google_cloud_run_v2_service_iam_member must for_each over toset(var.invoker_members)");
    assert.equal(invokers[0].body.role, "roles/run.invoker");
    assert.equal(invokers[0].body.member, ref("each.value"));
  },

  "allUsers is granted only behind allow_unauthenticated, which defaults to false"(config) {
    const v = variable(config, "allow_unauthenticated");
    assert.equal(v.type, ref("bool"));
    assert.equal(v.default, false, "allow_unauthenticated must default to false");
    const publicOnes = allResources(config).filter((r) => /allUsers|allAuthenticatedUsers/.test(JSON.stringify(r.body)));
    assert.ok(publicOnes.length >= 1, "a resource granting allUsers behind allow_unauthenticated is expected");
    for (const r of publicOnes) {
      assert.equal(
        r.body.count,
        ref("var.allow_unauthenticated ? 1 : 0"),
        `${r.type}.${r.name} grants allUsers/allAuthenticatedUsers without count = var.allow_unauthenticated ? 1 : 0`,
      );
      assert.ok(!("for_each" in r.body), `${r.type}.${r.name} must not also use for_each`);
      assert.equal(r.body.role, "roles/run.invoker");
    }
    // Nothing else may mention allUsers (outputs, locals, variable defaults).
    const rest = JSON.stringify({ ...config, resource: undefined, variable: undefined });
    assert.ok(!/allUsers|allAuthenticatedUsers/.test(rest), "allUsers must appear only in the guarded resource");
    for (const [name, blocks] of Object.entries(config.variable ?? {})) {
      assert.ok(!/allUsers|allAuthenticatedUsers/.test(JSON.stringify(blocks[0].default ?? "")), `variable ${name} must not default to a public principal`);
    }
  },

  "the firestore store: a protected Native-mode database, its API, roles/datastore.user on that database alone"(config) {
    const dbs = resources(config, "google_firestore_database");
    assert.equal(dbs.length, 1, "one google_firestore_database is expected");
    const db = dbs[0].body;
    const fs = scenario(config, SCENARIOS.firestore);
    assert.equal(db.type, "FIRESTORE_NATIVE", "the store uses Firestore's document API: Native mode, not Datastore mode");
    assert.equal(db.concurrency_mode, "OPTIMISTIC", "OPTIMISTIC: no locks held by a throttled or stopped Cloud Run instance");
    assert.equal(db.project, ref("var.project_id"));
    assert.equal(evaluate(config, db.name, fs), "books", "the database ID defaults to a named database, books");
    assert.equal(evaluate(config, db.delete_protection_state, fs), "DELETE_PROTECTION_ENABLED", "delete protection must be on by default");
    assert.equal(evaluate(config, db.delete_protection_state, scenario(config, { ...SCENARIOS.firestore, database_deletion_protection: false })), "DELETE_PROTECTION_DISABLED", "database_deletion_protection = false must allow the deletion");
    assert.equal(db.deletion_policy, "DELETE", "a removed database must be deleted (and refused while protected), not silently abandoned");
    assert.equal(evaluate(config, db.point_in_time_recovery_enablement, fs), "POINT_IN_TIME_RECOVERY_ENABLED", "point-in-time recovery must be on by default");
    assert.equal(evaluate(config, db.location_id, fs), "us-central1", "the database defaults to the service's region");
    assert.equal(evaluate(config, db.location_id, scenario(config, { ...SCENARIOS.firestore, firestore_location: "eur3" })), "eur3");

    // The request ids' TTL policy: Firestore deletes COLLECTION_requests documents after their
    // expire_at, so they do not accumulate (store_firestore.h).
    const ttl = resources(config, "google_firestore_field").filter((r) => r.body.ttl_config);
    assert.equal(ttl.length, 1, "one google_firestore_field with a ttl_config (the request ids' TTL policy) is expected");
    assert.equal(ttl[0].body.field, "expire_at", "the TTL policy must be on expire_at, the field the store writes");
    assert.deepEqual(one(ttl[0].body.ttl_config, "ttl_config"), {}, "ttl_config {} sets the TTL policy");
    assert.equal(evaluate(config, ttl[0].body.collection, fs), "books_requests", "the TTL policy must be on the store's request collection");
    assert.equal(evaluate(config, ttl[0].body.collection, scenario(config, { ...SCENARIOS.firestore, firestore_store_params: { collection: "b2" } })), "b2_requests");

    // The API, enabled for the store and never disabled by this module.
    const apis = resources(config, "google_project_service");
    const api = apis.filter((r) => r.body.service === "firestore.googleapis.com");
    assert.equal(api.length, 1, "one google_project_service must enable firestore.googleapis.com");
    assert.equal(api[0].body.project, ref("var.project_id"));
    assert.equal(api[0].body.disable_on_destroy, false, "disabling Firestore for the whole project is not this module's decision");
    assert.ok((db.depends_on ?? []).includes(ref(`google_project_service.${api[0].name}`)), "the database must be created after the API is enabled");

    // The runtime account's role, conditioned to the one database.
    const sa = /^\$\{google_service_account\.([A-Za-z0-9_-]+)\.email\}$/.exec(template(config).service_account ?? "")?.[1];
    const iam = resources(config, "google_project_iam_member").filter((r) => r.body.role === "roles/datastore.user");
    assert.equal(iam.length, 1, "one google_project_iam_member must grant roles/datastore.user");
    assert.equal(iam[0].body.member, `serviceAccount:${ref(`google_service_account.${sa}.email`)}`, "roles/datastore.user goes to the runtime account");
    assert.equal(iam[0].body.project, ref("var.project_id"));
    const cond = one(iam[0].body.condition, "roles/datastore.user condition");
    assert.ok(typeof cond.title === "string" && cond.title.length > 0, "an IAM condition needs a title");
    assert.ok(evaluate(config, cond.title, fs).length <= 100, "an IAM condition title has at most 100 characters");
    assert.equal(evaluate(config, cond.expression, fs), 'resource.name == "projects/my-project/databases/books"', "roles/datastore.user must be limited to the store's database");
    assert.equal(evaluate(config, cond.expression, scenario(config, SCENARIOS.firestoreExistingDefault)), 'resource.name == "projects/my-project/databases/(default)"');

    // Which resources each store gets: the firestore ones exactly with firestore, and no Cloud SQL
    // (instance, database, user, password, secret, their grants) with it.
    const firestoreOnly = [
      ...dbs.map((r) => ["google_firestore_database", r]),
      ...ttl.map((r) => ["google_firestore_field", r]),
      ...api.map((r) => ["google_project_service", r]),
      ...iam.map((r) => ["google_project_iam_member", r]),
    ];
    const cloudsql = allResources(config).filter((r) => /^google_sql_|^google_secret_manager_|^random_password$/.test(r.type) || (r.type === "google_project_iam_member" && r.body.role === "roles/cloudsql.client"));
    assert.ok(cloudsql.length >= 7, "the Cloud SQL resources were not found");
    for (const [name, values] of Object.entries(SCENARIOS)) {
      const vars = scenario(config, values);
      const created = name === "firestore";
      assert.equal(countOf(config, db, vars), created ? 1 : 0, `${name}: the Firestore database is created exactly with store = "firestore" and firestore_create_database`);
      for (const [type, r] of firestoreOnly.slice(dbs.length)) {
        assert.equal(countOf(config, r.body, vars), isFirestore(values) ? 1 : 0, `${name}: ${type}.${r.name} exactly with store = "firestore"`);
      }
      if (isFirestore(values)) {
        for (const r of cloudsql) assert.equal(countOf(config, r.body, vars), 0, `${name}: ${r.type}.${r.name} must not exist with store = "firestore"`);
      }
    }

    // BOOKS_STORE: firestore://PROJECT/DATABASE, firestore://PROJECT for "(default)", then the params.
    const books = (values) => evaluate(config, ref("local.books_store"), scenario(config, values));
    const uri = new URL(books(SCENARIOS.firestore));
    assert.equal(uri.protocol, "firestore:");
    assert.equal(uri.host, "my-project", "the URI's host is the project");
    assert.equal(uri.pathname, "/books", "the URI's path is the database ID");
    assert.equal(uri.search, "?startup_timeout_s=210", "by default only the start-up wait that fits the startup probe");
    assert.equal(books(SCENARIOS.firestoreExistingDefault), "firestore://my-project?startup_timeout_s=210", 'the "(default)" database is firestore://PROJECT');
    assert.equal(books({ ...SCENARIOS.firestore, firestore_store_params: { timeout_ms: "5000", collection: "books_v2" } }), "firestore://my-project/books?collection=books_v2&startup_timeout_s=210&timeout_ms=5000", "firestore_store_params must reach the URI, keys in lexical order");
    assert.equal(books({ ...SCENARIOS.firestore, firestore_database: "books-eu", project_id: "other-proj" }), "firestore://other-proj/books-eu?startup_timeout_s=210");
    for (const bad of [{ credentials: "x" }, { collection: "a&b=c" }, { host: "evil" }]) {
      assert.ok(failingValidations(config, "firestore_store_params", bad).length > 0, `firestore_store_params = ${JSON.stringify(bad)} must be refused`);
    }
    assert.deepEqual(failingValidations(config, "firestore_store_params", { collection: "books-2", cache_mb: "64", group_commit: "on", timeout_ms: "5000", startup_timeout_s: "120", max_request_bytes: "4128768" }), []);

    // The revision must not start before the database, the API and its account's role exist.
    const deps = service(config).body.depends_on ?? [];
    for (const r of [`google_firestore_database.${dbs[0].name}`, `google_project_service.${api[0].name}`, `google_project_iam_member.${iam[0].name}`]) {
      assert.ok(deps.includes(ref(r)), `the service must depend_on ${r}`);
    }
    assert.equal(variable(config, "firestore_create_database").default, true);
    assert.equal(variable(config, "firestore_location").default, null, "the location defaults to the service's region");
    assert.equal(variable(config, "database_deletion_protection").default, true);

    const out = (values) => evaluate(config, one(config.output?.firestore_database, "output firestore_database").value, scenario(config, values));
    assert.equal(out({}), null, "no Firestore database output without the firestore store");
    assert.equal(out(SCENARIOS.firestore), "projects/my-project/databases/books");
  },

  // The firestore store queries no field (GetDocument by name, and a RunQuery ordered by __name__
  // alone), so every field it writes is exempt from Firestore's automatic single-field indexes,
  // which would otherwise cost 2 entries a field plus one per array element, all stored and billed.
  "the firestore store's fields are exempt from automatic indexing, in the collections it uses"(config) {
    const fields = resources(config, "google_firestore_field");
    const ttl = fields.filter((r) => r.body.ttl_config);
    const exemptions = fields.filter((r) => !r.body.ttl_config);
    assert.equal(exemptions.length, 1, "one google_firestore_field without ttl_config (for_each over the store's fields) is expected");
    const ex = exemptions[0].body;
    assert.ok("for_each" in ex, "the exemptions must be one resource with for_each over the fields");
    for (const r of fields) {
      assert.deepEqual(r.body.index_config, [{}], `google_firestore_field.${r.name}: index_config must be an empty block (no index at all), got ${JSON.stringify(r.body.index_config)}`);
      assert.equal(r.body.project, ref("var.project_id"), `google_firestore_field.${r.name} must be in project_id`);
      assert.ok((r.body.depends_on ?? []).includes(ref("google_firestore_database.books")), `google_firestore_field.${r.name} must come after the database`);
    }

    // What the store writes (store_firestore.h): by collection, the fields of each document.
    const expected = (c) => [
      ...["display_name", "authors", "publisher", "write_id", "request_id", "request_hash"].map((f) => `${c}/${f}`),
      ...["book", "request_hash", "request_fingerprint", "write_id", "expire_at"].map((f) => `${c}_requests/${f}`),
      `${c}_meta/page_token_key`,
    ].sort();
    const configured = (vars) => [
      ...forEachInstances(config, ex, vars, ["collection", "field", "database"]),
      ...ttl.flatMap((r) => (countOf(config, r.body, vars) ? [{ collection: evaluate(config, r.body.collection, vars), field: r.body.field, database: evaluate(config, r.body.database, vars) }] : [])),
    ];
    for (const [name, values] of Object.entries(SCENARIOS)) {
      const vars = scenario(config, values);
      const got = configured(vars);
      if (!isFirestore(values)) {
        assert.equal(got.length, 0, `${name}: no Firestore field configuration without the firestore store`);
        continue;
      }
      const paths = got.map((g) => `${g.collection}/${g.field}`).sort();
      assert.equal(new Set(paths).size, paths.length, `${name}: a field is configured twice: ${paths}`);
      assert.deepEqual(paths, expected("books"), `${name}: every field the store writes, and nothing else, must be exempt`);
      for (const g of got) assert.equal(g.database, values.firestore_database ?? "books", `${name}: ${g.collection}/${g.field} must be in the store's database`);
      // Firestore allows 200 single-field configurations per database without billing (1000 with).
      assert.ok(got.length <= 200, `${name}: ${got.length} single-field configurations, above Firestore's 200`);
    }
    const renamed = configured(scenario(config, { ...SCENARIOS.firestore, firestore_store_params: { collection: "b2" } }));
    assert.deepEqual(renamed.map((g) => `${g.collection}/${g.field}`).sort(), expected("b2"), "the exemptions must follow the collection parameter");

    exemptionsCoverBook(config, protoMessageFields(readFileSync(BOOKS_PROTO, "utf8"), "Book"));
  },

  "outputs: the Cloud SQL connection name, and the secret's id when created"(config) {
    const outputs = config.output ?? {};
    for (const name of ["cloudsql_connection_name", "database_password_secret"]) {
      assert.ok(outputs[name], `output "${name}" is missing`);
    }
    const out = (name, values) => evaluate(config, one(outputs[name], name).value, scenario(config, values));
    assert.equal(out("cloudsql_connection_name", {}), null, "no connection name without the postgresql store");
    assert.equal(out("cloudsql_connection_name", SCENARIOS.postgresqlExisting), EXISTING_CONNECTION);
    assert.match(String(out("cloudsql_connection_name", SCENARIOS.postgresqlCreated)), /^<google_sql_database_instance\.[A-Za-z0-9_-]+\[0\]\.connection_name>$/);
    assert.equal(out("database_password_secret", {}), null);
    assert.equal(out("database_password_secret", SCENARIOS.postgresqlExisting), null, "an existing secret is the caller's, not an output");
    assert.match(String(out("database_password_secret", SCENARIOS.postgresqlCreated)), /^<google_secret_manager_secret\.[A-Za-z0-9_-]+\[0\]\.id>$/, "the secret's id, never its data");
  },

  "outputs: uri from the service, service_account_email, repository path"(config) {
    const outputs = config.output ?? {};
    const svc = service(config).name;
    assert.ok(outputs.uri, 'output "uri" is missing');
    assert.equal(one(outputs.uri, "output uri").value, ref(`google_cloud_run_v2_service.${svc}.uri`));
    assert.ok(outputs.service_account_email, 'output "service_account_email" is missing');
    assert.match(one(outputs.service_account_email, "output service_account_email").value, /^\$\{google_service_account\.[A-Za-z0-9_-]+\.email\}$/);
    assert.ok(outputs.repository, 'output "repository" is missing');
    assert.match(one(outputs.repository, "output repository").value, /-docker\.pkg\.dev\//);
  },
};

function runAll(config) {
  for (const check of Object.values(checks)) check(config);
}

// ---------------------------------------------------------------------------------------------

const sources = readSources(TF_DIR);
const config = await parseSources(sources);

describe(`terraform configuration in ${TF_DIR}`, () => {
  test("the expected files exist and every *.tf file parses", async () => {
    const names = Object.keys(sources).map((f) => f.slice(TF_DIR.length + 1));
    for (const f of ["main.tf", "variables.tf", "cloudrun.tf", "database.tf", "firestore.tf", "outputs.tf"]) {
      assert.ok(names.includes(f), `terraform/${f} is missing`);
    }
    for (const [file, text] of Object.entries(sources)) {
      const parsed = await parse(file, text);
      assert.ok(isObject(parsed) && Object.keys(parsed).length > 0, `${file} parsed to nothing`);
    }
  });

  for (const [name, check] of Object.entries(checks)) {
    test(name, () => check(config));
  }
});

// The same checks on mutated copies: each regression must be caught, by the named check.
const FIRESTORE_CHECK = "the firestore store: a protected Native-mode database, its API, roles/datastore.user on that database alone";
const STARTUP_CHECK = "the startup probe stays within Cloud Run's limits and covers each store's start-up wait";
const EXEMPTIONS_CHECK = "the firestore store's fields are exempt from automatic indexing, in the collections it uses";

describe("the checks catch regressions", () => {
  const clone = () => structuredClone(config);

  test('port name "http1" in the source text fails the h2c check', async () => {
    // The attribute, not a comment that mentions "h2c".
    const attr = /(\bname\s*=\s*)"h2c"/;
    const cloudrun = Object.keys(sources).find((f) => attr.test(sources[f]));
    assert.ok(cloudrun, 'no file sets name = "h2c"');
    const mutated = { ...sources, [cloudrun]: sources[cloudrun].replace(attr, '$1"http1"') };
    const bad = await parseSources(mutated);
    assert.equal(one(container(bad).ports, "ports").name, "http1");
    assert.throws(() => checks["the container port is named h2c and is 8080"](bad), /h2c/);
    assert.throws(() => runAll(bad));
  });

  test("a syntax error in a .tf file fails to parse", async () => {
    const [file] = Object.keys(sources);
    await assert.rejects(parseSources({ ...sources, [file]: sources[file] + "\nresource \"x\" \"y\" {\n" }));
  });

  const mutations = [
    ["a PORT env var", "no env var named PORT, and the server's env is wired to variables",
      (c) => container(c).env.push({ name: "PORT", value: "8080" })],
    ["an http_get liveness probe", "startup and liveness probes use gRPC health checks on 8080",
      (c) => { const p = container(c).liveness_probe[0]; delete p.grpc; p.http_get = [{ path: "/" }]; }],
    ["a tcp startup probe", "startup and liveness probes use gRPC health checks on 8080",
      (c) => { const p = container(c).startup_probe[0]; delete p.grpc; p.tcp_socket = [{ port: 8080 }]; }],
    ["max_instance_count defaulting to 3", "scaling bounds come from variables and max_instance_count defaults to 1",
      (c) => { c.variable.max_instance_count[0].default = 3; }],
    ["a hard-coded max instance count", "scaling bounds come from variables and max_instance_count defaults to 1",
      (c) => { template(c).scaling[0].max_instance_count = 10; }],
    ["no request timeout", "request concurrency, timeout and cpu/memory limits are set",
      (c) => { delete template(c).timeout; }],
    ["no memory limit", "request concurrency, timeout and cpu/memory limits are set",
      (c) => { delete container(c).resources[0].limits.memory; }],
    ["the default compute service account", "a dedicated service account runs the service",
      (c) => { delete template(c).service_account; }],
    ["an IAM member without location", "every regional resource sets location",
      (c) => { delete c.resource.google_cloud_run_v2_service_iam_member.invokers[0].location; }],
    ["allUsers granted unconditionally", "allUsers is granted only behind allow_unauthenticated, which defaults to false",
      (c) => { delete c.resource.google_cloud_run_v2_service_iam_member.public[0].count; }],
    ["allow_unauthenticated defaulting to true", "allUsers is granted only behind allow_unauthenticated, which defaults to false",
      (c) => { c.variable.allow_unauthenticated[0].default = true; }],
    ["a non-empty invoker_members default", "invoker_members get roles/run.invoker, one member resource each",
      (c) => { c.variable.invoker_members[0].default = ["user:someone@example.com"]; }],
    ["an unpinned provider", "terraform and the google provider are pinned",
      (c) => { c.terraform[0].required_providers[0].google.version = ">= 6.0"; }],
    ["no required_version", "terraform and the google provider are pinned",
      (c) => { delete c.terraform[0].required_version; }],
    ["a uri output from elsewhere", "outputs: uri from the service, service_account_email, repository path",
      (c) => { c.output.uri[0].value = "https://example.com"; }],
    ["no memory-store precondition", "a precondition keeps the memory: store on one instance and min <= max",
      (c) => {
        const l = service(c).body.lifecycle[0];
        l.precondition = l.precondition.filter((p) => !p.condition.includes("var.allow_split_memory_store"));
      }],

    // The store rules, evaluated.
    ["no memory-store precondition", "each store allows the instance counts it can serve",
      (c) => {
        const l = service(c).body.lifecycle[0];
        l.precondition = l.precondition.filter((p) => !p.condition.includes("var.allow_split_memory_store"));
      }],
    ["a memory rule that ignores the opt-in", "each store allows the instance counts it can serve",
      (c) => {
        const p = service(c).body.lifecycle[0].precondition.find((x) => x.condition.includes("var.allow_split_memory_store"));
        p.condition = ref('var.store != "memory" || var.max_instance_count == 1');
      }],
    ["no sqlite opt-in precondition", "each store allows the instance counts it can serve",
      (c) => {
        const l = service(c).body.lifecycle[0];
        l.precondition = l.precondition.filter((p) => !p.condition.includes("var.accept_sqlite_data_loss"));
      }],
    ["sqlite allowed on several instances", "each store allows the instance counts it can serve",
      (c) => {
        const l = service(c).body.lifecycle[0];
        l.precondition = l.precondition.filter((p) => !(p.condition.includes('"sqlite"') && p.condition.includes("var.max_instance_count")));
      }],
    ["a one-instance rule for every store", "each store allows the instance counts it can serve",
      (c) => { service(c).body.lifecycle[0].precondition.push({ condition: ref("var.max_instance_count == 1"), error_message: "one instance" }); }],
    ["accept_sqlite_data_loss defaulting to true", "each store allows the instance counts it can serve",
      (c) => { c.variable.accept_sqlite_data_loss[0].default = true; }],
    ["a connection name validation that accepts anything", "every variable's default passes its own validations, and the store inputs check their form",
      (c) => { c.variable.cloudsql_instance_connection_name[0].validation[0].condition = ref("true"); }],
    ["a default that fails its validation", "every variable's default passes its own validations, and the store inputs check their form",
      (c) => { c.variable.cloudsql_disk_size_gb[0].default = 5; }],
    ["memory: no longer the default store", "store chooses BOOKS_STORE, and memory: stays the default",
      (c) => { c.variable.store[0].default = "sqlite"; }],

    // The Cloud SQL connection.
    ["a mount path other than /cloudsql", "the postgresql store connects through Cloud Run's Cloud SQL volume at /cloudsql",
      (c) => { one(container(c).dynamic.volume_mounts[0].content, "mount").mount_path = "/sockets"; }],
    ["a Cloud SQL volume for every store", "the postgresql store connects through Cloud Run's Cloud SQL volume at /cloudsql",
      (c) => { template(c).dynamic.volumes[0].for_each = ref("[local.cloudsql_connection_name]"); }],
    ["a socket path outside the mount", "the postgresql store connects through Cloud Run's Cloud SQL volume at /cloudsql",
      (c) => { locals(c); c.locals.find((l) => "cloudsql_socket_dir" in l).cloudsql_socket_dir = "/tmp/${local.cloudsql_connection_name}"; }],
    ["a TCP host in the URI", "the postgresql store connects through Cloud Run's Cloud SQL volume at /cloudsql",
      (c) => { c.locals.find((l) => "postgresql_uri" in l).postgresql_uri = "postgresql://10.0.0.3:5432/${var.postgresql_database}?user=${var.postgresql_user}"; }],

    // The password.
    ["PGPASSWORD as a plain value", "the database password reaches the server only from Secret Manager",
      (c) => {
        const e = container(c).dynamic.env.find((d) => d.content[0].name === "PGPASSWORD").content[0];
        delete e.value_source;
        e.value = ref("random_password.db_password[0].result");
      }],
    ["a password env in plain text", "the database password reaches the server only from Secret Manager",
      (c) => { container(c).env.push({ name: "DB_PASSWORD", value: "hunter2" }); }],
    ["the password inside BOOKS_STORE", "the database password reaches the server only from Secret Manager",
      (c) => {
        const l = c.locals.find((x) => "postgresql_uri" in x);
        l.postgresql_uri = l.postgresql_uri.replace("postgresql:///", "postgresql://${var.postgresql_user}:${random_password.db_password[0].result}@/");
      }],
    ["books_store accepting a password", "the database password reaches the server only from Secret Manager",
      (c) => { c.variable.books_store[0].validation = c.variable.books_store[0].validation.filter((v) => !/password/i.test(v.condition)); }],
    ["postgresql_store_params accepting any key", "the database password reaches the server only from Secret Manager",
      (c) => { delete c.variable.postgresql_store_params[0].validation; }],
    ["an output of the password", "the database password reaches the server only from Secret Manager",
      (c) => { c.output.db_password = [{ value: ref("random_password.db_password[0].result"), sensitive: true }]; }],
    ["the secret on the latest version", "the database password reaches the server only from Secret Manager",
      (c) => { c.locals.find((x) => "password_secret_version" in x).password_secret_version = "latest"; }],

    // IAM.
    ["roles/editor for the runtime account", "the runtime account gets Cloud SQL Client and access to the password secret, nothing more",
      (c) => { c.resource.google_project_iam_member.cloudsql_client[0].role = "roles/editor"; }],
    ["secretAccessor on the whole project", "the runtime account gets Cloud SQL Client and access to the password secret, nothing more",
      (c) => { c.resource.google_project_iam_member.secrets = [{ count: ref("local.postgresql ? 1 : 0"), project: ref("var.project_id"), role: "roles/secretmanager.secretAccessor", member: c.resource.google_project_iam_member.cloudsql_client[0].member }]; }],
    ["secretmanager.admin on the secret", "the runtime account gets Cloud SQL Client and access to the password secret, nothing more",
      (c) => { c.resource.google_secret_manager_secret_iam_member.db_password[0].role = "roles/secretmanager.admin"; }],
    ["an authoritative secret binding", "the runtime account gets Cloud SQL Client and access to the password secret, nothing more",
      (c) => { c.resource.google_secret_manager_secret_iam_binding = { b: [{ secret_id: "x", role: "roles/secretmanager.secretAccessor", members: [] }] }; }],
    ["Cloud SQL Client for every store", "the runtime account gets Cloud SQL Client and access to the password secret, nothing more",
      (c) => { delete c.resource.google_project_iam_member.cloudsql_client[0].count; }],
    ["the role in the service's project for an instance elsewhere", "the runtime account gets Cloud SQL Client and access to the password secret, nothing more",
      (c) => { c.resource.google_project_iam_member.cloudsql_client[0].project = ref("var.project_id"); }],
    ["a service deployed before the secret grant", "the runtime account gets Cloud SQL Client and access to the password secret, nothing more",
      (c) => { service(c).body.depends_on = service(c).body.depends_on.filter((d) => !d.includes("secret_iam")); }],
    ["a project role for the default store", "a dedicated service account runs the service",
      (c) => { delete c.resource.google_project_iam_member.cloudsql_client[0].count; }],

    // The instance.
    ["backups off", "a Cloud SQL for PostgreSQL instance with backups and deletion protection, only when needed",
      (c) => { c.resource.google_sql_database_instance.books[0].settings[0].backup_configuration[0].enabled = false; }],
    ["an authorized network 0.0.0.0/0", "a Cloud SQL for PostgreSQL instance with backups and deletion protection, only when needed",
      (c) => { c.resource.google_sql_database_instance.books[0].settings[0].ip_configuration[0].authorized_networks = [{ value: "0.0.0.0/0" }]; }],
    ["database deletion protection off by default", "a Cloud SQL for PostgreSQL instance with backups and deletion protection, only when needed",
      (c) => { c.variable.database_deletion_protection[0].default = false; }],
    ["a shared CA the Cloud Run connection refuses", "a Cloud SQL for PostgreSQL instance with backups and deletion protection, only when needed",
      (c) => { c.resource.google_sql_database_instance.books[0].settings[0].ip_configuration[0].server_ca_mode = "GOOGLE_MANAGED_CAS_CA"; }],
    ["an instance created beside an existing one", "a Cloud SQL for PostgreSQL instance with backups and deletion protection, only when needed",
      (c) => { c.resource.google_sql_database_instance.books[0].count = ref("local.postgresql ? 1 : 0"); }],
    ["a short password", "a Cloud SQL for PostgreSQL instance with backups and deletion protection, only when needed",
      (c) => { c.resource.random_password.db_password[0].length = 8; }],
    ["no REGIONAL precondition", "a Cloud SQL for PostgreSQL instance with backups and deletion protection, only when needed",
      (c) => { c.resource.google_sql_database_instance.books[0].lifecycle[0].precondition = []; }],
    ["a connection name output of the variable only", "outputs: the Cloud SQL connection name, and the secret's id when created",
      (c) => { c.output.cloudsql_connection_name[0].value = ref("var.cloudsql_instance_connection_name"); }],
    ["the secret version as the secret output", "outputs: the Cloud SQL connection name, and the secret's id when created",
      (c) => { c.output.database_password_secret[0].value = ref("local.create_cloudsql ? google_secret_manager_secret_version.db_password[0].secret_data : null"); }],

    // The firestore store.
    ["a Datastore-mode database", FIRESTORE_CHECK,
      (c) => { c.resource.google_firestore_database.books[0].type = "DATASTORE_MODE"; }],
    ["Firestore delete protection off", FIRESTORE_CHECK,
      (c) => { c.resource.google_firestore_database.books[0].delete_protection_state = "DELETE_PROTECTION_DISABLED"; }],
    ["Firestore delete protection unset", FIRESTORE_CHECK,
      (c) => { delete c.resource.google_firestore_database.books[0].delete_protection_state; }],
    ["a pessimistic database", FIRESTORE_CHECK,
      (c) => { c.resource.google_firestore_database.books[0].concurrency_mode = "PESSIMISTIC"; }],
    ["a Firestore database for every store", FIRESTORE_CHECK,
      (c) => { delete c.resource.google_firestore_database.books[0].count; }],
    ["a Firestore database created beside an existing one", FIRESTORE_CHECK,
      (c) => { c.resource.google_firestore_database.books[0].count = ref("local.firestore ? 1 : 0"); }],
    ["no Firestore API", FIRESTORE_CHECK,
      (c) => { delete c.resource.google_project_service; }],
    ["the Firestore API disabled on destroy", FIRESTORE_CHECK,
      (c) => { c.resource.google_project_service.firestore[0].disable_on_destroy = true; }],
    ["datastore.user on the whole project", FIRESTORE_CHECK,
      (c) => { delete c.resource.google_project_iam_member.datastore_user[0].condition; }],
    ["datastore.user on another database", FIRESTORE_CHECK,
      (c) => { c.resource.google_project_iam_member.datastore_user[0].condition[0].expression = 'resource.name.startsWith("projects/${var.project_id}/databases/")'; }],
    ["datastore.owner for the runtime account", FIRESTORE_CHECK,
      (c) => { c.resource.google_project_iam_member.datastore_user[0].role = "roles/datastore.owner"; }],
    ["datastore.user for every store", FIRESTORE_CHECK,
      (c) => { delete c.resource.google_project_iam_member.datastore_user[0].count; }],
    ["a Cloud SQL instance with the firestore store", FIRESTORE_CHECK,
      (c) => { c.resource.google_sql_database_instance.books[0].count = ref('var.store != "memory" && var.store != "sqlite" && var.cloudsql_instance_connection_name == null ? 1 : 0'); }],
    ["Cloud SQL Client with the firestore store", FIRESTORE_CHECK,
      (c) => { c.resource.google_project_iam_member.cloudsql_client[0].count = ref('var.store == "postgresql" || var.store == "firestore" ? 1 : 0'); }],
    ["a firestore URI without its database", FIRESTORE_CHECK,
      (c) => { c.locals.find((l) => "firestore_uri" in l).firestore_uri = "firestore://${var.project_id}"; }],
    ["a firestore URI with a databases/ path", FIRESTORE_CHECK,
      (c) => { c.locals.find((l) => "firestore_uri" in l).firestore_uri = "firestore://${var.project_id}/databases/${var.firestore_database}"; }],
    ["firestore_store_params accepting any key", FIRESTORE_CHECK,
      (c) => { delete c.variable.firestore_store_params[0].validation; }],
    ["a service deployed before its Firestore role", FIRESTORE_CHECK,
      (c) => { service(c).body.depends_on = service(c).body.depends_on.filter((d) => !d.includes("datastore_user")); }],
    ["a Firestore database in a fixed location", FIRESTORE_CHECK,
      (c) => { c.resource.google_firestore_database.books[0].location_id = "nam5"; }],
    ["firestore kept on one instance", "each store allows the instance counts it can serve",
      (c) => { service(c).body.lifecycle[0].precondition.push({ condition: ref('var.store != "firestore" || var.max_instance_count == 1'), error_message: "firestore: one instance" }); }],
    ["firestore refused by the store variable", "store chooses BOOKS_STORE, and memory: stays the default",
      (c) => { c.variable.store[0].validation[0].condition = ref('contains(["memory", "sqlite", "postgresql"], var.store)'); }],
    ["a datastore.user grant beside the Cloud SQL one", "the runtime account gets Cloud SQL Client and access to the password secret, nothing more",
      (c) => { c.resource.google_project_iam_member.extra = [{ ...c.resource.google_project_iam_member.datastore_user[0] }]; }],
    // High availability.
    ["a hard-coded ZONAL instance", "a Cloud SQL for PostgreSQL instance with backups and deletion protection, only when needed",
      (c) => { c.resource.google_sql_database_instance.books[0].settings[0].availability_type = "ZONAL"; }],
    ["REGIONAL by default", "a Cloud SQL for PostgreSQL instance with backups and deletion protection, only when needed",
      (c) => { c.variable.cloudsql_availability_type[0].default = "REGIONAL"; }],
    ["an availability type accepting any string", "a Cloud SQL for PostgreSQL instance with backups and deletion protection, only when needed",
      (c) => { c.variable.cloudsql_availability_type[0].validation[0].condition = ref("length(var.cloudsql_availability_type) > 0"); }],
    ["an HA description without its cost", "a Cloud SQL for PostgreSQL instance with backups and deletion protection, only when needed",
      (c) => { const v = c.variable.cloudsql_availability_type[0]; v.description = v.description.replace(/double the price/, "more"); }],

    // The startup probe and the firestore store's start-up wait.
    ["a startup window of 600 s", STARTUP_CHECK,
      (c) => { c.locals.find((l) => "startup_probe_failure_threshold" in l).startup_probe_failure_threshold = "${local.firestore ? 300 : 30}"; }],
    ["a startup period above 240 s", STARTUP_CHECK,
      (c) => { c.locals.find((l) => "startup_probe_period_s" in l).startup_probe_period_s = 241; }],
    ["an initial delay on every start", STARTUP_CHECK,
      (c) => { container(c).startup_probe[0].initial_delay_seconds = 120; }],
    ["firestore kept to 60 s of start-up", STARTUP_CHECK,
      (c) => { c.locals.find((l) => "startup_probe_failure_threshold" in l).startup_probe_failure_threshold = 30; }],
    ["no startup_timeout_s in the firestore URI", STARTUP_CHECK,
      (c) => { const l = c.locals.find((x) => "firestore_uri" in x); l.firestore_uri = l.firestore_uri.replace("local.firestore_params", "var.firestore_store_params"); }],
    ["a firestore wait of the server's 600 s", STARTUP_CHECK,
      (c) => { const l = c.locals.find((x) => "firestore_startup_timeout_max_s" in x); l.firestore_startup_timeout_max_s = 600; }],
    ["no precondition on startup_timeout_s", STARTUP_CHECK,
      (c) => { const l = service(c).body.lifecycle[0]; l.precondition = l.precondition.filter((p) => !p.condition.includes("startup_timeout_s")); }],
    ["a startup_timeout_s of any letters", STARTUP_CHECK,
      (c) => { c.variable.firestore_store_params[0].validation = c.variable.firestore_store_params[0].validation.slice(0, 1); }],
    ["a timeout as long as the period", "startup and liveness probes use gRPC health checks on 8080",
      (c) => { container(c).startup_probe[0].timeout_seconds = "${local.startup_probe_period_s}"; }],

    // Index exemptions.
    ["authors indexed again", EXEMPTIONS_CHECK,
      (c) => { const l = c.locals.find((x) => "firestore_unindexed_fields" in x); l.firestore_unindexed_fields = l.firestore_unindexed_fields.filter((f) => f !== "book.authors"); }],
    ["the page-token key indexed again", EXEMPTIONS_CHECK,
      (c) => { const l = c.locals.find((x) => "firestore_unindexed_fields" in x); l.firestore_unindexed_fields = l.firestore_unindexed_fields.filter((f) => !f.startsWith("meta.")); }],
    ["an exemption that keeps an ascending index", EXEMPTIONS_CHECK,
      (c) => { c.resource.google_firestore_field.unindexed[0].index_config = [{ indexes: [{ order: "ASCENDING" }] }]; }],
    ["the TTL field indexed", EXEMPTIONS_CHECK,
      (c) => { delete c.resource.google_firestore_field.request_ttl[0].index_config; }],
    ["exemptions in a fixed collection", EXEMPTIONS_CHECK,
      (c) => { c.locals.find((x) => "firestore_collections" in x).firestore_collections.book = "books"; }],
    ["exemptions for every store", EXEMPTIONS_CHECK,
      (c) => { const b = c.resource.google_firestore_field.unindexed[0]; b.for_each = b.for_each.replace(/^\$\{local\.firestore \? /, "${true ? "); }],
    ["exemptions in the default database", EXEMPTIONS_CHECK,
      (c) => { c.resource.google_firestore_field.unindexed[0].database = "(default)"; }],
    ["exemptions before the database", EXEMPTIONS_CHECK,
      (c) => { delete c.resource.google_firestore_field.unindexed[0].depends_on; }],
    ["a field exempted that the store does not write", EXEMPTIONS_CHECK,
      (c) => { c.locals.find((x) => "firestore_unindexed_fields" in x).firestore_unindexed_fields.push("book.isbn"); }],
    ["a firestore database ID that accepts UUIDs", "every variable's default passes its own validations, and the store inputs check their form",
      (c) => { c.variable.firestore_database[0].validation[0].condition = ref('var.firestore_database == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore_database))'); }],
  ];

  test("a field added to the Book message without its exemption fails the exemptions check", () => {
    const fields = protoMessageFields(readFileSync(BOOKS_PROTO, "utf8"), "Book");
    assert.doesNotThrow(() => exemptionsCoverBook(config, fields));
    assert.throws(() => exemptionsCoverBook(config, [...fields, "isbn"]), /Book\.isbn/);
    const proto = "message Book {\n  string name = 1;\n  string display_name = 2;\n  repeated string authors = 3;\n  string publisher = 4;\n  int32 page_count = 5 [(google.api.field_behavior) = OPTIONAL];\n}\n";
    assert.throws(() => exemptionsCoverBook(config, protoMessageFields(proto, "Book")), /Book\.page_count/);
  });

  test("the mutations have unique names", () => {
    const names = mutations.map(([what, checkName]) => `${what} fails "${checkName}"`);
    assert.equal(new Set(names).size, names.length);
  });

  for (const [what, checkName, mutate] of mutations) {
    test(`${what} fails "${checkName}"`, () => {
      assert.ok(checks[checkName], `unknown check ${checkName}`);
      assert.doesNotThrow(() => checks[checkName](config), "the unmutated configuration must pass");
      const bad = clone();
      mutate(bad);
      assert.throws(() => checks[checkName](bad), assert.AssertionError);
    });
  }
});
