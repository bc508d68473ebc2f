"""Every example, benchmark and docs script at least imports: its imports name what the
package really has (the quick start's ``examples/copy_task_demo.py`` above all)."""

import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("examples/*.py"), *ROOT.glob("benchmarks/*.py"), ROOT / "docs" / "make_images.py"])


@pytest.mark.parametrize("path", SCRIPTS, ids=[str(p.relative_to(ROOT)) for p in SCRIPTS])
def test_script_imports(path, monkeypatch):
    monkeypatch.syspath_prepend(str(path.parent))  # examples import each other
    monkeypatch.setattr(sys, "argv", [str(path)])
    runpy.run_path(str(path), run_name="imported_by_the_tests")  # the body without __main__
