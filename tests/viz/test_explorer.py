"""The offline attention explorer: one self-contained HTML file, driven in a real browser.

The browser test needs Debian's ``chromium`` + ``chromium-driver`` (or any Chrome and its
chromedriver on PATH; ``SCRATCHFORMER_CHROMIUM`` / ``SCRATCHFORMER_CHROMEDRIVER`` override
the paths) and ``selenium``; it is skipped where they are missing. No browser is downloaded.
"""

import json
import os
import re
import shutil

import numpy as np
import pytest

import scratchformer as sf
from scratchformer.viz.explorer import attention_html, write_attention_html
from scratchformer.data.tasks import get_task
from scratchformer.viz import attention_for_text


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
    data = re.search(r'<script type="application/json" id="attn-data">(.*?)</script>', page, re.S)
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


def _browser_paths():
    chrome = os.environ.get("SCRATCHFORMER_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = os.environ.get("SCRATCHFORMER_CHROMEDRIVER") or shutil.which("chromedriver") or (
        "/usr/lib/chromium/chromedriver" if os.path.exists("/usr/lib/chromium/chromedriver") else None)
    return chrome, driver


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chrome, driver = _browser_paths()
    if not chrome or not driver:
        pytest.skip("no chromium/chromedriver installed (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1280,720"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=opts, service=Service(driver))
    yield d
    d.quit()


def _cells(browser):
    from selenium.webdriver.common.by import By

    cells = browser.find_elements(By.CSS_SELECTOR, "#heatmap td.cell")
    return cells, browser.execute_script(
        "return Array.from(document.querySelectorAll('#heatmap td.cell'))"
        ".map(c => [+c.dataset.q, +c.dataset.k, +c.dataset.w, getComputedStyle(c).backgroundColor]);")


def _rgb(css: str) -> tuple:
    return tuple(int(v) for v in re.findall(r"\d+", css)[:3])


def test_explorer_renders_switches_heads_and_highlights(browser, record, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    path = write_attention_html(record, tmp_path / "attn.html")
    browser.get(path.resolve().as_uri())
    state = lambda: json.loads(browser.find_element(By.TAG_NAME, "body").get_attribute("data-state"))
    assert state() == {"kind": "cross", "layer": 1, "head": 0}  # opens on the last cross layer
    T, S = len(record.tgt_tokens), len(record.src_tokens)

    def check_matrix(kind, layer, head):
        cells, info = _cells(browser)
        Tq, Tk = len(record.query_tokens(kind)), len(record.key_tokens(kind))
        assert len(cells) == Tq * Tk
        want = record.get(kind, layer)[head] if head != "mean" else record.get(kind, layer).mean(0)
        got = np.zeros((Tq, Tk))
        for q, k, w, color in info:
            got[q, k] = w
            red = _rgb(color)[0]  # white (255) for 0 down to 33 for 1
            assert abs(red - (255 - 222 * w)) <= 1
        np.testing.assert_allclose(got, want, atol=1e-4)

    check_matrix("cross", 1, 0)
    browser.find_element(By.ID, "head-2").click()
    assert state()["head"] == 2
    check_matrix("cross", 1, 2)
    browser.find_element(By.ID, "head-mean").click()
    check_matrix("cross", 1, "mean")
    browser.find_element(By.ID, "kind-enc").click()
    Select(browser.find_element(By.ID, "layer")).select_by_value("0")
    browser.find_element(By.ID, "head-1").click()
    assert state() == {"kind": "enc", "layer": 0, "head": 1}
    check_matrix("enc", 0, 1)
    browser.find_element(By.ID, "kind-dec").click()
    check_matrix("dec", 0, 1)
    _, info = _cells(browser)
    assert all(w == 0 for q, k, w, _ in info if k > q)  # masked future: exactly zero

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

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    shot = tmp_path / "explorer.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:4] == b"\x89PNG"
