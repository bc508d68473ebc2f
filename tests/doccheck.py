"""A checker for the project's prose: every file path, module, function or class name and
command-line flag that the README and docs/*.md write as code must exist (``test_readme.py``).

``DocChecker().check({name: markdown})`` returns one line per problem:

- file paths (``scratchformer/core/layers.py``, ``core/layers.py``, ``examples/...``, a bare
  ``bench_gpt.py`` anywhere in the tree) and relative links;
- ``path.py: Name.attr`` and ``tests/...py::test_name`` references (imported, looked up);
- dotted names (``scratchformer.training.train_task``, ``sf.AdamW``, ``functional.attention``,
  ``Trainer.resume``, ``nn.MultiheadAttention``): imported and looked up with getattr;
- code-like identifiers (``train_gpt``, ``GPTTrainConfig``, ``TASK_PRESETS``): written
  somewhere in the package, the examples or the benchmarks (test names: in tests/);
- ``from scratchformer... import ...`` lines of the docs' Python blocks;
- command lines (``scratchformer ...``, ``python -m scratchformer ...``, ``torchrun ... -m
  scratchformer ...``, ``python examples/X.py ...``): each flag an option of the very
  (sub)command it follows, and a full line (no ``[...]``, ``|`` or ``N`` placeholders)
  parsed by the real parser; a flag written alone (```--threads 1```): an option of some
  command or script, or of an outside tool the docs show (``pip --no-deps``).

Precise on purpose: only code spans, fenced blocks and command lines are read, math written
in a code span (``x_i``, ``W_stacked``) is not a name, and a dotted word ending in a file
extension (``checkpoint.safetensors``) is a file name.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import io
import re
import shlex
import tokenize
from collections import Counter
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
NOTEBOOK = ROOT / "notebooks" / "transformer_from_scratch.ipynb"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
PKG = ROOT / "scratchformer"
SOURCES = [*sorted(PKG.rglob("*.py")), *sorted((ROOT / "examples").glob("*.py")),
           *sorted((ROOT / "benchmarks").glob("*.py")), ROOT / "docs" / "make_images.py"]
HAVE_TORCH = importlib.util.find_spec("torch") is not None

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
PATH = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w-]+\.(?:py|sh|ipynb))(?![\w/])")
DOTTED = re.compile(r"(?<![\w./-])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
IDENT = re.compile(r"(?<![\w.-])([A-Za-z_]\w*)(?![\w-])")
FLAG = re.compile(r"^\[?(--[A-Za-z][\w-]*)")
# Extensions that end dotted words which are file names, not attributes (checkpoint.npz).
FILE_WORDS = {"safetensors", "npz", "jsonl", "json", "png", "html", "lock", "tmp", "tsv", "txt",
              "md", "svg", "pdf", "py", "sh", "ipynb", "bzs", "bzv", "bzz", "toml", "whl"}
# Local variables the docs use whose names are also module names (``loss.backward()``).
VARIABLES = {"loss", "model", "opt", "result", "trainer", "cfg", "state", "batch", "data"}
# Other libraries' names, looked up there (``nn.MultiheadAttention``, ``np.add.reduceat``).
OUTSIDE = {"np": "numpy", "torch": "torch", "nn": "torch.nn", "F": "torch.nn.functional",
           "time": "time", "os": "os", "struct": "struct", "zlib": "zlib",
           "transformers": "transformers"}
# Names the docs mention that live nowhere to be imported: a SWORD module's .conf key, a
# torch attribute made per instance, a folder of nanoGPT's, a helper the docs say is absent,
# the activation's name in prose.
NOT_OURS = {"DistributionLicense", "in_proj_weight", "shakespeare_char", "set_lr", "ReLU"}
STRINGS = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
PROGRAMS = {"scratchformer", "python", "python3", "torchrun", "bash", "pip", "apt-get", "git"}


def python_blocks(text: str | None = None) -> list[str]:
    text = README.read_text(encoding="utf-8") if text is None else text
    return [body for lang, body in FENCE.findall(text) if lang == "python"]


def code_like(name: str) -> bool:
    """A name that reads as code, not as a word or a formula: snake_case, CamelCase or
    UPPER_CASE, but not math written in a code span (``x_i``, ``W_ji``, ``dW_stacked``)."""
    head, _, tail = name.strip("_").partition("_")
    if tail and (len(tail) == 1 or len(head) <= 2 and (len(tail) <= 3 or not head.islower())):
        return False  # a subscript: x_i, g_j, y_nj, dx_i, W_stacked, mean_v, EncoderLayer_l
    return bool(tail) or bool(re.fullmatch(r"[A-Z]\w*[a-z]\w*", name)
                              and re.search(r"[a-z0-9][A-Z]", name))


# ---- what exists ------------------------------------------------------------------------------
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


class Index:
    """The identifiers, classes, modules and flags the project really has."""

    def __init__(self):
        self.names: set[str] = set()  # every identifier and identifier-like string in SOURCES
        self.classes: dict[str, list[str]] = {}  # class name -> modules defining it
        self.short: dict[str, list[str]] = {}  # "functional" -> ["scratchformer.core.functional"]
        for path in SOURCES:
            src = path.read_text(encoding="utf-8")
            tree = ast.parse(src)
            docstrings = {node.body[0].lineno for node in ast.walk(tree)
                          if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                          and ast.get_docstring(node) is not None}  # prose may be stale too
            for tok in tokenize.generate_tokens(io.StringIO(src).readline):
                if tok.type == tokenize.NAME:
                    self.names.add(tok.string)
                elif tok.type in STRINGS and tok.start[0] not in docstrings:
                    self.names.update(re.findall(r"[A-Za-z_]\w*", tok.string))
            if path.is_relative_to(PKG):
                mod = _module_name(path)
                self.short.setdefault(mod.rsplit(".", 1)[-1], []).append(mod)
                self.classes.update({node.name: [*self.classes.get(node.name, []), mod]
                                     for node in ast.walk(tree) if isinstance(node, ast.ClassDef)})
        self.tests = {m for p in (ROOT / "tests").rglob("*.py")
                      for m in re.findall(r"^\s*def (test_\w+)", p.read_text(encoding="utf-8"),
                                          re.M)}
        self.known = self.names | self.tests
        self.cli = _build_cli()
        self.script_flags: dict[Path, set[str]] = {}

    def flags_of_script(self, path: Path) -> set[str]:
        """The ``--flags`` a script's argparse accepts (read from its source, not run);
        a script that imports its parser from a sibling (``from copy_task_demo import run``)
        gets the sibling's."""
        if path not in self.script_flags:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            flags = {"--help"}
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                    names = [a.value for a in node.args if isinstance(a, ast.Constant)
                             and isinstance(a.value, str) and a.value.startswith("--")]
                    flags.update(names)
                    if any(getattr(k.value, "attr", "") == "BooleanOptionalAction"
                           for k in node.keywords if k.arg == "action"):
                        flags.update("--no-" + n[2:] for n in names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    sibling = path.parent / f"{node.module}.py"
                    if sibling.exists() and sibling != path:
                        flags |= self.flags_of_script(sibling)
            self.script_flags[path] = flags
        return self.script_flags[path]

    def all_flags(self) -> set[str]:
        flags = set()
        for parser in walk_parsers(self.cli):
            flags.update(s for s in parser._option_string_actions if s.startswith("--"))
        for path in SOURCES:
            if not path.is_relative_to(PKG):  # the scripts: examples, benchmarks, docs/
                flags |= self.flags_of_script(path)
        return flags


def _build_cli():
    from scratchformer.cli import build_parser

    return build_parser()


def _subcommands(parser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def walk_parsers(parser):
    yield parser
    for sub in _subcommands(parser).values():
        yield from walk_parsers(sub)


def resolve(dotted: str):
    """Import the longest module prefix of ``dotted`` and getattr the rest; raises
    LookupError naming what is missing. Needs torch only for ``torch_port``."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        name = ".".join(parts[:k])
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and (name == e.name or name.startswith(e.name + ".")):
                continue
            raise
        for i, attr in enumerate(parts[k:]):
            if not hasattr(obj, attr):
                raise LookupError(f"{'.'.join(parts[:k + i])} has no {attr!r}")
            obj = getattr(obj, attr)
        return obj
    raise LookupError(f"no module {parts[0]!r}")


# ---- the checker ------------------------------------------------------------------------------
class DocChecker:
    """``check(docs)`` -> problems, one line each; ``counts`` says how much was verified."""

    def __init__(self, index: Index | None = None):
        self.index = index or shared_index()
        self.counts: Counter = Counter()
        self.problems: list[str] = []
        self._loose_flags: list[tuple[str, str]] = []  # (where, span) checked at the end
        self._outside_flags: set[str] = set()  # flags of pip, torchrun ... shown in the docs

    def problem(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")

    def check(self, docs: dict[str, str]) -> list[str]:
        """``docs``: {name: markdown}. Returns the problems found."""
        for name, text in docs.items():
            self.check_text(name, text)
        known = self.index.all_flags() | self._outside_flags
        for where, span in self._loose_flags:
            for tok in span.split():
                m = FLAG.match(tok)
                if m:
                    self.counts["flag"] += 1
                    if m[1] not in known:
                        self.problem(where, f"no command has the flag {m[1]} (in `{span}`)")
        return self.problems

    def check_text(self, name: str, text: str) -> None:
        for lang, body in FENCE.findall(text):
            if lang == "python":
                self.check_python(name, body)
            elif lang in ("", "bash", "sh", "shell", "console"):
                for line in re.sub(r"\\\n\s*", " ", body).splitlines():
                    line = line.strip().removeprefix("$ ")
                    if not self.check_command(name, line) and not lang:
                        self.check_span(name, line)  # a map or a sketch: its names exist too
        prose = FENCE.sub("", text)
        for target in LINK.findall(prose):
            self.check_link(name, target)
        for span in SPAN.findall(prose):
            if "\n\n" in span:
                continue
            span = " ".join(span.replace("\\|", "|").split())
            first = span.split(" ", 1)[0]
            if first in PROGRAMS or re.match(r"[A-Z_]+=\S* ", span):
                self.check_command(name, span)
            elif first.startswith("--"):
                self._loose_flags.append((name, span))
            else:
                self.check_span(name, span)

    # -- links and paths
    def check_link(self, where: str, target: str) -> None:
        if re.match(r"\w+:", target) or target.startswith("#"):
            return  # a URL or an anchor of the same page
        self.counts["link"] += 1
        base = (ROOT / where).parent
        if not (base / target.split("#")[0]).exists():
            self.problem(where, f"link to a missing file {target}")

    def path_exists(self, path: str) -> bool:
        if (ROOT / path).exists() or (PKG / path).exists():
            return True
        return "/" not in path and any(p for p in ROOT.rglob(path) if ".git" not in p.parts)

    def check_path(self, where: str, path: str) -> Path | None:
        self.counts["path"] += 1
        if not self.path_exists(path):
            self.problem(where, f"no file {path}")
            return None
        for p in (ROOT / path, PKG / path):
            if p.exists():
                return p
        return None

    # -- spans that are not commands
    def check_span(self, where: str, span: str) -> None:
        rest = span
        m = re.match(r"((?:[\w.-]+/)*[\w-]+\.py)\s*(::|:)\s*(.+)", span)
        if m:  # "core/layers.py: Linear.backward" or "tests/x.py::test_y"
            path = self.check_path(where, m[1])
            if path is not None:
                self.check_in_file(where, path, m[2], m[3])
            return
        for path in PATH.findall(span):
            self.check_path(where, path)
            rest = rest.replace(path, " ")
        rest = re.sub(r"(\"[^\"]*\"|'[^']*')", " ", rest)  # strings say what they like
        for dotted in DOTTED.findall(rest):
            self.check_dotted(where, dotted)
            rest = rest.replace(dotted, " ")
        for name in IDENT.findall(rest):
            self.check_identifier(where, name)

    def check_in_file(self, where: str, path: Path, sep: str, names: str) -> None:
        if sep == "::":
            for test in re.findall(r"\w+", names)[:1]:
                self.counts["name"] += 1
                if not re.search(rf"^\s*def {test}\b", path.read_text(encoding="utf-8"), re.M):
                    self.problem(where, f"{path.relative_to(ROOT)} has no test {test}")
            return
        module = _module_name(path)
        owner = None
        for item in re.findall(r"[A-Za-z_]\w*(?:\.\w+)*", names):
            if item in ("with", "and", "the"):
                continue
            self.counts["name"] += 1
            candidates = [f"{module}.{item}"] + ([f"{module}.{owner}.{item}"] if owner else [])
            if not any(self._resolves(c) for c in candidates):
                self.problem(where, f"{path.relative_to(ROOT)} has no {item}")
            if "." in item:
                owner = item.split(".")[0]

    def _resolves(self, dotted: str) -> bool:
        try:
            resolve(dotted)
            return True
        except LookupError:
            return False
        except ImportError:  # torch_port without torch: cannot tell
            return not HAVE_TORCH

    def check_dotted(self, where: str, dotted: str) -> None:
        head, *rest = dotted.split(".")
        if rest[-1] in FILE_WORDS:
            return
        if head in ("scratchformer", "sf"):
            self.counts["name"] += 1
            full = "scratchformer." + ".".join(rest) if head == "sf" else dotted
            if not self._resolves(full):
                self.problem(where, f"{dotted} does not exist")
        elif head in self.index.short and head not in VARIABLES:
            self.counts["name"] += 1
            modules = self.index.short[head]
            if not any(self._resolves(f"{mod}.{'.'.join(rest)}") for mod in modules):
                self.problem(where, f"{dotted}: no module {head} has {'.'.join(rest)}")
        elif head in OUTSIDE and head not in self.index.short:
            module = OUTSIDE[head]
            if importlib.util.find_spec(module.split(".")[0]) is not None:
                self.counts["name"] += 1
                if not self._resolves(f"{module}.{'.'.join(rest)}"):
                    self.problem(where, f"{dotted}: {module} has no {'.'.join(rest)}")
        elif head in self.index.classes:
            self.counts["name"] += 1
            attr = ".".join(rest)
            found = any(self._resolves(f"{mod}.{head}.{attr}") for mod in self.index.classes[head])
            if not found and rest[0] not in self.index.names:  # an attribute set in __init__
                self.problem(where, f"{dotted}: class {head} has no {attr}")
        else:
            for part in (head, *rest):
                self.check_identifier(where, part)

    def check_identifier(self, where: str, name: str) -> None:
        if not code_like(name) or name in NOT_OURS:
            return
        self.counts["name"] += 1
        known = self.index.known
        if name not in known and not (name.endswith("s") and name[:-1] in known):  # plurals
            self.problem(where, f"`{name}` is not a name in the package, examples or benchmarks")

    # -- Python blocks of the docs (the README's also run, above)
    def check_python(self, where: str, code: str) -> None:
        imports = r"^\s*from\s+(scratchformer[\w.]*)\s+import\s+\(?([^)\n#]+)"
        for m in re.finditer(imports, code, re.M):
            for item in m[2].split(","):
                name = item.split(" as ")[0].strip()
                if name:
                    self.counts["name"] += 1
                    if not self._resolves(f"{m[1]}.{name}"):
                        self.problem(where, f"from {m[1]} import {name}: no such name")
        for mod in re.findall(r"^\s*import\s+(scratchformer[\w.]*)", code, re.M):
            self.counts["name"] += 1
            if not self._resolves(mod):
                self.problem(where, f"import {mod}: no such module")
        for dotted in set(re.findall(r"(?<![\w.])((?:sf|scratchformer)(?:\.\w+)+)", code)):
            self.check_dotted(where, dotted)

    # -- command lines
    def check_command(self, where: str, line: str) -> bool:
        """Check ``line`` if it is a command line; returns whether it was one."""
        found = False
        for part in re.split(r"\s+(?:&&|\|\||;|\|)\s+", line):
            try:
                toks = shlex.split(part, comments=True)
            except ValueError:
                toks = part.split()
            while toks and re.fullmatch(r"[A-Z_]+=\S*", toks[0]):
                toks.pop(0)  # PYTHONPATH=. ...
            if toks and toks[0] in PROGRAMS:
                self._check_program(where, toks)
                found = True
        return found

    def _check_program(self, where: str, toks: list[str]) -> None:
        prog, args = toks[0], toks[1:]
        if prog == "torchrun":
            if "-m" not in args:
                return self._outside(args)
            i = args.index("-m")
            self._outside(args[:i])
            prog, args = "python", args[i:]
        if prog == "scratchformer":
            return self._check_cli(where, args)
        if prog in ("python", "python3") and args:
            if args[0] == "-m" and len(args) > 1:
                if args[1] == "scratchformer":
                    return self._check_cli(where, args[2:])
                if args[1].startswith("scratchformer."):
                    self.counts["name"] += 1
                    spec = importlib.util.find_spec(args[1])
                    if spec is None:
                        return self.problem(where, f"no module {args[1]}")
                    flags = self.index.flags_of_script(Path(spec.origin))
                    return self._check_flags(where, args[2:], flags, args[1])
                return self._outside(args[2:])
            if "/" in args[0] and args[0].endswith(".py"):
                path = self.check_path(where, args[0])
                if path is not None:
                    self._check_flags(where, args[1:], self.index.flags_of_script(path), args[0])
                return
            return self._outside(args[1:])  # python train.py ... (another project's script)
        if prog == "bash" and args and "/" in args[0]:
            self.check_path(where, args[0])
            return
        self._outside(args)

    def _outside(self, args: list[str]) -> None:
        self._outside_flags.update(m[1] for a in args if (m := FLAG.match(a)))

    def _check_cli(self, where: str, args: list[str]) -> None:
        parser, words = self.index.cli, ["scratchformer"]
        while args and not args[0].startswith("-"):
            subs = _subcommands(parser)
            if not subs:
                break
            if args[0] in subs:
                parser = subs[args[0]]
                words.append(args.pop(0))
                continue
            if re.fullmatch(r"[a-z][a-z-]*", args[0]):
                self.problem(where, f"{' '.join(words)} has no command {args[0]!r}")
            return
        self.counts["command"] += 1
        before = len(self.problems)
        self._check_flags(where, args, set(parser._option_string_actions), " ".join(words))
        if len(self.problems) == before and len(words) > 1 and args and not any(
                re.search(r"[\[\]|…]|\.\.\.|^[A-Z]+$", a) for a in args):
            self._parse(where, words, args)  # a real command line, not a synopsis

    def _parse(self, where: str, words: list[str], args: list[str]) -> None:
        """The command line as the real parser reads it (``--resume PATH`` is caught here:
        ``--resume`` is a flag of ``train``, the path is one argument too many)."""
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                self.index.cli.parse_args([*words[1:], *args])
        except SystemExit as e:
            message = err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else ""
            if e.code and "--threads" not in message:  # --threads is checked against this machine
                self.problem(where, f"{' '.join([*words, *args])}: {message}")

    def _check_flags(self, where: str, args: list[str], flags: set[str], command: str) -> None:
        for a in args:
            m = FLAG.match(a)
            if m:
                self.counts["flag"] += 1
                if m[1] not in flags:
                    self.problem(where, f"{command} has no flag {m[1]}")


@lru_cache(maxsize=1)
def shared_index() -> Index:
    """One index per test session (it reads every source file and builds the CLI)."""
    return Index()
