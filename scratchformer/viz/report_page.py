"""The training report's page: markup, style and the JavaScript that draws it from the data
``report.load_run`` gathers (``#page-data``). Drawn with ``htmlkit``'s kit: SVG line charts,
canvas heatmaps, labelled tables; all text through ``textContent``.

State (the snapshot shown, the attention module and head) lives in the URL's ``#hash``, so
a page re-written by ``--watch`` and reloaded keeps what the reader was looking at; a live
page (``--serve``) re-reads ``data.json`` every few seconds instead.
"""

CSS = """
section { margin: 18px 0 26px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 18px 28px; }
svg.chart { width: 100%; height: 230px; overflow: visible; }
svg.chart text { font: 11px system-ui, sans-serif; fill: #444; }
svg.chart .grid line { stroke: #eee; } svg.chart path.line { fill: none; stroke-width: 1.6; }
.keys { font-size: 12px; color: #444; } .keys span { margin-right: 12px; white-space: nowrap; }
.keys i { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin-right: 4px; }
#insights li { margin: 3px 0; } #insights .where { font-family: ui-monospace, monospace; }
#insights .meaning { color: #666; } .sev-warn::marker { color: #d6604d; } .sev-info::marker { color: #2166ac; }
.lxs { display: flex; align-items: flex-start; gap: 6px; overflow-x: auto; }
.lxs .rows { display: flex; flex-direction: column; font: 11px ui-monospace, monospace; text-align: right; }
.lxs canvas { image-rendering: pixelated; border: 1px solid #ddd; }
.xt { position: relative; height: 16px; font-size: 11px; color: #444; }
.xt span { position: absolute; transform: translateX(-50%); }
#snapbar { display: flex; align-items: center; gap: 12px; flex-wrap: wrap; margin: 6px 0; }
#step { width: min(640px, 90vw); }
.outputs { font-size: 13px; margin: 6px 0 10px; } .outputs code { background: #f2f2f2;
  padding: 1px 5px; border-radius: 3px; white-space: pre-wrap; }
.attviews { display: flex; flex-wrap: wrap; gap: 10px 36px; align-items: flex-start; }
.multiples { display: grid; gap: 4px 6px; align-items: center; margin: 8px 0 14px; }
.multiples canvas { border: 1px solid #ddd; cursor: pointer; width: 100%; image-rendering: pixelated; }
.multiples canvas.on { outline: 3px solid #d6604d; }
.multiples .rowname { font: 11px ui-monospace, monospace; text-align: right; padding-right: 4px; }
.multiples .colname { font-size: 11px; text-align: center; color: #444; }
.kv { font-size: 12.5px; column-width: 300px; column-gap: 28px; }
.kvrow { break-inside: avoid; display: flex; gap: 10px; padding: 1px 0; }
.kvrow .k { color: #666; font-family: ui-monospace, monospace; min-width: 150px; }
.kvrow .v { overflow-wrap: anywhere; }
#status { font-family: ui-monospace, monospace; font-size: 12px; min-height: 16px; color: #333; }
"""

BODY = """<h1>@@TITLE@@</h1>
<div class="caption" id="summary"></div>
<section><h2>Insights</h2>
<div class="what">Rules over the metrics and the attention snapshots, each with the step and the
layer where it first holds, and what it usually means (thresholds: <code>scratchformer/viz/insights.py</code>).</div>
<ul id="insights"></ul></section>
<section class="grid">
 <div><h2>Loss</h2><div class="what">Cross-entropy <code>L = &minus;(1/N) &Sigma; log p(y<sub>i</sub> | context)</code>
  in nats per token: training (mean over each logging window) and held-out evaluations; log scale.</div>
  <svg class="chart" id="chart-loss"></svg><div class="keys" id="keys-loss"></div></div>
 <div><h2>Evaluation metrics</h2><div class="what">Held-out scores at each evaluation, e.g. exact match =
  share of sequences decoded right, token accuracy = share of tokens whose argmax is right.</div>
  <svg class="chart" id="chart-metrics"></svg><div class="keys" id="keys-metrics"></div></div>
 <div><h2>Learning rate</h2><div class="what">The optimizer's step size at each logged step,
  <code>lr(step)</code> from the schedule: linear warm-up, then decay.</div>
  <svg class="chart" id="chart-lr"></svg><div class="keys" id="keys-lr"></div></div>
 <div><h2>Throughput and gradient norm</h2><div class="what">Tokens per second of training time in each
  logging window (evaluation excluded), and the total <code>&Vert;g&Vert;<sub>2</sub> = &radic;&Sigma;g&sup2;</code>
  over all parameters before clipping.</div>
  <svg class="chart" id="chart-tps"></svg><div class="keys" id="keys-tps"></div>
  <svg class="chart" id="chart-gnorm"></svg><div class="keys" id="keys-gnorm"></div></div>
</section>
<section><h2>Gradient norm per layer</h2><div class="what">Layer &times; step:
 <code>&Vert;g&Vert;<sub>2</sub></code> of each layer's parameters as the optimizer reads them (after clipping),
 every few steps; colour = log<sub>10</sub>. Rows top to bottom in the model's order (input first, output last).</div>
 <div id="legend-gn"></div><div id="lxs-gn" class="lxs"></div></section>
<section><h2>Update / weight ratio per layer</h2><div class="what">Layer &times; step:
 <code>&Vert;&Delta;w&Vert; / &Vert;w&Vert;</code>, &Delta;w = w<sub>after</sub> &minus; w<sub>before</sub> of one optimizer
 step; colour = log<sub>10</sub>. Around 1e-3 is the usual rule of thumb (Adam on small models runs near 1e-2).</div>
 <div id="legend-ur"></div><div id="lxs-ur" class="lxs"></div></section>
<section id="attention"><h2>Attention on the probe, step by step</h2><div class="what">
 <code>a = softmax(q&middot;k<sup>T</sup> / &radic;d<sub>h</sub>)</code> of every layer and head on one fixed
 input, recorded at log-spaced steps: rows are queries (down), columns keys (across); for
 cross-attention, target rows and source columns; causal maps are 0 above the diagonal. Move
 the slider to watch the pattern form; click a small map to enlarge it. Each map is coloured from 0
 to its own largest weight (causal maps: leaving out the first row, whose one key always gets 1;
 the enlarged map's scale is in the legend).</div>
 <div id="snapbar"><input type="range" id="step" min="0" max="0" value="0" aria-label="snapshot">
  <b id="steplabel"></b><div id="legend-at"></div></div>
 <div class="outputs" id="outputs"></div>
 <div class="attviews"><div class="multiples" id="multiples"></div>
  <div><div class="caption" id="bigwhat"></div><table id="heatmap" class="hm"></table>
   <div id="status"></div></div></div>
</section>
<section><h2>Configuration</h2><div class="what">From the checkpoint: the model's
 (<code>model.*</code>) and the training's (<code>train.*</code>) settings, and what the run stored with them.</div>
 <div class="kv" id="config"></div></section>
<section><h2>Machine</h2><div class="what">Where the run trained, recorded by the monitor when it started.</div>
 <div class="kv" id="machine"></div></section>"""

JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("page-data").textContent), el = SF.el;
  var $ = function (id) { return document.getElementById(id); };
  var NS = "http://www.w3.org/2000/svg";                  // an XML namespace name, not a request
  var COLORS = ["#2166ac", "#d6604d", "#1b7837", "#762a83", "#e08214", "#4d4d4d"];
  var AXIS = {src: "source", tgt: "target (decoder input)", text: "text"}, ROWH = 16;
  var S = {snap: null, module: null, head: 0};
  try { var h = JSON.parse(decodeURIComponent(location.hash.slice(1))); if (h) S = h; } catch (e) {}

  function svgEl(tag, attrs, text) {
    var e = document.createElementNS(NS, tag);
    for (var a in attrs) e.setAttribute(a, attrs[a]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function ticks(lo, hi, n) {                             // ~n round numbers in [lo, hi]
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n || 1))), out = [];
    [1, 2, 5, 10].some(function (m) { if ((hi - lo) / (step * m) <= n) { step *= m; return true; } });
    for (var v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(v);
    return out;
  }
  // series: [{name, xs, ys, dots}]; o: {log, ylabel}
  function lineChart(id, series, o) {
    var svg = $(id), keys = $("keys-" + id.slice(6)); svg.innerHTML = ""; keys.innerHTML = "";
    series = series.filter(function (s) { return s.xs.length; });
    if (!series.length) { svg.style.display = "none"; keys.textContent = "nothing recorded in this run"; return; }
    svg.style.display = "";
    var W = svg.clientWidth || 480, H = 230, L = 56, R = 10, T = 8, B = 30;
    var f = o.log ? function (v) { return v > 0 ? Math.log10(v) : NaN; } : function (v) { return v; };
    var xs = [], ys = [];
    series.forEach(function (s) { xs = xs.concat(s.xs); s.ys.forEach(function (v) { if (v !== null && isFinite(f(v))) ys.push(f(v)); }); });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (!ys.length) { y0 = 0; y1 = 1; } if (y1 === y0) { y0 -= 0.5; y1 += 0.5; } if (x1 === x0) x1 = x0 + 1;
    var X = function (v) { return L + (v - x0) / (x1 - x0) * (W - L - R); };
    var Y = function (v) { return T + (1 - (v - y0) / (y1 - y0)) * (H - T - B); };
    var g = svgEl("g", {"class": "grid"}); svg.appendChild(g);
    var yt = o.log ? ticks(Math.floor(y0), Math.ceil(y1), 5).filter(function (v) { return v >= y0 - 1e-9 && v <= y1 + 1e-9 && v === Math.round(v); }) : ticks(y0, y1, 5);
    if (o.log && yt.length < 2) yt = ticks(y0, y1, 4);
    yt.forEach(function (v) {
      g.appendChild(svgEl("line", {x1: L, x2: W - R, y1: Y(v), y2: Y(v)}));
      svg.appendChild(svgEl("text", {x: L - 4, y: Y(v) + 4, "text-anchor": "end"}, SF.fmt(o.log ? Math.pow(10, v) : v)));
    });
    ticks(x0, x1, 6).forEach(function (v) {
      svg.appendChild(svgEl("text", {x: X(v), y: H - B + 14, "text-anchor": "middle"}, String(Math.round(v))));
    });
    svg.appendChild(svgEl("text", {x: W - R, y: H - 2, "text-anchor": "end"}, "step"));
    svg.appendChild(svgEl("text", {x: 12, y: T + (H - T - B) / 2, transform: "rotate(-90 12 " + (T + (H - T - B) / 2) + ")", "text-anchor": "middle"}, o.ylabel));
    svg.appendChild(svgEl("line", {x1: L, x2: L, y1: T, y2: H - B, stroke: "#999"}));
    svg.appendChild(svgEl("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#999"}));
    if (o.mark !== undefined && o.mark >= x0 && o.mark <= x1)   // the step the slider shows
      svg.appendChild(svgEl("line", {x1: X(o.mark), x2: X(o.mark), y1: T, y2: H - B, stroke: "#d6604d",
                                     "stroke-dasharray": "4 3", "class": "mark"}));
    series.forEach(function (s, i) {
      var c = COLORS[i % COLORS.length], d = "";
      s.xs.forEach(function (x, j) {
        var v = s.ys[j]; if (v === null || !isFinite(f(v))) return;
        if (s.dots) svg.appendChild(svgEl("circle", {cx: X(x), cy: Y(f(v)), r: 2.6, fill: c}));
        else d += (d ? "L" : "M") + X(x).toFixed(1) + "," + Y(f(v)).toFixed(1);
      });
      if (d) svg.appendChild(svgEl("path", {d: d, stroke: c, "class": "line"}));
      var k = el("span", {}); var sw = el("i", {}); sw.style.background = c;
      k.appendChild(sw); k.appendChild(document.createTextNode(s.name)); keys.appendChild(k);
    });
  }

  function header() {
    var t = D.train, last = t.step.length ? t.step[t.step.length - 1] : 0;
    $("summary").textContent = [D.kind, last + " steps logged", D.status].filter(Boolean).join(" \u00b7 ");
  }
  function insights() {
    var ul = $("insights"); ul.innerHTML = "";
    if (!D.insights.length) ul.appendChild(el("li", {}, "nothing flagged: gradients, updates, loss and attention look healthy by these rules"));
    D.insights.forEach(function (i) {
      var li = el("li", {"class": "sev-" + i.severity, "data-kind": i.kind});
      li.appendChild(el("b", {}, "step " + i.step + " "));
      li.appendChild(el("span", {"class": "where"}, i.where));
      li.appendChild(document.createTextNode(" \u2014 " + i.message + ". "));
      li.appendChild(el("span", {"class": "meaning"}, i.meaning));
      ul.appendChild(li);
    });
  }
  function charts() {
    var t = D.train, e = D.eval, loss = [{name: "training loss", xs: t.step, ys: t.loss}], met = [];
    Object.keys(e.series).forEach(function (k) {
      var s = {name: "eval " + k.replace(/_/g, " "), xs: e.step, ys: e.series[k], dots: true};
      (k.indexOf("loss") >= 0 ? loss : met).push(s);
    });
    var mark = A ? A.steps[Math.min(S.snap === null ? A.steps.length - 1 : S.snap, A.steps.length - 1)] : undefined;
    lineChart("chart-loss", loss, {log: true, ylabel: "nats / token", mark: mark});
    lineChart("chart-metrics", met, {ylabel: "score"});
    lineChart("chart-lr", [{name: "learning rate", xs: t.step, ys: t.lr}], {ylabel: "lr"});
    lineChart("chart-tps", [{name: "tokens / s", xs: t.step, ys: t.tokens_per_s}], {ylabel: "tokens / s"});
    lineChart("chart-gnorm", [{name: "total gradient norm (before clipping)", xs: t.step, ys: t.grad_norm}], {log: true, ylabel: "\u2016g\u2016"});
  }

  function layerMap(key, legendId, boxId, label) {
    var G = D.grads, box = $(boxId); box.innerHTML = "";
    if (!G.step.length) { box.appendChild(el("div", {"class": "caption"}, "no per-layer records in this run (train with a TrainingMonitor)")); return; }
    var M = G[key].map(function (row) { return row.map(function (v) { return v > 0 ? Math.log10(v) : null; }); });
    var vals = [].concat.apply([], M).filter(function (v) { return v !== null && isFinite(v); });
    var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    SF.legend($(legendId), "viridis", Math.pow(10, lo), Math.pow(10, hi), label + " (log scale)");
    var px = Math.max(3, Math.min(48, Math.floor((document.body.clientWidth - 260) / G.step.length)));
    var rows = el("div", {"class": "rows"});
    G.groups.forEach(function (g) { var d = el("div", {}, g); d.style.height = d.style.lineHeight = ROWH + "px"; rows.appendChild(d); });
    var cv = el("canvas", {id: boxId + "-canvas"}), wrap = el("div", {});
    SF.heatCanvas(cv, M, 1, "viridis", lo, hi);
    cv.style.width = G.step.length * px + "px"; cv.style.height = G.groups.length * ROWH + "px";
    var xt = el("div", {"class": "xt"}); xt.style.width = cv.style.width;
    ticks(0, G.step.length - 1, 6).forEach(function (i) {
      var s = el("span", {}, String(G.step[i])); s.style.left = (i + 0.5) * px + "px"; xt.appendChild(s);
    });
    cv.addEventListener("mousemove", function (ev) {
      var r = cv.getBoundingClientRect(), i = Math.floor((ev.clientX - r.left) / px), gi = Math.floor((ev.clientY - r.top) / ROWH);
      if (G.groups[gi] === undefined || G.step[i] === undefined) return;
      cv.title = G.groups[gi] + ", step " + G.step[i] + ": " + SF.fmt(G[key][gi][i]);
    });
    wrap.appendChild(cv); wrap.appendChild(xt); box.appendChild(rows); box.appendChild(wrap);
  }

  // ---- attention
  var A = D.attention;
  function decode(A) {                                    // base64 uint8 -> weights in [0, 1]
    A.w = {};
    A.modules.forEach(function (m) {
      var s = atob(A.data[m.name]), a = new Float32Array(s.length);
      for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i) / 255;
      A.w[m.name] = a;
    });
  }
  function mat(m, snap, head) {                           // (Tq, Tk); head "mean" averages
    var a = A.w[m.name], H = m.heads, out = [];
    for (var q = 0; q < m.Tq; q++) {
      var row = [];
      for (var k = 0; k < m.Tk; k++) {
        var s = 0, h0 = head === "mean" ? 0 : head, h1 = head === "mean" ? H : head + 1;
        for (var h = h0; h < h1; h++) s += a[((snap * H + h) * m.Tq + q) * m.Tk + k];
        row.push(s / (h1 - h0));
      }
      out.push(row);
    }
    return out;
  }
  function scaleMax(m, M) {   // causal: row 0 sees one key (weight 1 always): leave it out
    return m.causal && M.length > 1 ? SF.matMax(M.slice(1)) : SF.matMax(M);
  }
  function attention() {
    if (!A) { $("attention").style.display = "none"; return; }
    var n = A.steps.length, slider = $("step");
    if (S.snap === null || S.snap >= n) S.snap = n - 1;
    var names = A.modules.map(function (m) { return m.name; });
    if (names.indexOf(S.module) < 0) S.module = names.filter(function (x) { return /cross/.test(x); }).pop() || names[names.length - 1];
    slider.max = n - 1; slider.value = S.snap;
    $("steplabel").textContent = "step " + A.steps[S.snap] + "  (snapshot " + (S.snap + 1) + " of " + n + ")";
    var out = $("outputs"); out.innerHTML = "";
    [["probe input", A.input_text], ["target", A.target_text], ["output at step " + A.steps[S.snap], A.outputs[S.snap]]].forEach(function (p) {
      if (p[1] === null || p[1] === undefined) return;
      var d = el("div", {}); d.appendChild(document.createTextNode(p[0] + ": "));
      d.appendChild(el("code", p[0].indexOf("output") === 0 ? {id: "decoded"} : {}, p[1]));
      out.appendChild(d);
    });
    multiples(); big();
    try { history.replaceState(null, "", "#" + encodeURIComponent(JSON.stringify(S))); } catch (e) {}
  }
  function multiples() {
    var box = $("multiples"), H = A.modules[0].heads; box.innerHTML = "";
    box.style.gridTemplateColumns = "max-content repeat(" + (H + 1) + ", minmax(40px, 110px))";
    box.appendChild(el("div", {}));
    for (var h = 0; h <= H; h++) box.appendChild(el("div", {"class": "colname"}, h < H ? "head " + h : "mean"));
    A.modules.forEach(function (m) {
      box.appendChild(el("div", {"class": "rowname"}, m.name));
      for (var h = 0; h <= H; h++) (function (head) {
        var cv = el("canvas", {"data-module": m.name, "data-head": head});
        var M = mat(m, S.snap, head);
        SF.heatCanvas(cv, M, 2, "blues", 0, scaleMax(m, M));
        if (S.module === m.name && S.head === head) cv.className = "on";
        cv.addEventListener("click", function () { S.module = m.name; S.head = head; attention(); });
        box.appendChild(cv);
      })(h < H ? h : "mean");
    });
  }
  function big() {
    var m = A.modules.filter(function (x) { return x.name === S.module; })[0];
    var M = mat(m, S.snap, S.head), vmax = scaleMax(m, M), qt = A.tokens[m.query], kt = A.tokens[m.key];
    SF.legend($("legend-at"), "blues", 0, vmax, "attention weight (enlarged map: 0 \u2026 its largest)");
    $("bigwhat").textContent = m.name + ", " + (S.head === "mean" ? "mean over heads" : "head " + S.head) +
      ", step " + A.steps[S.snap] + " \u2014 " + qt.length + " queries \u00d7 " + kt.length + " keys" + (m.causal ? " (causal)" : "");
    var beside = document.body.clientWidth - $("multiples").offsetWidth - 150;  // room right of the grid
    var cell = Math.floor(beside / kt.length);
    if (cell < 14) cell = Math.max(10, Math.min(40, Math.floor((document.body.clientWidth - 150) / kt.length)));
    cell = Math.min(cell, 40);                            // else it wraps below the grid, full width
    SF.heatTable($("heatmap"), M, qt, kt, {vmax: vmax, cell: cell,
      rowTitle: "query: " + AXIS[m.query] + " \u2193", colTitle: "key: " + AXIS[m.key] + " \u2192",
      hover: function (q, k, w) {
        $("status").textContent = "query " + q + " " + JSON.stringify(qt[q]) + " \u2192 key " + k + " " + JSON.stringify(kt[k]) + ": " + w.toFixed(3);
      }});
    document.body.setAttribute("data-state", JSON.stringify(S));
  }
  function table(id, obj) {                              // key / value rows, flowing in columns
    var t = $(id); t.innerHTML = "";
    if (!Object.keys(obj || {}).length) t.appendChild(el("div", {"class": "caption"}, "not recorded (no checkpoint or no monitor yet)"));
    Object.keys(obj || {}).forEach(function (k) {
      var v = obj[k], row = el("div", {"class": "kvrow"});
      row.appendChild(el("span", {"class": "k"}, k));
      row.appendChild(el("span", {"class": "v"}, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)));
      t.appendChild(row);
    });
  }

  function render() {
    header(); insights(); charts();
    layerMap("grad_norm", "legend-gn", "lxs-gn", "\u2016g\u2016");
    layerMap("update_ratio", "legend-ur", "lxs-ur", "\u2016\u0394w\u2016/\u2016w\u2016");
    attention(); table("config", D.config); table("machine", D.machine);
  }
  $("step").addEventListener("input", function (e) { S.snap = +e.target.value; attention(); charts(); });
  if (A) decode(A);
  render();
  var resized = null;
  window.addEventListener("resize", function () { clearTimeout(resized); resized = setTimeout(render, 200); });
  if (D.live) setInterval(function () {                   // --serve: the same server only
    fetch("data.json", {cache: "no-store"}).then(function (r) { return r.json(); }).then(function (d) {
      var follow = A && S.snap === A.steps.length - 1;    // at the newest: stay at the newest
      D = d; A = D.attention; if (A) decode(A); if (follow) S.snap = null; render();
    }).catch(function () {});
  }, D.live * 1000);
})();
"""
