"""The ``report.md`` of ``evaluate run``: closed-set, embedding, detection and open-set
sections."""

from __future__ import annotations

from typing import Any

from attribnet.report.tables import fmt, md_table


def _level_rows(closed: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for level, unit in (("clip", "clips"), ("video", "videos")):
        r = closed[level]
        rows.append([level, r["accuracy"], r["macro_f1"], f"{sum(r['support'].values())} {unit}"])
    return rows


def _per_class_table(closed: dict[str, Any]) -> str:
    """Rows = classes + Overall + macro-F1; columns = clip, video, video per quality."""
    names = closed["clip"]["class_names"]
    columns = [("clip", closed["clip"]), ("video", closed["video"])]
    for quality, levels in closed.get("per_quality", {}).items():
        columns.append((f"video {quality or '(none)'}", levels["video"]))
    rows = [[name, *(r["per_class_accuracy"][name] for _, r in columns)] for name in names]
    rows.append(["**Overall**", *(r["accuracy"] for _, r in columns)])
    rows.append(["macro-F1", *(r["macro_f1"] for _, r in columns)])
    rows.append(["clips / videos", *(sum(r["support"].values()) for _, r in columns)])
    return md_table(["class", *(c for c, _ in columns)], rows)


def _images(files: dict[str, str], prefix: str) -> list[str]:
    out = []
    for key, name in files.items():
        if key.startswith(prefix) and name.endswith(".png"):
            csv_name = files.get(key + "_csv")
            link = f" ([CSV]({csv_name}))" if csv_name else ""
            out.append(f"**{key}**{link}\n\n![{key}]({name})\n")
    return out


def _embedding_section(emb: dict[str, Any]) -> list[str]:
    lines = ["## Embedding-space protocols", ""]
    if "skipped" in emb:
        return [*lines, f"Skipped: {emb['skipped']}.", ""]
    lines.append(
        f"Classifiers fit on the **validation** embeddings and scored on the test embeddings "
        f"(kNN with cosine distance, k = {emb['clip']['knn_k']} at clip level, "
        f"{emb['video']['knn_k']} at video level; logistic regression; linear SVM)."
    )
    rows = []
    for name in ("knn", "logreg", "linear_svm"):
        c, v = emb["clip"][name], emb["video"][name]
        rows.append([name, c["accuracy"], c["macro_f1"], v["accuracy"], v["macro_f1"]])
    header = ["protocol", "clip accuracy", "clip macro-F1", "video accuracy", "video macro-F1"]
    lines += ["", md_table(header, rows), ""]
    if "index" in emb:
        idx = emb["index"]
        lines.append(
            f"Generator index `{idx['path']}` (training videos): kNN (k = {idx['k']}) video "
            f"accuracy {fmt(idx['knn_accuracy'])}, nearest-prototype video accuracy "
            f"{fmt(idx['prototype_accuracy'])}."
        )
        lines.append("")
    return lines


def _detection_section(det: dict[str, Any]) -> list[str]:
    lines = ["## Detection (real vs fake)", ""]
    if "skipped" in det:
        return [*lines, f"Skipped: {det['skipped']}.", ""]
    lines.append(
        "Score = 1 - p(real); threshold chosen on the validation split at FPR <= "
        f"{fmt(det['target_fpr'], 2)} and applied to test."
    )
    keys = ("threshold", "val_fpr", "val_tpr", "test_auc", "test_fpr", "test_fnr", "test_hter")
    rows = [[level, *(det[level][k] for k in keys)] for level in ("clip", "video")]
    return [*lines, "", md_table(["level", *keys], rows), ""]


def _open_set_section(ops: dict[str, Any]) -> list[str]:
    lines = [
        "## Open set (unseen generators)",
        "",
        f"{ops['known_videos']} known test videos vs {ops['unknown_videos']} videos of unseen "
        f"generators ({', '.join(ops['unknown_labels'])}), at video level. Knownness scores "
        "(higher = more known): `max_softmax` (largest class probability), `energy` "
        "(log-sum-exp of the logits), `knn_cosine` (cosine to the k-th nearest training "
        "embedding), `prototype_cosine` (max cosine to the class prototypes), `mahalanobis` "
        "(minus the smallest Mahalanobis distance to a class mean, shared covariance). "
        f"Primary (the score the index chose for its unknown verdict): **{ops['primary']}**.",
        "",
    ]
    choice = ops.get("index_choice")
    if choice and choice.get("mean_auroc"):
        auroc = ", ".join(f"{k} {fmt(v)}" for k, v in choice["mean_auroc"].items())
        lines += [
            f"The index chose it by leave-one-class-out AUROC on its known classes: {auroc}.",
            "",
        ]
    keys = ("auroc", "oscr", "tnr_at_95tpr", "threshold_at_95tpr", "known_accuracy")
    rows = [[score, *(ops[score][k] for k in keys)] for score in ops["scores"]]
    return [*lines, md_table(["knownness", *keys], rows), ""]


def _run_baseline_lines(baseline: dict[str, Any] | None) -> list[str]:
    """One line: the non-deep baseline's video accuracy on the same videos."""
    if not baseline:
        return []
    if "skipped" in baseline:
        return [f"Baseline (DFT spectrum) skipped: {baseline['skipped']}.", ""]
    r = baseline["tests"]["test"]
    return [
        f"Baseline on the same videos ({baseline['name']}, fit on the "
        f"{baseline['train_videos']} training videos): video accuracy {fmt(r['accuracy'])}, "
        f"macro-F1 {fmt(r['macro_f1'])}.",
        "",
    ]


def run_markdown(metrics: dict[str, Any]) -> str:
    """The ``report.md`` of ``evaluate run`` from its metrics (file names relative)."""
    ck, data, closed = metrics["checkpoint"], metrics["data"], metrics["closed_set"]
    files = metrics["files"]
    lines = [
        f"# Attribution evaluation: {ck['recipe_name']}",
        "",
        f"- checkpoint: `{ck['path']}` (epoch {ck['epoch']}, sha256 {ck['sha256'][:12]})",
        f"- data: split `{data['split']}`, qualities {', '.join(data['qualities']) or '-'}; "
        f"{data['videos']} videos, {data['clips']} clips "
        f"(up to {data['clips_per_video']} per video, "
        f"{data['num_frames']} frames, {data['sampling']} sampling, no augmentation); "
        f"cache `{data['cache']}`",
        f"- prediction: {metrics['prediction']}; video level = mean of clip probabilities",
        "",
        "## Closed-set attribution",
        "",
        md_table(["level", "accuracy", "macro-F1", "test set"], _level_rows(closed)),
        "",
        *_run_baseline_lines(metrics.get("baseline")),
        "### Per-class accuracy",
        "",
        _per_class_table(closed),
        "",
        "### Confusion matrices",
        "",
        *_images(files, "confusion"),
    ]
    if "embedding" in metrics:
        lines += _embedding_section(metrics["embedding"])
    if "detection" in metrics:
        lines += _detection_section(metrics["detection"])
    if "open_set" in metrics:
        lines += _open_set_section(metrics["open_set"])
    if "tsne" in files:
        lines += ["## t-SNE of test embeddings", "", f"![t-SNE]({files['tsne']})", ""]
    lines += ["All numbers: [metrics.json](metrics.json).", ""]
    return "\n".join(lines)
