"""The Training section of the cross-quality and open-set reports: which trainings were
run, resumed or reused."""

from __future__ import annotations

from typing import Any

from attribnet.report.tables import md_table


def training_section(metrics: dict[str, Any]) -> list[str]:
    """How many trainings were run or reused, from which recipe and overrides."""
    training = metrics.get("training")
    if training is None:
        return []
    lines = ["## Training", ""]
    if not training["runs"]:
        return [*lines, "No training: the models were given with `--checkpoints`.", ""]
    counts = training["counts"]
    overrides = ", ".join(f"`{o}`" for o in training["overrides"]) or "none"
    lines.append(
        f"{len(training['runs'])} training run(s) of recipe `{training['recipe']}`, `--set` "
        f"overrides: {overrides}. Trained from scratch: {counts['trained']}, resumed: "
        f"{counts['resumed']}, reused (finished before, not retrained): {counts['reused']}."
    )
    rows = []
    for row, run in training["runs"].items():
        action = run["action"]
        if run["differs"]:
            action += f" (trained with other {', '.join(run['differs'])})"
        changes = ", ".join(f"`{c}`" for c in run["recipe_changes"]) or "-"
        rows.append([row, f"`{run['run_dir']}`", action, changes])
    header = ["train row", "run", "done", "the row's changes to the recipe"]
    return [*lines, "", md_table(header, rows), ""]
