"""The generator index's GPU path, on a CPU: faiss-gpu's calls are replaced by fakes that
record them (the "GPU" index is a CPU clone), so these tests check attribnet's wiring, not
FAISS's GPU kernels: a GPU copy is searched, saved through ``index_gpu_to_cpu``, tuned
through ``GpuParameterSpace``, and a failed copy falls back to the CPU."""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np
import pytest

import attribnet.index.faiss_store as faiss_store
from attribnet.index import GeneratorIndex

DIM = 16
NAMES = ["faceswap", "lightweight", "iae"]


class FakeGpu:
    """Stands in for faiss-gpu: records which calls attribnet makes."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.calls: list[tuple] = []

    def StandardGpuResources(self) -> object:  # noqa: N802 (faiss's name)
        self.calls.append(("resources",))
        return object()

    def index_cpu_to_gpu(self, resources: object, device: int, index: faiss.Index):
        self.calls.append(("to_gpu", device))
        if self.fail:
            raise RuntimeError("CUDA out of memory (fake)")
        return faiss.clone_index(index)

    def index_gpu_to_cpu(self, index: faiss.Index) -> faiss.Index:
        self.calls.append(("to_cpu",))
        return faiss.clone_index(index)

    def GpuParameterSpace(self):  # noqa: N802 (faiss's name)
        fake = self

        class Space:
            def set_index_parameter(self, index: faiss.Index, name: str, value: float) -> None:
                fake.calls.append(("set", name, value))
                faiss.ParameterSpace().set_index_parameter(index, name, value)

        return Space()

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> FakeGpu:
    fake = FakeGpu()
    monkeypatch.setattr(faiss_store, "gpu_available", lambda: True)
    for name in ("StandardGpuResources", "index_cpu_to_gpu", "index_gpu_to_cpu"):
        monkeypatch.setattr(faiss, name, getattr(fake, name), raising=False)
    monkeypatch.setattr(faiss, "GpuParameterSpace", fake.GpuParameterSpace, raising=False)
    return fake


def data(n: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    return x, rng.integers(0, len(NAMES), n), rng.normal(size=(40, DIM)).astype(np.float32)


@pytest.mark.parametrize("ivf_threshold", [10**6, 500], ids=["flat", "ivf"])
def test_gpu_copy_is_searched_and_saved_in_cpu_form(
    fake_gpu: FakeGpu, tmp_path: Path, ivf_threshold: int
) -> None:
    x, labels, queries = data()
    on_gpu = GeneratorIndex.build(x, labels, NAMES, ivf_threshold=ivf_threshold, nprobe=4)
    on_cpu = GeneratorIndex.build(
        x, labels, NAMES, ivf_threshold=ivf_threshold, nprobe=4, use_gpu=False
    )
    assert on_gpu.on_gpu and not on_cpu.on_gpu
    assert fake_gpu.names() == ["resources", "to_gpu"]
    sims, rows = on_gpu.search(queries, 10)
    np.testing.assert_array_equal(rows, on_cpu.search(queries, 10)[1])

    on_gpu.save(tmp_path / "idx")
    assert fake_gpu.names()[-1] == "to_cpu"
    loaded = GeneratorIndex.load(tmp_path / "idx", use_gpu=False)
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], rows)
    np.testing.assert_allclose(loaded.search(queries, 10)[0], sims, atol=1e-6)


def test_nprobe_of_a_gpu_index_goes_through_gpu_parameter_space(fake_gpu: FakeGpu) -> None:
    x, labels, queries = data()
    index = GeneratorIndex.build(x, labels, NAMES, ivf_threshold=500, nprobe=2)
    index.nprobe = 8
    assert ("set", "nprobe", 8) in fake_gpu.calls and index.nprobe == 8
    reference = GeneratorIndex.build(x, labels, NAMES, ivf_threshold=500, nprobe=8, use_gpu=False)
    np.testing.assert_array_equal(index.search(queries, 10)[1], reference.search(queries, 10)[1])


def test_failed_gpu_copy_falls_back_to_the_cpu(
    fake_gpu: FakeGpu, caplog: pytest.LogCaptureFixture
) -> None:
    fake_gpu.fail = True
    x, labels, queries = data(300)
    with caplog.at_level(logging.WARNING, logger="attribnet.index"):
        index = GeneratorIndex.build(x, labels, NAMES)
    assert not index.on_gpu
    assert "FAISS GPU copy failed" in caplog.text and "searching on the CPU" in caplog.text
    assert index.search(queries, 5)[1].shape == (40, 5)


def test_use_gpu_false_never_touches_the_gpu(fake_gpu: FakeGpu, tmp_path: Path) -> None:
    x, labels, _ = data(300)
    index = GeneratorIndex.build(x, labels, NAMES, use_gpu=False)
    GeneratorIndex.load(index.save(tmp_path / "idx"), use_gpu=False)
    assert fake_gpu.calls == []
