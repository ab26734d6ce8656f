"""What a recipe may name, torch-free: each choice field's values and the backbones'
inputs and attention support.

The modules that implement these names (:mod:`attribnet.models.backbones`,
:mod:`attribnet.models.attention`, :mod:`attribnet.models.input_filters`,
:mod:`attribnet.data.sampling`, :mod:`attribnet.data.pretext`,
:mod:`attribnet.training.run_dir`) take them from here, so that validating a recipe needs
no torch; a test checks that every name here has an implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SAMPLING_MODES = ("periodic", "random_segment", "all")
FUSIONS = ("tam", "scorer", "mean")
INPUT_FILTERS = ("none", "srm", "bayar", "median")
SAM_PLACEMENTS = ("every_block", "last", "none")
IF_EXISTS = ("refuse", "resume", "overwrite")
PRETEXTS = ("none", "transformations")
RESNETS = ("resnet10", "resnet18", "resnet34", "resnet50", "resnet101")

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class Preprocessing:
    """What a backbone expects of its frames: ``(x / 255 - mean) / std`` per RGB channel,
    faces of ``input_size`` x ``input_size`` pixels."""

    mean: Triple
    std: Triple
    input_size: int


@dataclass(frozen=True)
class BackboneCard:
    """A backbone as a recipe sees it: its feature width C, its preprocessing and whether
    attention can go inside its blocks (a SAM in every block, CBAM's channel attention)."""

    name: str
    num_features: int
    preprocessing: Preprocessing
    block_attention: bool = False

    @property
    def sam_placements(self) -> tuple[str, ...]:
        """The ``sam`` values this trunk supports."""
        return SAM_PLACEMENTS if self.block_attention else ("last", "none")

    @property
    def channel_attention(self) -> bool:
        """Whether CBAM's channel attention can go in this trunk's blocks."""
        return self.block_attention

    def check_attention(self, sam: str, channel_attention: bool) -> None:
        """ValueError, naming this backbone, for attention it cannot have."""
        if sam not in SAM_PLACEMENTS:
            raise ValueError(f"unknown sam placement {sam!r}; use one of {SAM_PLACEMENTS}")
        if sam not in self.sam_placements:
            raise ValueError(
                f"sam placement {sam!r} is not supported by backbone {self.name!r} (SAMs in "
                f"blocks exist for the ResNets only); use one of {self.sam_placements}"
            )
        if channel_attention and not self.channel_attention:
            raise ValueError(
                f"channel_attention is not supported by backbone {self.name!r}; only the "
                f"ResNets ({', '.join(RESNETS)}) have it"
            )


IMAGENET = Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 224)
_FEATURES = {"resnet10": 512, "resnet18": 512, "resnet34": 512, "resnet50": 2048,
             "resnet101": 2048}  # fmt: skip

BACKBONE_CARDS: dict[str, BackboneCard] = {
    card.name: card
    for card in (
        *(BackboneCard(n, _FEATURES[n], IMAGENET, block_attention=True) for n in RESNETS),
        # timm's pretrained configurations: Inception-style [-1, 1] inputs at 299 px
        BackboneCard("xception", 2048, Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 299)),
        BackboneCard("efficientnet_b0", 1280, IMAGENET),
        BackboneCard("efficientnet_b4", 1792, Preprocessing(IMAGENET_MEAN, IMAGENET_STD, 320)),
        # the paper's 256 px faces, pixels scaled to [0, 1]
        BackboneCard("meso_inception4", 16, Preprocessing((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 256)),
    )
}
"""Every backbone a recipe may name (``model.backbone``); each has a builder in
:data:`attribnet.models.backbones.BACKBONES`."""
