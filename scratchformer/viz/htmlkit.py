"""What the two offline pages share (the attention explorer and the training report): the
page skeleton with its Content-Security-Policy, data embedded as inert JSON, and a small
JavaScript kit — colour ramps with a legend, a labelled heatmap table, canvas heatmaps.

Nothing here fetches anything: the policy ``default-src 'none'`` forbids every request
(a live page served by ``report --serve`` allows ``connect-src 'self'`` and nothing more).
Token text reaches the page only as JSON data and is put into it with ``textContent``,
never parsed as HTML: a corpus holding ``<script>`` shows as those characters.
"""

from __future__ import annotations

import html
import json
import re

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:")

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 18px 24px;
       color: #222; }
h1 { font-size: 19px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 0 0 2px; }
.caption, .what { color: #555; font-size: 12.5px; margin: 2px 0 8px; }
.what code, .caption code { background: #f2f2f2; padding: 0 4px; border-radius: 3px; }
button { font: inherit; padding: 2px 9px; border: 1px solid #bbb; background: #fafafa;
         border-radius: 4px; cursor: pointer; }
button.on { background: #2166ac; color: #fff; border-color: #2166ac; }
.legend { display: inline-flex; align-items: center; gap: 6px; font-size: 12px; color: #444; }
.legend canvas { border: 1px solid #ccc; }
table.hm { border-collapse: collapse; }
table.hm td.cell { padding: 0; border: 1px solid #fff; text-align: center; font-size: 10px; }
table.hm td.cell.hl { outline: 2px solid #d6604d; }
table.hm th { font: 12px ui-monospace, Menlo, Consolas, monospace; font-weight: normal;
              padding: 0 4px; white-space: pre; }
table.hm th.k { vertical-align: bottom; padding: 2px 0; }
table.hm th.k.long span { writing-mode: vertical-rl; transform: rotate(180deg); }
table.hm th.q { text-align: right; }
table.hm th.axis { font: 12px system-ui, sans-serif; color: #2166ac; }
table.hm th.axis-q { writing-mode: vertical-rl; transform: rotate(180deg); padding: 0 2px; }
table.hm th.hl { color: #d6604d; font-weight: bold; }
"""

JS = r"""
var SF = (function () {
  "use strict";
  var RAMPS = {   // sequential: white -> dark blue (attention); viridis (log-scale metrics)
    blues: [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]],
    viridis: [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]]};
  function rgb(ramp, t) {                                 // t in [0, 1] -> [r, g, b]
    var R = RAMPS[ramp]; t = Math.max(0, Math.min(1, isFinite(t) ? t : 0));
    var x = t * (R.length - 1), i = Math.min(Math.floor(x), R.length - 2), f = x - i;
    return [0, 1, 2].map(function (c) { return Math.round(R[i][c] + f * (R[i + 1][c] - R[i][c])); });
  }
  function css(c) { return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")"; }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var a in attrs || {}) e.setAttribute(a, attrs[a]);
    if (text !== undefined) e.textContent = text;           // text, never markup
    return e;
  }
  function show(t) {                                      // blanks made visible
    return t === " " ? "\u2423" : t.replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
  }
  function fmt(v) { return Math.abs(v) >= 100 || (Math.abs(v) < 0.01 && v !== 0) ? v.toExponential(1) : +v.toPrecision(3) + ""; }
  function legend(box, ramp, lo, hi, label) {             // colour bar: lo .. hi
    box.innerHTML = ""; box.className = "legend";
    var c = el("canvas", {width: 160, height: 10}), g = c.getContext("2d");
    for (var x = 0; x < 160; x++) { g.fillStyle = css(rgb(ramp, x / 159)); g.fillRect(x, 0, 1, 10); }
    box.appendChild(el("span", {"class": "lo"}, fmt(lo))); box.appendChild(c);
    box.appendChild(el("span", {"class": "hi"}, fmt(hi)));
    if (label) box.appendChild(el("span", {}, label));
  }
  // A labelled (rows x cols) heatmap: rows = queries down, cols = keys across.
  function heatTable(t, M, rows, cols, o) {
    t.innerHTML = "";
    var vmax = o.vmax, size = o.cell, top = el("tr", {});
    top.appendChild(el("th", {})); top.appendChild(el("th", {}));
    top.appendChild(el("th", {"class": "axis axis-k", colspan: cols.length}, o.colTitle));
    t.appendChild(top);
    var head = el("tr", {}); head.appendChild(el("th", {})); head.appendChild(el("th", {}));
    cols.forEach(function (tok, k) {
      var s = show(tok), th = el("th", {"class": "k" + (s.length > 2 ? " long" : ""), "data-k": k});
      th.appendChild(el("span", {}, s)); head.appendChild(th);
    });
    t.appendChild(head);
    rows.forEach(function (tok, q) {
      var tr = el("tr", {});
      if (q === 0) tr.appendChild(el("th", {"class": "axis axis-q", rowspan: rows.length}, o.rowTitle));
      tr.appendChild(el("th", {"class": "q", "data-q": q}, show(tok)));
      cols.forEach(function (ktok, k) {
        var w = M[q][k], c = rgb("blues", w / vmax);
        var td = el("td", {"class": "cell", "data-q": q, "data-k": k, "data-w": w.toFixed(4),
                           title: JSON.stringify(tok) + " \u2192 " + JSON.stringify(ktok) + ": " + w.toFixed(3)});
        td.style.background = css(c); td.style.width = td.style.height = size + "px";
        td.style.minWidth = size + "px";
        if (size >= 30) { td.textContent = w.toFixed(2).replace(/^0/, ""); td.style.color = w / vmax > 0.55 ? "#fff" : "#333"; }
        if (o.hover) td.addEventListener("mouseenter", function () { o.hover(q, k, w, td); });
        tr.appendChild(td);
      });
      t.appendChild(tr);
    });
  }
  // A matrix drawn on a canvas, px pixels a cell (small multiples, layer x step maps).
  function heatCanvas(cv, M, px, ramp, lo, hi) {
    var R = M.length, C = R ? M[0].length : 0;
    cv.width = Math.max(1, C * px); cv.height = Math.max(1, R * px);
    var g = cv.getContext("2d");
    for (var r = 0; r < R; r++) for (var c = 0; c < C; c++) {
      var v = M[r][c];
      g.fillStyle = v === null || !isFinite(v) ? "#ddd" : css(rgb(ramp, (v - lo) / ((hi - lo) || 1)));
      g.fillRect(c * px, r * px, px, px);
    }
  }
  function matMax(M) { var m = 0; M.forEach(function (r) { r.forEach(function (v) { if (v > m) m = v; }); }); return m || 1; }
  return {rgb: rgb, css: css, el: el, show: show, fmt: fmt, legend: legend,
          heatTable: heatTable, heatCanvas: heatCanvas, matMax: matMax};
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="@@CSP@@">
@@HEAD@@<title>@@TITLE@@</title>
<style>@@CSS@@</style>
</head>
<body>
@@BODY@@
<script type="application/json" id="page-data">@@DATA@@</script>
<script>@@JS@@</script>
</body>
</html>
"""


def json_blob(data) -> str:
    """``data`` as JSON safe inside ``<script type="application/json">``: every ``<`` is
    written ``\\u003c`` (the same character to JSON.parse, inert to the HTML parser), so
    no text can close the element (``</script>``) or open a comment (``<!--``)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).replace("<", "\\u003c")


def page(title: str, body: str, css: str, js: str, data, *, csp: str = CSP, head: str = "") -> str:
    """One self-contained page: the kit's CSS and JS, then ``css``/``js``, ``data`` as the JSON
    of ``#page-data``. ``body`` and ``head`` are trusted markup (ours); ``title`` is escaped."""
    parts = {"CSP": csp, "HEAD": head, "TITLE": html.escape(title), "CSS": CSS + css,
             "BODY": body.replace("@@TITLE@@", html.escape(title)), "DATA": json_blob(data),
             "JS": JS + js}
    # one pass, so text from the user can never be taken for a placeholder
    return re.sub(r"@@([A-Z]+)@@", lambda m: parts[m.group(1)], _PAGE)
