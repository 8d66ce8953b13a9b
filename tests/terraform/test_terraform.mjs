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
    const provider = one(config.provider?.google, 'provider "google"');
    assert.equal(provider.project, ref("var.project_id"), "provider project must be var.project_id");
    assert.equal(provider.region, ref("var.region"), "provider region must be var.region");
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
    const env = container(config).env ?? [];
    const names = env.map((e) => e.name);
    assert.ok(!names.some((n) => String(n).toUpperCase() === "PORT"), "env must not set PORT: Cloud Run injects it");
    assert.equal(new Set(names).size, names.length, `env names must be unique: ${names}`);
    const value = (n) => env.find((e) => e.name === n)?.value;
    assert.equal(value("BOOKS_STORE"), ref("var.books_store"));
    assert.equal(value("BOOKS_LOG_LEVEL"), ref("var.log_level"));
    assert.equal(value("GOOGLE_CLOUD_PROJECT"), ref("var.project_id"));
    assert.equal(variable(config, "books_store").default, "memory:");
    assert.equal(variable(config, "log_level").default, "info");
  },

  "startup and liveness probes use gRPC health checks on 8080"(config) {
    const c = container(config);
    for (const kind of ["startup_probe", "liveness_probe"]) {
      const probe = one(c[kind], kind);
      const grpc = one(probe.grpc, `${kind}.grpc`);
      assert.equal(resolveDefault(config, grpc.port ?? 8080), 8080, `${kind}.grpc.port must be 8080`);
      assert.ok(!probe.http_get && !probe.tcp_socket, `${kind} must use only grpc (no http_get/tcp_socket)`);
      for (const k of ["initial_delay_seconds", "period_seconds", "timeout_seconds", "failure_threshold"]) {
        assert.equal(typeof probe[k], "number", `${kind}.${k} must be set to a number`);
      }
      assert.ok(probe.timeout_seconds < probe.period_seconds, `${kind}.timeout_seconds must be below period_seconds`);
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
      conditions.some((c) => c.includes("var.books_store") && c.includes("var.max_instance_count")),
      "a precondition must tie max_instance_count to books_store (memory:)",
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
    // Least privilege: the memory: store needs no project roles for the runtime account.
    for (const type of ["google_project_iam_member", "google_project_iam_binding", "google_project_iam_policy"]) {
      assert.equal(resources(config, type).length, 0, `${type} is not expected: the runtime account needs no roles`);
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
    for (const f of ["main.tf", "variables.tf", "cloudrun.tf", "outputs.tf"]) {
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
        l.precondition = l.precondition.filter((p) => !p.condition.includes("var.books_store"));
      }],
  ];

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
