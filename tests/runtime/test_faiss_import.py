"""FAISS install problems give one clear error with the repairing command: none installed,
two builds installed over each other (faiss-cpu + faiss-gpu-cu12 break ``import faiss``),
or one that does not import."""

from __future__ import annotations

import importlib
import sys
from importlib import metadata

import pytest

from attribnet.runtime.faiss_import import FAISS_DISTRIBUTIONS, install_problem, installed_faiss


def test_this_environment_has_exactly_one_faiss_build() -> None:
    found = installed_faiss()
    assert len(found) == 1 and found[0] in FAISS_DISTRIBUTIONS


def test_messages_name_the_fix() -> None:
    assert "pip install 'attribnet[cpu]'" in install_problem([])
    both = install_problem(["faiss-gpu-cu12", "faiss-cpu"])
    assert "several FAISS builds" in both
    assert "pip uninstall -y faiss-cpu faiss-gpu-cu12" in both
    broken = install_problem(["faiss-cpu"], AttributeError("no attribute 'x'"))
    assert "no attribute 'x'" in broken and "pip install --force-reinstall faiss-cpu" in broken


def _reimport(monkeypatch: pytest.MonkeyPatch) -> ImportError:
    """Import attribnet.runtime.faiss_import afresh with ``import faiss`` failing."""
    monkeypatch.setitem(sys.modules, "faiss", None)  # None in sys.modules: ImportError
    monkeypatch.delitem(sys.modules, "attribnet.runtime.faiss_import")
    with pytest.raises(ImportError) as exc:
        importlib.import_module("attribnet.runtime.faiss_import")
    return exc.value


def test_a_failing_import_explains_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    error = _reimport(monkeypatch)
    assert "does not import" in str(error) and "--force-reinstall" in str(error)


def test_two_builds_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def version(name: str) -> str:
        if name in ("faiss-cpu", "faiss-gpu-cu12"):
            return "1.0"
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", version)
    error = _reimport(monkeypatch)
    assert "several FAISS builds are installed (faiss-cpu, faiss-gpu-cu12)" in str(error)
