"""ONNX export (python -m attribnet.export onnx): ONNX Runtime's outputs equal PyTorch's
within 1e-4 on a batch size other than the one traced, with the SAM maps of predict; the
query run through ONNX Runtime (--onnx) gives PyTorch's answers."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from attribnet import export
from attribnet.cli import export as export_cli
from attribnet.config import ModelConfig
from attribnet.errors import ConfigError
from attribnet.files.checkpoints import file_sha256
from attribnet.models import build_model
from attribnet.models.restore import load_model
from attribnet.predict import mean_sam_map, record_sam_maps
from tests.builders import assert_predictions_close, tiny_recipe, write_checkpoint

pytest.importorskip("onnx", reason="needs onnx: pip install 'attribnet[onnx]'")
pytest.importorskip("onnxruntime", reason="needs onnxruntime: pip install 'attribnet[onnx]'")

T, SIZE, DIM = 4, 32, 8
CLASSES = ["a", "b", "c"]


def _checkpoint(tmp: Path, **model: object) -> Path:
    """A tiny DMA-STA checkpoint (resnet10, SAM in every block, TAM) with BatchNorm
    statistics that are not the identity, so a wrong BatchNorm would show."""
    cfg = ModelConfig(backbone="resnet10", sam="every_block", fusion="tam", num_frames=T,
                      embedding_dim=DIM, **model)  # fmt: skip
    recipe = replace(tiny_recipe(tmp / "cache", num_frames=T, size=SIZE, embedding_dim=DIM),
                     model=cfg)  # fmt: skip
    path = write_checkpoint(tmp / "best.pt", recipe, CLASSES, seed=0)
    state = torch.load(path, weights_only=True)
    rng = torch.Generator().manual_seed(1)
    for key, value in state["model"].items():
        if key.endswith("running_mean"):
            value.copy_(torch.randn(value.shape, generator=rng) * 0.1)
        elif key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=rng) + 0.5)
    torch.save(state, path)
    return path


def _run_onnx(path: Path, clips: torch.Tensor) -> dict[str, np.ndarray]:
    out = export.OnnxRuntimeModel.load(path, threads=1)(clips)
    return {name: value.numpy() for name, value in out.items()}


@pytest.mark.slow
def test_onnx_runtime_equals_pytorch(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path)
    out = tmp_path / "model.onnx"
    code = export_cli.main(["onnx", "--checkpoint", str(checkpoint), "--out", str(out), "--sam"])
    assert code == 0
    model, _, _, _ = load_model(checkpoint)
    clips = torch.randn(3, T, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    got = _run_onnx(out, clips)  # batch 3; the export traced batch 2
    assert list(got) == ["logits", "embedding", "frame_weights", "sam"]
    with torch.no_grad(), record_sam_maps(model, True) as maps:
        expected = model(clips)
    sam = mean_sam_map(maps, SIZE).view(3, T, SIZE, SIZE)
    for name in ("logits", "embedding", "frame_weights"):
        assert got[name].shape == tuple(expected[name].shape)
        np.testing.assert_allclose(got[name], expected[name].numpy(), atol=1e-4)
    np.testing.assert_allclose(got["sam"], sam.numpy(), atol=1e-4)
    assert ((got["sam"] > 0) & (got["sam"] < 1)).all()


def test_metadata_names_the_checkpoint_and_its_recipe(tmp_path: Path) -> None:
    import onnx

    checkpoint = _checkpoint(tmp_path)
    out = tmp_path / "model.onnx"
    assert export_cli.main(["onnx", "--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["class_names"]) == CLASSES
    assert meta["checkpoint_sha256"] == file_sha256(checkpoint)
    assert "backbone: resnet10" in meta["recipe"]
    assert meta["outputs"] == "logits,embedding,frame_weights"


def test_no_embedding_head_no_embedding_output(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet10", sam="last", num_frames=T, embedding_dim=0)
    model = build_model(cfg, len(CLASSES)).eval()
    path = tmp_path / "model.onnx"
    names = export.export_onnx(model, path, num_frames=T, image_size=SIZE)
    assert names == ["logits", "frame_weights"]
    clips = torch.randn(1, T, 3, SIZE, SIZE)
    diffs = export.max_differences(export.OnnxRuntimeModel.load(path), model, clips, SIZE)
    assert set(diffs) == {"logits", "frame_weights"} and max(diffs.values()) < 1e-4
    assert model.training is False  # left in the mode it had


def test_refusals_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spectral = build_model(ModelConfig(backbone="resnet10", num_frames=T, spectral_dim=4), 3)
    with pytest.raises(ConfigError, match="spectral"):
        export.export_onnx(spectral, tmp_path / "x.onnx", num_frames=T, image_size=SIZE)
    assert not (tmp_path / "x.onnx").exists()
    missing = ["onnx", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "y")]
    assert export_cli.main(missing) == 2
    assert "checkpoint not found" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_videos_runs_the_onnx_model_as_pytorch(tmp_path: Path) -> None:
    from attribnet.data.cache import FaceCache
    from attribnet.data.manifest import ManifestRow
    from attribnet.predict import predict_videos

    checkpoint = _checkpoint(tmp_path)
    out = tmp_path / "model.onnx"
    assert (
        export_cli.main(["onnx", "--checkpoint", str(checkpoint), "--out", str(out), "--sam"]) == 0
    )
    model, recipe, _, _ = load_model(checkpoint)
    cache = FaceCache(tmp_path / "faces", {"size": SIZE})
    rng = np.random.default_rng(0)
    entries = [
        cache.add(ManifestRow(path=f"v{n}.mp4", label="x"),
                  rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8))
        for n in (4, 9, 16)
    ]  # fmt: skip
    runtime = export.OnnxRuntimeModel.load(out)
    torch_preds = predict_videos(
        model, cache, entries, recipe, sam=True, batch_size=3, device="cpu"
    )
    onnx_preds = predict_videos(runtime, cache, entries, recipe, sam=True, batch_size=3)
    assert_predictions_close(torch_preds, onnx_preds, atol=1e-4)


def _numbers_close(a: object, b: object, key: str = "") -> None:
    """Two JSON reports equal, numbers within 1e-4."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), key
        for k in a:
            _numbers_close(a[k], b[k], f"{key}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), key
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _numbers_close(x, y, f"{key}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, abs=1e-4), key
    else:
        assert a == b, key


@pytest.mark.slow
def test_query_through_onnx_gives_the_pytorch_answers(
    world: dict[str, Path], tmp_path: Path
) -> None:
    from attribnet.cli.query import main as query_main
    from attribnet.query import Attributor

    out = tmp_path / "model.onnx"
    argv = ["onnx", "--checkpoint", str(world["checkpoint"]), "--out", str(out), "--sam"]
    assert export_cli.main(argv) == 0
    queries = sorted(str(p) for p in (world["queries"] / "deep").glob("*.mp4"))
    plain = Attributor.load(world["index"]).attribute(queries, k=3)
    onnx = Attributor.load(world["index"], onnx=out)
    assert onnx.device.type == "cpu"
    via_onnx = onnx.attribute(queries, k=3)
    assert sum(r.ok for r in plain) >= 2
    for a, b in zip(plain, via_onnx, strict=True):
        _numbers_close(a.to_dict(), b.to_dict())
        if a.ok:
            assert [f.frame for f in a.frames[:2]] == [f.frame for f in b.frames[:2]]
            np.testing.assert_allclose(b.frames[0].heatmap, a.frames[0].heatmap, atol=1e-4)
    report = tmp_path / "report.json"
    cli = [*queries, "--index", str(world["index"]), "--onnx", str(out), "--neighbours", "3"]
    assert query_main([*cli, "--json", str(report)]) == 0
    saved = json.loads(report.read_text())
    assert saved["onnx"] == str(out)
    _numbers_close(saved["videos"], [r.to_dict() for r in plain])


@pytest.mark.slow
def test_query_refuses_an_onnx_file_of_another_model(
    world: dict[str, Path], tmp_path: Path
) -> None:
    from attribnet.errors import IndexMismatchError
    from attribnet.query import Attributor

    other = _checkpoint(tmp_path)
    wrong = tmp_path / "other.onnx"
    assert export_cli.main(["onnx", "--checkpoint", str(other), "--out", str(wrong), "--sam"]) == 0
    with pytest.raises(IndexMismatchError, match="not exported from"):
        Attributor.load(world["index"], onnx=wrong)
    no_maps = tmp_path / "no_maps.onnx"
    argv = ["onnx", "--checkpoint", str(world["checkpoint"]), "--out", str(no_maps), "--no-check"]
    assert export_cli.main(argv) == 0
    with pytest.raises(ConfigError, match="no SAM maps"):
        Attributor.load(world["index"], onnx=no_maps)


def _dequantized(graph: object) -> set[str]:
    """Names of the tensors an int8 graph dequantises (the inputs of quantised nodes)."""
    return {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}


@pytest.mark.slow
def test_int8_export_answers_as_pytorch(world: dict[str, Path], tmp_path: Path) -> None:
    import onnx

    from attribnet.cli.query import main as query_main
    from attribnet.query import Attributor

    out = tmp_path / "int8.onnx"
    argv = ["onnx", "--checkpoint", str(world["checkpoint"]), "--out", str(out), "--sam", "--int8"]
    assert export_cli.main(argv) == 0
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["precision"] == "int8"
    assert meta["checkpoint_sha256"] == file_sha256(world["checkpoint"])
    figures = json.loads(meta["int8_agreement"])
    assert figures["videos"] == 3 and figures["top1_agreement"] == 1.0  # the 3 val videos
    dequantized = _dequantized(model.graph)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    stem, trunk = convs[0], convs[1:]
    # input and weight: a bias is int32 when quantised and may be shared by equal biases
    assert not dequantized & set(stem.input[:2])  # the stem runs in fp32
    assert all(set(n.input[:2]) <= dequantized for n in trunk)  # the rest in int8
    heads = [n for n in model.graph.node if n.op_type == "Gemm"]
    assert heads and not any(dequantized & set(n.input[:2]) for n in heads)

    queries = sorted(str(p) for p in (world["queries"] / "deep").glob("*.mp4"))
    plain = Attributor.load(world["index"]).attribute(queries, k=3)
    int8 = Attributor.load(world["index"], onnx=out).attribute(queries, k=3)
    assert sum(r.ok for r in plain) == 3
    for a, b in zip(plain, int8, strict=True):
        assert (a.generator, a.classifier["generator"]) == (b.generator, b.classifier["generator"])
        assert float(a.embedding @ b.embedding) > 0.99
    report = tmp_path / "report.json"
    cli = [*queries, "--index", str(world["index"]), "--onnx", str(out), "--json", str(report)]
    assert query_main(cli) == 0
    saved = json.loads(report.read_text())  # the case file says the model was int8
    assert saved["precision"] == "int8" and saved["int8_agreement"] == figures


@pytest.mark.slow
def test_int8_refusals_write_nothing(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    from attribnet.cli import export as cli

    out = tmp_path / "out" / "int8.onnx"
    argv = ["onnx", "--checkpoint", str(world["checkpoint"]), "--out", str(out), "--int8"]
    real = cli.agreement

    def poor(*args: object) -> dict[str, float]:
        return {**real(*args), "top1_agreement": 0.5}

    monkeypatch.setattr(cli, "agreement", poor)
    assert export_cli.main(argv) != 0
    assert "int8 model refused (--min-agreement 0.95): 0.500 of 3 videos" in capsys.readouterr().err
    assert list(out.parent.iterdir()) == []  # no model, no temporary file
    assert export_cli.main([*argv, "--min-agreement", "0.5"]) == 0 and out.is_file()

    no_data = _checkpoint(tmp_path / "elsewhere")  # its recipe's face cache does not exist
    argv = ["onnx", "--checkpoint", str(no_data), "--out", str(tmp_path / "x.onnx"), "--int8"]
    assert export_cli.main(argv) != 0
    assert "no face cache at" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
    assert export_cli.main([*argv, "--min-agreement", "2"]) == 2  # a share: 0 to 1
    assert "between 0 and 1" in capsys.readouterr().err
