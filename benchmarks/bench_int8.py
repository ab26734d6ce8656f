"""Does int8 change a trained model's answers? PyTorch fp32 against the int8 ONNX model
(:mod:`attribnet.export.onnx_int8`), with the input filter, stem and heads kept in fp32
(the library's choice) and with every layer quantised, on the run's TEST videos.

    python benchmarks/bench_int8.py --checkpoint runs/<name>/best.pt [--manifest M]
    python benchmarks/bench_int8.py \
        --checkpoint data/realistic/runs/realistic_main_srm_quick_xi_crf0/best.pt

Both int8 models are calibrated as ``python -m attribnet.export onnx --int8`` calibrates
(one clip from each of up to 64 training videos). Per test quality: videos, accuracy of
each model, and how many videos' top generator differs from PyTorch's; overall the largest
probability difference and the smallest embedding cosine. Speed: bench_query.py.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from common import machine_line, print_table

from attribnet.data.sources import run_videos, split_videos
from attribnet.export import OnnxRuntimeModel, export_onnx
from attribnet.export.onnx_int8 import calibration_clips, quantize
from attribnet.models.restore import load_model
from attribnet.predict import predict_videos, stack


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="runs/<name>/best.pt")
    p.add_argument("--manifest", help="videos (default: the run's)")
    p.add_argument("--calibration-videos", type=int, default=64)
    args = p.parse_args(argv)
    print(f"bench_int8: {machine_line()}")
    model, recipe, names, _ = load_model(args.checkpoint)
    data = recipe.data
    cache, pairs = run_videos(recipe, args.manifest)
    train, _, _ = split_videos(pairs, "train", data.train_qualities, names, data.num_frames)
    test, labels, rows = split_videos(pairs, "test", (), names, data.num_frames)
    if not train or not test:
        print("the run needs training and test videos in its cache", file=sys.stderr)
        return 2
    clips = calibration_clips(cache, train, recipe, args.calibration_videos)
    preds = {"PyTorch fp32": predict_videos(model, cache, test, recipe, device="cpu")}
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(model, fp32, num_frames=data.num_frames, image_size=data.image_size)
        for label, keep in (("int8, stem and heads fp32", True), ("int8, every layer", False)):
            out = Path(tmp) / f"int8_{keep}.onnx"
            quantize(fp32, out, clips, keep_fp32=keep)
            preds[label] = predict_videos(OnnxRuntimeModel.load(out), cache, test, recipe)
    y, quality = np.asarray(labels), np.asarray([r.quality for r in rows])
    probs = {k: stack(v, "probabilities") for k, v in preds.items()}
    top = {k: v.argmax(1) for k, v in probs.items()}
    ref = "PyTorch fp32"
    print(f"{args.checkpoint}: {len(test)} test videos, {len(clips)} calibration clips, "
          f"{recipe.model.backbone} at {data.image_size} px, T={data.num_frames}")  # fmt: skip
    rows_out = []
    for q in [*sorted(set(quality)), "all"]:
        sel = np.ones(len(y), bool) if q == "all" else quality == q
        row = [q, int(sel.sum())]
        for k in probs:
            row.append(f"{(top[k][sel] == y[sel]).mean():.3f}")
        row += [int((top[k][sel] != top[ref][sel]).sum()) for k in probs if k != ref]
        rows_out.append(row)
    headers = ["test", "videos", *[f"accuracy {k}" for k in probs],
               *[f"answers changed, {k}" for k in probs if k != ref]]  # fmt: skip
    print_table("int8 against PyTorch on the test videos", headers, rows_out)
    emb = {k: stack(v, "embedding") for k, v in preds.items()} if model.embedding else {}
    for k in probs:
        if k == ref:
            continue
        line = f"- {k}: max |probability difference| {np.abs(probs[k] - probs[ref]).max():.3g}"
        if emb:
            a, b = emb[ref], emb[k]
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            line += f", smallest embedding cosine {cos.min():.4f}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
