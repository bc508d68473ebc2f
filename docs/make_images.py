"""Regenerate the pictures in docs/images/ from trained dates and numbers checkpoints.

    scratchformer train --task dates --out runs/dates
    scratchformer train --task numbers --out runs/numbers
    python docs/make_images.py runs/dates/checkpoint.safetensors --numbers runs/numbers/checkpoint.safetensors

Writes docs/images/dates_cross_attention.png (the PNG of ``scratchformer attention``),
docs/images/attention_explorer.png (a screenshot of the HTML explorer in headless Chromium,
with a query token hovered) and, given ``--numbers``, docs/images/numbers_cross_attention.png.
The screenshot needs ``selenium`` and Debian's ``chromium`` + ``chromium-driver``. Either
checkpoint may be left out; then its pictures are not redrawn.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scratchformer.viz.explorer import write_attention_html  # noqa: E402
from scratchformer.viz import attention_for_text, load_model_and_task, plot_attention  # noqa: E402


def screenshot(html: Path, out: Path, hover: int, layer: int, width: int = 1100,
               height: int = 560) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("google-chrome")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--hide-scrollbars",
                 f"--window-size={width},{height}"):
        opts.add_argument(flag)
    d = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    try:
        d.get(html.resolve().as_uri())
        Select(d.find_element(By.ID, "layer")).select_by_value(str(layer))
        d.find_element(By.ID, "head-0").click()
        tok = d.find_elements(By.CSS_SELECTOR, "#queries .tok")[hover]
        ActionChains(d).move_to_element(tok).perform()
        need = d.execute_script("return document.documentElement.scrollHeight;")
        inner = d.execute_script("return window.innerHeight;")
        if need > inner:  # grow the window until the whole page is in view
            d.set_window_size(width, height + need - inner + 8)
            ActionChains(d).move_to_element(tok).perform()
        d.save_screenshot(str(out))
    finally:
        d.quit()


def cross_attention_png(checkpoint, text: str, png: Path, layer: int):
    """Decode ``text`` with the checkpoint and draw one layer's cross-attention to ``png``."""
    model, task = load_model_and_task(checkpoint)
    rec = attention_for_text(model, task, text)
    print(f"{text!r} -> {rec.output_text!r}")
    plot_attention(rec, kind="cross", layer=layer, path=png, dpi=80,
                   title=f"cross-attention, layer {layer % rec.n_layers('cross')}: "
                         f"{text!r} → {rec.output_text!r}")
    print(f"wrote {png} ({png.stat().st_size / 1024:.0f} KB)")
    return rec, task


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?",
                   help="a dates checkpoint written by 'scratchformer train --task dates'")
    p.add_argument("--input", default="Nov 27, 2026")
    p.add_argument("--layer", type=int, default=-1, help="cross-attention layer to draw")
    p.add_argument("--hover", type=int, default=6, help="query position hovered in the screenshot")
    p.add_argument("--numbers", metavar="CHECKPOINT",
                   help="a numbers checkpoint ('scratchformer train --task numbers')")
    p.add_argument("--numbers-input", default="one hundred twenty-one thousand five hundred thirty-two")
    p.add_argument("--numbers-layer", type=int, default=0, help="its cross-attention layer to draw")
    p.add_argument("--out-dir", default=str(ROOT / "docs" / "images"))
    args = p.parse_args(argv)
    if not args.checkpoint and not args.numbers:
        p.error("give a dates checkpoint and/or --numbers CHECKPOINT")

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.numbers:
        cross_attention_png(args.numbers, args.numbers_input, out / "numbers_cross_attention.png",
                            args.numbers_layer)
    if not args.checkpoint:
        return 0
    rec, task = cross_attention_png(args.checkpoint, args.input, out / "dates_cross_attention.png",
                                    args.layer)
    with tempfile.TemporaryDirectory() as tmp:
        html = write_attention_html(rec, Path(tmp) / "attn.html",
                                    title=f"ScratchFormer attention: {task.name}")
        shot = out / "attention_explorer.png"
        screenshot(html, shot, args.hover, args.layer % rec.n_layers("cross"))
    print(f"wrote {shot} ({shot.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
