"""Open-set knownness scores against hand computations, the leave-one-class-out choice on
constructed cases where one family of scores is known to be better, and an index that
stores its choice, scores identically after a save/load round trip, and still reads an
index of the format before the choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf

from attribnet.errors import DataError
from attribnet.index import KNOWNNESS_SCORES, META_FILE, OPEN_SET_FILE, GeneratorIndex
from attribnet.metrics import softmax
from attribnet.openset.choice import Unknowns, select_score
from attribnet.openset.scores import (
    CHOICE_SCORES,
    COVARIANCE_RIDGE,
    SCORE_NAMES,
    ClassGaussians,
    Reference,
    class_prototypes,
    default_knn_k,
    drop_class_probabilities,
    energy,
    fit_gaussians,
    fit_mixtures,
    knn_cosine,
    mahalanobis,
    max_softmax,
    mixture_log_likelihoods,
    score_videos,
)

NAMES = ["faceswap", "lightweight", "iae", "dfl"]
DIM = 16


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clusters(
    rng: np.random.Generator, per_class: int, noise: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around orthogonal axes, one per class: (K * per_class, D), labels."""
    centres = np.eye(len(NAMES), DIM)
    x = np.concatenate([c + noise * rng.normal(size=(per_class, DIM)) for c in centres])
    return unit(x), np.repeat(np.arange(len(NAMES)), per_class)


def one_hot_logits(rng: np.random.Generator, labels: np.ndarray, gap: float) -> np.ndarray:
    """Logits (V, K): ``gap`` at the true class plus unit noise (gap 0: uninformative)."""
    return gap * np.eye(len(NAMES))[labels] + rng.normal(size=(len(labels), len(NAMES)))


# ----------------------------------------------------------------------------- the scores


def test_gmm_models_a_class_of_several_clusters_and_matches_sklearn() -> None:
    """A class made of two clusters (two groups of trainings): the mixture scores a point of
    either cluster above a point half way between, where one class mean would lie."""
    rng = np.random.default_rng(0)
    a, b = np.eye(DIM)[0], np.eye(DIM)[1]
    two = unit(np.concatenate([a + 0.05 * rng.normal(size=(40, DIM)),
                               b + 0.05 * rng.normal(size=(40, DIM))]))  # fmt: skip
    other = unit(np.eye(DIM)[2] + 0.05 * rng.normal(size=(40, DIM)))
    ref = Reference(np.concatenate([two, other]), np.r_[np.zeros(80, int), np.ones(40, int)], 2)
    queries = unit(np.stack([a, b, (a + b) / 2]))
    gmm = score_videos("gmm", ref, queries)
    assert gmm[0] > gmm[2] and gmm[1] > gmm[2]
    proto = score_videos("prototype_cosine", ref, queries)
    assert proto[2] > proto[0]  # one mean sits between the clusters: the wrong way round
    from sklearn.mixture import GaussianMixture

    mixtures = fit_mixtures(ref.embeddings, ref.labels, 2)
    ours = mixture_log_likelihoods(queries, mixtures)
    for c in range(2):
        sk = GaussianMixture(4, covariance_type="diag", reg_covar=1e-4, random_state=0)
        sk.fit(ref.embeddings[ref.labels == c].astype(np.float64))
        np.testing.assert_allclose(ours[:, c], sk.score_samples(queries.astype(np.float64)),
                                   rtol=1e-6)  # fmt: skip
    with pytest.raises(ValueError, match="own row"):
        score_videos("gmm", ref, queries, self_rows=np.array([0, 1, -1]))


def test_classifier_scores_by_hand() -> None:
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-1.0, 5.0, 0.5]])
    expected = [np.log(np.e + np.e**2 + np.e**3), np.log(3.0), np.log(np.exp([-1, 5, 0.5]).sum())]
    np.testing.assert_allclose(energy(logits), expected)
    probs = softmax(logits)
    np.testing.assert_allclose(max_softmax(probs), [probs[0, 2], 1 / 3, probs[2, 1]])
    # Without class 2 the first row renormalises to softmax([1, 2]).
    np.testing.assert_allclose(drop_class_probabilities(probs, 2)[0], softmax(logits[:1, :2])[0])


def test_knn_cosine_is_the_kth_neighbour_similarity() -> None:
    rng = np.random.default_rng(0)
    ref, queries = unit(rng.normal(size=(30, 8))), unit(rng.normal(size=(7, 8)))
    sims = np.sort(queries @ ref.T, axis=1)[:, ::-1]
    for k in (1, 3, 30):
        np.testing.assert_allclose(knn_cosine(ref, queries, k), sims[:, k - 1], atol=1e-5)
    # Indexed videos as queries: their own row is skipped, so the k-th neighbour is the
    # (k+1)-th of the full list (whose first is the video itself, cosine 1).
    own = np.sort(ref @ ref.T, axis=1)[:, ::-1]
    rows = np.arange(len(ref))
    np.testing.assert_allclose(knn_cosine(ref, ref, 2, self_rows=rows), own[:, 2], atol=1e-5)
    assert default_knn_k(100) == 1 and default_knn_k(50_000) == 50


def test_prototype_cosine_with_and_without_self() -> None:
    rng = np.random.default_rng(1)
    x, y = clusters(rng, 5, noise=0.5)
    reference = Reference(x, y, len(NAMES))
    protos, counts = class_prototypes(x, y, len(NAMES))
    scores = score_videos("prototype_cosine", reference, x)
    np.testing.assert_allclose(scores, (x @ protos.T).max(axis=1), atol=1e-5)
    loo = score_videos("prototype_cosine", reference, x, self_rows=np.arange(len(x)))
    for i in range(len(x)):
        sims = x[i] @ protos.T
        mean = x[(y == y[i]) & (np.arange(len(x)) != i)].mean(axis=0)
        sims[y[i]] = x[i] @ mean / np.linalg.norm(mean)
        assert loo[i] == pytest.approx(sims.max(), abs=1e-5)


def test_mahalanobis_against_a_plain_formula() -> None:
    rng = np.random.default_rng(2)
    x, y = clusters(rng, 40, noise=0.3)
    gaussians = fit_gaussians(x, y, len(NAMES))
    means = np.stack([x[y == c].mean(axis=0) for c in range(len(NAMES))])
    np.testing.assert_allclose(gaussians.means, means, atol=1e-6)
    covariance = LedoitWolf(assume_centered=True).fit(x - means[y]).covariance_
    ridge = COVARIANCE_RIDGE * np.trace(covariance) / DIM
    np.testing.assert_allclose(
        gaussians.precision, np.linalg.inv(covariance + ridge * np.eye(DIM)), rtol=1e-6
    )
    queries = unit(rng.normal(size=(9, DIM)))
    expected = [
        -min(float((q - m) @ gaussians.precision @ (q - m)) for m in gaussians.means)
        for q in queries
    ]
    np.testing.assert_allclose(mahalanobis(queries, gaussians), expected, rtol=1e-6)
    # A class without videos has no Gaussian; with many samples the shrunk precision
    # approaches the inverse of the plain within-class covariance.
    empty = ClassGaussians(gaussians.means, gaussians.precision, np.array([5, 0, 5, 5]))
    np.testing.assert_allclose(
        mahalanobis(queries, empty),
        [-min(float((q - m) @ gaussians.precision @ (q - m)) for m in means[[0, 2, 3]])
         for q in queries],
        rtol=1e-6,
    )  # fmt: skip
    big = rng.normal(size=(20_000, 3)) @ np.array([[2.0, 0, 0], [0.5, 1, 0], [0, 0, 0.3]])
    fitted = fit_gaussians(big, np.zeros(len(big), dtype=np.int64), 1)
    plain = np.linalg.inv(np.cov((big - big.mean(0)).T, bias=True))
    np.testing.assert_allclose(fitted.precision, plain, rtol=0.05, atol=0.05)


# ----------------------------------------------------------------------------- the choice


def test_choice_finds_embeddings_when_the_logits_say_nothing() -> None:
    """Tight clusters on orthogonal axes: a held-out class lies far from every remaining
    cluster, so the embedding scores separate it; the logits are noise."""
    rng = np.random.default_rng(3)
    train, train_y = clusters(rng, 20)
    val, val_y = clusters(rng, 10)
    logits = one_hot_logits(rng, val_y, gap=0.0)
    selection = select_score(
        Reference(train, train_y, len(NAMES)), val, val_y, NAMES,
        probabilities=softmax(logits), logits=logits, k=3,
    )  # fmt: skip
    assert set(selection.mean_auroc) == set(CHOICE_SCORES)
    assert set(selection.per_class_auroc["knn_cosine"]) == set(NAMES)
    for name in ("knn_cosine", "prototype_cosine", "mahalanobis"):
        assert selection.mean_auroc[name] > 0.99
    assert selection.mean_auroc["max_softmax"] < 0.75 and selection.mean_auroc["energy"] < 0.75
    assert selection.chosen == "knn_cosine"  # a tie at 1.0 goes to the first in order


def test_choice_finds_the_classifier_when_the_embeddings_say_nothing() -> None:
    """Embeddings drawn from one distribution for every class; logits one-hot: without
    the held-out column its videos have no large logit left."""
    rng = np.random.default_rng(4)
    train_y = np.repeat(np.arange(len(NAMES)), 20)
    val_y = np.repeat(np.arange(len(NAMES)), 10)
    train = unit(rng.normal(size=(len(train_y), DIM)))
    val = unit(rng.normal(size=(len(val_y), DIM)))
    logits = one_hot_logits(rng, val_y, gap=8.0)
    selection = select_score(
        Reference(train, train_y, len(NAMES)), val, val_y, NAMES,
        probabilities=softmax(logits), logits=logits, k=3,
    )  # fmt: skip
    for name in ("knn_cosine", "prototype_cosine", "mahalanobis"):
        assert selection.mean_auroc[name] < 0.8
    assert selection.mean_auroc["max_softmax"] > 0.95 and selection.mean_auroc["energy"] > 0.95
    assert selection.chosen in ("max_softmax", "energy")
    best = max(selection.mean_auroc.values())
    assert selection.mean_auroc[selection.chosen] == best
    # Without the classifier's outputs the classifier scores are not candidates.
    without = select_score(Reference(train, train_y, len(NAMES)), val, val_y, NAMES, k=3)
    assert set(without.mean_auroc) == {"knn_cosine", "prototype_cosine", "mahalanobis"}


def test_simulated_unknowns_overrule_a_classifier_that_they_fool() -> None:
    """Leave-one-class-out alone prefers the classifier (the embeddings say nothing about
    the known classes); the simulated unknowns get confident logits but embeddings in
    directions no known video takes, so only the embedding scores reject them. Weighing
    both, the choice is an embedding score; the selection records both AUROCs."""
    rng = np.random.default_rng(4)
    half = DIM // 2
    train_y = np.repeat(np.arange(len(NAMES)), 20)
    val_y = np.repeat(np.arange(len(NAMES)), 10)
    known_dims = np.zeros((1, DIM))
    known_dims[:, :half] = 1
    train = unit(rng.normal(size=(len(train_y), DIM)) * known_dims)
    val = unit(rng.normal(size=(len(val_y), DIM)) * known_dims)
    logits = one_hot_logits(rng, val_y, gap=8.0)
    fooled = one_hot_logits(rng, rng.integers(len(NAMES), size=30), gap=16.0)
    simulated = Unknowns(
        unit(rng.normal(size=(30, DIM)) * (1 - known_dims)), softmax(fooled), fooled
    )
    reference = Reference(train, train_y, len(NAMES))
    inputs = {"probabilities": softmax(logits), "logits": logits, "k": 3}
    alone = select_score(reference, val, val_y, NAMES, **inputs)
    assert alone.chosen in ("max_softmax", "energy") and not alone.unknown_auroc
    both = select_score(reference, val, val_y, NAMES, **inputs, unknowns={"sim": simulated})
    assert both.mean_auroc == alone.mean_auroc
    against = both.unknown_auroc["sim"]
    for name in ("knn_cosine", "prototype_cosine", "mahalanobis"):
        assert against[name] == 1.0
    assert against["max_softmax"] < 0.1 and against["energy"] < 0.1
    assert both.chosen in ("knn_cosine", "prototype_cosine", "mahalanobis")
    assert type(both).from_json(json.loads(json.dumps(both.to_json()))) == both
    # Unknowns without classifier outputs leave the classifier scores out.
    bare = select_score(reference, val, val_y, NAMES, **inputs,
                        unknowns={"sim": Unknowns(simulated.embeddings)})  # fmt: skip
    assert set(bare.unknown_auroc["sim"]) == {"knn_cosine", "prototype_cosine", "mahalanobis"}
    assert bare.chosen == both.chosen
    # Outlier videos that only the classifier rejects (embeddings among the known ones,
    # flat logits) keep the classifier; with both kinds every AUROC counts once.
    flat = rng.normal(size=(30, len(NAMES))) * 0.01
    mixed = Unknowns(unit(rng.normal(size=(30, DIM)) * known_dims), softmax(flat), flat)
    outliers = select_score(reference, val, val_y, NAMES, **inputs, unknowns={"out": mixed})
    assert outliers.unknown_auroc["out"]["energy"] == 1.0
    assert outliers.chosen in ("max_softmax", "energy")
    kinds = {"sim": simulated, "out": mixed}
    three = select_score(reference, val, val_y, NAMES, **inputs, unknowns=kinds)
    assert three.unknown_auroc == {"sim": against, "out": outliers.unknown_auroc["out"]}
    merit = {n: np.mean([three.mean_auroc[n], *(a[n] for a in three.unknown_auroc.values())])
             for n in CHOICE_SCORES}  # fmt: skip
    assert three.chosen == max(CHOICE_SCORES, key=lambda n: (merit[n], -SCORE_NAMES.index(n)))


def test_choice_needs_two_classes_among_the_queries() -> None:
    rng = np.random.default_rng(5)
    train, train_y = clusters(rng, 5)
    with pytest.raises(ValueError, match="at least two known classes"):
        select_score(Reference(train, train_y, len(NAMES)), train[:5], train_y[:5], NAMES)


# ----------------------------------------------------------------------------- the index


@pytest.fixture
def chosen_index() -> tuple[GeneratorIndex, np.ndarray, np.ndarray, np.ndarray]:
    """An index whose score was chosen on validation videos with classifier outputs;
    and query embeddings, probabilities and logits."""
    rng = np.random.default_rng(6)
    train, train_y = clusters(rng, 15, noise=0.3)
    val, val_y = clusters(rng, 6, noise=0.3)
    logits = one_hot_logits(rng, val_y, gap=1.0)
    index = GeneratorIndex.build(train, train_y, NAMES, use_gpu=False)
    index.open_set.choose_score(
        index, val, val_y, probabilities=softmax(logits), logits=logits, split="val"
    )
    queries = unit(rng.normal(size=(12, DIM)))
    q_logits = rng.normal(size=(12, len(NAMES)))
    return index, queries, softmax(q_logits), q_logits


def test_index_saves_and_loads_its_choice(
    tmp_path: Path, chosen_index: tuple[GeneratorIndex, np.ndarray, np.ndarray, np.ndarray]
) -> None:
    index, queries, probs, logits = chosen_index
    assert (
        index.open_set.selection is not None
        and index.open_set.score == index.open_set.selection.chosen
    )
    folder = index.save(tmp_path / "idx")
    assert (folder / OPEN_SET_FILE).is_file()
    loaded = GeneratorIndex.load(folder, use_gpu=False)
    assert loaded.open_set.score == index.open_set.score
    assert (
        loaded.open_set.threshold == index.open_set.threshold
        and loaded.open_set.knn_k == index.open_set.knn_k
    )
    assert loaded.open_set.selection == index.open_set.selection
    assert loaded.open_set.selection_data == index.open_set.selection_data
    for name in KNOWNNESS_SCORES:
        before = index.open_set.knownness(index, queries, probs, logits=logits, score=name)
        after = loaded.open_set.knownness(loaded, queries, probs, logits=logits, score=name)
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(
        index.open_set.knownness(index, queries, probs, logits=logits),
        loaded.open_set.knownness(loaded, queries, probs, logits=logits),
    )

    meta = json.loads((folder / META_FILE).read_text())
    block = meta["open_set"]
    assert block["score"] == meta["threshold"]["score"] == index.open_set.score
    choice = block["selection"]
    assert choice["split"] == "val" and choice["videos"] == 24 and not choice["leave_self_out"]
    assert choice["chosen"] == index.open_set.score
    assert set(choice["mean_auroc"]) == set(CHOICE_SCORES)  # gmm only when asked
    assert all(set(v) == set(NAMES) for v in choice["per_class_auroc"].values())
    assert block["mahalanobis"]["file"] == OPEN_SET_FILE and block["knn_k"] == index.open_set.knn_k


def test_threshold_keeps_95_percent_of_the_known_validation_videos() -> None:
    rng = np.random.default_rng(7)
    train, train_y = clusters(rng, 15, noise=0.3)
    val, val_y = clusters(rng, 10, noise=0.3)
    index = GeneratorIndex.build(train, train_y, NAMES, use_gpu=False)
    index.open_set.choose_score(index, val, val_y)
    assert index.open_set.score in ("knn_cosine", "prototype_cosine", "mahalanobis")
    assert np.mean(~index.open_set.is_unknown(index.open_set.knownness(index, val))) >= 0.95


def test_choice_on_the_training_videos_leaves_each_one_out() -> None:
    rng = np.random.default_rng(8)
    train, train_y = clusters(rng, 10, noise=0.3)
    index = GeneratorIndex.build(train, train_y, NAMES, use_gpu=False)
    rows = np.arange(len(train))
    index.open_set.choose_score(index, train, train_y, split="train", self_rows=rows)
    assert index.open_set.selection_data["leave_self_out"] and index.open_set.split == "train"
    reference = Reference(train, train_y, len(NAMES))
    loo = score_videos(
        index.open_set.score, reference, train, k=index.open_set.knn_k, self_rows=rows
    )
    assert index.open_set.threshold == pytest.approx(np.sort(loo)[2])  # floor(0.05 * 40) = 2 below
    # The video itself would make kNN (k = 1) trivially 1.0.
    assert knn_cosine(train, train, 1, self_rows=rows).max() < 0.999


def test_no_choice_possible_falls_back_to_prototype_cosine() -> None:
    rng = np.random.default_rng(9)
    train, train_y = clusters(rng, 10)
    index = GeneratorIndex.build(train, train_y, NAMES, use_gpu=False)
    assert index.open_set.choose_score(index, train[:10], train_y[:10]) is None
    assert index.open_set.score == "prototype_cosine" and index.open_set.threshold is not None
    assert "no choice possible" in index.open_set.selection_data["note"]


def test_an_index_of_the_old_format_still_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    train, train_y = clusters(rng, 10)
    index = GeneratorIndex.build(train, train_y, NAMES, use_gpu=False)
    probs = softmax(rng.normal(size=(20, len(NAMES))))
    threshold = index.open_set.calibrate(index, train[:20], probs)
    folder = index.save(tmp_path / "old")
    meta = json.loads((folder / META_FILE).read_text())
    del meta["open_set"]
    meta["format_version"] = 1
    (folder / META_FILE).write_text(json.dumps(meta))
    loaded = GeneratorIndex.load(folder, use_gpu=False)
    assert (loaded.open_set.score, loaded.open_set.threshold) == ("max_softmax", threshold)
    assert loaded.open_set.selection is None and loaded.open_set.gaussians is None
    np.testing.assert_allclose(
        loaded.open_set.knownness(loaded, train[:20], probs), probs.max(axis=1)
    )
    # Every candidate can still be computed (the Gaussians are fitted when first needed).
    assert loaded.open_set.knownness(loaded, train, score="mahalanobis").shape == (len(train),)
    assert loaded.open_set.knownness(loaded, train, score="knn_cosine").max() == pytest.approx(
        1.0, abs=1e-5
    )


def test_corrupt_open_set_file_is_a_data_error(
    tmp_path: Path, chosen_index: tuple[GeneratorIndex, np.ndarray, np.ndarray, np.ndarray]
) -> None:
    folder = chosen_index[0].save(tmp_path / "idx")
    (folder / OPEN_SET_FILE).write_bytes(b"not an npz")
    with pytest.raises(DataError, match=OPEN_SET_FILE):
        GeneratorIndex.load(folder)
    (folder / OPEN_SET_FILE).unlink()
    with pytest.raises(DataError, match=OPEN_SET_FILE):
        GeneratorIndex.load(folder)
