"""Does attribution transfer to generator trainings never seen? The demo's version, on a CPU.

    python benchmarks/bench_transfer_demo.py --work data/transfer_demo

The demo set with ``--instances 5``: every toy architecture has five weight draws
(instances), source i rendered by instance i mod 5. Two splits of the same videos: by
instance (cross-instance: 3 instances train, 1 validation, 1 test) and by source
(paper-like: every instance in every split). For each protocol and each variant of
``--variants`` (the demo recipe, with one option changed), ``evaluate cross-quality``
trains on crf0 (``--train-qualities``) and tests on crf 0, 10 and 23, next to the DFT
baseline. Tables as ``bench_realistic.py`` prints them; every run and report is kept under
``--work``, and finished runs are reused.

The toy instances differ only in small random weights near the identity (the
architecture's upsampler and resolutions are shared), a much smaller gap between instances
than between two real trainings: read this as a fast check of the machinery and of large
effects; the realistic benchmark is the measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench_realistic import PROTOCOLS, QUALITIES, protocol_report
from common import machine_line

from attribnet.cli.evaluate import main as evaluate_main
from attribnet.cli.logs import setup_logging
from attribnet.data.manifest import assign_splits, read_manifest, write_manifest
from attribnet.data.synthetic import generate_demo

ROOT = Path(__file__).resolve().parent.parent
SPLIT_FILES = {"instance": "by_instance.csv", "paper": "by_source.csv"}
DEMO = ROOT / "recipes" / "demo.yaml"
VARIANTS: dict[str, list[str]] = {
    "demo": [],
    "demo+spectral": ["model.spectral_dim=32"],
    "demo+adv": ["loss.instance_adversary_weight=0.1"],
    "demo+srm": ["model.input_filter=srm"],
    "demo+bayar": ["model.input_filter=bayar"],
    "demo CE only": ["loss.arcface_weight=0"],
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("data/transfer_demo"))
    p.add_argument("--sources", type=int, default=40)
    p.add_argument("--instances", type=int, default=5)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    p.add_argument("--protocols", default="instance,paper")
    p.add_argument("--train-qualities", default="crf0")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.protocols = [x.strip() for x in args.protocols.split(",") if x.strip()]
    bad = sorted(set(args.variants) - set(VARIANTS)) + sorted(set(args.protocols) - set(PROTOCOLS))
    if bad:
        p.error(f"unknown variants or protocols {bad}; variants: {list(VARIANTS)}")
    return args


def build(args: argparse.Namespace) -> Path:
    """The demo set with instances, and its two manifests; returns the folder."""
    data = args.work / "dataset"
    manifest = generate_demo(data, num_sources=args.sources, instances=args.instances)
    rows = read_manifest(manifest)  # split by instance
    write_manifest(rows, data / SPLIT_FILES["instance"])
    paper = assign_splits([replace(r, split="") for r in rows], seed=0)
    write_manifest(paper, data / SPLIT_FILES["paper"])
    return data


def run(args: argparse.Namespace, data: Path, protocol: str, variant: str, seed: int) -> dict:
    name = f"xfer_{variant.replace(' ', '_').replace('+', '_')}{PROTOCOLS[protocol][2]}_s{seed}"
    out = args.work / "reports" / name
    work = args.work.resolve()
    sets = [
        f"name={name}", f"train.seed={seed}", "data.demo=false",
        f"data.manifest={(data / SPLIT_FILES[protocol]).resolve()}",
        f"data.cache={work / 'cache'}", f"train.out_dir={work / 'runs'}",
        "train.build_index=false", *VARIANTS[variant], *args.overrides,
    ]  # fmt: skip
    argv = ["cross-quality", "--recipe", str(DEMO), "--qualities", ",".join(QUALITIES),
            "--train-qualities", args.train_qualities, "--out", str(out)]  # fmt: skip
    for item in sets:
        argv += ["--set", item]
    print("python -m attribnet.evaluate " + " ".join(argv), flush=True)
    if evaluate_main(argv) != 0:
        raise SystemExit(f"{name} failed")
    return json.loads((out / "metrics.json").read_text())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    start = time.perf_counter()
    data = build(args)
    record = {}
    print(f"\n## Transfer on the demo ({args.instances} instances per architecture)\n")
    print(f"- machine: {machine_line()}")
    print(f"- variants: {json.dumps({v: VARIANTS[v] for v in args.variants})}")
    for protocol in [p for p in PROTOCOLS if p in args.protocols]:
        results = {
            v: [run(args, data, protocol, v, s) for s in range(args.seeds)] for v in args.variants
        }
        text, record[protocol], _ = protocol_report(protocol, results, args.seeds)
        print(text, flush=True)
    out = args.work / "results.json"
    out.write_text(json.dumps({"machine": machine_line(), "protocols": record}, indent=2) + "\n")
    print(f"\n{time.perf_counter() - start:.0f} s; results written to {out}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
