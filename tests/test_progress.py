"""Progress bars (``datadiet._core.progress``): on stderr, only on a terminal, stopped before an error line.

``TTY_COMPATIBLE=1`` makes rich treat the captured stderr as a terminal, so the bars are really drawn.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import datadiet.cli as cli
from datadiet._core import progress
from datadiet._core.progress import ProgressBar, track
from datadiet.errors import ParameterError

CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")  # cursor moves and line erases: invisible


@pytest.fixture(autouse=True)
def _no_display_left():
    yield
    progress.stop_live()


@pytest.fixture
def terminal(monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")


def test_nothing_is_drawn_when_stderr_is_not_a_terminal(capsys):
    assert list(track(range(5), "hidden states")) == [0, 1, 2, 3, 4]
    with ProgressBar("study cells", total=2) as bar:
        bar.advance()
    assert capsys.readouterr() == ("", "") and progress._live is None


def test_a_disabled_bar_draws_nothing_on_a_terminal(terminal, capsys):
    assert list(track(iter("ab"), "gradients", enabled=False)) == ["a", "b"]
    assert capsys.readouterr() == ("", "") and progress._live is None


def test_on_a_terminal_bars_go_to_stderr_and_a_finished_bar_leaves_its_line(terminal, capsys):
    with ProgressBar("study cells", total=3, completed=1) as cells:
        cells.note("random__b0.30__s0")
        assert list(track(range(4), "epoch 1", transient=True)) == [0, 1, 2, 3]
        assert list(track(range(2), "hidden states")) == [0, 1]
        cells.advance()
        assert progress._live is not None  # one display for every open bar
    out, err = capsys.readouterr()
    assert out == ""  # stdout stays parseable
    assert "hidden states" in err and "2/2" in err and "study cells" in err and "2/3" in err
    assert progress._live is None  # the last bar closed stops the display


def test_a_bar_that_is_never_iterated_draws_nothing(terminal, capsys):
    track(range(3), "encode")
    assert progress._live is None and capsys.readouterr() == ("", "")


def test_stop_live_ends_the_display_and_later_bar_calls_are_harmless(terminal, capsys):
    bar = ProgressBar("encode", total=10)
    bar.advance(3)
    progress.stop_live()
    assert progress._live is None
    bar.advance()
    bar.note("x")
    bar.close()
    bar.close()
    assert "3/10" not in capsys.readouterr().err.split("encode")[-1].split("\n", 1)[-1]  # nothing after stop


def test_an_error_under_a_live_bar_is_printed_on_its_own_line(tmp_path: Path, terminal, monkeypatch):
    features = tmp_path / "f.npy"
    np.save(features, np.random.default_rng(0).normal(size=(12, 3)))

    def fails_midway(path: Path, *, name: str) -> None:
        bar = ProgressBar("encode", total=10)
        bar.advance(3)
        raise ParameterError(f"{name} file '{path}' failed halfway")  # a user error, raised mid-bar

    monkeypatch.setattr(cli, "load_features", fails_midway)
    args = ["select", "--features", features, "--algorithm", "random", "--budget", "3", "--out", "s.json"]
    result = CliRunner().invoke(cli.app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    drawn, _, after = result.output.rpartition("error:")
    assert "encode" in drawn and "3/10" in drawn  # the bar was drawn before the error
    assert drawn.endswith("\x1b[2K")  # the bar's line is erased, the cursor at its start
    lines = CONTROL.sub("", result.output).split("\n")
    expected = f"error: features file '{features}' failed halfway"
    assert [line for line in lines if "error:" in line] == [expected]
    assert "error:" + after == lines[-2] + "\n" and progress._live is None  # nothing drawn after the error
