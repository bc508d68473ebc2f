"""One offline page per run: ``write_report(run_dir)`` writes ``run_dir/report.html``.

    write_report("runs/copy")                 # one self-contained file: open it anywhere
    serve_report("runs/copy", port=8000)      # live: http://127.0.0.1:8000/ while it trains
    watch_report("runs/copy")                 # or: re-write report.html as the run goes

The page (``report_page``) shows the loss and evaluation curves, the learning rate, tokens/s
and the total gradient norm (``metrics.jsonl``), the layer × step maps of gradient norms and
update/weight ratios (the monitor's "grads" records), the attention of every layer and head
on the probe with a step slider and the probe's decoded output at each step (the
snapshots), the configuration (from the checkpoint) and the machine, and the insights
(``insights``). It needs no network: CSS, JavaScript and data are inside the file, and
its Content-Security-Policy forbids any request. A run trained without a monitor still
gets its curves and configuration.

The live server is the standard library's, bound to 127.0.0.1 only (never to the network);
it answers ``/`` (the page) and ``/data.json`` (which the page re-reads every few seconds).
"""

from __future__ import annotations

import base64
import json
import math
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from ..training.snapshots import INDEX, TENSORS, atomic_write_text, read_snapshots
from .htmlkit import CSP, json_blob, page
from .insights import find_insights
from .report_page import BODY, CSS, JS

METRICS, CHECKPOINT, REPORT = "metrics.jsonl", "checkpoint.safetensors", "report.html"
SKIP_STATE = ("tokenizer", "trainer", "vocab")  # big or shown elsewhere


# ---- gathering the run --------------------------------------------------------------------
def read_records(path) -> list[dict]:
    """The JSON records of ``metrics.jsonl``; a torn last line (a run writing it now) is
    skipped, a bad line elsewhere raises ValueError naming it."""
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n") if line.strip()]
    out = []
    for i, line in enumerate(lines, 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i < len(lines):
                raise ValueError(f"{path}:{i}: not a JSON line ({e})") from None
    return out


def _clean(v):
    """JSON-able, NaN and infinities as null (JSON has neither)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        return _clean(v.item())
    return v


_CKPT_CACHE: dict = {}


def checkpoint_info(path) -> dict | None:
    """``{"kind", "config", "train_config", "step", "state"}`` from a checkpoint (its weights
    are loaded and checked by ``training.checkpoint.load``), or None when there is none yet.
    Cached by modification time, for a live page that asks every few seconds."""
    from ..training.checkpoint import load

    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    key = (os.fspath(path), st.st_mtime_ns, st.st_size)
    if key not in _CKPT_CACHE:
        model, _, state = load(path, allow_nonfinite=True)
        trainer = state.get("trainer") or {}
        cfg = model.config
        _CKPT_CACHE.clear()
        _CKPT_CACHE[key] = {
            "kind": type(model).__name__, "parameters": int(model.num_parameters()),
            "config": cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg)),
            "train_config": trainer.get("train_config", {}), "step": trainer.get("step"),
            "last_eval": trainer.get("last_eval", {}),
            "state": {k: v for k, v in state.items()
                      if k not in SKIP_STATE and not isinstance(v, np.ndarray)}}
    return _CKPT_CACHE[key]


def _series(records: list[dict]) -> tuple[dict, dict, dict]:
    """(train curves, eval curves, layer × step maps) from the records."""
    train = [r for r in records if r.get("kind") == "train"]
    cols = ("step", "loss", "lr", "tokens_per_s", "grad_norm")
    tr = {c: [r.get(c) for r in train] for c in cols}
    evals = [r for r in records if r.get("kind") == "eval"]
    names = []
    for r in evals:
        names += [k for k, v in r.items() if k not in ("kind", "step", "n", "eval_time_s")
                  and isinstance(v, (int, float)) and not isinstance(v, bool) and k not in names]
    ev = {"step": [r["step"] for r in evals], "series": {k: [r.get(k) for r in evals] for k in names}}
    grads = [r for r in records if r.get("kind") == "grads"]
    groups = []
    for r in grads:
        groups += [g for g in r["grad_norm"] if g not in groups]
    gr = {"groups": groups, "step": [r["step"] for r in grads],
          **{key: [[r[key].get(g) for r in grads] for g in groups]
             for key in ("grad_norm", "update_ratio")}}
    return tr, ev, gr


def _attention(snaps: dict | None) -> dict | None:
    """The snapshots for the page: weights as base64 bytes, round(255 · a) (plenty for
    a colour), (snapshots, H, Tq, Tk) per module."""
    if not snaps or not snaps["steps"]:
        return None
    modules, data = [], {}
    for name, ax in snaps["modules"].items():
        w = np.stack([snaps["maps"][s][name] for s in snaps["steps"]])  # (S, H, Tq, Tk)
        q = np.round(np.clip(np.nan_to_num(w), 0.0, 1.0) * 255).astype(np.uint8)
        data[name] = base64.b64encode(q.tobytes()).decode("ascii")
        modules.append({"name": name, **ax, "heads": w.shape[1], "Tq": w.shape[2], "Tk": w.shape[3]})
    return {"steps": snaps["steps"], "outputs": snaps["outputs"], "tokens": snaps["tokens"],
            "input_text": snaps.get("input_text"), "target_text": snaps.get("target_text"),
            "kind": snaps.get("kind"), "modules": modules, "data": data}


def load_run(run_dir, live: float = 0) -> dict:
    """Everything the page shows, as one JSON-able dict (``live``: seconds between re-reads
    of ``data.json`` by a served page; 0 for a file)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    if not (run_dir / METRICS).is_file():
        raise ValueError(f"{run_dir}: no {METRICS} here; is it a run directory (the --out of "
                         f"a training command)?")
    records = read_records(run_dir / METRICS)
    ckpt = checkpoint_info(run_dir / CHECKPOINT)
    try:
        snaps = read_snapshots(run_dir)
    except (OSError, ValueError, KeyError):  # torn by a crash: the rest of the page still works
        snaps = None
    warmup = int((ckpt or {}).get("train_config", {}).get("warmup", 0) or 0)
    tr, ev, gr = _series(records)
    monitor = next((r for r in reversed(records) if r.get("kind") == "monitor"), {})  # the latest start
    config = {}
    if ckpt:
        config = {"model": ckpt["kind"], "parameters": ckpt["parameters"],
                  **{f"model.{k}": v for k, v in ckpt["config"].items()},
                  **{f"train.{k}": v for k, v in ckpt["train_config"].items()},
                  "checkpoint step": ckpt["step"], **ckpt["state"]}
    diverged = [r for r in records if r.get("kind") == "diverged"]
    status = (f"diverged at step {diverged[-1]['step']}" if diverged else
              f"checkpoint at step {ckpt['step']}" if ckpt else "no checkpoint yet")
    kind = (snaps or {}).get("kind") or (ckpt or {}).get("kind") or ""
    return _clean({"title": f"ScratchFormer run: {run_dir.resolve().name}", "kind": kind,
                   "status": status, "live": live, "train": tr, "eval": ev, "grads": gr,
                   "attention": _attention(snaps),
                   "insights": find_insights(records, snaps, warmup),
                   "config": config, "machine": monitor.get("machine", {})})


# ---- the page -----------------------------------------------------------------------------
def report_html(data: dict, refresh: int = 0) -> str:
    """The page for ``load_run``'s data. ``data["live"]`` > 0: the page may fetch
    ``data.json`` from its own server and nothing else; ``refresh`` > 0: reload every
    ``refresh`` seconds (for ``watch_report``)."""
    csp = CSP + ("; connect-src 'self'" if data.get("live") else "")
    head = f'<meta http-equiv="refresh" content="{int(refresh)}">\n' if refresh else ""
    return page(data["title"], BODY, CSS, JS, data, csp=csp, head=head)


def write_report(run_dir, path=None, refresh: int = 0) -> Path:
    """Write the report of ``run_dir`` to ``path`` (default ``run_dir/report.html``),
    atomically; returns the path."""
    text = report_html(load_run(run_dir), refresh)
    path = Path(run_dir) / REPORT if path is None else Path(path)
    atomic_write_text(path, text)
    return path


def _mtimes(run_dir: Path) -> tuple:
    return tuple(os.stat(p).st_mtime_ns if p.exists() else 0
                 for p in (run_dir / METRICS, run_dir / INDEX, run_dir / TENSORS, run_dir / CHECKPOINT))


def watch_report(run_dir, interval: float = 2.0, refresh: int = 5, rounds: int | None = None,
                 on_write=None) -> Path:
    """Re-write ``run_dir/report.html`` whenever the run's files change, checking every
    ``interval`` seconds (``rounds`` checks, None: until interrupted); the page reloads
    itself every ``refresh`` seconds and keeps its view (the URL's #hash)."""
    run_dir, seen, n, path = Path(run_dir), None, 0, Path(run_dir) / REPORT
    while rounds is None or n < rounds:
        now = _mtimes(run_dir)
        if now != seen:
            path = write_report(run_dir, refresh=refresh)
            seen = now
            if on_write:
                on_write(path)
        n += 1
        if rounds is None or n < rounds:
            time.sleep(interval)
    return path


def make_server(run_dir, port: int = 8000, interval: float = 3.0) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1:``port`` (0: any free port) serving the live report of
    ``run_dir``; ``server.serve_forever()`` runs it. ``interval``: the page's re-read period."""
    run_dir = Path(run_dir)
    load_run(run_dir)  # a bad directory fails here, not at the first request

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            route = urlsplit(self.path).path
            try:
                data = load_run(run_dir, live=interval)
                if route in ("/", "/" + REPORT):
                    body, ctype = report_html(data).encode("utf-8"), "text/html; charset=utf-8"
                elif route == "/data.json":
                    body, ctype = json_blob(data).encode("utf-8"), "application/json"
                else:
                    return self.send_error(404, "only / and /data.json are served")
            except (OSError, ValueError) as e:  # mid-write files: the page retries
                return self.send_error(503, str(e)[:200])
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet: the terminal belongs to the user
            pass

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def serve_report(run_dir, port: int = 8000, interval: float = 3.0) -> None:
    """Serve the live report of ``run_dir`` on http://127.0.0.1:``port``/ until interrupted."""
    server = make_server(run_dir, port, interval)
    print(f"serving {run_dir} at http://127.0.0.1:{server.server_address[1]}/ "
          f"(Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
