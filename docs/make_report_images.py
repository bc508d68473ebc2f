"""Regenerate docs/images/report_copy.png and report_gpt.png: the training report's
attention section at one snapshot step, as headless Chromium shows it.

    python docs/make_report_images.py                   # trains the default copy run (~15 s)
    python docs/make_report_images.py --run runs/copy   # or: an existing run directory
    python docs/make_report_images.py --gpt 300         # a 300-step char GPT -> report_gpt.png

The copy run is the task's tuned recipe (``train_task``), watched by its ``TrainingMonitor``
(``monitor_for_task``: the first held-out pair as the probe); the GPT is ``gpt train``'s
default size on tiny Shakespeare with ``monitor_for_gpt`` (the first 64 characters of the
validation text). Prints the sizes of ``report.html`` and the snapshots. Needs ``selenium`` and Debian's ``chromium`` +
``chromium-driver``, and Pillow (to crop the section and store a 128-colour palette).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scratchformer.training.recipes import TaskTrainConfig, train_task  # noqa: E402
from scratchformer.viz.report import write_report  # noqa: E402


def train_copy(out: Path) -> Path:
    """The copy task's tuned recipe; every run is watched (monitor_every=25, snapshots)."""
    r = train_task(TaskTrainConfig(task="copy", out=str(out), progress=False))
    print(f"copy: {r.step} steps ({r.stop_reason}), exact match {r.metrics['exact_match']}")
    return out


def train_gpt(out: Path, steps: int) -> Path:
    from scratchformer.training.lm import GPTTrainConfig, train_gpt as train

    train(GPTTrainConfig(steps=steps, warmup=min(100, steps), eval_every=50, eval_batches=4,
                         checkpoint_every=0, out=str(out), progress=False))
    return out


def screenshot(page: Path, png: Path, step: int, width: int = 1280) -> None:
    """The #attention section with the snapshot nearest ``step`` selected."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("google-chrome")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--hide-scrollbars",
                 f"--window-size={width},1200"):
        opts.add_argument(flag)
    d = webdriver.Chrome(options=opts, service=Service(shutil.which("chromedriver")))
    try:
        d.get(page.resolve().as_uri())
        d.execute_script("""
            var A = JSON.parse(document.getElementById('page-data').textContent).attention;
            var i = A.steps.reduce((b, s, j) => Math.abs(s - arguments[0]) < Math.abs(A.steps[b] - arguments[0]) ? j : b, 0);
            var s = document.getElementById('step'); s.value = i;
            s.dispatchEvent(new Event('input'));""", step)
        full = d.execute_script("return document.documentElement.scrollHeight")
        d.set_window_size(width, full + 200)  # the whole page in view: no scrolling
        time.sleep(1.0)  # the page re-draws itself after a resize
        box = d.execute_script("return JSON.parse(JSON.stringify("
                               "document.getElementById('attention').getBoundingClientRect()))")
        d.save_screenshot(str(png))
    finally:
        d.quit()
    from PIL import Image  # Pillow (matplotlib's dependency): crop, and a 128-colour palette

    img = Image.open(png).convert("RGB")
    img = img.crop((0, int(box["top"]) - 8, img.width, int(box["bottom"]) + 8))
    img.quantize(128).save(png, optimize=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", help="an existing run directory (default: train the copy run)")
    p.add_argument("--step", type=int, default=50, help="the snapshot step shown (nearest)")
    p.add_argument("--gpt", type=int, metavar="STEPS",
                   help="instead: train a char GPT for STEPS steps, show its last snapshot")
    p.add_argument("--out", help="the PNG (default docs/images/report_copy.png or report_gpt.png)")
    args = p.parse_args(argv)
    name = "report_gpt.png" if args.gpt else "report_copy.png"
    png = Path(args.out or ROOT / "docs" / "images" / name)
    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            run = Path(args.run)
        elif args.gpt:
            run = train_gpt(Path(tmp) / "gpt", args.gpt)
        else:
            run = train_copy(Path(tmp) / "copy")
        page = write_report(run)
        for f in (page, run / "snapshots.safetensors", run / "snapshots.json", run / "metrics.jsonl"):
            print(f"{f.name}: {f.stat().st_size:,} bytes")
        screenshot(page, png, args.gpt or args.step)
    print(f"wrote {png} ({png.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
