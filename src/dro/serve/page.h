// The one page of `dro serve`: plain HTML, CSS and JavaScript, no build step and nothing loaded
// from elsewhere. Modes: compare (models side by side from the same seeds), collect (K images,
// the user keeps one: implicit feedback), study (blind A/B votes) and results.
// URL parameters prefill the controls and can drive the page without clicks (the browser test
// uses them): mode, prompt, seed, steps, guidance, sampler, n (images per model / K), models
// (comma-separated), source (collect: a model or "mixed"), run=1 (generate on load), keep=I
// (collect: keep image I once shown), skip=1, vote=left|right (study). When a driven action has
// finished, <body> gets data-done="1".
#pragma once

namespace dro::serve {

inline constexpr const char* kPage = R"PAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dro serve</title>
<style>
  :root { --fg:#1d2330; --muted:#667085; --line:#d0d5dd; --bg:#f7f8fa; --accent:#3559e0; --ok:#12805c; }
  * { box-sizing: border-box; }
  body { margin:0; font:15px/1.45 system-ui, sans-serif; color:var(--fg); background:var(--bg); }
  header { display:flex; align-items:center; gap:18px; padding:10px 20px; background:#fff; border-bottom:1px solid var(--line); }
  header h1 { font-size:18px; margin:0; }
  nav button { border:0; background:none; padding:8px 12px; font:inherit; color:var(--muted); cursor:pointer; border-bottom:2px solid transparent; }
  nav button.on { color:var(--fg); border-bottom-color:var(--accent); }
  main { padding:16px 20px; max-width:1200px; }
  .panel { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 14px; margin-bottom:14px; }
  .row { display:flex; flex-wrap:wrap; gap:12px; align-items:end; }
  label { display:flex; flex-direction:column; font-size:12px; color:var(--muted); gap:3px; }
  input, select { font:inherit; padding:5px 7px; border:1px solid var(--line); border-radius:5px; background:#fff; }
  input[type=number] { width:90px; }
  #prompt { width:min(560px, 90vw); }
  button.go { background:var(--accent); color:#fff; border:0; border-radius:6px; padding:8px 16px; font:inherit; cursor:pointer; }
  button.plain { background:#fff; border:1px solid var(--line); border-radius:6px; padding:7px 12px; font:inherit; cursor:pointer; }
  button:disabled { opacity:.5; cursor:default; }
  .models { display:flex; gap:10px; flex-wrap:wrap; font-size:14px; }
  .models label { flex-direction:row; align-items:center; color:var(--fg); font-size:14px; }
  #status { margin:8px 0; min-height:1.4em; color:var(--muted); }
  #status.err { color:#b42318; }
  progress { width:260px; height:10px; vertical-align:middle; }
  .grid { display:grid; gap:14px; }
  .col h3 { margin:0 0 6px; font-size:14px; }
  .card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:8px; text-align:center; }
  .card img { width:100%; max-width:256px; image-rendering:pixelated; border-radius:4px; display:block; margin:0 auto 6px; }
  .card.kept { outline:3px solid var(--ok); }
  .card small { color:var(--muted); display:block; }
  .pick img { cursor:pointer; }
  .hidden { display:none !important; }
  table { border-collapse:collapse; background:#fff; }
  td, th { border:1px solid var(--line); padding:4px 8px; font-size:14px; text-align:left; }
</style>
</head>
<body>
<header>
  <h1>dro serve</h1>
  <nav id="tabs">
    <button data-mode="compare">Compare</button>
    <button data-mode="collect">Collect</button>
    <button data-mode="study">Study</button>
    <button data-mode="results">Results</button>
  </nav>
</header>
<main>
  <div class="panel" id="controls">
    <div class="row">
      <label>Prompt <input id="prompt" maxlength="500" placeholder="a large red circle on a dark background, left"></label>
      <button class="go" id="go">Generate</button>
    </div>
    <div class="row" style="margin-top:10px">
      <label>Seed <input id="seed" type="number" min="0" value="0"></label>
      <button class="plain" id="dice" title="random seed">random seed</button>
      <label>Steps <input id="steps" type="number" min="1" max="100" value="20"></label>
      <label>Guidance <input id="guidance" type="number" min="0" max="30" step="0.5" value="3"></label>
      <label>Sampler <select id="sampler"></select></label>
      <label id="nlabel">Images per model <input id="n" type="number" min="1" max="8" value="2"></label>
      <label id="sourcelabel" class="hidden">Images from <select id="source"></select></label>
    </div>
    <div class="models" id="models" style="margin-top:10px"></div>
  </div>
  <div id="status" role="status"></div>
  <div id="progresswrap" class="hidden"><progress id="bar" max="1" value="0"></progress> <span id="ptext"></span></div>
  <section id="view"></section>
  <p id="hint" style="color:var(--muted);font-size:13px"></p>
</main>
<script>
"use strict";
const P = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
let info = { models: [], samplers: [], limits: {} };
let mode = "compare";
let shown = [];        // collect: the images of the current round
let shownPrompt = "";  // and the prompt they were made for
let trial = null;      // study: the current trial
let busy = false;
const session = (() => {
  let s = sessionStorage.getItem("dro-session");
  if (!s) {
    const b = new Uint8Array(12); crypto.getRandomValues(b);
    s = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    sessionStorage.setItem("dro-session", s);
  }
  return s;
})();

function status(text, err) { const s = $("status"); s.textContent = text; s.className = err ? "err" : ""; }
function done() { document.body.dataset.done = "1"; }
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}
async function api(path, body) {
  const r = await fetch(path, body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const j = await r.json().catch(() => ({ error: "HTTP " + r.status }));
  if (!r.ok) throw new Error(j.error || ("HTTP " + r.status));
  return j;
}
function settings() {
  return { prompt: $("prompt").value.trim(), seed: Number($("seed").value), steps: Number($("steps").value),
           guidance: Number($("guidance").value), sampler: $("sampler").value };
}
function selectedModels() {
  return Array.from(document.querySelectorAll("#models input:checked"), (c) => c.value);
}
function setBusy(b) { busy = b; $("go").disabled = b; }

// Queues a job and polls its progress until the images are ready.
async function generate(req) {
  $("progresswrap").classList.remove("hidden");
  $("bar").value = 0; $("ptext").textContent = "queued";
  try {
    let j = await api("/api/generate", Object.assign({ wait: false }, req));
    while (j.state === "queued" || j.state === "running") {
      await new Promise((r) => setTimeout(r, 200));
      j = await api("/api/jobs/" + j.job);
      $("bar").value = j.steps_total ? j.steps_done / j.steps_total : 0;
      $("ptext").textContent = j.state === "queued" ? "queued, position " + (j.queue_position + 1)
                              : j.steps_done + " / " + j.steps_total + " steps";
    }
    if (j.state !== "done") throw new Error(j.error || "generation failed");
    $("bar").value = 1; $("ptext").textContent = "done in " + j.seconds.toFixed(1) + " s";
    return j.images;
  } finally { setTimeout(() => $("progresswrap").classList.add("hidden"), 800); }
}

function card(img, label, extra) {
  const c = el("div", { class: "card" },
    el("img", { src: img.url, alt: label || "generated image", "data-id": img.id }));
  if (label) c.append(el("small", {}, label));
  const dl = el("a", { href: img.url, download: "dro-" + img.id.slice(0, 8) + ".png" }, "download");
  c.append(dl);
  if (extra) extra(c, dl);
  return c;
}

async function runCompare() {
  const s = settings();
  const models = selectedModels();
  if (!s.prompt) return status("Type a prompt first.", true);
  if (!models.length) return status("Tick at least one model.", true);
  setBusy(true); status("Generating ...");
  try {
    const imgs = await generate(Object.assign(s, { models, images_per_model: Number($("n").value) }));
    const view = $("view"); view.textContent = "";
    const grid = el("div", { class: "grid", id: "compare-grid",
                             style: "grid-template-columns: repeat(" + models.length + ", minmax(0, 1fr))" });
    for (const m of models) {
      const col = el("div", { class: "col" }, el("h3", {}, m));
      for (const im of imgs.filter((x) => x.model === m)) col.append(card(im, "seed " + im.seed));
      grid.append(col);
    }
    view.append(grid);
    status(imgs.length + " images: the same seeds for every model.");
  } catch (e) { status(e.message, true); }
  setBusy(false); done();
}

async function runCollect() {
  const s = settings();
  if (!s.prompt) return status("Type a prompt first.", true);
  const k = Number($("n").value), src = $("source").value;
  const all = info.models.map((m) => m.name);
  const models = src === "mixed" ? all : [src];
  const per = Math.ceil(k / models.length);
  setBusy(true); status("Generating " + k + " images ...");
  try {
    let imgs = await generate(Object.assign(s, { models, images_per_model: per, shuffle: true }));
    imgs = imgs.slice(0, k);
    shown = imgs; shownPrompt = s.prompt;
    const view = $("view"); view.textContent = "";
    const grid = el("div", { class: "grid pick", id: "collect-grid",
                             style: "grid-template-columns: repeat(" + Math.min(k, 4) + ", minmax(0, 1fr))" });
    imgs.forEach((im, i) => grid.append(card(im, "", (c, dl) => {
      c.querySelector("img").addEventListener("click", () => keep(i));
      c.prepend(el("button", { class: "plain keep", on: { click: () => keep(i) } }, "Keep this one"));
      dl.addEventListener("click", () => feedback({ event: "download", image: im.url }));
    })));
    view.append(grid,
      el("p", {}, el("button", { class: "plain", id: "skip", on: { click: skip } }, "None of these"),
         " ", el("button", { class: "plain", on: { click: nextRound } }, "Next round")));
    status("Click the image you would keep.");
  } catch (e) { status(e.message, true); done(); }
  setBusy(false);
}
async function feedback(extra) {
  return api("/api/feedback", Object.assign({ session, prompt: shownPrompt,
                                              shown: shown.map((x) => x.url) }, extra));
}
async function keep(i) {
  if (!shown.length) return;
  try {
    await feedback({ kept: shown[i].url });
    document.querySelectorAll("#collect-grid .card").forEach((c, j) => c.classList.toggle("kept", j === i));
    status("Kept image " + (i + 1) + ". Recorded; \"Next round\" shows new images.");
    shown = [];
  } catch (e) { status(e.message, true); }
  done();
}
async function skip() {
  if (!shown.length) return;
  try { await feedback({ event: "skip" }); status("Skipped: none kept. Recorded."); shown = []; }
  catch (e) { status(e.message, true); }
  done();
}
function nextRound() { $("seed").value = Math.floor(Math.random() * 1e6); runCollect(); }

async function runStudy() {
  const s = settings();
  if (!s.prompt) return status("Type a prompt first.", true);
  setBusy(true); status("Making a pair ...");
  try {
    trial = await api("/api/study/trial", { prompt: s.prompt, steps: s.steps, guidance: s.guidance, sampler: s.sampler, session });
    const view = $("view"); view.textContent = "";
    const grid = el("div", { class: "grid pick", id: "study-grid", style: "grid-template-columns: 1fr 1fr" });
    for (const side of ["left", "right"])
      grid.append(el("div", { class: "card" },
        el("img", { src: trial[side], alt: side + " image", on: { click: () => vote(side) } }),
        el("button", { class: "plain vote", "data-side": side, on: { click: () => vote(side) } },
           side === "left" ? "Left is better" : "Right is better")));
    view.append(grid);
    status("Which image fits the prompt better? (arrow keys work too)");
  } catch (e) { status(e.message, true); done(); }
  setBusy(false);
}
async function vote(side) {
  if (!trial) return;
  const t = trial; trial = null;
  try {
    const r = await api("/api/study", { trial: t.trial, choice: side, session });
    status("Vote recorded (" + r.votes + " so far). Generate for the next pair.");
    $("seed").value = Math.floor(Math.random() * 1e6);
  } catch (e) { status(e.message, true); }
  done();
}

async function showResults() {
  const view = $("view"); view.textContent = "";
  try {
    const r = await api("/api/study/results");
    view.append(el("p", {}, r.votes + " votes"));
    for (const p of r.pairs) {
      const pct = (x) => (100 * x).toFixed(1) + "%";
      view.append(el("h3", {}, p.a + " vs " + p.b),
        el("p", { class: "winrate" }, p.a + " preferred in " + pct(p.win_rate) + " of " + p.votes + " votes (95% interval " +
           pct(p.ci_low) + " - " + pct(p.ci_high) + ", sign test p = " + p.p_value.toPrecision(3) + ")"));
      const t = el("table", {}, el("tr", {}, el("th", {}, "prompt"), el("th", {}, "votes"), el("th", {}, p.a + " wins")));
      for (const q of p.per_prompt) t.append(el("tr", {}, el("td", {}, q.prompt), el("td", {}, String(q.votes)), el("td", {}, String(q.a_wins))));
      view.append(t);
    }
    status("");
  } catch (e) { status(e.message, true); }
  done();
}

function setMode(m) {
  mode = m;
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("on", b.dataset.mode === m));
  $("controls").classList.toggle("hidden", m === "results");
  $("models").classList.toggle("hidden", m !== "compare");
  $("nlabel").classList.toggle("hidden", m === "study" || m === "results");
  $("nlabel").firstChild.textContent = m === "collect" ? "Images shown (K) " : "Images per model ";
  $("sourcelabel").classList.toggle("hidden", m !== "collect");
  $("go").textContent = m === "study" ? "New pair" : "Generate";
  $("view").textContent = ""; status(""); shown = []; trial = null;
  $("hint").textContent = {
    compare: "Every model gets the same seeds, so differences come from the models.",
    collect: "Your choice is recorded as implicit feedback (anonymous session " + session + "); dro serve export turns it into training data.",
    study: "Blind: the two images come from two models in a random order; nothing on the page says which.",
    results: "Win rate over votes with a 95% bootstrap interval; votes per prompt below."
  }[m];
  if (m === "collect" && Number($("n").value) < 2) $("n").value = 4;
  if (m === "results") showResults();
}

async function init() {
  try { info = await api("/api/models"); } catch (e) { status("cannot reach the server: " + e.message, true); return; }
  for (const s of info.samplers) $("sampler").append(el("option", { value: s }, s));
  $("source").append(el("option", { value: "mixed" }, "all models, mixed"));
  const want = P.get("models") ? P.get("models").split(",") : null;
  for (const m of info.models) {
    const box = el("input", { type: "checkbox", value: m.name });
    box.checked = !want || want.includes(m.name);
    $("models").append(el("label", {}, box, " " + m.name + " (" + m.size + " px)"));
    $("source").append(el("option", { value: m.name }, m.name));
  }
  for (const k of ["prompt", "seed", "steps", "guidance", "sampler", "n", "source"]) if (P.get(k) !== null) $(k).value = P.get(k);
  document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => setMode(b.dataset.mode)));
  $("dice").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 1e6); });
  $("go").addEventListener("click", () => { if (!busy) ({ compare: runCompare, collect: runCollect, study: runStudy })[mode](); });
  $("prompt").addEventListener("keydown", (e) => { if (e.key === "Enter") $("go").click(); });
  document.addEventListener("keydown", (e) => {
    if (mode === "study" && trial && (e.key === "ArrowLeft" || e.key === "ArrowRight")) vote(e.key === "ArrowLeft" ? "left" : "right");
  });
  const n = P.get("n");
  setMode(["compare", "collect", "study", "results"].includes(P.get("mode")) ? P.get("mode") : "compare");
  if (n !== null) $("n").value = n;
  if (P.get("run") === "1" && mode !== "results") {
    if (mode === "compare") await runCompare();
    if (mode === "collect") {
      await runCollect();
      if (P.get("keep") !== null) await keep(Number(P.get("keep")));
      else if (P.get("skip") === "1") await skip();
      else done();
    }
    if (mode === "study") {
      await runStudy();
      if (P.get("vote")) await vote(P.get("vote")); else done();
    }
  }
}
init();
</script>
</body>
</html>
)PAGE";

}  // namespace dro::serve
