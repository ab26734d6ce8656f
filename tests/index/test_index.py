"""The generator index: save/load round trip, kNN and prototype votes, open-set threshold,
refusal of another model's checkpoint, corrupt files and atomic saves."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from attribnet.cli.index import main
from attribnet.data.sampling import clip_indices, clips_for, sample_indices
from attribnet.errors import DataError, IndexMismatchError
from attribnet.files.checkpoints import save_checkpoint
from attribnet.index import (
    INDEX_FILE,
    META_FILE,
    TARGET_RECALL,
    GeneratorIndex,
    calibrate_threshold,
    gpu_available,
    index_built_from,
    ivf_nlist,
    recall_at_k,
    tune_nprobe,
)

DIM = 16
NAMES = ["faceswap", "lightweight", "iae"]


def blobs(
    rng: np.random.Generator, centres: np.ndarray, per_class: int, noise: float = 0.15
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around each centre (K, D): (K * per_class, D) and labels."""
    x = np.concatenate([c + noise * rng.normal(size=(per_class, len(c))) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(len(centres)), per_class)


@pytest.fixture
def centres() -> np.ndarray:
    """Three well-separated unit directions (orthogonal axes)."""
    return np.eye(len(NAMES), DIM, dtype=np.float32)


def fake_checkpoint(path: Path, embedding_dim: int = DIM, tag: int = 0) -> Path:
    """A minimal checkpoint file (no model needed): what load() reads from it."""
    save_checkpoint(
        path,
        {
            "model": {"w": torch.full((2,), float(tag))},
            "args": {"model": {"embedding_dim": embedding_dim}},
            "class_names": NAMES,
        },
    )
    return path


def test_recall_at_k_counts_found_exact_ids() -> None:
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 9, 9], [5, 6, 7, 8]])
    assert recall_at_k(found, exact) == pytest.approx((2 / 4 + 1) / 2)


def test_build_tunes_nprobe_to_the_smallest_power_of_two_reaching_the_target(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(40, DIM))
    x = (centres[rng.integers(0, 40, 6000)] + 0.6 * rng.normal(size=(6000, DIM))).astype("f4")
    index = GeneratorIndex.build(x, rng.integers(0, len(NAMES), 6000), NAMES, ivf_threshold=500)
    assert index.kind == "ivf" and index.nprobe_recall >= TARGET_RECALL
    # the same tuning from scratch, then one power of two lower must miss the target
    raw = faiss.read_index(str(index.save(tmp_path / "idx") / "index.faiss"))
    vectors = index.vectors()
    assert tune_nprobe(raw, vectors) == (index.nprobe, index.nprobe_recall)
    assert 1 < index.nprobe < faiss.extract_index_ivf(raw).nlist
    faiss.extract_index_ivf(raw).nprobe = index.nprobe // 2
    _, exact = faiss.knn(vectors[:256], vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
    assert recall_at_k(raw.search(vectors[:256], 10)[1], exact) < TARGET_RECALL
    loaded = GeneratorIndex.load(tmp_path / "idx")
    assert (loaded.nprobe, loaded.nprobe_recall) == (index.nprobe, index.nprobe_recall)


@pytest.mark.parametrize("ivf_threshold", [10**6, 500], ids=["flat", "ivf"])
def test_save_load_returns_identical_neighbours(tmp_path: Path, ivf_threshold: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, DIM)).astype(np.float32)
    labels = rng.integers(0, len(NAMES), 2000)
    index = GeneratorIndex.build(x, labels, NAMES, ivf_threshold=ivf_threshold, nprobe=4)
    assert index.kind == ("flat" if ivf_threshold > 2000 else "ivf")
    queries = rng.normal(size=(50, DIM)).astype(np.float32)
    sims, rows = index.search(queries, 10)

    loaded = GeneratorIndex.load(index.save(tmp_path / "idx"))
    sims2, rows2 = loaded.search(queries, 10)

    assert loaded.kind == index.kind and loaded.nprobe == index.nprobe
    np.testing.assert_array_equal(rows2, rows)
    np.testing.assert_allclose(sims2, sims, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(loaded.labels, labels)
    np.testing.assert_allclose(loaded.prototypes, index.prototypes, atol=1e-6)
    if ivf_threshold < 2000:
        assert faiss.extract_index_ivf(loaded._index).nlist == ivf_nlist(2000)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs faiss-gpu and a CUDA device")
@pytest.mark.parametrize("ivf_threshold", [10**6, 500], ids=["flat", "ivf"])
def test_gpu_search_matches_cpu_search(tmp_path: Path, ivf_threshold: int) -> None:
    """On a GPU machine: the index is searched on the GPU, finds what the CPU finds, and
    comes back from disk on the GPU with its nprobe."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, DIM)).astype(np.float32)
    labels = rng.integers(0, len(NAMES), 2000)
    build = dict(ivf_threshold=ivf_threshold, nprobe=4)
    gpu = GeneratorIndex.build(x, labels, NAMES, **build)
    cpu = GeneratorIndex.build(x, labels, NAMES, use_gpu=False, **build)
    assert gpu.on_gpu and not cpu.on_gpu
    queries = rng.normal(size=(50, DIM)).astype(np.float32)
    sims, rows = gpu.search(queries, 10)
    sims_cpu, rows_cpu = cpu.search(queries, 10)
    assert recall_at_k(rows, rows_cpu) >= 0.99  # float ties may swap an equal neighbour
    np.testing.assert_allclose(sims, sims_cpu, rtol=0, atol=1e-4)
    loaded = GeneratorIndex.load(gpu.save(tmp_path / "idx"))
    assert loaded.on_gpu and loaded.nprobe == gpu.nprobe
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], rows)
    if gpu.kind == "ivf":  # nprobe reaches the GPU index through IndexIDMap2
        exact = GeneratorIndex.build(x, labels, NAMES, use_gpu=False).search(queries, 10)[1]
        gpu.nprobe = 1
        one = recall_at_k(gpu.search(queries, 10)[1], exact)
        gpu.nprobe = ivf_nlist(len(x))
        assert recall_at_k(gpu.search(queries, 10)[1], exact) >= 0.99 > one


def test_flat_search_is_exact_cosine() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, DIM)).astype(np.float32)
    q = rng.normal(size=(7, DIM)).astype(np.float32)
    index = GeneratorIndex.build(x, np.zeros(300, int), NAMES[:1])
    sims, rows = index.search(q, 5)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    cosine = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ unit.T
    np.testing.assert_array_equal(rows, np.argsort(-cosine, axis=1)[:, :5])
    np.testing.assert_allclose(sims, np.sort(cosine, axis=1)[:, ::-1][:, :5], atol=1e-5)
    assert index.search(q, 1000)[1].shape == (7, 300)  # k is capped at the index size


def test_knn_and_prototype_predict_separated_clusters(centres: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    x, y = blobs(rng, centres, 60)
    index = GeneratorIndex.build(x, y, NAMES)
    q, qy = blobs(rng, centres, 20)

    pred, confidence, votes = index.knn_predict(q, k=7)
    np.testing.assert_array_equal(pred, qy)
    assert votes.shape == (len(q), len(NAMES))
    assert np.all(confidence > 0.99) and np.all(confidence <= 1.0 + 1e-9)
    np.testing.assert_allclose(confidence, votes.max(1) / votes.sum(1))

    proto_pred, proto_sim = index.prototype_predict(q)
    np.testing.assert_array_equal(proto_pred, qy)
    unit = index.prototypes[qy]
    np.testing.assert_allclose(proto_sim, np.sum(q * unit, axis=1), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(index.prototypes, axis=1), 1.0, atol=1e-5)


def test_knn_vote_weights_by_similarity() -> None:
    # Query e0: neighbours are one class-0 vector at cos 1.0 and two class-1 vectors at cos
    # 0.2. By count class 1 wins, by similarity class 0 wins: 1.0 vs 0.4.
    x = np.array([[1, 0, 0], [0.2, 0.98, 0], [0.2, 0, 0.98]], np.float32)
    index = GeneratorIndex.build(x, np.array([0, 1, 1]), ["a", "b"])
    pred, confidence, votes = index.knn_predict(np.array([[1, 0, 0]], np.float32), k=3)
    assert pred[0] == 0
    assert votes[0, 1] == pytest.approx(2 * 0.2 / np.linalg.norm([0.2, 0.98]), rel=1e-4)
    assert confidence[0] == pytest.approx(votes[0, 0] / votes[0].sum())


def test_calibrate_threshold_is_fifth_percentile() -> None:
    scores = np.arange(1, 101, dtype=float)  # 100 scores: 5 may fall below
    assert calibrate_threshold(scores, 0.95) == 6.0
    assert np.mean(scores >= 6.0) == 0.95
    assert calibrate_threshold(np.array([0.3]), 0.95) == 0.3


def test_threshold_keeps_95_percent_of_val_knowns_and_rejects_unseen(
    centres: np.ndarray,
) -> None:
    rng = np.random.default_rng(3)
    x, y = blobs(rng, centres, 100, noise=0.3)
    index = GeneratorIndex.build(x, y, NAMES)
    val, _ = blobs(rng, centres, 40, noise=0.3)
    threshold = index.open_set.calibrate(index, val)
    known = index.prototype_predict(val)[1]
    assert (~index.open_set.is_unknown(known)).mean() >= 0.95
    assert threshold == pytest.approx(np.sort(known)[6])  # floor(0.05 * 120)
    unseen, _ = blobs(rng, np.eye(1, DIM, 7, dtype=np.float32), 30, noise=0.3)
    assert index.open_set.is_unknown(index.prototype_predict(unseen)[1]).mean() > 0.9


def test_threshold_on_max_softmax_when_calibrated_with_probabilities(
    tmp_path: Path, centres: np.ndarray
) -> None:
    rng = np.random.default_rng(5)
    x, y = blobs(rng, centres, 30)
    index = GeneratorIndex.build(x, y, NAMES)
    probs = rng.dirichlet(np.ones(len(NAMES)), size=40)
    threshold = index.open_set.calibrate(index, x[:40], probs)
    assert index.open_set.score == "max_softmax"
    assert threshold == pytest.approx(np.sort(probs.max(1))[2])  # floor(0.05 * 40)
    np.testing.assert_allclose(index.open_set.knownness(index, x[:40], probs), probs.max(1))
    with pytest.raises(ValueError, match="pass the classifier probabilities"):
        index.open_set.knownness(index, x[:40])
    loaded = GeneratorIndex.load(index.save(tmp_path / "idx"))
    assert (loaded.open_set.score, loaded.open_set.threshold) == ("max_softmax", threshold)
    index.open_set.calibrate(index, x[:40])  # without probabilities: back to prototype cosine
    assert index.open_set.score == "prototype_cosine"
    np.testing.assert_allclose(
        index.open_set.knownness(index, x[:40]), index.prototype_predict(x[:40])[1]
    )


def test_threshold_survives_save_and_load(tmp_path: Path, centres: np.ndarray) -> None:
    rng = np.random.default_rng(4)
    x, y = blobs(rng, centres, 30)
    index = GeneratorIndex.build(x, y, NAMES, video_ids=[f"v{i}" for i in range(90)])
    index.open_set.calibrate(index, x[::3], split="val")
    loaded = GeneratorIndex.load(index.save(tmp_path / "idx"))
    assert loaded.open_set.threshold == index.open_set.threshold and loaded.open_set.split == "val"
    assert loaded.video_ids[5] == "v5"
    meta = json.loads((tmp_path / "idx" / META_FILE).read_text())
    assert meta["embedding_dim"] == DIM and meta["threshold"]["score"] == "prototype_cosine"
    assert meta["library_version"]


def test_mismatched_checkpoint_is_refused(tmp_path: Path, centres: np.ndarray) -> None:
    from attribnet.files.checkpoints import file_sha256

    ours = fake_checkpoint(tmp_path / "ours.pt", tag=0)
    other = fake_checkpoint(tmp_path / "other.pt", tag=1)
    wide = fake_checkpoint(tmp_path / "wide.pt", embedding_dim=32, tag=0)
    x, y = blobs(np.random.default_rng(5), centres, 10)
    folder = GeneratorIndex.build(
        x, y, NAMES, checkpoint_sha256=file_sha256(ours), checkpoint_path=str(ours)
    ).save(tmp_path / "idx")

    GeneratorIndex.load(folder, ours)  # the right checkpoint loads
    with pytest.raises(IndexMismatchError, match="sha256") as err:
        GeneratorIndex.load(folder, other)
    assert "ours.pt" in str(err.value) and "other.pt" in str(err.value)
    with pytest.raises(IndexMismatchError, match="32-d.*16-d"):
        GeneratorIndex.load(folder, wide)
    with pytest.raises(IndexMismatchError, match="dim 8"):
        GeneratorIndex.load(folder).search(np.ones((1, 8), np.float32), 3)


def test_index_built_from_names_only_its_own_whole_index(tmp_path: Path, centres) -> None:
    from attribnet.files.checkpoints import file_sha256

    ours = fake_checkpoint(tmp_path / "run/best.pt", tag=0)
    other = fake_checkpoint(tmp_path / "other.pt", tag=1)
    assert not index_built_from(tmp_path / "idx", ours)  # no index yet
    x, y = blobs(np.random.default_rng(5), centres, 10)
    folder = GeneratorIndex.build(
        x, y, NAMES, checkpoint_sha256=file_sha256(ours), checkpoint_path=str(ours)
    ).save(tmp_path / "idx")
    assert index_built_from(folder, ours) and index_built_from(folder, tmp_path / "run")
    assert not index_built_from(folder, other) and not index_built_from(folder, tmp_path / "x")
    data = (folder / INDEX_FILE).read_bytes()
    (folder / INDEX_FILE).write_bytes(data[: len(data) // 2])  # an interrupted copy
    assert not index_built_from(folder, ours)


def _saved(tmp_path: Path, centres: np.ndarray) -> Path:
    x, y = blobs(np.random.default_rng(6), centres, 20)
    return GeneratorIndex.build(x, y, NAMES).save(tmp_path / "idx")


def test_truncated_index_file_is_a_data_error(tmp_path: Path, centres: np.ndarray) -> None:
    folder = _saved(tmp_path, centres)
    data = (folder / INDEX_FILE).read_bytes()
    (folder / INDEX_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=INDEX_FILE):
        GeneratorIndex.load(folder)
    # Without the size record, FAISS's own read error becomes the DataError.
    meta = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps({**meta, "index_bytes": 0}))
    with pytest.raises(DataError, match=rf"{INDEX_FILE}: corrupt FAISS index \(.*read error"):
        GeneratorIndex.load(folder)


def test_garbage_sidecar_is_a_data_error(tmp_path: Path, centres: np.ndarray) -> None:
    folder = _saved(tmp_path, centres)
    meta_text = (folder / META_FILE).read_text()
    (folder / META_FILE).write_text('{"labels": [0, 1')
    with pytest.raises(DataError, match=f"{META_FILE}: corrupt index sidecar"):
        GeneratorIndex.load(folder)
    (folder / META_FILE).write_text(json.dumps({**json.loads(meta_text), "prototypes": [[1.0]]}))
    with pytest.raises(DataError, match=f"{META_FILE}: corrupt index sidecar"):
        GeneratorIndex.load(folder)
    (folder / META_FILE).write_text('{"labels": []}')
    with pytest.raises(DataError, match="missing keys"):
        GeneratorIndex.load(folder)
    (folder / META_FILE).unlink()
    with pytest.raises(DataError, match=f"{META_FILE}: missing"):
        GeneratorIndex.load(folder)


def test_failed_save_leaves_previous_index_intact(
    tmp_path: Path, centres: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    x, y = blobs(rng, centres, 20)
    first = GeneratorIndex.build(x, y, NAMES)
    folder = first.save(tmp_path / "idx")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken_write(index: faiss.Index, path: str) -> None:
        Path(path).write_bytes(b"half an index")
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken_write)
    x2, y2 = blobs(rng, centres, 35)
    with pytest.raises(OSError, match="disk full"):
        GeneratorIndex.build(x2, y2, NAMES).save(folder)

    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no temp files left
    loaded = GeneratorIndex.load(folder)
    assert loaded.ntotal == 60
    np.testing.assert_array_equal(loaded.search(x[:5], 3)[1], first.search(x[:5], 3)[1])


def test_clip_indices_keep_training_stride() -> None:
    one = clip_indices(64, 10, 1)
    np.testing.assert_array_equal(one[0], sample_indices(64, 10, "periodic"))
    four = clip_indices(64, 10, 4)
    assert four.shape == (4, 10) and four.max() < 64
    np.testing.assert_allclose(np.diff(four, axis=1).mean(axis=1), 6.4, atol=0.2)
    assert len(np.unique(four)) == 40  # the four clips share no frame
    assert clips_for(64, 10, 4) == 4 and clips_for(15, 10, 4) == 1 and clips_for(64, 10, 2) == 2


def test_info_command_prints_summary(
    tmp_path: Path, centres: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _saved(tmp_path, centres)
    assert main(["info", str(folder)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["vectors"] == 60 and info["classes"] == dict.fromkeys(NAMES, 20)
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
