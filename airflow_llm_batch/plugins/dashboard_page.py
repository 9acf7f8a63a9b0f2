"""The dashboard page: static HTML and a little script that asks the plugin's API as the signed-in user."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LLM batches</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1a202c; }
h1 { font-size: 20px; margin: 0 0 12px; } h2 { font-size: 16px; margin: 20px 0 8px; }
table { border-collapse: collapse; width: 100%; } th, td { border-bottom: 1px solid #e2e8f0; padding: 4px 8px;
text-align: left; vertical-align: top; }
td.ids { overflow-wrap: anywhere; min-width: 12em; } th { background: #f7fafc; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.gate { color: #9b2c2c; font-weight: 600; } .warn { color: #975a16; font-weight: 600; } .ok { color: #276749; }
select { font: inherit; padding: 2px 4px; } .muted { color: #718096; } svg { background: #fbfdff; }
</style></head>
<body>
<h1>LLM batches</h1>
<label>DAG <select id="dag"></select></label> <span id="status" class="muted"></span>
<h2>Trend over runs</h2><svg id="trend" width="720" height="180" role="img" aria-label="trend"></svg>
<div class="muted">Blue, solid: success rate (0-100%).
Orange, dashed: cost at batch prices (the highest run at the top).</div>
<h2>Runs</h2><table id="steps"><thead><tr>
<th>Run</th><th>State</th><th>Step</th><th>Provider / model</th><th>Items</th><th>Success rate</th>
<th>Failures by type</th><th>Retries</th><th>Cost</th><th>Savings</th><th>Cost per success</th>
<th>Turnaround</th><th>Gates</th><th>Batches</th></tr></thead><tbody></tbody></table>
<h2>Runs in progress</h2><table id="going"><thead><tr><th>Run</th><th>State</th><th>Tasks</th></tr></thead>
<tbody></tbody></table>
<script>
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;",
  '"': "&quot;", "'": "&#39;"}[c]));
const money = (v) => v == null ? "unknown" : "$" + Number(v).toFixed(Math.abs(v) < 0.01 ? 6 : 4);
const pct = (v) => v == null ? "-" : (100 * v).toFixed(1) + "%";
const secs = (v) => v == null ? "-" : (v < 120 ? v.toFixed(0) + " s" : (v / 60).toFixed(1) + " min");
async function getJson(url) {
  const answer = await fetch(url, {credentials: "same-origin"});
  if (!answer.ok) throw new Error(url + ": HTTP " + answer.status);
  return answer.json();
}
function gates(row) {
  if (!row.gates_set) return '<span class="muted">none set</span>';
  if (!row.gates.length) return '<span class="ok">held</span>';
  return row.gates.map((g) => `<div class="${g.action === "fail" ? "gate" : "warn"}" title="${esc(g.reason)}">`
    + `${esc(g.gate)} (${esc(g.action)})</div>`).join("");
}
function render(data) {
  const body = document.querySelector("#steps tbody");
  body.innerHTML = data.steps.map((r) => `<tr data-run="${esc(r.run_id)}">
    <td>${esc(r.run_id)}<div class="muted">${esc(r.logical_date)}</div></td><td>${esc(r.run_state)}</td>
    <td>${esc(r.step)}</td><td>${esc(r.provider)} / ${esc(r.model)}</td>
    <td class="num">${r.items}</td><td class="num">${pct(r.success_rate)}</td>
    <td>${Object.entries(r.by_error_type).map(([k, v]) => esc(k) + ": " + v).join("<br>") || "none"}</td>
    <td class="num">${r.retries}</td><td class="num">${money(r.cost)}</td><td class="num">${money(r.savings)}</td>
    <td class="num">${money(r.cost_per_success)}</td><td class="num">${secs(r.turnaround_seconds)}</td>
    <td>${gates(r)}</td>
    <td class="ids">${r.batches.map((b) => b.url
      ? `<a href="${esc(b.url)}" target="_blank" rel="noopener">${esc(b.id)}</a>` : esc(b.id)).join("<br>")}</td>
    </tr>`).join("");
  document.querySelector("#going tbody").innerHTML = data.runs_without_summary.map((g) => `<tr>
    <td>${esc(g.run_id)}</td><td>${esc(g.run_state)}</td>
    <td>${Object.entries(g.tasks).map(([t, s]) => esc(t) + ": " + esc(s)).join(", ")}</td></tr>`).join("")
    || '<tr><td colspan="3" class="muted">none</td></tr>';
  trend([...data.steps].reverse());
}
function trend(rows) {
  const svg = document.getElementById("trend"), w = 720, h = 180, pad = 48;
  if (!rows.length) { svg.innerHTML = ""; return; }
  const x = (i) => pad + (rows.length === 1 ? (w - 2 * pad) / 2 : i * (w - 2 * pad) / (rows.length - 1));
  const y = (v) => h - pad - v * (h - 2 * pad);
  const top = Math.max(...rows.map((r) => r.cost || 0)) || 1;
  const line = (values, color, dash) => `<polyline fill="none" stroke="${color}" stroke-width="2"
    stroke-dasharray="${dash}" points="${
    values.map((v, i) => x(i) + "," + y(v)).join(" ")}"/>` + values.map((v, i) =>
    `<circle cx="${x(i)}" cy="${y(v)}" r="3" fill="${color}"/>`).join("");
  svg.innerHTML = `<line x1="${pad}" y1="${y(0)}" x2="${w - pad}" y2="${y(0)}" stroke="#cbd5e0"/>`
    + `<line x1="${pad}" y1="${y(1)}" x2="${w - pad}" y2="${y(1)}" stroke="#edf2f7"/>`
    + `<text x="4" y="${y(1) + 4}" font-size="10">100%</text><text x="4" y="${y(0) + 4}" font-size="10">0%</text>`
    + line(rows.map((r) => r.success_rate ?? 0), "#3182ce", "")
    + line(rows.map((r) => (r.cost || 0) / top), "#dd6b20", "6 4")
    + rows.map((r, i) => `<text x="${x(i)}" y="${h - 6}" font-size="10" text-anchor="middle">${
      esc((r.logical_date || r.run_id).slice(5, 16).replace("T", " "))}</text>`).join("");
}
async function show(dagId) {
  document.getElementById("status").textContent = "loading";
  try {
    render(await getJson(`api/dags/${encodeURIComponent(dagId)}/steps`));
    document.getElementById("status").textContent = "";
  } catch (error) { document.getElementById("status").textContent = String(error); }
}
async function start() {
  const select = document.getElementById("dag");
  try {
    const {dag_ids} = await getJson("api/dags");
    select.innerHTML = dag_ids.map((d) => `<option>${esc(d)}</option>`).join("");
    // The DAG asked for in the address, else the one picked last (the UI may draw the frame again).
    const wanted = new URLSearchParams(location.search).get("dag_id") || localStorage.getItem("llmBatchesDag");
    if (wanted && dag_ids.includes(wanted)) select.value = wanted;
    select.onchange = () => { localStorage.setItem("llmBatchesDag", select.value); show(select.value); };
    if (dag_ids.length) await show(select.value);
    else document.getElementById("status").textContent = "no DAG with LLM batch summaries you may read";
  } catch (error) { document.getElementById("status").textContent = String(error); }
  document.body.dataset.ready = "1";
}
start();
</script></body></html>
"""
