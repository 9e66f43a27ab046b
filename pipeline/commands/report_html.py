"""The contact sheet page: one self-contained HTML file (inline CSS and JS, no external
assets), tiles rendered client-side from embedded JSON, a page at a time, so 10,000 rows
stay quick. Filters: status, reason, a search over id, prompt and text. The URL hash holds
the view (``#status=refused&reason=IMAGE_SAFETY&q=mug&page=2``), so a view can be shared.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

PAGE_SIZE = 200


def tiles_json(tiles: list[dict[str, Any]]) -> str:
    """Tiles as JSON that is safe inside a <script> element."""
    text = json.dumps(tiles, ensure_ascii=False, separators=(",", ":"))
    # "</" could close the script element and "<!--" open a comment: escape every "<"
    # (\u003c is still "<" to JSON.parse, and never markup to the HTML parser).
    return text.replace("<", "\\u003c")


def render(tiles: list[dict[str, Any]], *, title: str, headline: str, summary: str) -> str:
    """The whole page."""
    values = {
        "TITLE": html.escape(title),
        "HEADLINE": html.escape(headline),
        "SUMMARY": html.escape(summary),
        "PAGE_SIZE": str(PAGE_SIZE),
        "TILES": tiles_json(tiles),
    }
    # One pass: a prompt or a model's text that happens to contain "__TILES__" stays text.
    return _SLOT.sub(lambda m: values[m.group(1)], _TEMPLATE)


_SLOT = re.compile(r"__(TITLE|HEADLINE|SUMMARY|PAGE_SIZE|TILES)__")


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
:root { --ok:#1a7f37; --refused:#b35900; --failed:#c62828; --invalid:#6a5acd; --ink:#1f2328;
        --muted:#656d76; --line:#d0d7de; --bg:#f6f8fa; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif; color:var(--ink);
       background:var(--bg); }
header { position:sticky; top:0; z-index:1; background:#fff; border-bottom:1px solid var(--line);
         padding:10px 16px; }
h1 { font-size:16px; margin:0 0 8px; }
h1 small { font-weight:400; color:var(--muted); margin-left:8px; }
.controls { display:flex; flex-wrap:wrap; gap:8px; align-items:center; }
.status { border:1px solid var(--line); background:#fff; border-radius:16px; padding:3px 10px;
          cursor:pointer; font:inherit; }
.status[aria-pressed="true"] { background:var(--ink); color:#fff; border-color:var(--ink); }
select, input[type=search] { font:inherit; padding:3px 6px; border:1px solid var(--line);
                             border-radius:6px; }
input[type=search] { min-width:220px; }
.count { color:var(--muted); margin-left:auto; }
details { margin-top:6px; color:var(--muted); }
details pre { white-space:pre-wrap; font-size:12px; }
main { display:grid; grid-template-columns:repeat(auto-fill,minmax(220px,1fr)); gap:12px;
       padding:16px; }
.tile { background:#fff; border:1px solid var(--line); border-radius:8px; overflow:hidden;
        display:flex; flex-direction:column; }
.thumb { aspect-ratio:1/1; background:#eaeef2; display:flex; align-items:center;
         justify-content:center; overflow:hidden; }
.thumb a { display:block; width:100%; height:100%; }
.thumb img { display:block; width:100%; height:100%; object-fit:contain; }
.thumb .why { padding:12px; font-size:12px; color:var(--muted); overflow:hidden; max-height:100%;
              overflow-wrap:anywhere; }
.thumb .why b { display:block; margin-bottom:4px; font-size:13px; }
.s-refused-tile .why b { color:var(--refused); } .s-failed-tile .why b { color:var(--failed); }
.s-invalid-tile .why b { color:var(--invalid); } .s-succeeded-tile .why b { color:var(--ink); }
.tile:not(.s-succeeded-tile) .thumb { background:repeating-linear-gradient(45deg,#f6f8fa 0 10px,
  #eef1f4 10px 20px); align-items:flex-start; justify-content:flex-start; }
.meta { padding:8px 10px; display:flex; flex-direction:column; gap:4px; }
.badge { align-self:flex-start; font-size:11px; font-weight:600; color:#fff; border-radius:10px;
         padding:1px 8px; }
.s-succeeded { background:var(--ok); } .s-refused { background:var(--refused); }
.s-failed { background:var(--failed); } .s-invalid { background:var(--invalid); }
.id { font-weight:600; word-break:break-all; }
.prompt { color:var(--ink); display:-webkit-box; -webkit-line-clamp:3; -webkit-box-orient:vertical;
          overflow:hidden; }
.small { color:var(--muted); font-size:12px; overflow-wrap:anywhere; }
.pager { display:flex; gap:6px; align-items:center; }
.pager button { font:inherit; padding:2px 10px; border:1px solid var(--line); background:#fff;
                border-radius:6px; cursor:pointer; }
.pager button:disabled { opacity:.4; cursor:default; }
nav.pager { justify-content:center; padding:0 16px 24px; }
.empty { padding:40px; color:var(--muted); grid-column:1/-1; text-align:center; }
</style></head>
<body>
<header>
  <h1>__TITLE__<small>__HEADLINE__</small></h1>
  <div class="controls">
    <span id="statuses"></span>
    <select id="reason" aria-label="reason"><option value="">every reason</option></select>
    <input id="q" type="search" placeholder="search id, prompt, text" aria-label="search">
    <span class="count" id="count"></span>
    <span class="pager"><button class="prev" aria-label="previous page">&lsaquo;</button>
      <span class="page"></span><button class="next" aria-label="next page">&rsaquo;</button></span>
  </div>
  <details><summary>summary</summary><pre>__SUMMARY__</pre></details>
</header>
<main id="grid"></main>
<nav class="pager"><button class="prev">previous</button><span class="page"></span>
  <button class="next">next</button></nav>
<script id="tiles" type="application/json">__TILES__</script>
<script>
"use strict";
const TILES = JSON.parse(document.getElementById("tiles").textContent);
const PAGE = __PAGE_SIZE__;
const ORDER = ["succeeded", "refused", "failed", "invalid"];
const view = {status: new Set(), reason: "", q: "", page: 1};

function readHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  view.status = new Set((h.get("status") || "").split(",").filter(Boolean));
  view.reason = h.get("reason") || "";
  view.q = h.get("q") || "";
  view.page = Math.max(1, parseInt(h.get("page") || "1", 10) || 1);
}
function writeHash() {
  const h = new URLSearchParams();
  if (view.status.size) h.set("status", [...view.status].join(","));
  if (view.reason) h.set("reason", view.reason);
  if (view.q) h.set("q", view.q);
  if (view.page > 1) h.set("page", String(view.page));
  history.replaceState(null, "", "#" + h.toString());
}
function matches(t) {
  if (view.status.size && !view.status.has(t.s)) return false;
  if (view.reason && t.r !== view.reason) return false;
  if (view.q) {
    const q = view.q.toLowerCase();
    if (!(t.id + " " + t.p + " " + t.t).toLowerCase().includes(q)) return false;
  }
  return true;
}
function num(n) { return n.toLocaleString("en-US"); }
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
// Paths are relative to the page; ids may hold "#", "%" or "?", which a URL must escape.
function encodePath(path) { return path.split("/").map(encodeURIComponent).join("/"); }
function why(box, title, text) {
  box.replaceChildren();
  const w = el("div", "why");
  w.appendChild(el("b", "", title));
  w.appendChild(document.createTextNode(text));
  box.appendChild(w);
}
function tile(t) {
  const card = el("article", "tile");
  card.classList.add("s-" + t.s + "-tile");
  card.dataset.status = t.s;
  card.dataset.id = t.id;
  const box = el("div", "thumb");
  if (t.th) {
    const link = el("a");
    link.href = encodePath(t.im[0]);
    link.title = "open the full image";
    const img = el("img");
    img.loading = "lazy";
    img.alt = t.p;
    img.addEventListener("load", () => { card.dataset.img = "loaded"; });
    img.addEventListener("error", () => {
      card.dataset.img = "broken";
      why(box, "no preview", t.th + " is missing: run nanobatch report again");
    });
    img.src = encodePath(t.th);
    link.appendChild(img);
    box.appendChild(link);
  } else {
    // A break after ":" keeps PROMPT_BLOCKED:<reason> from splitting mid-word.
    why(box, t.s === "succeeded" ? "no preview" : t.r.replace(":", ":\u200b"), t.t);
    box.title = t.t;
  }
  card.appendChild(box);
  const meta = el("div", "meta");
  meta.appendChild(el("span", "badge s-" + t.s, t.s));
  meta.appendChild(el("span", "id", t.id));
  meta.appendChild(el("span", "prompt", t.p));
  const bits = [t.r.replace(":", ":\u200b")];
  if (t.wh) bits.push(t.wh);
  if (t.ms != null) bits.push((t.ms / 1000).toFixed(1) + " s");
  meta.appendChild(el("span", "small", bits.join(" · ")));
  if (t.im.length) meta.appendChild(el("span", "small file", t.im[0].split("/").pop()));
  (t.md || []).forEach(([k, v]) => meta.appendChild(el("span", "small md", k + ": " + v)));
  const next = {failed: "a rerun retries this row", invalid: "fix it: a rerun checks it again"};
  if (next[t.s]) meta.appendChild(el("span", "small next", next[t.s]));
  if (t.im.length > 1) {
    const more = el("span", "small");
    t.im.forEach((p, i) => {
      const a = el("a", "", "image " + (i + 1));
      a.href = encodePath(p);
      more.appendChild(a);
      more.appendChild(document.createTextNode(" "));
    });
    meta.appendChild(more);
  }
  card.appendChild(meta);
  return card;
}
function draw() {
  const shown = TILES.filter(matches);
  const pages = Math.max(1, Math.ceil(shown.length / PAGE));
  view.page = Math.min(view.page, pages);
  const grid = document.getElementById("grid");
  grid.replaceChildren(...shown.slice((view.page - 1) * PAGE, view.page * PAGE).map(tile));
  if (!shown.length) grid.appendChild(el("div", "empty", "no rows match"));
  const count = num(shown.length) + " of " + num(TILES.length) + " rows";
  document.getElementById("count").textContent = count;
  for (const e of document.querySelectorAll(".page"))
    e.textContent = "page " + view.page + " of " + pages;
  for (const e of document.querySelectorAll(".prev")) e.disabled = view.page <= 1;
  for (const e of document.querySelectorAll(".next")) e.disabled = view.page >= pages;
  document.querySelectorAll(".status").forEach(b =>
    b.setAttribute("aria-pressed", String(view.status.has(b.dataset.status))));
  document.getElementById("reason").value = view.reason;
  document.getElementById("q").value = view.q;
  writeHash();
}
function setup() {
  const counts = {};
  const reasons = {};
  for (const t of TILES) {
    counts[t.s] = (counts[t.s] || 0) + 1;
    reasons[t.r] = (reasons[t.r] || 0) + 1;
  }
  const box = document.getElementById("statuses");
  for (const s of ORDER.filter(s => counts[s])) {
    const b = el("button", "status", s + " " + num(counts[s]));
    b.dataset.status = s;
    b.addEventListener("click", () => {
      view.status.has(s) ? view.status.delete(s) : view.status.add(s);
      view.page = 1;
      draw();
    });
    box.appendChild(b);
  }
  const select = document.getElementById("reason");
  for (const r of Object.keys(reasons).sort()) {
    const o = el("option", "", r + " (" + num(reasons[r]) + ")");
    o.value = r;
    select.appendChild(o);
  }
  select.addEventListener("change", () => { view.reason = select.value; view.page = 1; draw(); });
  const q = document.getElementById("q");
  q.addEventListener("input", () => { view.q = q.value.trim(); view.page = 1; draw(); });
  const turn = (by) => () => { view.page += by; draw(); window.scrollTo(0, 0); };
  document.querySelectorAll(".prev").forEach(b => b.addEventListener("click", turn(-1)));
  document.querySelectorAll(".next").forEach(b => b.addEventListener("click", turn(1)));
  window.addEventListener("hashchange", () => { readHash(); draw(); });
  readHash();
  draw();
}
setup();
</script>
</body></html>
"""
