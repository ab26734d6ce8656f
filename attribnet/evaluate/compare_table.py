"""``evaluate compare``: train (or reuse) each recipe and tabulate its per-class test
accuracy beside the non-deep baseline (the paper's Table 3 with the attention ablations,
its Table 4 with the other backbones); ``--demo`` makes the recipes demo-sized."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from attribnet import report
from attribnet.config import Recipe, apply_overrides, read_recipe_yaml, recipe_from_dict
from attribnet.errors import ConfigError, DataError
from attribnet.evaluate.baseline import BaselineScorer
from attribnet.evaluate.loaded_model import load_checkpoint
from attribnet.evaluate.options import EvalOptions
from attribnet.evaluate.output import json_ready
from attribnet.evaluate.run import evaluate_model
from attribnet.evaluate.source import open_source, recipe_data
from attribnet.evaluate.training import train_or_reuse
from attribnet.files.atomic import write_json, write_text
from attribnet.models.backbones.resnet import RESNETS

DEMO_SECTIONS = ("data", "optim", "train")
DEMO_MODEL_KEYS = ("backbone", "num_frames", "weights")


def default_demo_recipe() -> Path:
    """recipes/demo.yaml of the working directory, else of the source checkout."""
    here = Path("recipes/demo.yaml")
    if here.is_file():
        return here
    return Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml"


def demo_variant(raw: dict[str, Any], demo: dict[str, Any]) -> dict[str, Any]:
    """A recipe made demo-sized: the demo's data, optim and train sections and its model
    size (frames, weights, and its backbone in place of a ResNet), the recipe's attention
    settings (sam, channel_attention, fusion), loss, embedding head and any other trunk
    (Xception stays Xception: it is what a Table 4 row compares); name suffixed ``_demo``."""
    out = {**raw, "name": f"{raw.get('name', 'run')}_demo"}
    for section in DEMO_SECTIONS:
        if section in demo:
            out[section] = demo[section]
    model = dict(raw.get("model") or {})
    small = {k: v for k, v in (demo.get("model") or {}).items() if k in DEMO_MODEL_KEYS}
    if model.get("backbone", "resnet50") not in RESNETS:
        small.pop("backbone", None)
    model.update(small)
    out["model"] = model
    return out


def compare_recipe(path: str, overrides: list[str], demo: str | None) -> Recipe:
    """One recipe to compare, with ``--demo`` applied first and then the ``--set`` overrides."""
    raw = read_recipe_yaml(path)
    if demo is not None:
        raw = demo_variant(raw, read_recipe_yaml(demo or default_demo_recipe()))
    raw = apply_overrides(raw, overrides)
    source = path + (" (with --demo/--set)" if demo is not None or overrides else "")
    return recipe_from_dict(raw, source)


def compare(recipes: list[Recipe], opts: EvalOptions, device: str, demo: bool) -> dict[str, Any]:
    """Train (or reuse) and evaluate each recipe: per-class closed-set reports per recipe,
    and the non-deep baseline fit on the last recipe's training videos (video level)."""
    names = [r.name for r in recipes]
    if len(set(names)) != len(names):
        raise ConfigError(f"compared recipes must have distinct names, got {names}")
    entries, class_names = [], None
    for recipe in recipes:
        loaded = load_checkpoint(train_or_reuse(recipe), device)
        qualities = opts.qualities or loaded.recipe.data.eval_qualities or None
        cell = replace(recipe_data(recipe, opts), qualities=qualities, closed_set_only=True)
        result = evaluate_model(loaded, cell)
        closed = result.metrics["closed_set"]
        if class_names is not None and loaded.class_names != class_names:
            raise DataError(f"{recipe.name} knows classes {loaded.class_names}, not {class_names}")
        class_names = loaded.class_names
        model = loaded.recipe.model
        entries.append(
            {
                "name": recipe.name,
                "checkpoint": str(loaded.path),
                "model": {
                    "sam": model.sam,
                    "channel_attention": model.channel_attention,
                    "fusion": model.fusion,
                    "backbone": model.backbone,
                },
                "qualities": result.metrics["data"]["qualities"],
                "clip": closed["clip"],
                "video": closed["video"],
            }
        )
    scorer = BaselineScorer(open_source(recipe, cell), class_names, recipe.data.image_size)
    train = loaded.recipe.data.train_qualities or None
    baseline = scorer.table(train, {"test": qualities})
    return {
        "class_names": class_names,
        "baseline": {**baseline, "video": baseline["tests"]["test"]},
        "qualities": opts.qualities or [],
        "clips_per_video": opts.clips_per_video,
        "demo": demo,
        "recipes": entries,
    }


def write_compare(out_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """compare.csv, metrics.json and report.md of ``evaluate compare``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = json_ready(metrics)
    header = ["level", *report.compare_header(metrics)]
    rows = [[lv, *r] for lv in ("video", "clip") for r in report.compare_rows(metrics, lv)]
    report.write_csv(out_dir / "compare.csv", header, rows)
    metrics["files"] = {"csv": "compare.csv"}
    write_json(out_dir / "metrics.json", metrics)
    write_text(out_dir / "report.md", report.compare_markdown(metrics))
    return metrics
