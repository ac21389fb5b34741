// The stewards' pages (serve/portal/steward.py). Every action is the /manage JSON API's own request,
// made from here with the session's CSRF token: this script decides nothing the API does not decide;
// it gathers a form into the request and shows the answer (errors next to the fields they name, the
// validation report of a dry run) in the page's language.
(function () {
  "use strict";
  const base = document.querySelector('meta[name="geocloud-base"]').content;
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const said = JSON.parse(document.getElementById("steward-said").textContent);
  const S = said.said;
  const english = document.documentElement.lang === "en";
  const status = document.getElementById("status");

  async function api(method, path, body, headers) {
    const init = { method, credentials: "same-origin",
                   headers: { Accept: "application/json", "X-CSRF-Token": csrf, ...(headers || {}) } };
    if (body !== undefined) init.body = body;
    const answer = await fetch(path.startsWith("http") ? path : base + path, init);
    let json = {};
    try { json = await answer.json(); } catch (e) { json = {}; }
    return { status: answer.status, ok: answer.ok, json };
  }

  function say(text, kind) {
    status.textContent = text;
    status.className = kind || "muted";
  }

  // A problem's what and fix (its description repeats them with the server's "where": an upload's
  // path on the server, which says nothing to the person at the browser)
  function problemText(p) {
    return p.detail ? [p.detail, p.fix ? S.fix + p.fix : ""].filter(Boolean).join(" ") : (p.description || p.title || "");
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k.startsWith("data-") || k.startsWith("aria-") || k === "href" || k === "for" || k === "id") node.setAttribute(k, v);
      else node[k] = v;
    }
    node.append(...children);
    return node;
  }

  function title(layer) { return (layer.title && (english ? layer.title.en : layer.title["zh-TW"])) || layer.id; }
  function stateName(state) { return said.states[state] || state; }
  function when(run) {
    if (!run) return "—";
    const dry = run.dry_run ? `（${said.runs.dry_run}）` : "";
    return `${said.runs[run.status] || run.status}${dry} ${(run.finished_at || "").slice(0, 16).replace("T", " ")}`;
  }

  function confirmed(text) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    dialog.returnValue = "";
    return new Promise(resolve => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
      dialog.showModal();
    });
  }

  async function managed() {
    const answer = await api("GET", "/manage/layers");
    if (!answer.ok) { say(problemText(answer.json), "notice error"); return null; }
    return answer.json.layers;
  }

  // -- My layers ------------------------------------------------------------------------------------
  async function listPage() {
    say(S.loading);
    const layers = await managed();
    if (!layers) return;
    const body = document.querySelector("#my-layers tbody");
    for (const l of layers) {
      const link = el("a", { href: `${base}/steward/layers/${encodeURIComponent(l.id)}`, text: S.manage,
                             "aria-label": `${S.manage}: ${title(l)}` });
      body.append(el("tr", { "data-layer": l.id },
        el("th", { scope: "row" }, el("span", { text: title(l) }), " ", el("code", { text: l.id })),
        el("td", { "data-state": l.state, text: stateName(l.state) }),
        el("td", { text: said.levels[l.access] || l.access || "" }),
        el("td", { text: l.live_version == null ? "—" : String(l.live_version) }),
        el("td", { text: when(l.last_run) }),
        el("td", { text: l.owner || "" }),
        el("td", {}, link)));
    }
    say(layers.length ? "" : S.none);
  }

  // -- Register a layer -----------------------------------------------------------------------------
  function registerPage() {
    const form = document.getElementById("register");
    const rows = document.querySelector("#fields tbody");
    const kind = document.getElementById("f-kind");
    const addRow = (values) => {
      const row = document.getElementById("field-row").content.firstElementChild.cloneNode(true);
      for (const [part, value] of Object.entries(values || {})) {
        const input = row.querySelector(`[data-part="${part}"]`);
        if (input.type === "checkbox") input.checked = value; else input.value = value;
      }
      row.querySelector("[data-remove]").addEventListener("click", () => row.remove());
      rows.append(row);
      return row;
    };
    document.getElementById("add-field").addEventListener("click", () => addRow().querySelector("input").focus());
    kind.addEventListener("change", () => {
      const raster = kind.value === "raster";
      document.getElementById("fields-set").hidden = raster;
      document.querySelector('.field[data-key="geometry"]').hidden = raster;
    });
    document.getElementById("f-infer").addEventListener("change", async (event) => {
      const file = event.target.files[0];
      if (!file) return;
      const lines = (await file.slice(0, 65536).text()).replace(/^\ufeff/, "").split(/\r?\n/).filter(Boolean);
      const split = line => line.split(",").map(s => s.trim().replace(/^"|"$/g, ""));
      const header = split(lines[0] || ""), sample = lines.slice(1, 50).map(split);
      const coordinate = /^(x|y|lon|lat|longitude|latitude|twd97_?x|twd97_?y|[xy]_twd97|經度|緯度|橫坐標|縱坐標|[XY]坐標)$/i;
      rows.replaceChildren();
      let n = 0;
      header.forEach((column, i) => {
        if (coordinate.test(column)) return;
        const values = sample.map(r => r[i]).filter(v => v !== undefined && v !== "");
        const type = values.length && values.every(v => /^-?\d+$/.test(v)) ? "integer"
          : values.length && values.every(v => /^-?\d*\.?\d+(e-?\d+)?$/i.test(v)) ? "double" : "text";
        const ascii = column.toLowerCase().replace(/[^a-z0-9_]+/g, "_").replace(/^_+|_+$/g, "");
        addRow({ name: /^[a-z]/.test(ascii) ? ascii : `field_${i + 1}`, type, "title.zh-TW": column, "title.en": column });
        n += 1;
      });
      document.getElementById("infer-status").textContent = S.inferred.replace("{n}", n);
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const v = key => document.getElementById(`f-${key}`).value.trim();
      const id = v("id");
      const entry = {
        id, kind: kind.value, update_frequency: v("update_frequency"),
        title: { "zh-TW": v("title.zh-TW"), en: v("title.en") },
        description: { "zh-TW": v("description.zh-TW"), en: v("description.en") },
        access: { level: v("access.level") },
        contact: { organization: { "zh-TW": v("contact.organization.zh-TW"), en: v("contact.organization.en") },
                   name: v("contact.name"), email: v("contact.email"), phone: v("contact.phone") },
      };
      const grants = v("access.grants").split(/[,，\s]+/).filter(Boolean);
      if (grants.length) entry.access.grants = grants.map(agency => ({ agency }));
      if (kind.value === "vector") {
        entry.geometry = v("geometry");
        entry.key = v("key") || null;
        entry.fields = [...rows.children].map(row => {
          const part = p => row.querySelector(`[data-part="${p}"]`);
          return { name: part("name").value.trim(), type: part("type").value, required: part("required").checked,
                   title: { "zh-TW": part("title.zh-TW").value.trim(), en: part("title.en").value.trim() } };
        });
      }
      if (!new RegExp(form.dataset.idPattern).test(id)) {  // the path needs an id before the API can judge the rest
        showErrors(form, [{ key: "id", text: document.getElementById("hint-id").textContent }]);
        return;
      }
      say(S.running);
      const owner = document.getElementById("f-owner");
      const query = owner && owner.value.trim() ? `?owner=${encodeURIComponent(owner.value.trim())}` : "";
      const answer = await api("PUT", `/manage/layers/${encodeURIComponent(id)}${query}`, JSON.stringify(entry),
                               { "Content-Type": "application/json" });
      if (answer.ok) {
        say(S.saved, "notice ok");
        window.location.assign(`${base}/steward/layers/${encodeURIComponent(id)}`);
        return;
      }
      say("");
      showErrors(form, problems(answer.json));
    });
  }

  // A 422's detail names each key path ("key 'contact.email': ..."); other answers are one message.
  function problems(p) {
    const found = [];
    for (const line of String(p.detail || "").split("\n")) {
      const m = line.match(/key '([^']+)':?\s*(.*)/);
      if (m) found.push({ key: m[1], text: m[2] || line.trim() });
    }
    const where = String(p.where || "").match(/key '([^']+)'/);
    if (!found.length && where) found.push({ key: where[1], text: p.detail || p.description });
    if (!found.length) found.push({ key: null, text: problemText(p) });
    return found;
  }

  function inputFor(form, key) {
    const row = key.match(/^fields\[(\d+)\]\.?(.*)$/);
    if (row) {
      const tr = document.querySelectorAll("#fields tbody tr")[Number(row[1])];
      if (tr) return tr.querySelector(`[data-part="${row[2]}"]`) || tr.querySelector(`[data-part="${row[2].split(".")[0]}"]`)
                   || tr.querySelector("input");
    }
    for (let k = key; k; k = k.replace(/(\.[^.[]*|\[\d+\])$/, "")) {
      const input = document.getElementById(`f-${k}`);
      if (input) return input;
      const field = form.querySelector(`.field[data-key="${CSS.escape(k)}"] input, .field[data-key="${CSS.escape(k)}"] select`);
      if (field) return field;
      if (!/[.[]/.test(k)) break;
    }
    return null;
  }

  function clearErrors(form) {
    form.querySelectorAll(".field-error").forEach(e => e.remove());
    form.querySelectorAll("[aria-invalid]").forEach(e => {
      e.removeAttribute("aria-invalid");
      const rest = (e.getAttribute("aria-describedby") || "").split(" ").filter(i => !i.startsWith("err-")).join(" ");
      if (rest) e.setAttribute("aria-describedby", rest); else e.removeAttribute("aria-describedby");
    });
    document.getElementById("error-summary").hidden = true;
  }

  function showErrors(form, found) {
    const summary = document.getElementById("error-summary");
    const list = summary.querySelector("ul");
    list.replaceChildren();
    found.forEach((problem, i) => {
      const input = problem.key ? inputFor(form, problem.key) : null;
      const text = problem.key ? `${problem.key}: ${problem.text}` : problem.text;
      if (input) {
        const id = `err-${i}`;
        const message = el("p", { id, className: "field-error", "data-error-for": problem.key, text });
        (input.closest(".field") && !input.closest("td") ? input.closest(".field") : input.parentElement).append(message);
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", `${input.getAttribute("aria-describedby") || ""} ${id}`.trim());
        if (!input.id) input.id = `input-${i}`;
        list.append(el("li", {}, el("a", { href: `#${input.id}`, text })));
      } else {
        list.append(el("li", { text }));
      }
    });
    summary.hidden = false;
    summary.focus();
  }

  // -- A layer: upload, report, publish, roll back, retire --------------------------------------------
  function layerPage(root) {
    const id = root.dataset.layer;
    const file = document.getElementById("file"), format = document.getElementById("format");
    const loadButton = document.getElementById("load");
    let layer = null, map = null;

    async function refresh() {
      const layers = await managed();
      layer = layers && layers.find(l => l.id === id);
      if (!layer) return;
      document.getElementById("layer-title").textContent = title(layer);
      const state = document.getElementById("layer-state");
      state.textContent = stateName(layer.state);
      state.dataset.state = layer.state;
      document.getElementById("layer-version").textContent = layer.live_version == null ? "—" : layer.live_version;
      document.getElementById("layer-run").textContent = when(layer.last_run);
      document.getElementById("layer-owner").textContent = layer.owner || "";
      const review = document.getElementById("layer-review"), decided = layer.review;
      review.hidden = !decided;
      if (decided) {
        const who = [decided.by, (decided.at || "").slice(0, 16).replace("T", " ")].filter(Boolean).join(", ");
        review.textContent = `${S[`review_${decided.decision}`]} (${who})` + (decided.comment ? `${english ? ": " : "："}${decided.comment}` : "");
        review.dataset.decision = decided.decision;
      }
      const agency = layer.origin !== "core";
      document.getElementById("publish").disabled = !agency || !["draft", "rejected"].includes(layer.state);
      document.getElementById("rollback").disabled = !layer.live_version;
      document.getElementById("retire").disabled = !agency || layer.state === "retired";
    }

    file.addEventListener("change", () => {
      const name = (file.files[0] && file.files[0].name.toLowerCase()) || "";
      for (const option of format.options) {
        if (option.dataset.suffixes.split(",").some(s => name.endsWith(s))) format.value = option.value;
      }
    });

    async function upload(dryRun) {
      const chosen = file.files[0];
      if (!chosen) { say(S.pick, "notice error"); file.focus(); return; }
      const before = layer && layer.last_run ? layer.last_run.run : null;
      say(dryRun ? S.checking : S.loading_file);
      loadButton.hidden = true;
      let answer = await api("POST", `/manage/layers/${encodeURIComponent(id)}/data?format=${format.value}&dry_run=${dryRun}`,
                             chosen, { "Content-Type": "application/octet-stream" });
      while (answer.status === 202 || answer.json.state === "running") {  // a long load: its run, until done
        await new Promise(r => setTimeout(r, 500));
        answer = await api("GET", answer.json.href || `/manage/runs/${answer.json.run}`);
      }
      let report = answer.ok ? answer.json : null;
      if (!answer.ok) {  // the run (if the ETL got that far) keeps what it found: its report says which rows
        await refresh();
        const run = layer && layer.last_run && layer.last_run.run;
        if (run && run !== before) {
          const recorded = await api("GET", `/manage/runs/${run}`);
          if (recorded.ok) report = recorded.json;
        }
      }
      if (report) showReport(report, answer.ok ? null : answer.json, dryRun);
      say(answer.ok || report ? "" : problemText(answer.json), answer.ok || report ? "muted" : "notice error");
      await refresh();
    }

    function showReport(report, problem, dryRun) {
      const section = document.getElementById("report");
      section.hidden = false;
      const outcome = report.status || report.state;
      const counts = report.counts || {}, quality = report.quality || {}, diff = (report.diff || {})[id] || {};
      const loaded = counts.loaded || quality.loaded || {};
      const figures = { read: counts.read ?? quality.read, valid: loaded[id], rejected: counts.rejected ?? quality.rejected_rows,
                        added: diff.added, changed: diff.changed, removed: diff.removed, unchanged: diff.unchanged };
      for (const [name, value] of Object.entries(figures)) {
        section.querySelector(`[data-count="${name}"]`).textContent = value == null ? "—" : String(value);
      }
      section.querySelector('[data-source="encoding"]').textContent = report.encoding || "—";
      section.querySelector('[data-source="crs"]').textContent = report.crs || "—";
      const issues = quality.issues || [];
      const rejected = document.querySelector("#rejected tbody");
      rejected.replaceChildren();
      for (const issue of issues.filter(i => i.severity === "error")) {
        for (const row of issue.rows) {
          rejected.append(el("tr", { "data-row": row }, el("td", { text: S.row.replace("{n}", row) }), el("td", { text: issue.message })));
        }
        if (issue.count > issue.rows.length) {
          rejected.append(el("tr", {}, el("td", { text: S.more.replace("{n}", issue.count - issue.rows.length) }),
                             el("td", { text: issue.message })));
        }
      }
      if (!rejected.children.length) rejected.append(el("tr", {}, el("td", { colSpan: 2, text: S.none })));
      const warnings = document.getElementById("warnings");
      warnings.replaceChildren(...issues.filter(i => i.severity === "warning").map(i => el("li", {
        text: `${i.message} (${i.count}${i.rows.length ? "; " + i.rows.map(r => S.row.replace("{n}", r)).join(", ") : ""})` })),
        ...((report.guard && report.guard.findings) || []).map(f => el("li", { text: typeof f === "string" ? f : JSON.stringify(f) })));
      if (!warnings.children.length) warnings.append(el("li", { text: S.none }));
      const box = document.getElementById("report-outcome");
      const lines = [S[outcome] || outcome];
      if (problem) lines.push(problemText(problem));
      if (figures.rejected) lines.push(S.fix_rows);
      box.textContent = lines.join(" ");
      box.className = `notice ${problem || outcome === "failed" || outcome === "refused" ? "error" : "ok"}`;
      box.dataset.outcome = outcome;
      loadButton.hidden = !(dryRun && outcome === "planned");
      drawChanges(diff);
      document.getElementById("report-heading").focus();
    }

    function rectangle(b, kind) {
      return { type: "Feature", properties: { kind },
               geometry: { type: "Polygon", coordinates: [[[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]], [b[0], b[1]]]] } };
    }

    async function drawChanges(diff) {
      const extent = diff.extent_crs84, changed = diff.bbox_crs84;
      const container = document.getElementById("report-map");
      const figure = container.closest("figure");
      figure.hidden = !extent || !window.maplibregl;
      if (figure.hidden) return;
      const data = { type: "FeatureCollection", features: [rectangle(extent, "extent"), ...(changed ? [rectangle(changed, "changed")] : [])] };
      if (!map) {
        const blank = { version: 8, sources: {}, layers: [{ id: "paper", type: "background", paint: { "background-color": "#f4f6f8" } }] };
        const style = await fetch(`${base}/styles/basemap.json`).then(r => (r.ok ? r.json() : blank)).catch(() => blank);
        map = new maplibregl.Map({ container, style, bounds: [[extent[0], extent[1]], [extent[2], extent[3]]],
                                   fitBoundsOptions: { padding: 40, maxZoom: 16 } });
        window.geocloudReportMap = map;
        await new Promise(resolve => map.on("load", resolve));
        map.addSource("changes", { type: "geojson", data });
        map.addLayer({ id: "changes-fill", type: "fill", source: "changes",
                       paint: { "fill-color": ["match", ["get", "kind"], "changed", "#d46b08", "#0b5394"], "fill-opacity": 0.12 } });
        map.addLayer({ id: "changes-line", type: "line", source: "changes",
                       paint: { "line-color": ["match", ["get", "kind"], "changed", "#d46b08", "#0b5394"], "line-width": 2 } });
      } else {
        map.getSource("changes").setData(data);
        map.fitBounds([[extent[0], extent[1]], [extent[2], extent[3]]], { padding: 40, maxZoom: 16 });
      }
    }

    document.getElementById("upload").addEventListener("submit", (event) => { event.preventDefault(); upload(true); });
    loadButton.addEventListener("click", async () => { if (await confirmed(S.confirm_load)) await upload(false); });
    const actions = { publish: ["POST", "/publish"], rollback: ["POST", "/rollback"], retire: ["DELETE", ""] };
    for (const [action, [method, suffix]] of Object.entries(actions)) {
      document.getElementById(action).addEventListener("click", async () => {
        if (!(await confirmed(S[`confirm_${action}`]))) return;
        const answer = await api(method, `/manage/layers/${encodeURIComponent(id)}${suffix}`);
        await refresh();
        say(answer.ok ? `${S[`done_${action}`]} ${S.state}${stateName(layer ? layer.state : answer.json.state)}`
                      : problemText(answer.json), answer.ok ? "notice ok" : "notice error");
      });
    }
    refresh();
  }

  // -- The GIS office's review queue ---------------------------------------------------------------
  async function reviewPage(table) {
    say(S.loading);
    const layers = await managed();
    if (!layers) return;
    const pending = layers.filter(l => l.state === "pending_review");
    const body = table.querySelector("tbody");
    for (const l of pending) {
      const comment = el("textarea", { id: `comment-${l.id}`, rows: 2 });
      const decide = async (decision) => {
        if (!(await confirmed(S[`confirm_${decision}`]))) return;
        const answer = await api("POST", `/manage/layers/${encodeURIComponent(l.id)}/review`,
                                 JSON.stringify({ decision, comment: comment.value }), { "Content-Type": "application/json" });
        if (answer.ok) { row.remove(); say(`${S[`done_${decision}`]} ${title(l)} (${l.id})`, "notice ok"); }
        else { say(problemText(answer.json), "notice error"); comment.focus(); }
      };
      const buttons = ["approve", "reject"].map(decision => {
        const button = el("button", { type: "button", className: decision === "reject" ? "danger" : "",
                                      text: S[decision], "data-decision": decision, "aria-label": `${S[decision]} ${title(l)}` });
        button.addEventListener("click", () => decide(decision));
        return el("li", {}, button);
      });
      const row = el("tr", { "data-layer": l.id },
        el("th", { scope: "row" }, el("a", { href: `${base}/collections/${encodeURIComponent(l.id)}?f=html`, text: title(l) }),
           " ", el("code", { text: l.id })),
        el("td", { text: l.owner || "" }), el("td", { text: when(l.last_run) }),
        el("td", {}, el("label", { className: "review-comment", for: comment.id, text: S.comment }), comment,
           el("ul", { className: "steward-actions" }, ...buttons)));
      body.append(row);
    }
    say(pending.length ? "" : S.no_pending);
  }

  const page = document.querySelector("[data-page]");
  if (!page) return;
  ({ list: listPage, register: registerPage, layer: () => layerPage(page), review: () => reviewPage(page) })[page.dataset.page]();
})();
