// The documentation page: renders /openapi.json (no framework, no CDN) and lets a
// reader try each GET operation from the browser, with an optional API key.
// Operation-level parameters only: path-level ones are not read.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) {
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function resolve(doc, item) {
  if (!item || !item.$ref) return item;
  return item.$ref.split("/").slice(1).reduce((at, part) => at[part], doc);
}

function parameterRow(doc, param, inputs) {
  const p = resolve(doc, param);
  const input = el("input", { name: p.name, "data-in": p.in, "aria-label": p.name });
  if (p.required) input.required = true;
  inputs.push(input);
  const kind = p.schema && (p.schema.type || (p.schema.enum || []).join(" | ")) || "";
  return el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in),
    el("td", {}, String(kind)), el("td", {}, p.description || ""), el("td", {}, input));
}

async function tryIt(path, inputs, output) {
  let url = path;
  const query = new URLSearchParams();
  for (const input of inputs) {
    if (!input.value) continue;
    if (input.dataset.in === "path") url = url.replace(`{${input.name}}`, encodeURIComponent(input.value));
    else query.append(input.name, input.value);
  }
  if ([...query].length) url += "?" + query;
  const headers = { Accept: "application/json" };
  const key = document.getElementById("key").value.trim();
  if (key) headers.Authorization = "Bearer " + key;
  output.textContent = "GET " + url + " …";
  try {
    const response = await fetch(url, { headers });
    const text = await response.text();
    let body = text;
    try { body = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON */ }
    const shown = ["Link", "NGSILD-Results-Count", "Citeplus-Peers", "ETag", "Retry-After"]
      .filter((h) => response.headers.get(h)).map((h) => `${h}: ${response.headers.get(h)}`);
    output.className = "answer " + (response.ok ? "status-ok" : "status-error");
    output.textContent = [`GET ${url}`, `${response.status} ${response.statusText}`, ...shown, "", body].join("\n");
  } catch (error) {
    output.className = "answer status-error";
    output.textContent = "request failed: " + error;
  }
}

function operationSection(doc, path, method, op) {
  const inputs = [];
  const rows = (op.parameters || []).map((p) => parameterRow(doc, p, inputs));
  const output = el("pre", { class: "answer" });
  const button = el("button", { type: "button" }, "Try it");
  button.addEventListener("click", () => tryIt(path, inputs, output));
  // Writes (subscriptions) take a JSON body: docs/api.md shows them with curl.
  const action = method === "get" ? button : el("p", { class: "hint" },
    `${method.toUpperCase()} takes a JSON body and a key: see the curl examples of docs/api.md`);
  const codes = Object.keys(op.responses || {}).join(", ");
  const section = el("section", { class: "operation", id: op.operationId },
    el("h3", {}, el("span", { class: "method" }, method.toUpperCase()), el("span", { class: "path" }, path)),
    el("p", {}, op.summary || ""), el("p", { class: "hint" }, "Answers: " + codes));
  if (rows.length) {
    section.append(el("table", {}, el("thead", {}, el("tr", {}, ...["name", "in", "type", "meaning", "value"]
      .map((h) => el("th", {}, h)))), el("tbody", {}, ...rows)));
  }
  section.append(action, output);
  return section;
}

async function render() {
  const main = document.getElementById("operations");
  const response = await fetch("/openapi.json", { headers: { Accept: "application/json" } });
  if (!response.ok) {
    document.getElementById("summary").textContent = `could not load /openapi.json (${response.status})`;
    return;
  }
  const doc = await response.json();
  document.title = doc.info.title;
  document.getElementById("summary").textContent = doc.info.description;
  for (const tag of doc.tags || [{ name: "default" }]) {
    main.append(el("h2", {}, tag.name), el("p", { class: "hint" }, tag.description || ""));
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        if ((op.tags || ["default"]).includes(tag.name)) main.append(operationSection(doc, path, method, op));
      }
    }
  }
  main.dataset.operations = String(main.querySelectorAll("section.operation").length);
}

render();
