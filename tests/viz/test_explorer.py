"""The offline attention explorer: one self-contained HTML file, driven in a real browser
(the ``browser`` fixture: tests/viz/conftest.py), for toy-task, GPT and translation models."""

import json
import re

import numpy as np
import pytest
from headless import console_errors, requests

import scratchformer as sf
from scratchformer.cli import main
from scratchformer.data.chartok import CharTokenizer
from scratchformer.data.tasks import get_task
from scratchformer.training.checkpoint import save
from scratchformer.translation.bpe import BPETokenizer
from scratchformer.viz import attention_for_gpt, attention_for_text, attention_for_translation
from scratchformer.viz.explorer import attention_html, write_attention_html

TEXT = "First Citizen: we are accounted poor citizens, the patricians good.\n" * 3


@pytest.fixture(scope="module")
def gpt_parts():
    tok = CharTokenizer.from_text(TEXT)
    model = sf.GPT(sf.GPTConfig(tok.vocab_size, d_model=16, n_heads=2, d_ff=32, n_layers=2,
                                max_len=24, seed=0))
    return model, tok


@pytest.fixture(scope="module")
def bpe_parts():
    pairs = [("In the beginning God created the heaven", "En el principio creó Dios los cielos"),
             ("And God said, Let there be light", "Y dijo Dios: Sea la luz")] * 3
    tok = BPETokenizer.train([t for p in pairs for t in p], vocab_size=60)
    cfg = sf.TransformerConfig(src_vocab_size=tok.vocab_size, tgt_vocab_size=tok.vocab_size,
                               d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1,
                               n_decoder_layers=1, dropout=0.0, max_len=40, seed=0)
    return sf.Transformer(cfg), tok


@pytest.fixture(scope="module")
def record():
    task = get_task("dates", held_out_size=0)
    cfg = sf.TransformerConfig(src_vocab_size=task.vocab_size, tgt_vocab_size=task.vocab_size,
                               d_model=16, n_heads=4, d_ff=32, n_encoder_layers=2,
                               n_decoder_layers=2, dropout=0.0, max_len=48, seed=1)
    return attention_for_text(sf.Transformer(cfg), task, "Nov 27, 2026", max_len=6)


def test_page_is_self_contained(record):
    page = attention_html(record)
    assert page.startswith("<!DOCTYPE html>")
    # nothing is fetched: no external scripts, styles, images, fonts or links
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page  # the CSP forbids any request
    data = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', page, re.S)
    blob = json.loads(data.group(1))
    assert blob["n_heads"] == 4 and sorted(blob["layers"]) == ["cross", "dec", "enc"]
    np.testing.assert_allclose(blob["layers"]["cross"][1], record.get("cross", 1), atol=5e-5)


def test_user_text_cannot_break_out_of_the_page(record):
    rec = type(record)(record.src_tokens, record.tgt_tokens, record.maps,
                       input_text="</script><script>alert(1)</script>", output_text="@@JS@@")
    page = attention_html(rec, title="<b>x</b>")
    assert "<script>alert(1)" not in page and "<b>x</b>" not in page
    assert page.count("<script") == 2 and page.count("</script>") == 2


def test_non_finite_weights_and_unencodable_tokens_are_refused_before_writing(record, tmp_path):
    import dataclasses

    nan_maps = {k: np.where(np.arange(v.shape[-1]) == 0, np.nan, v) for k, v in record.maps.items()}
    out = tmp_path / "a.html"
    with pytest.raises(ValueError, match="NaN or infinite"):
        write_attention_html(dataclasses.replace(record, maps=nan_maps), out)
    bad = dataclasses.replace(record, src_tokens=["\ud800"] + record.src_tokens[1:])
    with pytest.raises(ValueError, match="src_tokens: '\\\\ud800' cannot be written as UTF-8"):
        write_attention_html(bad, out)
    assert not out.exists()  # no empty or half-written page


def _cells(browser):
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('#heatmap td.cell'))"
        ".map(c => [+c.dataset.q, +c.dataset.k, +c.dataset.w, getComputedStyle(c).backgroundColor]);")


def _rgb(css: str) -> tuple:
    return tuple(int(v) for v in re.findall(r"\d+", css)[:3])


def _texts(browser, css: str) -> list[str]:
    return browser.execute_script(
        f"return Array.from(document.querySelectorAll({css!r})).map(e => e.textContent);")


def _show(t: str) -> str:  # how the page shows a blank
    return "\u2423" if t == " " else t.replace("\n", "\u21b5")


def check_heatmap(browser, want: np.ndarray):
    """The cells hold ``want`` (Tq, Tk); the colour darkens with the weight, the largest
    weight gets the darkest colour of the scale, and the legend runs 0 .. that weight."""
    info = _cells(browser)
    Tq, Tk = want.shape
    assert len(info) == Tq * Tk
    got = np.zeros((Tq, Tk))
    for q, k, w, _ in info:
        got[q, k] = w
    np.testing.assert_allclose(got, want, atol=1e-4)
    order = sorted(info, key=lambda c: c[2])
    shade = [sum(_rgb(c[3])) for c in order]
    assert all(a >= b for a, b in zip(shade, shade[1:]))  # more weight, darker
    assert shade[-1] <= 170  # the scale's darkest blue (8, 48, 107): the mean view is not pale
    hi = float(browser.execute_script("return document.querySelector('#legend .hi').textContent"))
    assert hi == pytest.approx(want.max(), rel=0.01)


def test_explorer_renders_switches_heads_and_highlights(browser, record, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    path = write_attention_html(record, tmp_path / "attn.html")
    browser.get(path.resolve().as_uri())
    state = lambda: json.loads(browser.find_element(By.TAG_NAME, "body").get_attribute("data-state"))
    assert state() == {"kind": "cross", "layer": 1, "head": 0}  # opens on the last cross layer
    T, S = len(record.tgt_tokens), len(record.src_tokens)

    def check(kind, layer, head):
        w = record.get(kind, layer)
        check_heatmap(browser, w[head] if head != "mean" else w.mean(0))

    check("cross", 1, 0)
    browser.find_element(By.ID, "head-2").click()
    assert state()["head"] == 2
    check("cross", 1, 2)
    browser.find_element(By.ID, "head-mean").click()
    check("cross", 1, "mean")
    browser.find_element(By.ID, "kind-enc").click()
    Select(browser.find_element(By.ID, "layer")).select_by_value("0")
    browser.find_element(By.ID, "head-1").click()
    assert state() == {"kind": "enc", "layer": 0, "head": 1}
    check("enc", 0, 1)
    browser.find_element(By.ID, "kind-dec").click()
    check("dec", 0, 1)
    assert all(w == 0 for q, k, w, _ in _cells(browser) if k > q)  # masked future: exactly zero

    # hover query token 3 of the cross-attention: the keys are shaded by its weights
    browser.find_element(By.ID, "kind-cross").click()
    Select(browser.find_element(By.ID, "layer")).select_by_value("1")
    browser.find_element(By.ID, "head-0").click()
    assert state() == {"kind": "cross", "layer": 1, "head": 0}
    q = browser.find_elements(By.CSS_SELECTOR, "#queries .tok")[3]
    ActionChains(browser).move_to_element(q).perform()
    assert "hl" in q.get_attribute("class").split()
    keys = browser.find_elements(By.CSS_SELECTOR, "#keys .tok")
    assert len(keys) == S
    titles = np.array([float(k.get_attribute("title")) for k in keys])
    np.testing.assert_allclose(titles, record.get("cross", 1)[0, 3], atol=1e-3)
    strongest = int(np.argmax(titles))
    shades = [sum(_rgb(k.value_of_css_property("background-color"))) for k in keys]
    assert int(np.argmin(shades)) == strongest  # darkest key = the most attended
    lines = browser.execute_script(
        "return Array.from(document.querySelectorAll('#tokview line'))"
        ".filter(l => l.style.display !== 'none').map(l => +l.dataset.q);")
    assert lines and set(lines) == {3}  # only the hovered query's lines stay visible
    assert "query 3" in browser.find_element(By.ID, "status").text
    assert T == len(browser.find_elements(By.CSS_SELECTOR, "#queries .tok"))

    assert not console_errors(browser)
    assert {u.split("#")[0] for u in requests(browser)} <= {path.resolve().as_uri()}
    shot = tmp_path / "explorer.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:4] == b"\x89PNG"


AXES = {"enc": ("query: source", "key: source"),
        "dec": ("query: target", "key: target"),
        "cross": ("query: target", "key: source"),
        "causal": ("query: text", "key: text")}


def check_axes(browser, rec, kind):
    """Rows are labelled with the query tokens, columns with the key tokens, and the axis
    titles say which is which (query down, key across)."""
    assert _texts(browser, "#heatmap th.q") == [_show(t) for t in rec.query_tokens(kind)]
    assert _texts(browser, "#heatmap th.k") == [_show(t) for t in rec.key_tokens(kind)]
    rows, cols = _texts(browser, "#heatmap th.axis-q")[0], _texts(browser, "#heatmap th.axis-k")[0]
    assert rows.startswith(AXES[kind][0]) and rows.endswith("\u2193")  # down
    assert cols.startswith(AXES[kind][1]) and cols.endswith("\u2192")  # across


def test_axes_are_labelled_for_every_kind_and_short_labels_stay_upright(browser, record, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(write_attention_html(record, tmp_path / "a.html").resolve().as_uri())
    for kind in ("cross", "enc", "dec"):
        browser.find_element(By.ID, f"kind-{kind}").click()
        check_axes(browser, record, kind)
    browser.find_element(By.ID, "kind-cross").click()
    modes = browser.execute_script(
        "return Array.from(document.querySelectorAll('#heatmap th.k span'))"
        ".map(s => [s.textContent, getComputedStyle(s).writingMode]);")
    assert all(mode == "horizontal-tb" for text, mode in modes if len(text) <= 2)
    # the page uses the window: the heatmap reaches past 80% of a 1400 px window
    right, width = browser.execute_script(
        "return [document.getElementById('heatmap').getBoundingClientRect().right, innerWidth];")
    assert width >= 1300 and right > 0.8 * width


def test_gpt_explorer_shows_causal_attention_over_prompt_and_continuation(browser, gpt_parts, tmp_path):
    model, tok = gpt_parts
    rec = attention_for_gpt(model, tok, "First Cit", new_tokens=6)
    assert rec.tgt_tokens == list("First Cit") + list(rec.output_text) and rec.n_layers("causal") == 2
    browser.get(write_attention_html(rec, tmp_path / "g.html").resolve().as_uri())
    assert _texts(browser, "#kinds button") == ["causal"]
    check_axes(browser, rec, "causal")
    check_heatmap(browser, rec.get("causal", 1)[0])
    assert all(w == 0 for q, k, w, _ in _cells(browser) if k > q)  # causal: no future key
    assert not console_errors(browser)


def test_translation_explorer_is_labelled_with_bpe_pieces(browser, bpe_parts, tmp_path):
    model, tok = bpe_parts
    rec = attention_for_translation(model, tok, "In the beginning", max_len=5)
    assert rec.src_tokens == tok.pieces("In the beginning") + ["<eos>"]
    assert rec.tgt_tokens[0] == "<bos>" and len(rec.tgt_tokens) <= 1 + 5  # <bos> + output
    browser.get(write_attention_html(rec, tmp_path / "t.html").resolve().as_uri())
    check_axes(browser, rec, "cross")
    assert not console_errors(browser)


def test_cli_attention_reads_gpt_and_translation_checkpoints(gpt_parts, bpe_parts, tmp_path, capsys):
    (gpt, ctok), (tr, bpe) = gpt_parts, bpe_parts
    save(tmp_path / "g.safetensors", gpt, tokenizer=ctok.to_json())
    save(tmp_path / "t.safetensors", tr, tokenizer=bpe.to_dict())
    for name, text in (("g", "First"), ("t", "And God said")):
        out = tmp_path / f"{name}.html"
        assert main(["attention", "--checkpoint", str(tmp_path / f"{name}.safetensors"),
                     "--input", text, "--html", str(out), "--max-len", "4"]) == 0
        blob = json.loads(re.search(r'id="page-data">(.*?)</script>', out.read_text(), re.S).group(1))
        assert sorted(blob["layers"]) == (["causal"] if name == "g" else ["cross", "dec", "enc"])
    assert main(["attention", "--checkpoint", str(tmp_path / "g.safetensors"), "--input", "First",
                 "--out", str(tmp_path / "x.png"), "--kind", "cross"]) == 2
    assert "a GPT has only causal self-attention" in capsys.readouterr().err
    save(tmp_path / "bare.safetensors", tr)  # no task, no tokenizer
    assert main(["attention", "--checkpoint", str(tmp_path / "bare.safetensors"), "--input", "x",
                 "--html", str(tmp_path / "b.html")]) == 2
    assert "neither a task, a GPT nor a translation checkpoint" in capsys.readouterr().err
