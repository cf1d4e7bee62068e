"""The inline style and script of the HTML report (see html_report).

The script only runs the table picker: it reads the page's embedded JSON, marks the bars
of the ranks holding the chosen table and lists its pieces. It writes text with
``textContent`` only, so no name from a plan is ever parsed as markup. A link ending in
``#table=NAME`` opens the page with that table chosen.
"""

PAGE_STYLE = """
body { font: 14px/1.45 "Liberation Sans", Arial, sans-serif; margin: 20px 24px; color: #1f2328;
  background: #fff; }
h1 { font-size: 20px; margin: 0 0 10px; }
h2 { font-size: 17px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 16px 0 4px; }
p.lead { margin: 0 0 8px; font-weight: bold; }
pre.summary { background: #f6f8fa; border: 1px solid #d8dee4; border-radius: 6px;
  padding: 8px 10px; margin: 0 0 6px; white-space: pre-wrap;
  font: 12.5px/1.5 "DejaVu Sans Mono", "Liberation Mono", monospace; }
.picker { margin: 10px 0 14px; }
.picker select { font: inherit; max-width: 40em; }
.panels { display: grid; gap: 20px 28px; }
.panels.n2 { grid-template-columns: repeat(auto-fit, minmax(880px, 1fr)); }
.panel { min-width: 0; }
.scroll { overflow-x: auto; }
.legend { list-style: none; margin: 2px 0 0; padding: 0; display: flex; flex-wrap: wrap;
  gap: 4px 16px; font-size: 13px; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 5px;
  vertical-align: -1px; border-radius: 2px; }
.note { color: #57606a; font-style: italic; }
svg.chart { display: block; max-width: none; font: 12px "Liberation Sans", Arial, sans-serif; }
svg.chart .grid { stroke: #e4e7eb; }
svg.chart .axis { stroke: #57606a; }
svg.chart .ytick { text-anchor: end; fill: #57606a; }
svg.chart .xtick { text-anchor: middle; fill: #57606a; }
svg.chart .xlabel { text-anchor: middle; fill: #1f2328; font-size: 13px; }
svg.chart .ylabel { text-anchor: middle; fill: #1f2328; font-size: 13px; }
svg.chart .hit { fill: transparent; }
svg.chart g.bar:hover .hit { fill: rgba(31, 35, 40, 0.07); }
svg.chart .mark { fill: #cf222e; display: none; }
svg.chart.picking g.bar.picked .mark { display: inline; }
svg.chart.picking g.bar:not(.picked) .seg { opacity: 0.22; }
svg.chart .rule { stroke-width: 1.5; }
svg.chart .rule.limit { stroke: #cf222e; stroke-dasharray: 7 4; }
svg.chart .rule.mean { stroke: #1f2328; stroke-dasharray: 2 3; }
svg.chart .rule-label.limit { fill: #cf222e; }
svg.chart .rule-label.mean { fill: #1f2328; }
.dp { fill: #4e79a7; background: #4e79a7; }
.tp { fill: #f28e2b; background: #f28e2b; }
.rs { fill: #59a14f; background: #59a14f; }
.host { fill: #b07aa1; background: #b07aa1; }
.p0 { fill: #4e79a7; background: #4e79a7; }
.p1 { fill: #f28e2b; background: #f28e2b; }
.p2 { fill: #e15759; background: #e15759; }
.p3 { fill: #76b7b2; background: #76b7b2; }
.p4 { fill: #59a14f; background: #59a14f; }
.p5 { fill: #edc948; background: #edc948; }
.p6 { fill: #b07aa1; background: #b07aa1; }
.pieces { max-height: 260px; overflow-y: auto; }
.pieces p { margin: 8px 0 2px; }
.pieces table { border-collapse: collapse; margin-top: 4px; font-size: 13px; }
.pieces th, .pieces td { padding: 1px 10px 1px 0; text-align: right; }
.pieces th { border-bottom: 1px solid #d8dee4; }
"""

PAGE_SCRIPT = """
"use strict";
(function () {
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var picker = document.getElementById("table-picker");
  var GROUPS = { dp: "data-parallel", tp: "table-parallel", rs: "row-sliced" };
  var UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  var MOST_ROWS = 64;

  function size(count) {  // as the planner prints bytes: two decimals, ties to even
    var unit = 0;
    while (count >= 1024 && unit < UNITS.length - 1) { count /= 1024; unit += 1; }
    if (unit === 0) { return count + " B"; }
    var hundredths = Math.round(count * 100);
    if (Math.abs(count * 100 % 1) === 0.5 && hundredths % 2 !== 0) { hundredths -= 1; }
    return (hundredths / 100).toFixed(2) + " " + UNITS[unit];
  }

  function add(parent, tag, text) {
    var node = document.createElement(tag);
    if (text !== undefined) { node.textContent = text; }
    parent.appendChild(node);
    return node;
  }

  function describe(box, name, table) {
    box.replaceChildren();
    if (name === null) { return; }
    if (!table) { add(box, "p", name + ": not in this plan"); return; }
    var group = table[0], rows = table[1], width = table[2], perElement = table[3];
    var pieces = table[4];
    var head = name + ": " + (GROUPS[group] || "no group") + ", " + rows.toLocaleString("en") +
      " x " + width + ", " + size(rows * width * perElement);
    if (group === "dp") {
      add(box, "p", head + "; a copy on every rank");
      return;
    }
    var ranks = new Set(pieces.map(function (piece) { return piece[0]; }));
    add(box, "p", head + "; " + pieces.length + " piece" + (pieces.length === 1 ? "" : "s") +
      " on " + ranks.size + " rank" + (ranks.size === 1 ? "" : "s"));
    var grid = add(box, "table");
    var top = add(grid, "tr");
    ["rank", "rows", "cols", "bytes", "memory"].forEach(function (title) {
      add(top, "th", title);
    });
    pieces.slice(0, MOST_ROWS).forEach(function (piece) {
      var line = add(grid, "tr");
      add(line, "td", String(piece[0]));
      add(line, "td", piece[1] + ":" + piece[2]);
      add(line, "td", piece[3] + ":" + piece[4]);
      add(line, "td", size((piece[2] - piece[1]) * (piece[4] - piece[3]) * perElement));
      add(line, "td", piece[5] ? "host" : "device");
    });
    if (pieces.length > MOST_ROWS) {
      add(box, "p", "... and " + (pieces.length - MOST_ROWS) + " more pieces");
    }
  }

  function show() {
    var index = picker.value === "" ? -1 : Number(picker.value);
    var name = index < 0 ? null : data.names[index];
    data.panels.forEach(function (tables, panel) {
      var table = index < 0 ? null : tables[index];
      var holders = new Set(table ? table[4].map(function (piece) { return piece[0]; }) : []);
      var everyRank = table !== null && table[0] === "dp";
      var section = document.querySelector('section[data-panel="' + panel + '"]');
      section.querySelectorAll("svg.chart").forEach(function (svg) {
        svg.classList.toggle("picking", index >= 0);
        svg.querySelectorAll("g.bar").forEach(function (bar) {
          var rank = Number(bar.getAttribute("data-rank"));
          bar.classList.toggle("picked", everyRank || holders.has(rank));
        });
      });
      describe(document.getElementById("pieces-" + panel), name, table);
    });
  }

  var wanted = location.hash.indexOf("#table=") === 0 ?
    data.names.indexOf(decodeURIComponent(location.hash.slice(7))) : -1;
  if (wanted >= 0) { picker.value = String(wanted); }
  picker.addEventListener("change", show);
  show();
})();
"""
