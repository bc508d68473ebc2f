"""The package's layout: its imports point one way, cli → training → models → core → kernels,
with no import cycle and no private name imported from another module. The one exception is
the spine's entry points for translation and the PyTorch twin (training/translation.py,
training/torch_run.py): they drive those parts, importing them only when a run starts."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "scratchformer"

# part → the parts it may import (besides itself)
ALLOWED = {
    "kernels": set(),
    "core": {"kernels"},
    "models": {"core", "kernels"},
    "data": {"core"},
    "training": {"models", "core", "kernels", "data"},
    "translation": {"training", "models", "core", "data"},
    "viz": {"training", "models", "core", "data"},
    "torch_port": {"training", "models", "core", "data"},
    "interop": {"models", "core"},
    "cli": {"training", "models", "core", "kernels", "data", "translation", "viz", "torch_port",
            "interop", "__init__"},  # the version string; kernels: the worker pool's thread count
    "__init__": {"core", "models", "training"},
    "__main__": {"cli"},
    "transformer_from_scratch_numpy": set(),
}

# module → the parts it may import inside a function only (never when it is imported)
LAZY = {
    "scratchformer.training.translation": {"translation"},
    "scratchformer.training.torch_run": {"torch_port"},
    "scratchformer.training.lm": {"interop"},  # fine-tuning GPT-2 (init_from): its loader
}


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        yield ".".join(("scratchformer",) + rel.parts).removesuffix(".__init__"), path


def _imports(name: str, path: Path, lazy: bool = False):
    """(imported module, imported names, line) for every import in the file, lazy ones too;
    with ``lazy=True``: (module, names, line, inside a function or not)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    functions = [f for f in ast.walk(tree)
                 if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
    in_function = {id(n) for f in functions for n in ast.walk(f)}
    for node in ast.walk(tree):
        where = (id(node) in in_function,) if lazy else ()
        if isinstance(node, ast.Import):
            for a in node.names:
                yield (a.name, [], node.lineno, *where)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            mod = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            yield (mod, [a.name for a in node.names], node.lineno, *where)


def _part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "scratchformer":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


MODULES = dict(_modules())


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_one_way(name):
    mine = _part(name)
    for mod, names, line, lazy in _imports(name, MODULES[name], lazy=True):
        targets = [mod] + [f"{mod}.{n}" for n in names if f"{mod}.{n}" in MODULES]
        for target in targets:
            other = _part(target)
            if other is None or other == mine:
                continue
            if lazy and other in LAZY.get(name, ()):
                continue
            assert other in ALLOWED[mine], f"{name}:{line} imports {target} ({mine} → {other})"


@pytest.mark.parametrize("name", sorted(LAZY))
def test_the_spine_imports_the_parts_it_drives_only_when_a_run_starts(name):
    seen = set()
    for mod, names, line, lazy in _imports(name, MODULES[name], lazy=True):
        other = _part(mod)
        if other in LAZY[name]:
            assert lazy, f"{name}:{line} imports {mod} at import time"
            seen.add(other)
    assert seen == LAZY[name]  # the exception is still needed


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_is_imported_from_another_module(name):
    for mod, names, line in _imports(name, MODULES[name]):
        if mod and mod.startswith("scratchformer"):
            private = [n for n in names if n.startswith("_") and not n.endswith("__")]
            assert not private, f"{name}:{line} imports private {private} from {mod}"


def test_no_import_cycle_between_modules():
    graph = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for mod, names, _ in _imports(name, path):
            for target in [mod] + [f"{mod}.{n}" for n in names]:
                if target in MODULES and target != name and not MODULES[name].name == "__init__.py":
                    graph[name].add(target)
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " → ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_the_one_file_reference_imports_numpy_and_the_standard_library_only():
    import sys

    for mod, _, line in _imports("scratchformer.transformer_from_scratch_numpy",
                                 PKG / "transformer_from_scratch_numpy.py"):
        root = mod.split(".")[0]
        assert root == "numpy" or root in sys.stdlib_module_names, f"line {line}: imports {mod}"
