"""The HTML, CSS and script of the dashboard page (see :mod:`analysis.dashboard`).

The script builds the page from the embedded report JSON. It never assigns user text to
``innerHTML``: cells and labels are set with ``textContent``, and names that go into Plotly
traces built here (learning curves) are HTML-escaped first, like the server-side figures.
"""

from __future__ import annotations

import functools

import plotly.offline

_CSS = """
:root { --fg: #1d2433; --muted: #5b6475; --line: #dde2ea; --accent: #1f77b4; --bad: #c0392b; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); background: #f6f8fb; }
header { background: #fff; border-bottom: 1px solid var(--line); padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; }
header .meta { color: var(--muted); margin-top: 2px; }
#live-status { float: right; color: var(--muted); font-size: 13px; }
#live-status.on::before { content: "●"; color: #2ca02c; margin-right: 6px; }
#live-status.off::before { content: "●"; color: var(--bad); margin-right: 6px; }
nav { padding: 8px 24px; background: #fff; border-bottom: 1px solid var(--line);
      position: sticky; top: 0; z-index: 5; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; font-size: 13px; }
main { padding: 16px 24px 40px; max-width: 1400px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px;
          padding: 12px 16px; margin-bottom: 16px; }
section h2 { font-size: 16px; margin: 0 0 8px; }
.note { color: var(--muted); margin: 4px 0 8px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin-bottom: 10px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 120px; }
.card .v { font-size: 18px; font-weight: 600; }
.card .k { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left;
         white-space: nowrap; max-width: 420px; overflow: hidden; text-overflow: ellipsis; }
th { background: #f0f3f8; cursor: pointer; user-select: none; position: sticky; top: 0; }
th[aria-sort="ascending"]::after { content: " ▲"; }
th[aria-sort="descending"]::after { content: " ▼"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.error td { color: var(--bad); }
.tablewrap { overflow: auto; max-height: 640px; }
.controls { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; margin-bottom: 8px; }
.controls select[multiple] { min-width: 260px; }
.flag { color: #b35c00; }
"""

_JS = r"""
(function () {
  "use strict";
  var PLOT_CONFIG = { responsive: true, displaylogo: false };
  var LIVE = JSON.parse(document.getElementById("live-config").textContent);
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var tableState = { sort: null, dir: 1, filter: "", page: 0, size: 50 };
  var curveState = { metric: null, selected: null };

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) { Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); }); }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function esc(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function fmt(v) {
    if (v === null || v === undefined) { return ""; }
    if (typeof v === "number") {
      if (Number.isInteger(v)) { return String(v); }
      var a = Math.abs(v);
      if (a !== 0 && (a < 1e-3 || a >= 1e6)) { return v.toExponential(3); }
      var s = v.toPrecision(4);
      return s.indexOf(".") >= 0 ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
    }
    if (typeof v === "boolean") { return v ? "true" : "false"; }
    return String(v);
  }

  function renderHeader() {
    document.getElementById("study-name").textContent = DATA.study;
    var meta = document.getElementById("study-meta");
    var s = DATA.summary || {};
    if (s.waiting) {
      meta.textContent = "waiting for the first trial of this study to land in the store";
      return;
    }
    var parts = [DATA.kind];
    if (s.objective) { parts.push("objective " + s.objective + " (" + s.mode + ")"); }
    if (s.started) { parts.push("from " + s.started + " to " + (s.ended || "?") + " UTC"); }
    parts.push("report generated " + DATA.generated_at);
    meta.textContent = parts.join(" · ");
  }

  function card(parent, value, key) {
    var c = el("div", { "class": "card" });
    c.appendChild(el("div", { "class": "v" }, value));
    c.appendChild(el("div", { "class": "k" }, key));
    parent.appendChild(c);
  }

  function renderSummary() {
    var box = document.getElementById("summary");
    box.textContent = "";
    var s = DATA.summary || {};
    if (s.waiting) { box.appendChild(el("p", { "class": "note" }, "No trial yet.")); return; }
    box.appendChild(el("h2", null, "Summary"));
    var cards = el("div", { "class": "cards" });
    card(cards, s.trials, "trials");
    card(cards, s.completed, "completed");
    card(cards, s.errors, "errors");
    card(cards, s.diverged, "diverged");
    card(cards, s.gpu_hours === null ? "n/a" : fmt(s.gpu_hours), "GPU hours");
    card(cards, s.cpu_hours === null ? "n/a" : fmt(s.cpu_hours), "CPU hours");
    if (s.best) {
      card(cards, fmt(s.best.value), "best " + s.objective + ": " + s.best.trial_id +
           (s.best.variant ? " (" + s.best.variant + ")" : ""));
    }
    box.appendChild(cards);
    if (s.variants && s.variants.length) {
      var t = el("table", { "id": "variant-table" });
      var head = el("tr");
      ["variant", "n", "mean " + s.objective, "std", "diff vs " + (s.baseline || "baseline"),
       "95% CI", "p (paired t)", "note"].forEach(function (h) {
        head.appendChild(el("th", null, h));
      });
      t.appendChild(head);
      s.variants.forEach(function (v) {
        var tr = el("tr");
        tr.appendChild(el("td", null, v.variant));
        tr.appendChild(el("td", { "class": "num" }, v.n));
        tr.appendChild(el("td", { "class": "num" }, fmt(v.mean)));
        tr.appendChild(el("td", { "class": "num" }, fmt(v.std)));
        tr.appendChild(el("td", { "class": "num" }, v.diff === null ? "" : fmt(v.diff)));
        tr.appendChild(el("td", { "class": "num" },
          v.ci ? "[" + fmt(v.ci[0]) + ", " + fmt(v.ci[1]) + "]" : ""));
        tr.appendChild(el("td", { "class": "num" }, fmt(v.p)));
        tr.appendChild(el("td", { "class": "flag" }, v.flag || ""));
        t.appendChild(tr);
      });
      box.appendChild(t);
    }
    if (s.error_messages && s.error_messages.length) {
      box.appendChild(el("h2", { "style": "margin-top:12px" }, "Failures"));
      var ul = el("ul");
      s.error_messages.forEach(function (m) {
        ul.appendChild(el("li", null, m[1] + " × " + m[0]));
      });
      box.appendChild(ul);
    }
  }

  function ensureSection(sec) {
    var box = document.getElementById("sec-" + sec.id);
    if (box) { return box; }
    box = el("section", { "id": "sec-" + sec.id });
    box.appendChild(el("h2", null, sec.title));
    box.appendChild(el("p", { "class": "note", "id": "note-" + sec.id }));
    if (sec.id === "curves") { box.appendChild(curveControls()); }
    box.appendChild(el("div", { "class": "plot", "id": "fig-" + sec.id }));
    document.getElementById("sections").appendChild(box);
    var nav = document.getElementById("nav");
    var a = el("a", { "href": "#sec-" + sec.id }, sec.title);
    nav.insertBefore(a, document.getElementById("nav-table"));
    return box;
  }

  function renderSections() {
    (DATA.sections || []).forEach(function (sec) {
      ensureSection(sec);
      document.getElementById("note-" + sec.id).textContent = sec.note || "";
      var div = document.getElementById("fig-" + sec.id);
      if (sec.figure) {
        div.style.display = "";
        if (sec.id === "curves" && curveState.selected !== null) { drawCurves(); return; }
        Plotly.react(div, sec.figure.data, sec.figure.layout, PLOT_CONFIG);
      } else {
        div.style.display = "none";
        Plotly.purge(div);
      }
    });
    refreshCurveControls();
  }

  function curveControls() {
    var c = el("div", { "class": "controls", "id": "curve-controls" });
    c.appendChild(el("label", { "for": "curve-metric" }, "metric"));
    c.appendChild(el("select", { "id": "curve-metric" }));
    c.appendChild(el("label", { "for": "curve-trials" }, "trials"));
    c.appendChild(el("select", { "id": "curve-trials", "multiple": "multiple", "size": "6" }));
    var reset = el("button", { "type": "button", "id": "curve-reset" }, "default selection");
    c.appendChild(reset);
    c.appendChild(el("span", { "class": "note", "id": "curve-info" }));
    c.querySelector("#curve-metric").addEventListener("change", function (ev) {
      curveState.metric = ev.target.value; drawCurves();
    });
    c.querySelector("#curve-trials").addEventListener("change", function (ev) {
      curveState.selected = Array.prototype.filter.call(ev.target.options, function (o) {
        return o.selected; }).map(function (o) { return o.value; });
      drawCurves();
    });
    reset.addEventListener("click", function () {
      curveState.selected = null; refreshCurveControls(); drawCurves();
    });
    return c;
  }

  function refreshCurveControls() {
    var cur = DATA.curves || {};
    var metricSel = document.getElementById("curve-metric");
    var trialSel = document.getElementById("curve-trials");
    if (!metricSel) { return; }
    var controls = document.getElementById("curve-controls");
    controls.style.display = (cur.metrics || []).length ? "" : "none";
    if (curveState.metric === null || (cur.metrics || []).indexOf(curveState.metric) < 0) {
      curveState.metric = (cur.metrics || [])[0] || null;
    }
    metricSel.textContent = "";
    (cur.metrics || []).forEach(function (m) {
      var o = el("option", { "value": m }, m);
      if (m === curveState.metric) { o.selected = true; }
      metricSel.appendChild(o);
    });
    var selected = curveState.selected || cur.default || [];
    trialSel.textContent = "";
    (cur.trials || []).forEach(function (t) {
      var o = el("option", { "value": t.id },
        t.label + (t.objective === null ? "" : "  " + fmt(t.objective)));
      if (selected.indexOf(t.id) >= 0) { o.selected = true; }
      trialSel.appendChild(o);
    });
    document.getElementById("curve-info").textContent = (cur.trials || []).length + " of " +
      cur.total + " trials (the best by the objective)";
  }

  function drawCurves() {
    var cur = DATA.curves || {};
    var div = document.getElementById("fig-curves");
    var sec = (DATA.sections || []).filter(function (s) { return s.id === "curves"; })[0];
    if (!div || !sec || !sec.figure || !curveState.metric) { return; }
    var ids = curveState.selected || cur.default || [];
    var labels = {};
    (cur.trials || []).forEach(function (t) { labels[t.id] = t.label; });
    var series = (cur.data || {})[curveState.metric] || {};
    var palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                   "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
    var traces = ids.filter(function (id) { return series[id]; }).map(function (id, i) {
      var name = esc(labels[id] || id);
      return { type: "scatter", mode: "lines+markers", x: series[id][0], y: series[id][1],
               name: name, line: { color: palette[i % palette.length] },
               hovertemplate: name + "<br>iteration %{x}: %{y:.4f}<extra></extra>" };
    });
    var layout = JSON.parse(JSON.stringify(sec.figure.layout));
    layout.title = { text: "Learning curves: " + esc(curveState.metric), x: 0.01 };
    layout.yaxis = Object.assign({}, layout.yaxis || {},
                                 { title: { text: esc(curveState.metric) } });
    Plotly.react(div, traces, layout, PLOT_CONFIG);
  }

  function renderTable() {
    var tbl = DATA.table || { columns: [], rows: [] };
    var filter = tableState.filter.toLowerCase();
    var rows = tbl.rows;
    if (filter) {
      rows = rows.filter(function (r) {
        return r.some(function (v) {
          return v !== null && fmt(v).toLowerCase().indexOf(filter) >= 0;
        });
      });
    }
    if (tableState.sort !== null) {
      var k = tableState.sort, dir = tableState.dir;
      rows = rows.slice().sort(function (a, b) {
        var x = a[k], y = b[k];
        if (x === null && y === null) { return 0; }
        if (x === null) { return 1; }
        if (y === null) { return -1; }
        if (typeof x === "number" && typeof y === "number") { return dir * (x - y); }
        return dir * String(x).localeCompare(String(y), undefined, { numeric: true });
      });
    }
    var pages = Math.max(1, Math.ceil(rows.length / tableState.size));
    tableState.page = Math.min(tableState.page, pages - 1);
    var start = tableState.page * tableState.size;
    var table = document.getElementById("trial-table");
    table.textContent = "";
    var thead = el("thead"), head = el("tr");
    tbl.columns.forEach(function (c, i) {
      var th = el("th", { "data-col": String(i) }, c);
      if (tableState.sort === i) {
        th.setAttribute("aria-sort", tableState.dir > 0 ? "ascending" : "descending");
      }
      th.addEventListener("click", function () {
        if (tableState.sort === i) {
          tableState.dir = -tableState.dir;
        } else {
          tableState.sort = i;
          tableState.dir = 1;
        }
        renderTable();
      });
      head.appendChild(th);
    });
    thead.appendChild(head);
    table.appendChild(thead);
    var statusCol = tbl.columns.indexOf("status");
    var tbody = el("tbody");
    rows.slice(start, start + tableState.size).forEach(function (r) {
      var tr = el("tr");
      if (statusCol >= 0 && r[statusCol] !== "completed") { tr.className = "error"; }
      r.forEach(function (v) {
        var td = el("td", typeof v === "number" ? { "class": "num" } : null, fmt(v));
        if (typeof v === "string" && v.length > 60) { td.title = v; }
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
    document.getElementById("table-info").textContent = rows.length ? "rows " + (start + 1) + "–" +
      Math.min(start + tableState.size, rows.length) + " of " + rows.length +
      (filter ? " (filtered from " + tbl.rows.length + ")" : "") : "no rows";
  }

  function renderAll() {
    renderHeader();
    renderSummary();
    renderSections();
    renderTable();
  }

  document.getElementById("table-filter").addEventListener("input", function (ev) {
    tableState.filter = ev.target.value; tableState.page = 0; renderTable();
  });
  document.getElementById("table-prev").addEventListener("click", function () {
    tableState.page = Math.max(0, tableState.page - 1); renderTable();
  });
  document.getElementById("table-next").addEventListener("click", function () {
    tableState.page += 1; renderTable();
  });

  renderAll();

  if (LIVE) {
    var status = document.getElementById("live-status");
    var version = LIVE.version;
    var busy = false;
    var poll = function () {
      if (busy) { return; }
      busy = true;
      fetch("api/version", { cache: "no-store" }).then(function (r) { return r.json(); })
        .then(function (v) {
          status.className = "on";
          status.textContent = "live · " + v.trials + " trials · checked " +
            new Date().toLocaleTimeString();
          if (v.version === version) { return null; }
          return fetch("api/report", { cache: "no-store" }).then(function (r) { return r.json(); })
            .then(function (d) { version = v.version; DATA = d; renderAll(); });
        })
        .catch(function () {
          status.className = "off";
          status.textContent = "live view: server unreachable";
        })
        .then(function () { busy = false; });
    };
    status.className = "on";
    status.textContent = "live";
    setInterval(poll, LIVE.interval_ms || 2000);
  }
})();
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="btnet-lab analysis.dashboard">
<title>{title}</title>
<style>{css}</style>
<script>{plotly}</script>
</head>
<body>
<header><span id="live-status"></span><h1 id="study-name"></h1><div class="meta" id="study-meta">
</div></header>
<nav id="nav"><a href="#summary">Summary</a><a id="nav-table" href="#sec-table">Trials</a></nav>
<main>
<section id="summary"></section>
<div id="sections"></div>
<section id="sec-table"><h2>Trials</h2>
<div class="controls"><input id="table-filter" type="search" placeholder="filter rows">
<button type="button" id="table-prev">previous</button>
<button type="button" id="table-next">next</button><span class="note" id="table-info"></span></div>
<div class="tablewrap"><table id="trial-table"></table></div></section>
</main>
<script type="application/json" id="report-data">{data}</script>
<script type="application/json" id="live-config">{live}</script>
<script>{app}</script>
</body>
</html>
"""


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    return plotly.offline.get_plotlyjs()


def page_html(title: str, data_json: str, live_json: str) -> str:
    """Assemble the page.

    Args:
        title: Page title, already HTML-escaped.
        data_json: Report JSON, already safe to embed (see ``dashboard.report_json``).
        live_json: Live-view settings as JSON (``null`` for a file), safe to embed.
    """
    return _TEMPLATE.format(
        title=title, css=_CSS, plotly=_plotly_js(), data=data_json, live=live_json, app=_JS
    )
