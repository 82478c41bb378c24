"""The report's inline style sheet and script: the page loads nothing else (no fonts, no CDN)."""

from __future__ import annotations

# Cluster colours (Tableau 10 and two more): a cluster's colour is PALETTE[rank % 12]; episodes
# in no lasting cluster are grey.
PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#b07aa1",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#ff9da7",
    "#9c755f",
    "#17becf",
    "#bcbd22",
    "#8c6bb1",
)
GREY = "#b4b9c2"


def _colour_rules() -> str:
    rules = [f".k0{{--c:{GREY}}}"]
    rules += [f".k{n + 1}{{--c:{colour}}}" for n, colour in enumerate(PALETTE)]
    return "".join(rules)


CSS = """
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2330;--soft:#5b6472;--faint:#8a93a1;--line:#e3e6eb;--accent:#5a4fcf;
--ok:#2e9e6a;--bad:#d1495b;--warn:#c98a12;--mute:#9aa1ab;--chip:#eef0f4;
--shadow:0 1px 2px rgba(20,30,50,.06),0 2px 8px rgba(20,30,50,.05)}
@media (prefers-color-scheme:dark){:root{--bg:#14171c;--card:#1c2027;--ink:#e6e9ee;--soft:#aab2bf;--faint:#7d8794;
--line:#2c323c;--chip:#262b34;--shadow:none}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.86em}
.wrap{max-width:1240px;margin:0 auto;padding:0 24px}
header.top{background:linear-gradient(120deg,#2b2466,#5a4fcf 60%,#7d74e0);color:#fff;padding:22px 0 20px}
header.top .brand{font-size:12px;letter-spacing:.08em;text-transform:uppercase;opacity:.8}
header.top h1{margin:2px 0 4px;font-size:26px;font-weight:650;letter-spacing:-.01em}
header.top .sub{margin:0;opacity:.85;font-size:13px}
header.top code{background:rgba(255,255,255,.14);padding:1px 6px;border-radius:4px}
main{padding:20px 0 8px}
h2{font-size:19px;margin:0 0 12px;font-weight:650;letter-spacing:-.01em}
h3{font-size:15px;margin:0 0 2px;font-weight:650}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:16px 18px;box-shadow:var(--shadow)}
.hint{color:var(--soft);font-size:12.5px;margin:0 0 10px}
.note{color:var(--soft);font-size:12.5px;margin:8px 0 0}
.nsbar{display:flex;gap:18px;align-items:flex-start;margin-bottom:20px}
.nsbar .card{flex:1;overflow:auto;max-height:260px}
.nsbar label{font-weight:600;font-size:13px;color:var(--soft)}
select{font:inherit;padding:5px 8px;border-radius:8px;border:1px solid var(--line);background:var(--card);
color:var(--ink);
margin-left:6px;max-width:360px}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;font-weight:600;color:var(--soft);font-size:12px;border-bottom:1px solid var(--line);padding:5px 8px}
td{border-bottom:1px solid var(--line);padding:5px 8px;vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr[data-target]{cursor:pointer}
tr[data-target]:hover td{background:var(--chip)}
tr.current td{background:var(--chip);font-weight:600}
.ns-title{display:flex;align-items:baseline;gap:10px;margin:6px 0 12px}
.ns-title .tag{font-size:12px;color:var(--soft);font-weight:500}
.kpis{display:grid;grid-template-columns:repeat(5,1fr);gap:12px;margin-bottom:16px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:12px 14px;box-shadow:var(--shadow)}
.kpi .v{font-size:24px;font-weight:680;letter-spacing:-.02em;line-height:1.2}
.kpi .l{font-size:12px;color:var(--soft);text-transform:uppercase;letter-spacing:.05em}
.kpi .s{font-size:12px;color:var(--faint)}
.grid{display:grid;grid-template-columns:minmax(0,1.75fr) minmax(0,1fr);gap:16px;margin-bottom:16px}
svg{display:block;width:100%;height:auto}
svg.map{background:var(--bg);border-radius:8px;border:1px solid var(--line)}
.pt{stroke-width:1.6;cursor:pointer;pointer-events:all;transition:opacity .12s}
.pt.s,.pt.f{fill:var(--c)}
.pt.s{stroke:var(--card);stroke-width:.7}
.pt.u{fill:var(--card);stroke:var(--c)}
.map.focus .pt{opacity:.2}
.map.focus .pt.on{opacity:1}
.legend{display:flex;flex-wrap:wrap;gap:6px 14px;margin-top:10px;font-size:12.5px;color:var(--soft);align-items:center}
.legend .item{display:inline-flex;align-items:center;gap:5px;white-space:nowrap}
.legend .item[data-c]{cursor:default;padding:1px 6px;border-radius:6px}
.legend .item[data-c]:hover{background:var(--chip)}
.legend svg{width:14px;height:14px;display:inline-block}
.legend .sep{width:1px;height:16px;background:var(--line)}
.sw{display:inline-block;width:10px;height:10px;border-radius:3px;background:var(--c);flex:none}
.chart-legend{display:flex;gap:12px;font-size:12px;color:var(--soft);margin:4px 0 6px;flex-wrap:wrap}
.chart-legend span{display:inline-flex;align-items:center;gap:5px}
.axis text{fill:var(--faint);font-size:10.5px}
.axis line,.gridline{stroke:var(--line)}
.bar-add{fill:#59a14f}.bar-edit{fill:#4e79a7}.bar-retire{fill:#e15759}
.active-line{fill:none;stroke:var(--accent);stroke-width:2}
.active-dot{fill:var(--card);stroke:var(--accent);stroke-width:2}
.dream:hover rect{opacity:.8}
details{margin-top:10px}
summary{cursor:pointer;color:var(--soft);font-size:12.5px}
details table{margin-top:6px}
.compact td,.compact th{padding:4px 5px;white-space:nowrap}
.scroll{overflow-x:auto}
.filters{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:4px 0 14px}
.chip{display:inline-flex;align-items:center;gap:6px;background:var(--chip);border-radius:999px;padding:3px 11px;
font-size:12.5px;cursor:pointer;user-select:none;border:1px solid transparent}
.chip input{margin:0;accent-color:var(--accent)}
.filters input[type=search]{font:inherit;font-size:13px;padding:4px 10px;border:1px solid var(--line);
border-radius:999px;
background:var(--card);color:var(--ink);min-width:220px;margin-left:auto}
.group{margin-top:16px}
.group>h4{font-size:12px;text-transform:uppercase;letter-spacing:.06em;color:var(--soft);margin:0 0 8px;font-weight:650}
.cluster{border:1px solid var(--line);border-radius:10px;margin-bottom:10px;overflow:hidden}
.cluster>.head{display:flex;align-items:center;gap:10px;padding:8px 12px;background:var(--chip);
border-left:4px solid var(--c)}
.cluster>.head .lab{font-weight:700;font-size:13px}
.cluster>.head .task{flex:1;min-width:0;color:var(--soft);font-size:12.5px;white-space:nowrap;overflow:hidden;
text-overflow:ellipsis}
.cluster>.head .rate{font-size:12px;color:var(--soft);white-space:nowrap;display:flex;align-items:center;gap:8px}
.ins{display:grid;grid-template-columns:minmax(0,1fr) 250px;gap:16px;padding:10px 12px;border-top:1px solid var(--line)}
.cluster>.head+.ins{border-top:0}
.flat>.ins{border:1px solid var(--line);border-radius:10px;margin-bottom:8px}
.ins-text{margin:0;font-size:14px}
.ins-when{margin:2px 0 0;color:var(--soft);font-size:12.5px}
.ins-meta{margin:5px 0 0;color:var(--faint);font-size:12px;display:flex;flex-wrap:wrap;gap:4px 10px;align-items:center}
.from{display:inline-flex;flex-wrap:wrap;gap:4px;align-items:center}
.from .c{display:inline-flex;align-items:center;gap:3px;background:var(--chip);border-radius:5px;padding:0 5px}
.badge{display:inline-block;border-radius:999px;padding:0 8px;font-size:11.5px;font-weight:650;line-height:18px;
text-transform:lowercase}
.b-active{background:rgba(46,158,106,.14);color:var(--ok)}
.b-quarantined{background:rgba(201,138,18,.15);color:var(--warn)}
.b-retired{background:rgba(140,147,160,.18);color:var(--soft)}
.b-revoked{background:rgba(209,73,91,.13);color:var(--bad)}
.side{font-size:12px;color:var(--soft);display:flex;flex-direction:column;gap:6px}
.meter{display:flex;height:7px;border-radius:4px;overflow:hidden;background:var(--line);margin-top:2px}
.meter .ok{background:var(--ok)}.meter .bad{background:var(--bad)}
.mini{display:inline-flex;width:70px;height:6px;border-radius:3px;overflow:hidden;background:var(--line)}
.mini .ok{background:var(--ok)}.mini .bad{background:var(--bad)}
.effect{display:grid;grid-template-columns:84px 1fr 34px;gap:2px 6px;align-items:center}
.effect .bar{height:7px;border-radius:4px;background:var(--line);overflow:hidden}
.effect .bar i{display:block;height:100%;background:var(--accent)}
.effect .bar.un i{background:var(--mute)}
.effect .pc{text-align:right;font-variant-numeric:tabular-nums}
.empty{color:var(--soft);font-style:italic;margin:6px 0}
.ns[hidden]{display:none}
.hide-active .ins[data-status=active],.hide-quarantined .ins[data-status=quarantined],
.hide-retired .ins[data-status=retired],.hide-revoked .ins[data-status=revoked],.ins.miss{display:none}
.tip{position:fixed;z-index:10;max-width:380px;background:#1d2330;color:#f2f4f7;border-radius:8px;padding:8px 10px;
font-size:12.5px;line-height:1.4;pointer-events:none;box-shadow:0 6px 20px rgba(0,0,0,.25)}
.tip .t{font-weight:600;margin-bottom:4px;overflow-wrap:anywhere}
.tip .m{display:flex;gap:8px;align-items:center;color:#c6ccd6;flex-wrap:wrap}
.tip .o{border-radius:999px;padding:0 7px;font-weight:650;font-size:11px}
.tip .o.s{background:#2e9e6a}.tip .o.f{background:#d1495b}.tip .o.u{background:#6b7380}
.tip .id{color:#9aa3b1;margin-top:4px;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px}
footer{color:var(--faint);font-size:12px;padding:10px 0 30px}
footer p{margin:4px 0}
@media (max-width:900px){.grid{grid-template-columns:1fr}.kpis{grid-template-columns:repeat(2,1fr)}
.ins{grid-template-columns:1fr}}
""" + _colour_rules()

# Progressive: without the script every namespace is shown, one after another; with it, one at
# a time. Text from the data is only ever put into the page with textContent.
JS = r"""(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.add("js");
  var sections = Array.prototype.slice.call(document.querySelectorAll("section.ns"));
  var select = document.getElementById("ns-select");
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-target]"));
  function show(id) {
    sections.forEach(function (s) { s.hidden = s.id !== id; });
    rows.forEach(function (r) { r.classList.toggle("current", r.getAttribute("data-target") === id); });
    if (select) { select.value = id; }
  }
  if (sections.length > 1) {
    var wanted = decodeURIComponent(location.hash.slice(1));
    show(sections.some(function (s) { return s.id === wanted; }) ? wanted : sections[0].id);
    if (select) { select.addEventListener("change", function () { show(select.value); }); }
    rows.forEach(function (r) {
      r.addEventListener("click", function () { show(r.getAttribute("data-target")); });
    });
  }

  var tip = document.getElementById("tip");
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  var OUTCOME = { s: "success", f: "failure", u: "no outcome" };
  function place(ev) {
    var pad = 14, w = tip.offsetWidth, h = tip.offsetHeight;
    var x = ev.clientX + pad, y = ev.clientY + pad;
    if (x + w > window.innerWidth - 4) { x = ev.clientX - w - pad; }
    if (y + h > window.innerHeight - 4) { y = ev.clientY - h - pad; }
    tip.style.left = Math.max(4, x) + "px";
    tip.style.top = Math.max(4, y) + "px";
  }

  sections.forEach(function (section) {
    var svg = section.querySelector("svg.map");
    var source = section.querySelector("script.points");
    if (!svg || !source) { return; }
    var data = JSON.parse(source.textContent);
    var marks = Array.prototype.slice.call(svg.querySelectorAll(".pt"));
    function focus(c) {
      if (c === null || c < 0) { svg.classList.remove("focus"); return; }
      svg.classList.add("focus");
      marks.forEach(function (m) { m.classList.toggle("on", data.p[+m.getAttribute("data-i")][3] === c); });
    }
    svg.addEventListener("mouseover", function (ev) {
      var m = ev.target;
      if (!m.classList || !m.classList.contains("pt")) { return; }
      var p = data.p[+m.getAttribute("data-i")];
      var c = p[3] >= 0 ? data.c[p[3]] : null;
      tip.textContent = "";
      tip.appendChild(el("div", "t", p[1]));
      var meta = el("div", "m");
      meta.appendChild(el("span", "o " + p[2], OUTCOME[p[2]]));
      meta.appendChild(el("span", "", c ? "cluster " + c[0] + " \u00b7 " + c[1] : "in no lasting cluster"));
      tip.appendChild(meta);
      tip.appendChild(el("div", "id", p[0]));
      tip.hidden = false;
      place(ev);
    });
    svg.addEventListener("mousemove", function (ev) { if (!tip.hidden) { place(ev); } });
    svg.addEventListener("mouseout", function (ev) {
      if (ev.target.classList && ev.target.classList.contains("pt")) { tip.hidden = true; }
    });
    Array.prototype.slice.call(section.querySelectorAll("[data-c]")).forEach(function (item) {
      var c = +item.getAttribute("data-c");
      item.addEventListener("mouseenter", function () { focus(c); });
      item.addEventListener("mouseleave", function () { focus(null); });
      item.addEventListener("focus", function () { focus(c); });
      item.addEventListener("blur", function () { focus(null); });
    });

    var list = section.querySelector(".insights");
    if (!list) { return; }
    Array.prototype.slice.call(section.querySelectorAll(".filters input[type=checkbox]")).forEach(function (box) {
      box.addEventListener("change", function () { list.classList.toggle("hide-" + box.value, !box.checked); });
    });
    var search = section.querySelector(".filters input[type=search]");
    var cards = Array.prototype.slice.call(list.querySelectorAll(".ins"));
    if (search) {
      search.addEventListener("input", function () {
        var q = search.value.trim().toLowerCase();
        cards.forEach(function (card) {
          card.classList.toggle("miss", q !== "" && card.textContent.toLowerCase().indexOf(q) < 0);
        });
      });
    }
  });
})();
"""
