"""An offline, interactive attention explorer: ONE self-contained HTML file.

    rec = scratchformer.viz.attention_for_text(model, task, "Nov 27, 2026")   # toy task
    rec = scratchformer.viz.attention_for_gpt(model, tokenizer, "ROMEO:")       # char GPT
    rec = scratchformer.viz.attention_for_translation(model, bpe, "In the beginning")
    write_attention_html(rec, "attn.html")          # open it in any browser, no network

The page embeds the weights of every layer and head of every attention kind the model
has — encoder self-attention, decoder masked self-attention and cross-attention for the
encoder–decoder, causal self-attention for the GPT — as JSON, and draws them with inline
JavaScript and CSS (``htmlkit``): no CDN, no external file, no request of any kind, so it
works from a laptop on a plane (bertviz, which needs its CDN, renders blank there).
Choose the kind, the layer and the head (or the mean over heads); then

- the *token view* (left) joins every query token to the keys it attends to, line
  opacity = weight; hover a query token to see only its lines and its weights on the
  keys, hover a key token to see who attends to it;
- the *heatmap* (right): rows are queries (down), columns keys (across) — for
  cross-attention, target rows and source columns — each row a softmax summing to 1.
  The colour scale runs from 0 to the largest weight shown (its legend says which), so
  the mean over heads, flatter than any one head, is as readable as a single head; cells
  grow to use the window's width and print their weight once they are large enough.

Needs neither matplotlib nor anything else outside the standard library and NumPy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .htmlkit import page

_CSS = """
.io { color: #555; margin-bottom: 10px; }
.io code { background: #f2f2f2; padding: 1px 5px; border-radius: 3px; white-space: pre-wrap; }
.controls { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; margin-bottom: 10px; }
.controls .group { display: flex; gap: 4px; align-items: center; }
select { font: inherit; padding: 2px 4px; }
.views { display: flex; gap: 28px; align-items: flex-start; }
#hmbox { flex: 1 1 auto; min-width: 0; overflow-x: auto; }
.tokview { display: flex; align-items: flex-start; }
.col { display: flex; flex-direction: column; }
.tok { height: 22px; line-height: 22px; padding: 0 6px; font-family: ui-monospace, Menlo, Consolas,
       monospace; white-space: pre; cursor: default; border-radius: 3px; min-width: 14px; }
#queries .tok { text-align: right; }
.tok.hl { outline: 2px solid #d6604d; }
.muted { color: #999; }
svg line { stroke: #2166ac; }
#status { margin-top: 10px; min-height: 20px; font-family: ui-monospace, Menlo, monospace; }
"""

_BODY = """<h1>@@TITLE@@</h1>
<div class="io" id="io"></div>
<div class="controls">
  <div class="group">attention: <span id="kinds" class="group"></span></div>
  <div class="group"><select id="layer" aria-label="layer"></select></div>
  <div class="group">head: <span id="heads" class="group"></span></div>
  <div id="legend"></div>
</div>
<div id="what" class="caption"></div>
<div class="views">
  <div><div class="caption">queries (left) &rarr; keys (right); line opacity = weight</div>
       <div id="tokview" class="tokview"></div></div>
  <div id="hmbox"><div class="caption">rows: queries (down), columns: keys (across); each row
       is softmax(q&middot;k/&radic;d<sub>h</sub>) over the keys and sums to 1</div>
       <table id="heatmap" class="hm"></table></div>
</div>
<div id="status"></div>"""

_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("page-data").textContent), el = SF.el;
  var KINDS = {enc: "encoder self-attention", dec: "decoder self-attention (masked)",
               cross: "cross-attention (decoder \u2192 encoder)", causal: "causal self-attention"};
  var AXES = {enc: ["query: source \u2193", "key: source \u2192"],
              dec: ["query: target (decoder input) \u2193", "key: target (decoder input) \u2192"],
              cross: ["query: target (decoder input) \u2193", "key: source (encoder output) \u2192"],
              causal: ["query: text \u2193", "key: text (this and earlier positions) \u2192"]};
  var ROW = 22, GAP = 120;
  var first = D.layers.cross ? "cross" : Object.keys(D.layers)[0];
  var S = {kind: first, layer: D.layers[first].length - 1, head: 0};   // last layer first
  var $ = function (id) { return document.getElementById(id); };

  function qTokens(k) { return k === "enc" ? D.src_tokens : D.tgt_tokens; }
  function kTokens(k) { return k === "dec" || k === "causal" ? D.tgt_tokens : D.src_tokens; }
  function matrix() {                                     // (Tq, Tk) for the current choice
    var W = D.layers[S.kind][S.layer];                    // (H, Tq, Tk)
    if (S.head !== "mean") return W[S.head];
    return W[0].map(function (row, q) {
      return row.map(function (_, k) {
        var s = 0; for (var h = 0; h < W.length; h++) s += W[h][q][k]; return s / W.length;
      });
    });
  }
  function button(id, label, on, click) {
    var b = el("button", {id: id, type: "button"}, label);
    if (on) b.className = "on";
    b.addEventListener("click", click);
    return b;
  }

  function io() {
    var box = $("io"); box.innerHTML = "";
    if (D.input_text === null || D.input_text === undefined) return;
    box.appendChild(document.createTextNode(D.kind === "gpt" ? "prompt " : "input "));
    box.appendChild(el("code", {}, D.input_text));
    if (D.output_text !== null && D.output_text !== undefined) {
      box.appendChild(document.createTextNode(D.kind === "gpt" ? " \u2192 continuation " : " \u2192 output "));
      box.appendChild(el("code", {}, D.output_text));
    }
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

  function tokenView(M, qt, kt, vmax) {
    var box = $("tokview"); box.innerHTML = "";
    var qc = el("div", {id: "queries", "class": "col"}), kc = el("div", {id: "keys", "class": "col"});
    qt.forEach(function (t, i) { qc.appendChild(el("div", {"class": "tok", "data-i": i}, SF.show(t))); });
    kt.forEach(function (t, i) { kc.appendChild(el("div", {"class": "tok", "data-i": i}, SF.show(t))); });
    var H = Math.max(qt.length, kt.length) * ROW;
    var NS = "http://www.w3.org/2000/svg";                // an XML namespace name, not a request
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", GAP); svg.setAttribute("height", H);
    for (var q = 0; q < qt.length; q++) for (var k = 0; k < kt.length; k++) {
      if (M[q][k] < 0.01) continue;
      var ln = document.createElementNS(NS, "line");
      ln.setAttribute("x1", 0); ln.setAttribute("y1", q * ROW + ROW / 2);
      ln.setAttribute("x2", GAP); ln.setAttribute("y2", k * ROW + ROW / 2);
      ln.setAttribute("stroke-width", 2); ln.setAttribute("stroke-opacity", M[q][k] / vmax);
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
        d.style.background = w === null ? "" : SF.css(SF.rgb("blues", w / vmax));
        d.style.color = w !== null && w / vmax > 0.55 ? "#fff" : "";
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

  function heatmap(M, qt, kt, vmax) {
    var t = $("heatmap"), box = $("hmbox");
    var room = box.clientWidth - 12 * Math.max.apply(null, qt.map(function (s) { return s.length; })) - 60;
    var cell = Math.max(16, Math.min(64, Math.floor(room / kt.length)));
    SF.heatTable(t, M, qt, kt, {vmax: vmax, cell: cell, rowTitle: AXES[S.kind][0],
      colTitle: AXES[S.kind][1], hover: function (q, k, w, td) {
        Array.prototype.forEach.call(t.querySelectorAll(".hl"), function (h) { h.classList.remove("hl"); });
        td.classList.add("hl");
        t.querySelector('th.q[data-q="' + q + '"]').classList.add("hl");
        t.querySelector('th.k[data-k="' + k + '"]').classList.add("hl");
        status("query " + q + " " + JSON.stringify(qt[q]) + " \u2192 key " + k + " " +
               JSON.stringify(kt[k]) + ": " + w.toFixed(4));
      }});
  }

  function status(s) { $("status").textContent = s; }

  function render() {
    controls();
    var M = matrix(), qt = qTokens(S.kind), kt = kTokens(S.kind), vmax = SF.matMax(M);
    $("what").textContent = KINDS[S.kind] + ", layer " + S.layer + ", " +
      (S.head === "mean" ? "mean over " + D.n_heads + " heads" : "head " + S.head) +
      "  \u2014  " + qt.length + " queries \u00d7 " + kt.length + " keys";
    SF.legend($("legend"), "blues", 0, vmax, "attention weight (0 \u2026 largest shown)");
    tokenView(M, qt, kt, vmax);
    heatmap(M, qt, kt, vmax);
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
  var resized = null;
  window.addEventListener("resize", function () { clearTimeout(resized); resized = setTimeout(render, 150); });
  io();
  render();
})();
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
    return page(title or "ScratchFormer attention explorer", _BODY, _CSS, _JS, data)


def write_attention_html(record, path, title: str | None = None) -> Path:
    """Write the explorer for ``record`` to ``path`` (UTF-8); returns ``Path(path)``."""
    path = Path(path)
    try:
        text = attention_html(record, title).encode("utf-8")  # every check before the file
    except UnicodeEncodeError as e:
        raise ValueError(f"the page cannot be written as UTF-8: {e}") from None
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text)
    return path


__all__ = ["attention_html", "write_attention_html"]
