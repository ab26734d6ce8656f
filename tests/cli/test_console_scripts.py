"""The console scripts of pyproject.toml: each names a ``main(argv) -> int`` that answers
``--help`` (checked from the file, so it holds before an install registers them)."""

from __future__ import annotations

import importlib

import pytest

from tests.builders import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_command_has_a_script() -> None:
    commands = {"train", "query", "evaluate", "serve", "convert"}
    assert {f"attribnet-{c}" for c in commands} <= set(SCRIPTS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_target_answers_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module, attr = SCRIPTS[name].split(":")
    main = getattr(importlib.import_module(module), attr)
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out
