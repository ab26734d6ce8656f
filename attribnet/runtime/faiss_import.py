"""FAISS, imported once for attribnet, with a clear error when it is missing or broken.

FAISS comes from exactly one of two PyPI distributions, chosen with attribnet's extras:
``faiss-cpu`` (``pip install 'attribnet[cpu]'``) or ``faiss-gpu-cu12``
(``pip install 'attribnet[gpu]'``, CUDA 12). Both install the same ``faiss`` package, so
with both installed the files of one overwrite the other's and ``import faiss`` fails
(faiss-cpu 1.15.1 over faiss-gpu-cu12 1.14.1: ``AttributeError: module
'faiss._swigfaiss' has no attribute 'delete_GpuResourcesVector'``). That is why
neither is a plain dependency.
"""

from __future__ import annotations

from collections.abc import Collection
from importlib import metadata

FAISS_DISTRIBUTIONS = ("faiss-cpu", "faiss-gpu", "faiss-gpu-cu11", "faiss-gpu-cu12")


def installed_faiss() -> list[str]:
    """The FAISS distributions installed in this environment."""
    found = []
    for name in FAISS_DISTRIBUTIONS:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def install_problem(installed: Collection[str], error: BaseException | None = None) -> str:
    """What is wrong with the FAISS install, and the command that fixes it."""
    if not installed:
        return (
            "attribnet needs FAISS, which none of the installed packages provides: "
            "pip install 'attribnet[cpu]' (or 'attribnet[gpu]' with CUDA 12)"
        )
    if len(installed) > 1:
        names = sorted(installed)
        return (
            f"several FAISS builds are installed ({', '.join(names)}); they "
            "overwrite each other's 'faiss' module. Keep one: "
            f"pip uninstall -y {' '.join(names)} && pip install faiss-cpu (or faiss-gpu-cu12)"
        )
    (name,) = installed
    return (
        f"FAISS ({name}) is installed but does not import ({error}); reinstall it: "
        f"pip install --force-reinstall {name}"
    )


try:
    import faiss
except (ImportError, AttributeError) as exc:  # absent, or two builds in one folder
    raise ImportError(install_problem(installed_faiss(), exc)) from exc

__all__ = ["faiss", "install_problem", "installed_faiss"]
