"""Tests for scratchformer.data.pairs.read_pairs_tsv."""
import pytest

from scratchformer.data.pairs import read_pairs_tsv


def write(tmp_path, text, name="pairs.tsv"):
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8"))
    return p


def test_reads_pairs_skipping_blank_lines_and_comments(tmp_path):
    p = write(tmp_path, "# a comment\nthe house\tla casa\n\n  \n  # indented comment\r\n"
                        "good morning \t buenos días\r\nlast\túltimo")
    assert read_pairs_tsv(p) == [("the house", "la casa"), ("good morning", "buenos días"),
                                 ("last", "último")]


def test_accepts_str_path_and_utf8_bom(tmp_path):
    p = write(tmp_path, "\ufeffa\tb\n")
    assert read_pairs_tsv(str(p)) == [("a", "b")]


def test_line_without_tab_names_file_and_line(tmp_path):
    p = write(tmp_path, "a\tb\n# c\nno tab here\n")
    with pytest.raises(ValueError, match=r"pairs\.tsv, line 3: .*got no tab"):
        read_pairs_tsv(p)


def test_line_with_two_tabs_names_file_and_line(tmp_path):
    p = write(tmp_path, "a\tb\tc\n")
    with pytest.raises(ValueError, match=r"pairs\.tsv, line 1: .*got 2 tabs"):
        read_pairs_tsv(p)


@pytest.mark.parametrize("line, side", [("\tla casa", "source"), ("the house\t  ", "target")])
def test_empty_side_names_the_side_and_line(tmp_path, line, side):
    p = write(tmp_path, "x\ty\n\n" + line + "\n")
    with pytest.raises(ValueError, match=rf"pairs\.tsv, line 3: empty {side} side"):
        read_pairs_tsv(p)


def test_non_utf8_file_is_a_clear_error(tmp_path):
    p = tmp_path / "latin1.tsv"
    p.write_bytes("caf\u00e9\tcoffee\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.tsv: not valid UTF-8"):
        read_pairs_tsv(p)
