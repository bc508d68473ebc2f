"""Every example, benchmark and docs script at least imports: its imports name what the
package really has (the quick start's ``examples/copy_task_demo.py`` above all)."""

import os
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


def test_bench_handoff_prints_both_timings_and_stops_its_spinner(capsys, monkeypatch):
    """The hand-off benchmark (README, "Speed") runs, prints a row per setting, and the
    spinning process it starts is gone when it returns."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_handoff

    started = []
    real = bench_handoff.subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(bench_handoff.subprocess, "Popen", popen)
    bench_handoff.main(["--repeats", "20"])
    out = capsys.readouterr().out
    assert "lock round trip" in out and "pool.run, empty job" in out
    rows = [line for line in out.splitlines() if line.endswith("µs")]
    assert len(rows) == (2 if hasattr(os, "SCHED_IDLE") else 1)
    assert all(p.poll() is not None for p in started)
    with pytest.raises(SystemExit):
        bench_handoff.main(["--threads", "1"])
