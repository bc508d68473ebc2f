"""The training report: insights on synthetic and real runs, the offline page (opened in a
real browser: the ``browser`` fixture of tests/viz/conftest.py), the live server, --watch,
and ``scratchformer report``."""

import base64
import json
import re
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from headless import console_errors, requests

import scratchformer as sf
from scratchformer.cli import main
from scratchformer.data.chartok import CharTokenizer
from scratchformer.training.lm import random_blocks
from scratchformer.training.monitor import monitor_for_gpt
from scratchformer.training.recipes import TaskTrainConfig, train_task
from scratchformer.training.snapshots import read_snapshots
from scratchformer.training.trainer import TrainConfig, Trainer
from scratchformer.viz import insights as ins
from scratchformer.viz.report import load_run, make_server, watch_report, write_report


# ---- insights on synthetic runs ---------------------------------------------------------------
GROUPS = ("embeddings", "blocks.0", "blocks.1", "head")


def healthy(n=40):
    """Metrics of a run that learns smoothly: falling loss, even gradients, ratios ~3e-3."""
    rng = np.random.default_rng(0)
    recs = []
    for i in range(1, n + 1):
        s, loss = 10 * i, 3 * np.exp(-i / 10) + 0.1
        recs.append({"kind": "train", "step": s, "loss": loss + 0.01 * rng.random(), "lr": 1e-3,
                     "grad_norm": 1 + 0.2 * rng.random(), "tokens_per_s": 1e3})
        if i % 2 == 0:
            recs.append({"kind": "grads", "step": s,
                         "grad_norm": {g: float(0.5 + rng.random()) for g in GROUPS},
                         "update_ratio": {g: float(2e-3 + 2e-3 * rng.random()) for g in GROUPS}})
        if i % 5 == 0:
            recs.append({"kind": "eval", "step": s, "val_loss": loss + 0.05})
    return recs


def snapshots(last="diagonal", T=6, H=2):
    """Snapshots of one causal module at steps 1 (uniform over the keys seen) and 400."""
    seen = np.tril(np.ones((T, T)))
    uniform = np.broadcast_to(seen / seen.sum(1, keepdims=True), (H, T, T))
    if last == "diagonal":  # each query mostly on itself, some on the rest it sees
        w = 0.3 * seen / seen.sum(1, keepdims=True) + 0.7 * np.eye(T)
        end = np.broadcast_to(w, (H, T, T))
    elif last == "collapse":  # every query on key 0
        end = np.broadcast_to(np.eye(T)[[0] * T], (H, T, T))
    else:
        end = uniform
    return {"steps": [1, 400], "outputs": ["", ""], "kind": "gpt",
            "modules": {"blocks.0.self_attn": {"query": "text", "key": "text", "causal": True}},
            "maps": {1: {"blocks.0.self_attn": uniform}, 400: {"blocks.0.self_attn": end}}}


def _grads(recs, key, group, value):
    for r in recs:
        if r["kind"] == "grads":
            r[key][group] = value(r[key][group])
    return recs


def _at(recs, kind, index, key, value):
    [r for r in recs if r["kind"] == kind][index][key] = value
    return recs


def _overfit(recs):
    evals = [r for r in recs if r["kind"] == "eval"]
    best = min(r["val_loss"] for r in evals)
    for j, r in enumerate(evals[-3:]):
        r["val_loss"] = best * (1.1 + 0.1 * j)
    return recs


BROKEN = {
    "vanishing": lambda r: _grads(r, "grad_norm", "blocks.0", lambda v: v * 1e-4),
    "exploding": lambda r: _grads(r, "grad_norm", "blocks.0", lambda v: v * 1e3),
    "grad_spike": lambda r: _at(r, "train", 25, "grad_norm", 40.0),
    "ratio_high": lambda r: _grads(r, "update_ratio", "blocks.1", lambda v: 0.1),
    "ratio_low": lambda r: _grads(r, "update_ratio", "head", lambda v: 1e-7),
    "loss_spike": lambda r: _at(r, "train", 30, "loss", 2.5),
    "overfit": _overfit,
    "diverged": lambda r: r + [{"kind": "diverged", "step": 401, "message": "loss became nan"}],
}


def test_a_healthy_run_raises_no_insight():
    assert ins.find_insights(healthy(), snapshots("diagonal")) == []


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_each_metrics_insight_fires_on_a_run_built_to_trigger_it(kind):
    found = ins.find_insights(BROKEN[kind](healthy()), snapshots("diagonal"))
    assert [i["kind"] for i in found] == [kind]
    assert found[0]["meaning"] == ins.MEANING[kind] and found[0]["message"]


@pytest.mark.parametrize("kind", ["collapse", "uniform"])
def test_each_attention_insight_fires_on_snapshots_built_to_trigger_it(kind):
    found = ins.find_insights(healthy(), snapshots(kind))
    assert [(i["kind"], i["step"], i["where"]) for i in found] == [
        (kind, 400, "blocks.0.self_attn heads 0, 1")]


def test_insights_name_the_step_and_the_layer():
    vanish = ins.find_insights(BROKEN["vanishing"](healthy()))[0]
    assert vanish["where"] == "blocks.0 vs blocks.1" and vanish["step"] == 20
    spike = ins.find_insights(BROKEN["loss_spike"](healthy()))[0]
    assert spike["step"] == 310  # the 31st training record
    high = ins.find_insights(BROKEN["ratio_high"](healthy()), warmup=100)[0]
    assert high["where"] == "blocks.1" and high["step"] == 120  # the first record after warm-up


# ---- real runs -------------------------------------------------------------------------------
def copy_run(out, lr, steps=150):
    """The copy task's tuned model on short sequences, with a monitor; ``lr`` as given."""
    train_task(TaskTrainConfig(task="copy", max_len=6, held_out_size=50, steps=steps, lr=lr,
                               warmup=10, eval_every=25, target=0, monitor_every=5,
                               out=str(out), force=True, progress=False))
    return out


@pytest.fixture(scope="module")
def healthy_run(tmp_path_factory):
    return copy_run(tmp_path_factory.mktemp("healthy"), lr=5e-3)


@pytest.fixture(scope="module")
def script_run(tmp_path_factory):
    """A tiny GPT on a corpus full of markup: its text must show as text."""
    text = "<script>alert('x')</script> & <b>bold</b> </textarea>\n" * 30
    tok = CharTokenizer.from_text(text)
    model = sf.GPT(sf.GPTConfig(tok.vocab_size, d_model=16, n_heads=2, d_ff=32, n_layers=2,
                                max_len=32, seed=0))
    cfg = TrainConfig(steps=20, batch_size=4, lr=3e-3, warmup=2, eval_every=0, optimizer="adamw")
    out = tmp_path_factory.mktemp("script")
    Trainer(model, random_blocks(tok.encode(text), 32, 4), cfg, out_dir=out, progress=False,
            extra_state={"tokenizer": tok.to_json()},
            monitors=[monitor_for_gpt(tok, model, text[:30], new_tokens=20, every=5)]).fit()
    return out


def test_a_learning_rate_far_too_high_is_flagged_and_the_tuned_one_is_not(healthy_run, tmp_path):
    hot = load_run(copy_run(tmp_path, lr=0.3))["insights"]
    assert {"ratio_high"} <= {i["kind"] for i in hot}
    assert [i for i in load_run(healthy_run)["insights"] if i["severity"] == "warn"] == []


# ---- the page ----------------------------------------------------------------------------------
def page_data(text: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="page-data">(.*?)</script>',
                                text, re.S).group(1))


def test_the_page_is_one_self_contained_file_with_the_run_inside(healthy_run):
    path = write_report(healthy_run)
    text = path.read_text(encoding="utf-8")
    assert path == healthy_run / "report.html" and text.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text and "url(" not in text and "default-src 'none'" in text
    assert "connect-src" not in text and 'http-equiv="refresh"' not in text
    data = page_data(text)
    recs = [json.loads(line) for line in (healthy_run / "metrics.jsonl").read_text().splitlines()]
    assert data["train"]["step"] == [r["step"] for r in recs if r["kind"] == "train"]
    assert data["grads"]["step"] == [r["step"] for r in recs if r["kind"] == "grads"]
    snaps = read_snapshots(healthy_run)
    att = data["attention"]
    assert att["steps"] == snaps["steps"] == [1, 2, 5, 10, 20, 50, 100, 150]
    for m in att["modules"]:  # the weights, to 1/255
        w = np.frombuffer(base64.b64decode(att["data"][m["name"]]), np.uint8).reshape(
            len(att["steps"]), m["heads"], m["Tq"], m["Tk"]) / 255
        want = np.stack([snaps["maps"][s][m["name"]] for s in snaps["steps"]])
        np.testing.assert_allclose(w, want, atol=0.5 / 255 + 1e-3)
    assert data["config"]["model"] == "Transformer" and data["machine"]["cpus"] >= 1


def test_corpus_text_is_data_never_markup(script_run, browser):
    from selenium.common.exceptions import NoAlertPresentException

    text = write_report(script_run).read_text(encoding="utf-8")
    assert "<script>alert" not in text and "<b>bold" not in text and "</textarea>" not in text
    assert text.count("<script") == 2
    browser.get((script_run / "report.html").resolve().as_uri())
    shown = browser.execute_script("return document.getElementById('outputs').textContent")
    assert "probe input: <script>alert('x')</script> &" in shown  # the probe, as characters
    labels = browser.execute_script(
        "return Array.from(document.querySelectorAll('#heatmap th.q')).map(e => e.textContent).join('')")
    assert labels.startswith("<script>alert('x')")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
    assert not console_errors(browser)


def _state(browser):
    return json.loads(browser.execute_script("return document.body.dataset.state"))


def test_the_page_in_a_browser_no_errors_no_requests_and_the_slider_moves(healthy_run, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    path = write_report(healthy_run).resolve()
    requests(browser), console_errors(browser)  # forget what earlier tests did
    browser.get(path.as_uri())
    snaps = read_snapshots(healthy_run)
    cells = lambda: browser.execute_script(  # noqa: E731
        "return Array.from(document.querySelectorAll('#heatmap td.cell')).map(c => +c.dataset.w)")
    decoded = lambda: browser.find_element(By.ID, "decoded").text  # noqa: E731
    state = _state(browser)
    assert state["snap"] == len(snaps["steps"]) - 1 and "cross_attn" in state["module"]
    last, out_last = cells(), decoded()
    name = state["module"]
    want = snaps["maps"][snaps["steps"][-1]][name][0]  # head 0 at the last step
    np.testing.assert_allclose(np.reshape(last, want.shape), want, atol=3e-3)
    assert out_last == snaps["outputs"][-1]
    slider = browser.find_element(By.ID, "step")
    slider.send_keys(Keys.HOME)  # the first snapshot: step 1
    assert _state(browser)["snap"] == 0
    first = cells()
    np.testing.assert_allclose(np.reshape(first, want.shape), snaps["maps"][1][name][0], atol=3e-3)
    assert first != last and decoded() == snaps["outputs"][0] != out_last
    assert "step 1 " in browser.find_element(By.ID, "steplabel").text
    axes = browser.execute_script("return [document.querySelector('#heatmap th.axis-q').textContent,"
                                  "document.querySelector('#heatmap th.axis-k').textContent]")
    assert axes[0].startswith("query: target") and axes[1].startswith("key: source")
    small = browser.find_element(By.CSS_SELECTOR, "#multiples canvas[data-module^='encoder']")
    module = small.get_attribute("data-module")
    small.click()  # a small map, enlarged: the encoder's self-attention, source × source
    assert _state(browser)["module"] == module
    assert browser.execute_script("return document.querySelector('#heatmap th.axis-k')"
                                  ".textContent").startswith("key: source")
    assert len(cells()) == len(snaps["tokens"]["src"]) ** 2
    assert browser.find_elements(By.CSS_SELECTOR, "#lxs-gn canvas")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart-loss path.line")) == 1
    assert not console_errors(browser)
    assert {u.split("#")[0] for u in requests(browser)} <= {path.as_uri()}  # nothing fetched


def test_a_run_without_a_monitor_still_gets_its_curves(tmp_path, browser):
    train_task(TaskTrainConfig(task="copy", max_len=6, held_out_size=20, steps=10, eval_every=5,
                               target=0, monitor_every=0, out=str(tmp_path), progress=False))
    data = load_run(tmp_path)
    assert data["attention"] is None and data["grads"]["step"] == [] and data["train"]["step"]
    browser.get(write_report(tmp_path).resolve().as_uri())
    assert not console_errors(browser)
    assert "no per-layer records" in browser.find_element("id", "lxs-gn").text


# ---- live: --serve and --watch -------------------------------------------------------------------
def test_the_server_listens_on_localhost_only_and_the_page_follows_the_run(healthy_run, tmp_path, browser):
    import shutil

    run = tmp_path / "live"
    shutil.copytree(healthy_run, run)
    server = make_server(run, port=0, interval=0.5)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host, port = server.server_address
        assert host == "127.0.0.1"
        url = f"http://127.0.0.1:{port}/"
        page = urllib.request.urlopen(url).read().decode()
        assert "connect-src 'self'" in page and page_data(page)["live"] == 0.5
        data = json.loads(urllib.request.urlopen(url + "data.json").read())
        assert data["train"]["step"][-1] == 150
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url + "../../etc/passwd")
        requests(browser), console_errors(browser)  # forget what earlier tests did
        browser.get(url)
        steps = lambda: browser.execute_script("return document.getElementById('summary').textContent")  # noqa: E731
        assert "150 steps logged" in steps()
        with open(run / "metrics.jsonl", "a") as f:  # the run goes on
            f.write(json.dumps({"kind": "train", "step": 160, "loss": 0.1, "lr": 1e-3,
                                "grad_norm": 0.5, "tokens_per_s": 1e4, "time_s": 9}) + "\n")
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, 10).until(lambda b: "160 steps logged" in steps())
        assert not console_errors(browser)
        assert {u.split("?")[0] for u in requests(browser)} <= {url, url + "data.json"}
    finally:
        server.shutdown()
        server.server_close()


def test_watch_rewrites_the_page_when_the_run_changes(healthy_run, tmp_path):
    import shutil

    run = tmp_path / "w"
    shutil.copytree(healthy_run, run)
    written = []
    watch_report(run, interval=0.01, rounds=2, on_write=written.append)
    assert len(written) == 1  # nothing changed between the two checks
    text = (run / "report.html").read_text()
    assert '<meta http-equiv="refresh" content="5">' in text


# ---- the command ---------------------------------------------------------------------------------
def test_cli_report_writes_the_page(healthy_run, capsys):
    assert main(["report", str(healthy_run)]) == 0
    assert f"wrote {healthy_run / 'report.html'}" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["{missing}"], "no such run directory"),
    (["{empty}"], "no metrics.jsonl here"),
    (["{empty}", "--port", "8001"], "--port needs --serve"),
    (["{empty}", "--serve", "--watch"], "choose one"),
    (["{empty}", "--serve", "--port", "70000"], "must be an integer in [0, 65535]"),
])
def test_cli_report_errors_are_one_line(argv, message, tmp_path, capsys):
    argv = [a.format(missing=tmp_path / "nope", empty=tmp_path) for a in argv]
    assert main(["report", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_torn_snapshot_file_leaves_the_rest_of_the_page(healthy_run, tmp_path):
    import shutil

    run = tmp_path / "torn"
    shutil.copytree(healthy_run, run)
    data = (run / "snapshots.safetensors").read_bytes()
    (run / "snapshots.safetensors").write_bytes(data[:len(data) // 2])
    page = load_run(run)
    assert page["attention"] is None and page["train"]["step"] == load_run(healthy_run)["train"]["step"]
