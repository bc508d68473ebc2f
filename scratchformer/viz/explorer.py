"""An offline, interactive attention explorer: ONE self-contained HTML file.

    rec = scratchformer.viz.attention_for_text(model, task, "Nov 27, 2026")
    write_attention_html(rec, "attn.html")          # open it in any browser, no network

The page embeds the weights of every layer and head of all three attention kinds
(encoder self-attention, decoder masked self-attention, cross-attention) as JSON, and
draws them with a few lines of inline JavaScript and CSS — no CDN, no external file, no
request of any kind, so it works from a laptop on a plane or an air-gapped machine
(bertviz, which needs its CDN, renders blank there). Choose the kind, the layer and the
head (or the mean over heads); then

- the *token view* (left) joins every query token to the keys it attends to, line
  opacity = weight; hover a query token to see only its lines and its weights on the
  keys, hover a key token to see who attends to it;
- the *heatmap* (right) shows the (Tq, Tk) matrix; hover a cell for its exact value.

Needs neither matplotlib nor anything else outside the standard library and NumPy.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np

_CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 18px; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; }
.io { color: #555; margin-bottom: 10px; }
.io code { background: #f2f2f2; padding: 1px 5px; border-radius: 3px; }
.controls { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; margin-bottom: 12px; }
.controls .group { display: flex; gap: 4px; align-items: center; }
button { font: inherit; padding: 3px 9px; border: 1px solid #bbb; background: #fafafa;
         border-radius: 4px; cursor: pointer; }
button.on { background: #2166ac; color: #fff; border-color: #2166ac; }
select { font: inherit; padding: 2px 4px; }
.views { display: flex; gap: 36px; align-items: flex-start; flex-wrap: wrap; }
.tokview { display: flex; align-items: flex-start; }
.col { display: flex; flex-direction: column; }
.tok { height: 22px; line-height: 22px; padding: 0 6px; font-family: ui-monospace, Menlo, Consolas,
       monospace; white-space: pre; cursor: default; border-radius: 3px; min-width: 14px; }
#queries .tok { text-align: right; }
.tok.hl { outline: 2px solid #d6604d; }
.muted { color: #999; }
svg line { stroke: #2166ac; }
table.hm { border-collapse: collapse; }
table.hm td.cell { width: 20px; height: 20px; padding: 0; border: 1px solid #fff; }
table.hm td.cell.hl { outline: 2px solid #d6604d; }
table.hm th { font: 12px ui-monospace, Menlo, Consolas, monospace; font-weight: normal;
              padding: 0 4px; white-space: pre; }
table.hm th.k { vertical-align: bottom; height: 40px; }
table.hm th.k span { writing-mode: vertical-rl; transform: rotate(180deg); }
table.hm th.hl { color: #d6604d; font-weight: bold; }
#status { margin-top: 10px; min-height: 20px; font-family: ui-monospace, Menlo, monospace; }
.caption { color: #666; font-size: 12px; margin: 4px 0 6px; }
"""

_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("attn-data").textContent);
  var KINDS = {enc: "encoder self-attention", dec: "decoder self-attention (masked)",
               cross: "cross-attention (decoder \u2192 encoder)"};
  var ROW = 22, GAP = 140;
  var first = D.layers.cross ? "cross" : Object.keys(D.layers)[0];
  var S = {kind: first, layer: D.layers[first].length - 1, head: 0};   // last layer first
  var $ = function (id) { return document.getElementById(id); };

  function qTokens(k) { return k === "enc" ? D.src_tokens : D.tgt_tokens; }
  function kTokens(k) { return k === "dec" ? D.tgt_tokens : D.src_tokens; }
  function show(t) { return t === " " ? "\u2423" : t; }
  function matrix() {                                     // (Tq, Tk) for the current choice
    var W = D.layers[S.kind][S.layer];                    // (H, Tq, Tk)
    if (S.head !== "mean") return W[S.head];
    return W[0].map(function (row, q) {
      return row.map(function (_, k) {
        var s = 0; for (var h = 0; h < W.length; h++) s += W[h][q][k]; return s / W.length;
      });
    });
  }
  function color(w) {                                     // white -> #2166ac
    var r = Math.round(255 - (255 - 33) * w), g = Math.round(255 - (255 - 102) * w),
        b = Math.round(255 - (255 - 172) * w);
    return "rgb(" + r + "," + g + "," + b + ")";
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var a in attrs) e.setAttribute(a, attrs[a]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function button(id, label, on, click) {
    var b = el("button", {id: id, type: "button"}, label);
    if (on) b.className = "on";
    b.addEventListener("click", click);
    return b;
  }

  function controls() {
    var kinds = $("kinds"); kinds.innerHTML = "";
    Object.keys(KINDS).forEach(function (k) {
      if (!D.layers[k]) return;
      kinds.appendChild(button("kind-" + k, k, k === S.kind, function () {
        S.kind = k; S.layer = Math.min(S.layer, D.layers[k].length - 1); render();
      }));
    });
    var sel = $("layer"); sel.innerHTML = "";
    D.layers[S.kind].forEach(function (_, i) {
      var o = el("option", {value: i}, "layer " + i); if (i === S.layer) o.selected = true;
      sel.appendChild(o);
    });
    var heads = $("heads"); heads.innerHTML = "";
    for (var h = 0; h < D.n_heads; h++) (function (h) {
      heads.appendChild(button("head-" + h, String(h), S.head === h, function () {
        S.head = h; render();
      }));
    })(h);
    heads.appendChild(button("head-mean", "mean", S.head === "mean", function () {
      S.head = "mean"; render();
    }));
  }

  function tokenView(M, qt, kt) {
    var box = $("tokview"); box.innerHTML = "";
    var qc = el("div", {id: "queries", "class": "col"}), kc = el("div", {id: "keys", "class": "col"});
    qt.forEach(function (t, i) { qc.appendChild(el("div", {"class": "tok", "data-i": i}, show(t))); });
    kt.forEach(function (t, i) { kc.appendChild(el("div", {"class": "tok", "data-i": i}, show(t))); });
    var H = Math.max(qt.length, kt.length) * ROW;
    var NS = "http://www.w3.org/2000/svg";                // an XML namespace name, not a request
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", GAP); svg.setAttribute("height", H);
    for (var q = 0; q < qt.length; q++) for (var k = 0; k < kt.length; k++) {
      if (M[q][k] < 0.01) continue;
      var ln = document.createElementNS(NS, "line");
      ln.setAttribute("x1", 0); ln.setAttribute("y1", q * ROW + ROW / 2);
      ln.setAttribute("x2", GAP); ln.setAttribute("y2", k * ROW + ROW / 2);
      ln.setAttribute("stroke-width", 2); ln.setAttribute("stroke-opacity", M[q][k]);
      ln.setAttribute("data-q", q); ln.setAttribute("data-k", k);
      svg.appendChild(ln);
    }
    box.appendChild(qc); box.appendChild(svg); box.appendChild(kc);
    function focus(side, i) {                             // side "q" or "k", i or null
      Array.prototype.forEach.call(svg.childNodes, function (ln) {
        ln.style.display = (i === null || +ln.getAttribute("data-" + side) === i) ? "" : "none";
      });
      var own = side === "q" ? qc : kc, other = side === "q" ? kc : qc;
      Array.prototype.forEach.call(own.childNodes, function (d, j) {
        d.classList.toggle("hl", i === j); d.classList.toggle("muted", i !== null && i !== j);
        d.style.background = "";
      });
      Array.prototype.forEach.call(other.childNodes, function (d, j) {
        d.classList.remove("muted"); d.classList.remove("hl");
        var w = i === null ? null : (side === "q" ? M[i][j] : M[j][i]);
        d.style.background = w === null ? "" : color(w);
        d.style.color = w !== null && w > 0.55 ? "#fff" : "";
        d.title = w === null ? "" : w.toFixed(3);
      });
      if (i !== null) status(side === "q" ? "query " + i + " " + JSON.stringify(qt[i]) +
        " attends to the keys shaded on the right" : "key " + i + " " + JSON.stringify(kt[i]) +
        " is read by the queries shaded on the left");
    }
    Array.prototype.forEach.call(qc.childNodes, function (d, i) {
      d.addEventListener("mouseenter", function () { focus("q", i); });
      d.addEventListener("mouseleave", function () { focus("q", null); });
    });
    Array.prototype.forEach.call(kc.childNodes, function (d, i) {
      d.addEventListener("mouseenter", function () { focus("k", i); });
      d.addEventListener("mouseleave", function () { focus("k", null); });
    });
  }

  function heatmap(M, qt, kt) {
    var t = $("heatmap"); t.innerHTML = "";
    var head = el("tr", {}); head.appendChild(el("th", {}));
    kt.forEach(function (tok, k) {
      var th = el("th", {"class": "k", "data-k": k}); th.appendChild(el("span", {}, show(tok)));
      head.appendChild(th);
    });
    t.appendChild(head);
    qt.forEach(function (tok, q) {
      var tr = el("tr", {}); tr.appendChild(el("th", {"class": "q", "data-q": q}, show(tok)));
      kt.forEach(function (ktok, k) {
        var w = M[q][k];
        var td = el("td", {"class": "cell", "data-q": q, "data-k": k, "data-w": w.toFixed(4),
                           title: JSON.stringify(tok) + " \u2192 " + JSON.stringify(ktok) + ": " + w.toFixed(3)});
        td.style.background = color(w);
        td.addEventListener("mouseenter", function () {
          td.classList.add("hl");
          t.querySelector('th.q[data-q="' + q + '"]').classList.add("hl");
          t.querySelector('th.k[data-k="' + k + '"]').classList.add("hl");
          status("query " + q + " " + JSON.stringify(tok) + " \u2192 key " + k + " " +
                 JSON.stringify(ktok) + ": " + w.toFixed(4));
        });
        td.addEventListener("mouseleave", function () {
          td.classList.remove("hl");
          Array.prototype.forEach.call(t.querySelectorAll("th.hl"), function (h) { h.classList.remove("hl"); });
        });
        tr.appendChild(td);
      });
      t.appendChild(tr);
    });
  }

  function status(s) { $("status").textContent = s; }

  function render() {
    controls();
    var M = matrix(), qt = qTokens(S.kind), kt = kTokens(S.kind);
    $("what").textContent = KINDS[S.kind] + ", layer " + S.layer + ", " +
      (S.head === "mean" ? "mean over " + D.n_heads + " heads" : "head " + S.head) +
      "  \u2014  " + qt.length + " queries \u00d7 " + kt.length + " keys";
    tokenView(M, qt, kt);
    heatmap(M, qt, kt);
    document.body.setAttribute("data-state", JSON.stringify(S));
    status("hover a token or a cell");
  }

  $("layer").addEventListener("change", function (e) { S.layer = +e.target.value; render(); });
  document.addEventListener("keydown", function (e) {     // keys: h/l head, j/k layer
    if (e.key === "l" || e.key === "ArrowRight") S.head = S.head === "mean" ? 0 : (S.head + 1) % D.n_heads;
    else if (e.key === "h" || e.key === "ArrowLeft") S.head = S.head === "mean" ? D.n_heads - 1 : (S.head + D.n_heads - 1) % D.n_heads;
    else if (e.key === "j" || e.key === "ArrowDown") S.layer = (S.layer + 1) % D.layers[S.kind].length;
    else if (e.key === "k" || e.key === "ArrowUp") S.layer = (S.layer + D.layers[S.kind].length - 1) % D.layers[S.kind].length;
    else return;
    render();
  });
  render();
})();
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>@@TITLE@@</title>
<style>@@CSS@@</style>
</head>
<body>
<h1>@@TITLE@@</h1>
<div class="io">@@IO@@</div>
<div class="controls">
  <div class="group">attention: <span id="kinds" class="group"></span></div>
  <div class="group"><select id="layer" aria-label="layer"></select></div>
  <div class="group">head: <span id="heads" class="group"></span></div>
</div>
<div id="what" class="caption"></div>
<div class="views">
  <div><div class="caption">queries (left) &rarr; keys (right); line opacity = weight</div>
       <div id="tokview" class="tokview"></div></div>
  <div><div class="caption">rows: queries, columns: keys; each row sums to 1</div>
       <table id="heatmap" class="hm"></table></div>
</div>
<div id="status"></div>
<script type="application/json" id="attn-data">@@DATA@@</script>
<script>@@JS@@</script>
</body>
</html>
"""


def attention_html(record, title: str | None = None) -> str:
    """The explorer page for an ``AttentionRecord`` as one HTML string (inline JS/CSS/data)."""
    data = record.to_json() if hasattr(record, "to_json") else dict(record)
    if not data.get("layers"):
        raise ValueError("the record holds no attention maps")
    for kind, layers in data["layers"].items():  # NaN would draw a blank page
        if not np.isfinite(np.asarray(layers, dtype=np.float64)).all():
            raise ValueError(f"the {kind} attention weights hold NaN or infinite values (a diverged "
                             "model?): nothing meaningful to draw")
    for name in ("src_tokens", "tgt_tokens", "input_text", "output_text"):
        for text in (data.get(name) or []) if name.endswith("tokens") else [data.get(name) or ""]:
            try:
                str(text).encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{name}: {text!r} cannot be written as UTF-8 (a lone surrogate?)") from None
    # JSON inside <script>: a "<" could end the element early ("</script>") or start a
    # comment ("<!--"); \u003c is the same character to JSON.parse and inert to HTML
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    io = ""
    if data.get("input_text") is not None:
        io = f"input <code>{html.escape(data['input_text'])}</code>"
        if data.get("output_text") is not None:
            io += f" &rarr; output <code>{html.escape(data['output_text'])}</code>"
    parts = {"CSS": _CSS, "JS": _JS, "IO": io, "DATA": blob,
             "TITLE": html.escape(title or "ScratchFormer attention explorer")}
    # one pass, so text from the user can never be taken for a placeholder
    return re.sub(r"@@([A-Z]+)@@", lambda m: parts[m.group(1)], _PAGE)


def write_attention_html(record, path, title: str | None = None) -> Path:
    """Write the explorer for ``record`` to ``path`` (UTF-8); returns ``Path(path)``."""
    path = Path(path)
    try:
        page = attention_html(record, title).encode("utf-8")  # every check before the file
    except UnicodeEncodeError as e:
        raise ValueError(f"the page cannot be written as UTF-8: {e}") from None
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(page)
    return path


__all__ = ["attention_html", "write_attention_html"]
