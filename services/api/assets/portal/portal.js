// The developer portal: the catalogue (/catalog, DCAT-AP JSON-LD) per city and theme, a
// working example per dataset against this node, a live chart, how to get a key.
// No framework, no CDN. Every text that comes from a city file, a peer or an entity is put
// in the page with textContent / DOM APIs, never as HTML: a title "<img onerror=...>" shows
// as those characters. Links from data are only ever http(s).
"use strict";

const NGSI = "/ngsi-ld/v1";
// The chart is redrawn from the API this often (?refresh=N on the page's URL: 5 to 3600 s).
const REFRESH_S = Math.min(3600, Math.max(5,
  Number(new URLSearchParams(location.search).get("refresh")) || 30));
const CHART_HOURS = 48; // hourly averages over the last two days the entity has data for
// Texts in the reader's language when the catalogue has it (French or English).
const LANGS = String(navigator.language || "").toLowerCase().startsWith("fr") ? ["fr", "en"] : ["en", "fr"];
const PREFIXES = {
  dct: "http://purl.org/dc/terms/",
  dcat: "http://www.w3.org/ns/dcat#",
  foaf: "http://xmlns.com/foaf/0.1/",
  vcard: "http://www.w3.org/2006/vcard/ns#",
  citeplus: "https://citeplus.eu/ns/",
};
const THEMES = {
  AGRI: "Agriculture", ECON: "Economy", EDUC: "Education", ENER: "Energy",
  ENVI: "Environment", GOVE: "Government", HEAL: "Health", INTR: "International",
  JUST: "Justice", REGI: "Regions and cities", SOCI: "Population and society",
  TECH: "Science and technology", TRAN: "Transport",
};
const FREQUENCIES = {
  CONT: "continuous", UPDATE_CONT: "continuously updated", HOURLY: "hourly",
  DAILY: "daily", WEEKLY: "weekly", MONTHLY: "monthly", ANNUAL: "yearly",
  IRREG: "irregular", UNKNOWN: "unknown", NEVER: "never",
};
const LICENCES = [
  ["etalab", "Licence Ouverte / Etalab 2.0"], ["licence-ouverte", "Licence Ouverte / Etalab 2.0"],
  ["odbl", "ODbL 1.0"], ["by/4.0", "CC BY 4.0"], ["zero/1.0", "CC0 1.0"],
];

const state = { node: null, datasets: [], key: "", timer: null, errors: [] };

// -- small DOM helpers -------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function byId(id) { return document.getElementById(id); }

function safeLink(href, text) {
  // Only web links: a "javascript:" or "data:" URI of a city file is shown, never followed.
  let url = null;
  try { url = new URL(href, location.href); } catch (e) { url = null; }
  if (!url || !["http:", "https:"].includes(url.protocol)) return el("span", {}, text || href);
  return el("a", { href: url.href, rel: "noopener noreferrer" }, text || href);
}

function noteError(message) {
  state.errors.push(message);
  const box = byId("errors");
  box.hidden = false;
  box.textContent = state.errors.join(" · ");
  document.body.dataset.errors = String(state.errors.length);
}

// -- the API -----------------------------------------------------------------------------

async function getJson(url, accept, seen) {
  const headers = { Accept: accept || "application/json" };
  if (state.key) headers.Authorization = "Bearer " + state.key;
  const response = await fetch(url, { headers });
  if (seen) seen.peers = response.headers.get("Citeplus-Peers") || "";
  const text = await response.text();
  let body = null;
  try { body = JSON.parse(text); } catch (e) { body = null; }
  if (!response.ok) {
    const detail = body && (body.detail || body.title) || text.slice(0, 200);
    const error = new Error(`${response.status}: ${detail}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

// -- JSON-LD, as /catalog writes it (compacted with prefixes, or full IRIs) --------------

function candidates(term) {
  const [prefix, local] = term.split(":");
  return [term, local, PREFIXES[prefix] + local, "dcterms:" + local];
}

function raw(node, term) {
  if (!node || typeof node !== "object") return [];
  for (const name of candidates(term)) {
    if (node[name] !== undefined && node[name] !== null) {
      return Array.isArray(node[name]) ? node[name] : [node[name]];
    }
  }
  return [];
}

function literal(value) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "object") return String(value);
  if (value["@value"] !== undefined) return String(value["@value"]);
  if (value["@id"] !== undefined) return String(value["@id"]);
  return "";
}

function text(node, term) {
  // One language: English, else French, else the first given.
  const values = raw(node, term);
  for (const lang of LANGS) {
    const found = values.find((v) => v && typeof v === "object" && v["@language"] === lang);
    if (found) return literal(found);
  }
  return values.length ? literal(values[0]) : "";
}

function refs(node, term, index) {
  // Referenced nodes: embedded objects, or ids resolved in the graph (else {"@id": id}).
  return raw(node, term).map((v) => {
    const id = typeof v === "string" ? v : v && v["@id"];
    const embedded = v && typeof v === "object" && Object.keys(v).length > 1 ? v : null;
    return embedded || index.get(id) || { "@id": id };
  }).filter((v) => v && (v["@id"] || Object.keys(v).length));
}

function typesOf(node) {
  const t = node["@type"] || node.type || [];
  return (Array.isArray(t) ? t : [t]).map(String);
}

function isA(node, klass) {
  const [prefix, local] = klass.split(":");
  return typesOf(node).some((t) => t === klass || t === local || t === PREFIXES[prefix] + local);
}

function walk(value, found) {
  if (Array.isArray(value)) { value.forEach((v) => walk(v, found)); return found; }
  if (!value || typeof value !== "object") return found;
  if (value["@id"] && Object.keys(value).length > 1) found.push(value);
  for (const [name, child] of Object.entries(value)) if (name !== "@context") walk(child, found);
  return found;
}

function lastSegment(uri) {
  return String(uri || "").replace(/[/#]+$/, "").split(/[/#]/).pop();
}

function licenceLabel(uri) {
  const lower = String(uri).toLowerCase();
  const known = LICENCES.find(([part]) => lower.includes(part));
  return known ? known[1] : lastSegment(uri);
}

function spatialLabel(uri) {
  const match = /\/geo\/([a-zA-Z]+)\/([0-9A-Za-z]+)$/.exec(String(uri));
  if (!match) return lastSegment(uri);
  const kind = match[1] === "intercommunalite" ? "EPCI" : match[1];
  return `${kind} ${match[2]} (INSEE)`;
}

function ngsiTypes(dataset, distributions) {
  const found = new Set(raw(dataset, "citeplus:entityType").map(literal));
  for (const dist of distributions) {
    raw(dist, "citeplus:entityType").map(literal).forEach((t) => found.add(t));
    for (const term of ["dcat:accessURL", "dcat:downloadURL"]) {
      for (const value of raw(dist, term)) {
        try {
          const url = new URL(literal(value), location.href);
          if (url.pathname.endsWith(NGSI + "/entities") && url.searchParams.get("type")) {
            url.searchParams.get("type").split(",").forEach((t) => found.add(t.trim()));
          }
        } catch (e) { /* not a URL: nothing to learn */ }
      }
    }
  }
  return [...found].filter((t) => /^[A-Za-z][A-Za-z0-9_]*$/.test(t));
}

function datasetOf(node, index) {
  const distributions = refs(node, "dcat:distribution", index);
  const publisher = refs(node, "dct:publisher", index)[0] || {};
  const identifier = text(node, "dct:identifier") || String(node["@id"]);
  const licences = new Set(raw(node, "dct:license").map(literal));
  distributions.forEach((d) => raw(d, "dct:license").map(literal).forEach((l) => licences.add(l)));
  const period = refs(node, "dct:temporal", index)[0] || {};
  const city = text(node, "citeplus:city") || (identifier.includes("/") ? identifier.split("/")[0] : "");
  return {
    id: identifier,
    title: text(node, "dct:title") || identifier,
    description: text(node, "dct:description"),
    city,
    cityName: text(publisher, "foaf:name") || city || "(no publisher)",
    themes: raw(node, "dcat:theme").map((t) => lastSegment(literal(t))).filter(Boolean),
    keywords: raw(node, "dcat:keyword").map(literal),
    licences: [...licences].filter(Boolean),
    spatial: raw(node, "dct:spatial").map(literal).filter(Boolean),
    start: text(period, "dcat:startDate"),
    end: text(period, "dcat:endDate"),
    frequency: lastSegment(text(node, "dct:accrualPeriodicity")),
    types: ngsiTypes(node, distributions),
  };
}

function parseCatalog(doc) {
  const nodes = walk(doc, []);
  const index = new Map(nodes.map((n) => [n["@id"], n]));
  const seen = new Set();
  const datasets = [];
  for (const node of nodes) {
    if (!isA(node, "dcat:Dataset") || seen.has(node["@id"])) continue;
    seen.add(node["@id"]);
    datasets.push(datasetOf(node, index));
  }
  return datasets.sort((a, b) => a.cityName.localeCompare(b.cityName) || a.title.localeCompare(b.title));
}

// -- the catalogue list ------------------------------------------------------------------

function themeName(code) { return THEMES[code] || code; }

function fillSelect(select, values, label) {
  const current = select.value;
  while (select.options.length > 1) select.remove(1);
  for (const value of values) select.append(el("option", { value }, label(value)));
  select.value = values.includes(current) ? current : "";
}

function fillFilters() {
  const cities = [...new Set(state.datasets.map((d) => d.cityName))].sort();
  const themes = [...new Set(state.datasets.flatMap((d) => d.themes))].sort();
  fillSelect(byId("filter-city"), cities, (c) => c);
  fillSelect(byId("filter-theme"), themes, themeName);
}

function matches(dataset) {
  const city = byId("filter-city").value;
  const theme = byId("filter-theme").value;
  const words = byId("filter-text").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
  if (city && dataset.cityName !== city) return false;
  if (theme && !dataset.themes.includes(theme)) return false;
  const haystack = [dataset.title, dataset.description, dataset.id, dataset.cityName,
    ...dataset.types, ...dataset.keywords, ...dataset.themes.map(themeName),
    ...dataset.licences.map(licenceLabel)].join(" ").toLowerCase();
  return words.every((w) => haystack.includes(w));
}

function coverage(dataset) {
  const places = dataset.spatial.map(spatialLabel).join(", ") || "not stated";
  const period = dataset.start ? ` · ${dataset.start.slice(0, 10)} → ${(dataset.end || "now").slice(0, 10)}` : "";
  return places + period;
}

function licenceLinks(dataset) {
  if (!dataset.licences.length) return el("span", { class: "missing" }, "no licence stated");
  const span = el("span", {});
  dataset.licences.forEach((uri, i) => {
    if (i) span.append(", ");
    span.append(safeLink(uri, licenceLabel(uri)));
  });
  return span;
}

function card(dataset) {
  const open = el("a", { href: "#dataset=" + encodeURIComponent(dataset.id), class: "open" },
    dataset.title);
  const types = el("span", {});
  dataset.types.forEach((t, i) => { if (i) types.append(" "); types.append(el("code", {}, t)); });
  return el("article", { class: "dataset", "data-id": dataset.id },
    el("h3", {}, open),
    dataset.description ? el("p", { class: "description" }, dataset.description) : null,
    el("dl", {},
      el("dt", {}, "City"), el("dd", {}, dataset.cityName),
      el("dt", {}, "Themes"), el("dd", {}, dataset.themes.map(themeName).join(", ") || "—"),
      el("dt", {}, "Licence"), el("dd", {}, licenceLinks(dataset)),
      el("dt", {}, "Coverage"), el("dd", {}, coverage(dataset)),
      el("dt", {}, "Updated"), el("dd", {}, FREQUENCIES[dataset.frequency] || dataset.frequency || "—"),
      el("dt", {}, "NGSI-LD types"), el("dd", {}, dataset.types.length ? types : "—")));
}

function groupsOf(shown) {
  const byCity = byId("group-by").value !== "theme";
  const groups = new Map();
  for (const dataset of shown) {
    const names = byCity ? [dataset.cityName] : (dataset.themes.length ? dataset.themes.map(themeName) : ["Other"]);
    for (const name of names) {
      if (!groups.has(name)) groups.set(name, []);
      groups.get(name).push(dataset);
    }
  }
  return [...groups.entries()].sort((a, b) => a[0].localeCompare(b[0]));
}

function renderList() {
  const main = byId("catalogue");
  const shown = state.datasets.filter(matches);
  main.replaceChildren();
  for (const [name, datasets] of groupsOf(shown)) {
    main.append(el("section", { class: "group" }, el("h2", {}, name), ...datasets.map(card)));
  }
  if (!state.datasets.length) {
    main.append(el("p", {}, "No dataset is shared with you on this node yet."));
  } else if (!shown.length) {
    main.append(el("p", {}, "No dataset matches these filters."));
  }
  byId("shown-count").textContent = `${shown.length} of ${state.datasets.length} datasets`;
  document.body.dataset.datasets = String(state.datasets.length);
}

// -- one dataset: examples and chart -----------------------------------------------------

function exampleQuery(dataset, type) {
  const params = new URLSearchParams({ type, limit: "5" });
  // A city code as the federation spells them (DATASET_ID); anything else narrows nothing.
  if (/^[a-z][a-z0-9-]{0,62}$/.test(dataset.city)) params.set("idPattern", `urn:ngsi-ld:${type}:${dataset.city}:.*`);
  return params;
}

function shellQuote(text) { return "'" + String(text).replace(/'/g, "'\\''") + "'"; }

function curlExample(base, params, withKey) {
  const lines = [`curl -sS ${shellQuote(`${base}${NGSI}/entities?${params}`)}`,
    `  -H 'Accept: application/json'`];
  if (withKey) lines.push(`  -H "Authorization: Bearer $CITEPLUS_API_KEY"`);
  return lines.join(" \\\n");
}

function pythonExample(base, params, withKey) {
  const entries = [...params].map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`);
  return [
    ...(withKey ? ["import os", ""] : []), "import httpx", "",
    `BASE = ${JSON.stringify(base)}`,
    'headers = {"Accept": "application/json"}',
    withKey ? 'headers["Authorization"] = "Bearer " + os.environ["CITEPLUS_API_KEY"]'
      : "# with a key (import os): headers[\"Authorization\"] = \"Bearer \" + os.environ[\"CITEPLUS_API_KEY\"]",
    "answer = httpx.get(",
    `    f"{BASE}${NGSI}/entities",`,
    `    params={${entries.join(", ")}},`,
    "    headers=headers,", "    timeout=30,", ")",
    "answer.raise_for_status()  # a refusal carries a ProblemDetails body saying why",
    "for entity in answer.json():",
    '    print(entity["id"])',
  ].join("\n");
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {
    // No clipboard API (a plain-http page): select the block for Ctrl+C.
    const range = document.createRange();
    range.selectNodeContents(button.previousSibling);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = "selected: press Ctrl+C";
    return;
  }
  button.textContent = "copied";
  setTimeout(() => { button.textContent = "copy"; }, 1500);
}

function codeBlock(kind, label, code) {
  const pre = el("pre", { class: "example", "data-example": kind }, el("code", {}, code));
  const button = el("button", { type: "button", class: "copy" }, "copy");
  button.addEventListener("click", () => copy(code, button));
  return el("div", { class: "block" }, el("h4", {}, label), pre, button);
}

function examples(dataset, type) {
  const base = state.node ? state.node.baseUrl : location.origin;
  const params = exampleQuery(dataset, type);
  return el("section", { class: "examples" },
    el("h3", {}, "Try it"),
    el("p", {}, "Open data needs no key. The same request with a key (in CITEPLUS_API_KEY) also ",
      "returns what is shared with your key's partner."),
    codeBlock("curl", "curl", curlExample(base, params, false)),
    codeBlock("curl-key", "curl, with a key", curlExample(base, params, true)),
    codeBlock("python", "Python (httpx)", pythonExample(base, params, false)),
    codeBlock("python-key", "Python, with a key", pythonExample(base, params, true)));
}

function typeChooser(dataset, chosen) {
  const select = el("select", { id: "type-choice", "aria-label": "NGSI-LD type" });
  dataset.types.forEach((t) => select.append(el("option", { value: t }, t)));
  select.value = chosen;
  select.addEventListener("change", () => showDataset(dataset, select.value));
  return el("label", {}, "NGSI-LD type ", select);
}

function showDataset(dataset, chosen) {
  const aside = byId("dataset");
  clearInterval(state.timer);
  const type = chosen || dataset.types[0];
  aside.hidden = false;
  aside.dataset.id = dataset.id;
  const close = el("a", { href: "#", class: "close" }, "close");
  aside.replaceChildren(el("h2", {}, dataset.title), close,
    dataset.description ? el("p", {}, dataset.description) : null);
  if (!type) {
    aside.append(el("p", {}, "This dataset has no NGSI-LD type to query through this API."));
    return;
  }
  aside.append(typeChooser(dataset, type), examples(dataset, type), chartSection());
  const draw = () => drawChart(dataset, type).catch((e) => chartMessage(e.message));
  draw();
  state.timer = setInterval(draw, REFRESH_S * 1000);
}

// -- the chart ---------------------------------------------------------------------------

function chartSection() {
  return el("section", { class: "chart" }, el("h3", {}, "Recent values"),
    el("p", { id: "chart-caption" }, "Loading…"), el("div", { id: "chart-area" }));
}

function chartMessage(message) {
  const caption = byId("chart-caption");
  if (caption) caption.textContent = message;
}

function firstSeries(entities) {
  // The first entity with a measured value: its id, attribute and last observation time.
  for (const entity of entities) {
    for (const [name, attr] of Object.entries(entity)) {
      if (attr && attr.type === "Property" && typeof attr.value === "number" && attr.observedAt) {
        return { id: entity.id, attr: name, at: Date.parse(attr.observedAt), unit: attr.unitCode };
      }
    }
  }
  return null;
}

async function hourly(series) {
  const params = new URLSearchParams({
    id: series.id, attrs: series.attr, options: "aggregatedValues", aggrMethods: "avg",
    aggrPeriodDuration: "PT1H", timerel: "between",
    timeAt: new Date(series.at - CHART_HOURS * 3600e3).toISOString(),
    endTimeAt: new Date(series.at + 1000).toISOString(),
  });
  const troes = await getJson(`${NGSI}/temporal/entities?${params}`);
  const troe = (Array.isArray(troes) ? troes : [troes]).find((t) => t && t.id === series.id);
  const buckets = troe && troe[series.attr] && troe[series.attr].avg || [];
  return buckets.filter((b) => typeof b[0] === "number").map((b) => [Date.parse(b[1]), b[0]]);
}

async function drawChart(dataset, type) {
  const params = exampleQuery(dataset, type);
  params.set("limit", "20");
  const entities = await getJson(`${NGSI}/entities?${params}`);
  const series = firstSeries(entities || []);
  if (!series) {
    chartMessage("No value readable with your key yet (personal data is never shown at entity level to the public).");
    byId("chart-area").replaceChildren();
    return;
  }
  let points = [];
  try { points = await hourly(series); } catch (e) { points = []; }
  let caption = `${series.attr} of ${series.id}: hourly averages`;
  if (!points.length) {
    // No temporal history: each entity's latest value instead.
    points = entities.map((e) => e[series.attr]).filter((a) => a && typeof a.value === "number")
      .map((a) => [Date.parse(a.observedAt), a.value]).sort((a, b) => a[0] - b[0]);
    caption = `${series.attr}: latest value of each entity`;
  }
  chartMessage(`${caption} (${series.unit || "no unit"}), refreshed ${new Date().toLocaleTimeString()} every ${REFRESH_S} s`);
  const area = byId("chart-area");
  area.replaceChildren(svgChart(points));
  area.dataset.draws = String(Number(area.dataset.draws || 0) + 1);
}

function svg(tag, attrs, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgChart(points) {
  const [w, h, pad] = [480, 180, 36];
  const chart = svg("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img",
    "data-points": points.length, class: "spark" });
  if (!points.length) return chart;
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const x = (v) => pad + (x1 === x0 ? 0.5 : (v - x0) / (x1 - x0)) * (w - 2 * pad);
  const y = (v) => h - pad - (y1 === y0 ? 0.5 : (v - y0) / (y1 - y0)) * (h - 2 * pad);
  chart.append(svg("polyline", { points: points.map((p) => `${x(p[0])},${y(p[1])}`).join(" "),
    fill: "none", class: "line" }));
  for (const [t, v] of points) {
    const dot = svg("circle", { cx: x(t), cy: y(v), r: 3, class: "point" });
    dot.append(svg("title", {}, `${new Date(t).toISOString()}: ${v}`));
    chart.append(dot);
  }
  chart.append(svg("text", { x: 2, y: pad - 8, class: "axis" }, String(+y1.toFixed(3))));
  chart.append(svg("text", { x: 2, y: h - pad + 14, class: "axis" }, String(+y0.toFixed(3))));
  chart.append(svg("text", { x: pad, y: h - 4, class: "axis" }, new Date(x0).toISOString().slice(0, 16)));
  return chart;
}

// -- the page ----------------------------------------------------------------------------

function fromHash() {
  const match = /^#dataset=(.+)$/.exec(location.hash);
  if (!match) {
    clearInterval(state.timer);
    byId("dataset").hidden = true;
    return;
  }
  const id = decodeURIComponent(match[1]);
  const dataset = state.datasets.find((d) => d.id === id);
  if (dataset) showDataset(dataset);
  else noteError(`no dataset ${id} in the catalogue you may see`);
}

function showNode(node) {
  state.node = node;
  byId("node-name").textContent = node.node;
  byId("base-url").textContent = node.baseUrl;
  const q = node.quotas;
  byId("quota-anonymous").textContent = `${q.anonymous.perSecond} requests/s (bursts of ${q.anonymous.burst})`;
  byId("quota-key").textContent = `${q.key.perSecond} requests/s (bursts of ${q.key.burst})`;
  byId("key-issuer").textContent = node.keys.issuedBy;
  if (Number.isInteger(q.subscriptionsPerKey)) {
    byId("subscriptions-quota").textContent = ` (${q.subscriptionsPerKey} per key unless the key says otherwise)`;
  }
  byId("key-command").textContent = node.keys.command;
}

function showMissingNodes(peers) {
  // "lyon=answered, nice=timed-out": the datasets of a node that did not answer are missing.
  const missing = peers.split(",").map((p) => p.trim().split("="))
    .filter(([node, outcome]) => node && outcome && outcome !== "answered");
  const note = byId("missing-nodes");
  note.hidden = !missing.length;
  note.textContent = missing.length
    ? "Not in this list for now, their node did not answer: " +
      missing.map(([node, outcome]) => `${node} (${outcome})`).join(", ") + "."
    : "";
}

async function loadCatalog() {
  const status = byId("status");
  const seen = { peers: "" };
  try {
    const doc = await getJson("/catalog", "application/ld+json", seen);
    state.datasets = parseCatalog(doc);
  } catch (e) {
    state.datasets = [];
    if (status) status.textContent = `The catalogue could not be read: ${e.message}`;
    noteError(`/catalog: ${e.message}`);
    document.body.dataset.state = "error";
    return;
  }
  fillFilters();
  renderList();
  showMissingNodes(seen.peers);
  fromHash();
  document.body.dataset.state = "ready";
}

async function start() {
  window.addEventListener("error", (e) => noteError(String(e.message)));
  window.addEventListener("unhandledrejection", (e) => noteError(String(e.reason)));
  document.addEventListener("securitypolicyviolation", (e) => noteError(`blocked ${e.blockedURI}`));
  for (const id of ["filter-city", "filter-theme", "filter-text", "group-by"]) {
    byId(id).addEventListener("input", renderList);
  }
  window.addEventListener("hashchange", fromHash);
  byId("key-form").addEventListener("submit", (e) => e.preventDefault());
  byId("key").addEventListener("change", (e) => { state.key = e.target.value.trim(); loadCatalog(); });
  try {
    showNode(await getJson("/portal/node.json"));
  } catch (e) {
    noteError(`/portal/node.json: ${e.message}`);
  }
  await loadCatalog();
}

document.addEventListener("DOMContentLoaded", start);
