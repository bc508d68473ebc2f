"""The README's Python examples run as written (in order, in one namespace, in a temp dir)."""

import importlib.util
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    blocks = python_blocks()
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    have_torch = importlib.util.find_spec("torch") is not None
    for i, code in enumerate(blocks):
        if "torch_port" in code and not have_torch:
            continue  # the PyTorch-twin example needs torch (installed in CI)
        exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    # the trained copy model copies the example it is shown; the backward matches FD
    assert "\n3 1 4 1 5\n" in out
    m = re.search(r"analytic (\S+)  finite difference (\S+)", out)
    assert m and abs(float(m[1]) - float(m[2])) < 1e-7
