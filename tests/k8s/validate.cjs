// Reads a multi-document YAML stream (the output of `kubectl kustomize`) on stdin, validates every
// object against the Kubernetes OpenAPI schema for its apiVersion and kind (the validators that
// the kubernetes-models package generates from it, so no network is needed), and also rejects
// fields the schema does not know (the generated validators let them through, and a misspelt
// field is the commonest manifest bug). Prints {"objects": [...], "errors": [...]} as JSON.
//
// usage: node validate.cjs NODE_PREFIX < manifests.yaml
// NODE_PREFIX is the directory holding node_modules (npm ci --prefix).
"use strict";
const fs = require("fs");
const path = require("path");
const { createRequire } = require("module");

const prefix = process.argv[2];
if (!prefix) {
    process.stderr.write("usage: node validate.cjs NODE_PREFIX < manifests.yaml\n");
    process.exit(2);
}
const req = createRequire(path.join(path.resolve(prefix), "package.json"));
const YAML = req("yaml");
const modelsRoot = path.dirname(req.resolve("kubernetes-models/package.json"));

// apiVersion "apps/v1" -> "apps/v1", "v1" -> "v1" (the core group lives at the top).
function modelPath(apiVersion, kind) {
    if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z]+$/.test(kind))
        return null;
    const parts = apiVersion.split("/");
    if (parts.length > 2 || parts.some((p) => !/^[a-z0-9.]+$/.test(p)))
        return null;
    return path.join(modelsRoot, ...parts, kind);
}

// ---- unknown fields, from the TypeScript declarations that ship with the models ------------

const interfaces = new Map(); // d.ts file -> {fields: Map(name -> type text), imports: Map}

function parseDeclarations(file) {
    if (interfaces.has(file))
        return interfaces.get(file);
    const text = fs.readFileSync(file, "utf8");
    const imports = new Map();
    for (const m of text.matchAll(/^import \{ (\w+) \} from "([^"]+)";$/gm))
        imports.set(m[1], m[2]);
    const body = /export interface \w+(?: extends [\w, ]+)? \{([\s\S]*?)\n\}/.exec(text);
    const fields = new Map();
    if (body) {
        // One field a line ("name"?: Type;), but for maps, which span lines:
        // "labels"?: {\n [key: string]: string;\n };
        const lines = body[1].replace(/\/\*\*[\s\S]*?\*\//g, "").split("\n");
        for (let i = 0; i < lines.length; i++) {
            const m = /^\s*"([^"]+)"\??: (.+)$/.exec(lines[i]);
            if (!m)
                continue;
            let type = m[2];
            if (type === "{") {
                while (++i < lines.length && !/^\s*\};$/.test(lines[i]))
                    type += " " + lines[i].trim();
                type += " }";
            } else {
                type = type.replace(/;$/, "");
            }
            fields.set(m[1], type);
        }
    }
    const entry = { fields, imports, file };
    interfaces.set(file, entry);
    return entry;
}

function resolveImport(fromFile, spec) {
    const r = createRequire(fromFile);
    try {
        return r.resolve(spec.startsWith(".") ? spec + ".d.ts" : spec + ".d.ts");
    } catch (e) {
        // Package subpaths ("@kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta").
        const m = /^(@[^/]+\/[^/]+|[^@/][^/]*)\/(.*)$/.exec(spec);
        if (!m)
            return null;
        const root = path.dirname(r.resolve(m[1] + "/package.json"));
        const candidate = path.join(root, m[2] + ".d.ts");
        return fs.existsSync(candidate) ? candidate : null;
    }
}

// Checks `value` against the type text `type` found in declaration `decl`.
function checkType(value, type, decl, where, errors) {
    type = type.trim();
    let m;
    if ((m = /^Array<(.+)>$/.exec(type))) {
        if (Array.isArray(value))
            value.forEach((v, i) => checkType(v, m[1], decl, `${where}/${i}`, errors));
        return;
    }
    if ((m = /^\{\s*\[key: string\]: (.+?);?\s*\}$/.exec(type))) {
        if (value && typeof value === "object" && !Array.isArray(value))
            for (const [k, v] of Object.entries(value))
                checkType(v, m[1], decl, `${where}/${k}`, errors);
        return;
    }
    if (!/^I\w+$/.test(type) || !decl.imports.has(type))
        return; // scalars, unions, free-form objects (JSON, RawExtension) and the like
    if (!value || typeof value !== "object" || Array.isArray(value))
        return;
    const file = resolveImport(decl.file, decl.imports.get(type));
    if (!file)
        return;
    checkFields(value, parseDeclarations(file), where, errors);
}

function checkFields(obj, decl, where, errors) {
    if (decl.fields.size === 0)
        return;
    for (const [k, v] of Object.entries(obj)) {
        if (!decl.fields.has(k)) {
            errors.push(`${where}/${k}: unknown field`);
            continue;
        }
        checkType(v, decl.fields.get(k), decl, `${where}/${k}`, errors);
    }
}

// ---- main -----------------------------------------------------------------------------------

const input = fs.readFileSync(0, "utf8");
const objects = [];
const errors = [];
for (const doc of YAML.parseAllDocuments(input)) {
    if (doc.errors.length) {
        errors.push(`YAML: ${doc.errors.map((e) => e.message).join("; ")}`);
        continue;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined)
        continue;
    objects.push(obj);
    const name = `${obj.kind}/${obj.metadata && obj.metadata.name}`;
    const base = modelPath(obj.apiVersion, obj.kind);
    if (!base || !fs.existsSync(base + ".js")) {
        errors.push(`${name}: no schema for apiVersion ${obj.apiVersion} kind ${obj.kind}`);
        continue;
    }
    const Model = req(base + ".js")[obj.kind];
    try {
        new Model(obj).validate();
    } catch (e) {
        errors.push(`${name}: ${e.message}`);
    }
    const decl = parseDeclarations(base + ".d.ts");
    if (decl.fields.size === 0) {
        // The declarations changed shape: fail rather than let every field through unchecked.
        errors.push(`${name}: cannot read the fields of ${base}.d.ts`);
        continue;
    }
    const unknown = [];
    checkFields(obj, decl, "", unknown);
    for (const u of unknown)
        errors.push(`${name}: ${u}`);
}
process.stdout.write(JSON.stringify({ objects, errors }) + "\n");
