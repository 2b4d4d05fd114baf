// The status page's HTML, CSS and script, inlined (no build step, no CDN, no framework: it must
// work offline from the node alone). The script polls /status.json once a second and redraws the
// ranges table, two SVG charts (throughput by method, latency p50/p99), the recent elections and
// this node's cohorts. Every value from the node is put in the DOM as text (textContent), never
// as HTML. Elements carry data-* attributes so the headless-browser test can read them.

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>skv status</title>
<style>
  :root { --fg:#1d2330; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; --card:#fff;
          --leader:#0f766e; --warn:#b45309; --bad:#b91c1c; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
         color:var(--fg); background:var(--bg); }
  header { display:flex; gap:1.5rem; align-items:baseline; flex-wrap:wrap;
           padding:.8rem 1.2rem; background:#1d2330; color:#fff; }
  header h1 { font-size:1.1rem; margin:0; }
  header .fact { color:#cbd5e1; } header .fact b { color:#fff; font-weight:600; }
  #conn { margin-left:auto; font-size:.85rem; }
  #conn.bad { color:#fca5a5; } #conn.ok { color:#86efac; }
  main { display:grid; grid-template-columns: repeat(auto-fit, minmax(430px, 1fr));
         gap:1rem; padding:1rem 1.2rem; }
  section { background:var(--card); border:1px solid var(--line); border-radius:8px;
            padding:.8rem 1rem; min-width:0; overflow-x:auto; }
  section.wide { grid-column: 1 / -1; }
  h2 { font-size:.95rem; margin:0 0 .6rem; }
  table { border-collapse:collapse; width:100%; font-variant-numeric: tabular-nums; }
  th, td { text-align:left; padding:.3rem .45rem; border-bottom:1px solid var(--line);
           white-space:nowrap; }
  th { color:var(--muted); font-weight:500; font-size:.8rem; }
  td.num, th.num { text-align:right; }
  .leader { color:var(--leader); font-weight:600; }
  .none { color:var(--bad); font-weight:600; }
  .muted { color:var(--muted); }
  .role-leader { color:var(--leader); font-weight:600; }
  .role-candidate { color:var(--warn); font-weight:600; }
  .changed { animation: flash 1.5s ease-out; }
  @keyframes flash { from { background:#fde68a; } to { background:transparent; } }
  svg { width:100%; height:180px; display:block; }
  svg .axis { stroke:var(--line); } svg text { fill:var(--muted); font-size:10px; }
  .legend { display:flex; gap:1rem; font-size:.8rem; color:var(--muted); margin-top:.3rem;
            flex-wrap:wrap; }
  .legend i { display:inline-block; width:10px; height:10px; border-radius:2px;
              margin-right:.3rem; vertical-align:-1px; }
  ol#elections { margin:0; padding-left:1.2rem; max-height:240px; overflow:auto; }
  ol#elections li { padding:.15rem 0; }
</style>
</head>
<body>
<header>
  <h1>skv</h1>
  <span class="fact">node <b id="node-id">…</b></span>
  <span class="fact">address <b id="node-address">…</b></span>
  <span class="fact">ZooKeeper <b id="node-session">…</b></span>
  <span class="fact">up <b id="node-uptime">…</b></span>
  <span id="conn">connecting…</span>
</header>
<main>
  <section class="wide">
    <h2>Ranges <span class="muted" id="map-version"></span></h2>
    <table id="ranges">
      <thead><tr><th>range</th><th>start</th><th>end</th><th>members</th><th>leader</th>
        <th class="num">epoch</th><th class="num">follower lag</th></tr></thead>
      <tbody></tbody>
    </table>
    <div class="muted" style="font-size:.8rem;margin-top:.3rem">
      Follower lag (entries the furthest follower is behind) is known at the range's leader:
      shown for the ranges this node leads.</div>
  </section>
  <section>
    <h2>Throughput (requests/s served by this node)</h2>
    <svg id="chart-throughput" viewBox="0 0 600 180" preserveAspectRatio="none"></svg>
    <div class="legend" id="legend-throughput"></div>
  </section>
  <section>
    <h2>Latency at this node (ms, per second)</h2>
    <svg id="chart-latency" viewBox="0 0 600 180" preserveAspectRatio="none"></svg>
    <div class="legend" id="legend-latency"></div>
  </section>
  <section>
    <h2>Recent elections <span class="muted" id="elections-total"></span></h2>
    <ol id="elections"></ol>
  </section>
  <section>
    <h2>This node's cohorts</h2>
    <table id="cohorts">
      <thead><tr><th>range</th><th>role</th><th>voter</th><th class="num">epoch</th>
        <th class="num">last LSN</th><th class="num">durable</th><th class="num">commit</th>
        <th class="num">applied</th><th class="num">memtable</th><th class="num">max lag</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
<script>
"use strict";
const COLORS = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#4b5563", "#be185d"];
const SVG = "http://www.w3.org/2000/svg";
const previousLeaders = new Map();
let methodColors = new Map();

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs) e.setAttribute(k, String(attrs[k]));
  return e;
}
function duration(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + (s % 60) + " s";
  const h = Math.floor(m / 60);
  return h + " h " + (m % 60) + " min";
}
function bytes(n) {
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}
function clock(ms) { return new Date(ms).toLocaleTimeString(); }

function renderRanges(doc) {
  const body = document.querySelector("#ranges tbody");
  const rows = [];
  for (const r of doc.rangeMap.ranges) {
    const tr = el("tr");
    tr.dataset.range = String(r.rangeId);
    tr.dataset.leader = r.leader === null ? "" : r.leader;
    tr.dataset.epoch = String(r.epoch);
    tr.append(el("td", r.rangeId), el("td", r.start), el("td", r.end === null ? "∞" : r.end),
      el("td", r.members.join(", ")));
    const leader = el("td", r.leader === null ? "none" : r.leader, r.leader === null ? "none" : "leader");
    leader.dataset.col = "leader";
    const before = previousLeaders.get(r.rangeId);
    if (before !== undefined && before !== r.leader) leader.classList.add("changed");
    previousLeaders.set(r.rangeId, r.leader);
    tr.append(leader, el("td", r.epoch, "num"),
      el("td", r.followerLagEntries === null ? "—" : r.followerLagEntries, "num"));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  document.getElementById("map-version").textContent = "(map version " + doc.rangeMap.version + ")";
}

function renderCohorts(doc) {
  const body = document.querySelector("#cohorts tbody");
  body.replaceChildren(...doc.cohorts.map((c) => {
    const tr = el("tr");
    tr.dataset.range = String(c.rangeId);
    tr.append(el("td", c.rangeId), el("td", c.role, "role-" + c.role), el("td", c.voter ? "yes" : "no"),
      el("td", c.epoch, "num"), el("td", c.lastLsn.epoch + "." + c.lastLsn.seq, "num"),
      el("td", c.durableSeq, "num"), el("td", c.committedSeq, "num"), el("td", c.appliedSeq, "num"),
      el("td", bytes(c.memtableBytes), "num"),
      el("td", c.role === "leader" ? c.followerLagEntries : "—", "num"));
    return tr;
  }));
}

function renderElections(doc) {
  const list = document.getElementById("elections");
  list.dataset.total = String(doc.elections.total);
  document.getElementById("elections-total").textContent = "(" + doc.elections.total + " since start)";
  list.replaceChildren(...doc.elections.recent.map((e) => {
    const li = el("li");
    li.dataset.range = String(e.rangeId);
    li.dataset.leader = e.leader;
    li.append(el("span", clock(e.atMs) + "  range " + e.rangeId + ": "),
      el("span", e.leader, "leader"), el("span", " leads, epoch " + e.epoch, "muted"));
    return li;
  }));
}

/** A line chart of named series over the same x positions; null values break the line. */
function lineChart(svg, legend, series, unit) {
  const W = 600, H = 180, L = 40, B = 16, T = 8;
  const n = series.length === 0 ? 0 : series[0].values.length;
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  max = max <= 0 ? 1 : max * 1.15;
  const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - 4)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const parts = [svgEl("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" }),
    svgEl("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" })];
  for (const f of [0.5, 1]) {
    const v = (max / 1.15) * f;
    const t = svgEl("text", { x: 2, y: y(v) + 3 });
    t.textContent = (v >= 100 ? Math.round(v) : v.toPrecision(2)) + unit;
    parts.push(t, svgEl("line", { x1: L, y1: y(v), x2: W, y2: y(v), class: "axis", "stroke-dasharray": "3 3" }));
  }
  const label = svgEl("text", { x: L + 2, y: H - 3 });
  label.textContent = "last " + n + " s";
  parts.push(label);
  for (const s of series) {
    let d = "", pen = false;
    s.values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
      pen = true;
    });
    if (d !== "") parts.push(svgEl("path", { d, fill: "none", stroke: s.color, "stroke-width": 1.8, "data-series": s.name }));
  }
  svg.replaceChildren(...parts);
  legend.replaceChildren(...series.map((s) => {
    const span = el("span");
    const dot = el("i"); dot.style.background = s.color;
    const last = s.values.length === 0 ? null : s.values[s.values.length - 1];
    span.append(dot, document.createTextNode(s.name + (last === null ? "" : " " + (Math.round(last * 100) / 100) + unit)));
    return span;
  }));
}

function renderCharts(doc) {
  const secs = doc.throughput.seconds;
  const methods = new Set();
  for (const s of secs) for (const m in s.ops) methods.add(m);
  for (const m of [...methods].sort()) if (!methodColors.has(m)) methodColors.set(m, COLORS[methodColors.size % COLORS.length]);
  const series = [{ name: "total", color: "#1d2330", values: secs.map((s) => s.total) }];
  for (const m of [...methods].sort()) series.push({ name: m, color: methodColors.get(m), values: secs.map((s) => s.ops[m] || 0) });
  lineChart(document.getElementById("chart-throughput"), document.getElementById("legend-throughput"), series, "/s");
  lineChart(document.getElementById("chart-latency"), document.getElementById("legend-latency"), [
    { name: "p50", color: "#2563eb", values: secs.map((s) => s.p50Ms) },
    { name: "p99", color: "#dc2626", values: secs.map((s) => s.p99Ms) },
  ], " ms");
}

async function poll() {
  const conn = document.getElementById("conn");
  try {
    const res = await fetch("status.json", { cache: "no-store" });
    if (!res.ok) throw new Error("HTTP " + res.status);
    const doc = await res.json();
    document.getElementById("node-id").textContent = doc.node.id;
    document.getElementById("node-address").textContent = doc.node.address;
    document.getElementById("node-session").textContent = doc.node.sessionState;
    document.getElementById("node-uptime").textContent = duration(doc.node.uptimeMs);
    renderRanges(doc);
    renderCharts(doc);
    renderElections(doc);
    renderCohorts(doc);
    conn.textContent = "updated " + clock(doc.generatedAtMs);
    conn.className = "ok";
    document.body.dataset.updatedAt = String(doc.generatedAtMs);
  } catch (err) {
    conn.textContent = "node unreachable (" + (err && err.message ? err.message : err) + ")";
    conn.className = "bad";
  } finally {
    setTimeout(poll, 1000);
  }
}
poll();
</script>
</body>
</html>
`;
