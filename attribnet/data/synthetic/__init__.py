"""The built-in demo dataset: toy face-swap "deepfakes" from five toy generators.

No download needed. Procedural talking heads (one ``source_id`` per source sequence) go
through every toy generator, so the content of a video says nothing about its class: only
the generator's fingerprint does. Each output frame is colour-corrected to its source
frame (per-channel mean and std matched, as face-swap tools do when blending), so global
colour and brightness statistics carry no class information either. Every clip is then
encoded with H.264 at DFDM's three qualities (crf 0, 10, 23).

Layout::

    out_dir/manifest.csv                      path,label,quality,source_id,split,instance
    out_dir/demo.json                         the parameters the set was made with
    out_dir/<quality>/<class>/<source>.mp4    e.g. crf23/dfaker/src007.mp4

``real`` renders the un-swapped source itself (no generator; encoded like the fakes): a
video that a good unknown verdict never attributes to a generator.

Instances. By default each architecture has one set of weights (one *instance*, as if each
tool had been trained once). ``instances=N`` gives every architecture N instances (the same
layers, other seeded random weights, as N trainings of one tool would differ); source i is
rendered by instance ``i mod N`` of every architecture, the manifest's ``instance`` column
names it (``i0`` ...), and the splits keep every instance in one split (the cross-instance
protocol: test videos come from instances no training video came from).

Command line: ``python -m attribnet.data.synthetic data/demo [--sources 24 ...]``.
"""

from attribnet.data.synthetic.dataset import generate_demo
from attribnet.data.synthetic.generators import (
    ARCHITECTURES,
    DEMO_CLASSES,
    build_generator,
    render_fake,
)
from attribnet.data.synthetic.talking_heads import draw_source

__all__ = [
    "ARCHITECTURES",
    "DEMO_CLASSES",
    "build_generator",
    "draw_source",
    "generate_demo",
    "render_fake",
]
