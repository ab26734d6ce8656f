"""The console scripts of pyproject.toml: each names a ``main(argv) -> int`` that answers
``--help`` (checked from the file, so it holds before an install registers them)."""

from __future__ import annotations

import importlib
import importlib.util
import sys

import pytest

from attribnet.cli import MODULES
from tests.builders import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_command_has_a_script() -> None:
    commands = {"train", "query", "evaluate", "serve", "convert"}
    assert {f"attribnet-{c}" for c in commands} <= set(SCRIPTS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_script_target_answers_help_under_its_own_name(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started as the console script, --help names the script; started as a module, it
    names ``python -m`` and the module."""
    module, attr = SCRIPTS[name].split(":")
    main = getattr(importlib.import_module(module), attr)
    for argv0, prog in ((f"/venv/bin/{name}", name), (f"/x/{module}.py", "python -m attribnet.")):
        monkeypatch.setattr(sys, "argv", [argv0])
        with pytest.raises(SystemExit) as exit_info:
            main(["--help"])
        assert exit_info.value.code == 0
        assert f"usage: {prog}" in capsys.readouterr().out


def test_every_command_module_runs_as_its_python_m_name() -> None:
    """The module --help names for ``python -m`` exists and runs the command."""
    for command, module in MODULES.items():
        spec = importlib.util.find_spec(module if module.count(".") > 1 else f"{module}")
        assert spec is not None, module
        runs = spec.submodule_search_locations is None or importlib.util.find_spec(
            f"{module}.__main__"
        )
        assert runs, f"python -m {module} (the {command} command) has no __main__"
