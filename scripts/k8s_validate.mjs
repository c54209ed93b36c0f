#!/usr/bin/env node
// Validates Kubernetes objects offline, strictly: each object against the schema of its
// apiVersion/kind from the npm package kubernetes-models (types, formats, required
// fields), and, which that package lets through, no field the schema does not know (a
// typo such as `readinesProbe` is an error, as `kubectl apply --validate=strict` would make
// it on a real API server).
//
//   node scripts/k8s_validate.mjs PATH...
// PATH: a kustomization directory (rendered with `kubectl kustomize`), a YAML file (any
// number of documents), or - for standard input. Prints one line per object; exits 1 if
// any object is invalid, 2 on a usage or set-up error.
// The packages come from $LLAVA_K8S_NPM_DIR (default data/npm-k8s, installed by
// scripts/setup.sh: kubernetes-models@5.1.0, yaml).
//
// How unknown fields are found: the package's validators are compiled JSON schemas that
// read every property the schema declares (data.spec, data.template, ...) and every key
// of a map (labels, resources.limits). The object is given to the validator as a tree of
// proxies that record which keys were read; a key present in the object that its
// validator never read is a field the schema does not have.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const NPM_DIR = path.resolve(process.env.LLAVA_K8S_NPM_DIR || path.join(ROOT, "data/npm-k8s"));
const MODULES = path.join(NPM_DIR, "node_modules");

function die(msg) {
  console.error(`k8s_validate: ${msg}`);
  process.exit(2);
}

if (!existsSync(path.join(MODULES, "kubernetes-models/_schemas"))) {
  die(`kubernetes-models is not installed in ${NPM_DIR} (scripts/setup.sh installs it)`);
}
const YAML = await import(pathToFileURL(path.join(MODULES, "yaml/dist/index.js")).href)
  .catch(() => die(`the npm package yaml is not installed in ${NPM_DIR}`));

// apiVersion + kind -> the package's schema module, e.g. apps/v1 Deployment ->
// _schemas/IoK8sApiAppsV1Deployment.js, v1 Service -> IoK8sApiCoreV1Service.js,
// networking.k8s.io/v1 NetworkPolicy -> IoK8sApiNetworkingV1NetworkPolicy.js.
const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);
async function validatorFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string") return null;
  const parts = apiVersion.split("/");
  const [group, version] = parts.length === 1 ? ["core", parts[0]] : parts;
  const groupName = group.split(".")[0].split("-").map(cap).join("");
  const file = path.join(MODULES, "kubernetes-models/_schemas",
    `IoK8sApi${groupName}${cap(version)}${kind}.js`);
  if (!existsSync(file)) return null;
  return (await import(pathToFileURL(file).href)).validate;
}

// A copy of `value` in which every object is a proxy recording the keys read from it.
function tracked(value, where, records) {
  if (Array.isArray(value)) {
    return value.map((v, i) => tracked(v, `${where}[${i}]`, records));
  }
  if (value !== null && typeof value === "object") {
    const target = {};
    for (const [k, v] of Object.entries(value)) target[k] = tracked(v, `${where}.${k}`, records);
    const read = new Set();
    records.push({ where, keys: Object.keys(value), read });
    return new Proxy(target, {
      get(t, key, receiver) {
        if (typeof key === "string") read.add(key);
        return Reflect.get(t, key, receiver);
      },
      getOwnPropertyDescriptor(t, key) {
        if (typeof key === "string") read.add(key);
        return Reflect.getOwnPropertyDescriptor(t, key);
      },
    });
  }
  return value;
}

function describeError(e) {
  const at = e.instancePath
    ? e.instancePath.slice(1).split("/").map((s) => (/^\d+$/.test(s) ? `[${s}]` : `.${s}`)).join("").slice(1)
    : "(object)";
  const p = e.params || {};
  if (e.keyword === "required") return `${at}: missing required field ${p.missingProperty}`;
  if (e.keyword === "type") return `${at}: must be ${p.type}`;
  if (e.keyword === "enum") return `${at}: must be one of ${JSON.stringify(p.allowedValues)}`;
  return `${at}: ${e.keyword} ${JSON.stringify(p)}${e.message ? " " + e.message : ""}`;
}

// Returns the list of problems of one object (empty: valid).
export async function validateObject(obj) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) return ["not an object"];
  const validate = await validatorFor(obj.apiVersion, obj.kind);
  if (!validate) return [`no schema for apiVersion ${obj.apiVersion} kind ${obj.kind}`];
  const records = [];
  const root = tracked(obj, "", records);
  const problems = [];
  if (!validate(root)) {
    for (const e of validate.errors || []) problems.push(describeError(e));
  }
  // Fields the validator never read; inside an unknown field only the outermost counts.
  const unknown = [];
  for (const r of records) {
    for (const k of r.keys) if (!r.read.has(k)) unknown.push({ at: (r.where + "." + k).slice(1), k });
  }
  for (const u of unknown) {
    const inner = unknown.some((o) => o !== u && (u.at.startsWith(o.at + ".") || u.at.startsWith(o.at + "[")));
    if (!inner) problems.push(`${u.at}: unknown field "${u.k}"`);
  }
  return problems;
}

function documentsOf(arg) {
  let text;
  let label = arg;
  if (arg === "-") {
    text = readFileSync(0, "utf8");
    label = "stdin";
  } else if (existsSync(arg) && statSync(arg).isDirectory()) {
    try {
      text = execFileSync("kubectl", ["kustomize", arg], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
      return { label, error: `kubectl kustomize ${arg} failed: ${(e.stderr || e.message).toString().trim()}` };
    }
  } else if (existsSync(arg)) {
    text = readFileSync(arg, "utf8");
  } else {
    return { label, error: "no such file or directory" };
  }
  const docs = [];
  for (const d of YAML.parseAllDocuments(text)) {
    if (d.errors.length) return { label, error: `YAML: ${d.errors[0].message}` };
    const v = d.toJS();
    if (v !== null && v !== undefined) docs.push(v);
  }
  return { label, docs };
}

async function main(args) {
  if (!args.length) die("usage: node scripts/k8s_validate.mjs PATH... (kustomization dir, YAML file, or -)");
  let bad = 0;
  let total = 0;
  for (const arg of args) {
    const { label, docs, error } = documentsOf(arg);
    if (error) {
      console.log(`FAIL ${label}: ${error}`);
      bad++;
      continue;
    }
    if (!docs.length) {
      console.log(`FAIL ${label}: no objects`);
      bad++;
    }
    for (const obj of docs) {
      total++;
      const name = `${label}: ${obj?.kind}/${obj?.metadata?.name}`;
      const problems = await validateObject(obj);
      if (problems.length) {
        bad++;
        console.log(`FAIL ${name}`);
        for (const p of problems) console.log(`    ${p}`);
      } else {
        console.log(`ok   ${name}`);
      }
    }
  }
  console.log(`${total} objects, ${bad} invalid`);
  process.exit(bad ? 1 : 0);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main(process.argv.slice(2));
}
