"""Many videos per model pass: ``query --batch-size`` and ``index build --batch-size
--precision`` give the answers of one video per pass (within float rounding)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attribnet.cli import check_batch_size
from attribnet.cli.index import main as index_main
from attribnet.cli.query import main as query_main
from attribnet.errors import ConfigError
from attribnet.index import GeneratorIndex
from attribnet.query import Attributor
from attribnet.query import attributor as attributor_module


def test_videos_batched_in_one_pass_get_the_answers_of_one_per_pass(
    world: dict[str, Path], monkeypatch
) -> None:
    attributor = Attributor.load(world["index"])
    folder = world["queries"] / "deep"
    alone = attributor.attribute([folder])
    passes: list[int] = []
    real_predict = attributor_module.predict_videos

    def counted(model, cache, videos, recipe, **kwargs):
        passes.append(len(videos))
        return real_predict(model, cache, videos, recipe, **kwargs)

    monkeypatch.setattr(attributor_module, "predict_videos", counted)
    batched = attributor.attribute([folder], batch_size=16, clips_per_video=4)
    assert len(alone) == len(batched) == 3 and passes == [3]
    for a, b in zip(alone, batched, strict=True):
        assert a.video == b.video and a.ok and b.ok
        assert a.generator == b.generator and a.is_unknown == b.is_unknown
        np.testing.assert_allclose(b.embedding, a.embedding, atol=1e-5)
        assert [f.frame for f in b.frames] == [f.frame for f in a.frames]
    passes.clear()
    attributor.attribute([folder], batch_size=8, clips_per_video=4)
    assert passes == [2, 1]


def test_query_and_index_take_batch_size_and_precision(
    world: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out.json"
    args = ["--index", str(world["index"]), str(world["queries"] / "deep"), "--json", str(out)]
    assert query_main([*args, "--batch-size", "64", "--precision", "bf16"]) == 0
    report = json.loads(out.read_text())
    assert report["precision"] == "bf16" and all(v["status"] == "ok" for v in report["videos"])
    build = ["build", "--checkpoint", str(world["checkpoint"]), "--manifest",
             str(world["manifest"]), "--out", str(tmp_path / "index")]  # fmt: skip
    assert index_main([*build, "--batch-size", "64"]) == 0
    batched, one = GeneratorIndex.load(tmp_path / "index"), GeneratorIndex.load(world["index"])
    assert batched.video_ids == one.video_ids
    np.testing.assert_allclose(batched.vectors(), one.vectors(), atol=1e-5)
    assert query_main([*args, "--batch-size", "0"]) == 2
    with pytest.raises(ConfigError, match="--batch-size must be >= 1"):
        check_batch_size(0)
