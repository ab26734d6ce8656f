"""The recipe's sections as dataclasses: every YAML key maps 1:1 to a field here."""

from __future__ import annotations

from dataclasses import dataclass, field

from attribnet.config.choices import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class AugmentConfig:
    """Training augmentation; probabilities in [0, 1].

    ``crop_scale`` is the area range of a random resized crop; the default (1, 1) takes the
    whole face and does not rescale it. A generator's traces are fine texture at a fixed
    scale, and rescaling blurs them (measured on the realistic benchmark: docs/results.md,
    "Figures moved from module docstrings").

    ``random_crop`` (needs ``data.resize`` > 0): training takes a random ``image_size``
    crop of the ``resize`` x ``resize`` face where evaluation takes the centre one. With
    ``data.cache_size`` = ``data.resize`` (faces cached at the side they are cropped from)
    no pixel is resampled: the crop shifts on the video's own pixel grid.

    ``h264_cache`` (needs ``h264_p`` > 0): each cached clip is re-encoded once per crf of
    ``h264_crf``, whole, and kept in the face cache's ``h264/`` folder (made before
    training, resumable; one more cache's disk per crf); a clip drawn for H.264 reads the
    variant instead of being encoded again every epoch (attribnet.data.h264_variants). Same
    draws; the frames are those of the whole video encoded at that crf, fixed across epochs.
    """

    hflip: float = 0.5
    crop_scale: tuple[float, float] = (1.0, 1.0)
    color_jitter: float = 0.0
    h264_p: float = 0.0
    h264_crf: list[int] = field(default_factory=lambda: [0, 10, 23])
    jpeg_p: float = 0.0
    jpeg_quality: tuple[int, int] = (60, 95)
    random_crop: bool = False
    h264_cache: bool = False


@dataclass
class DataConfig:
    """Where clips come from and how they are sampled.

    ``manifest``/``cache`` are paths, relative to the working directory. With ``demo: true``
    the built-in synthetic dataset is generated into ``root`` when missing.

    ``outlier_classes`` (outlier exposure, Hendrycks et al., ICLR 2019): labels whose
    TRAIN-split videos are shown in training as "none of the known" (label -1, pushed to a
    uniform softmax, weighted by ``loss.outlier_weight``). They are no classes of the model
    (not in ``classes``, no classifier output, no ArcFace centre) and validation, test and
    the index leave them out. E.g. ``[real]`` or other tools' fakes.

    ``face_check`` (default on): whatever the ``detector``, a video whose face crops show
    no face (noise, one colour, no face in most of 8 sampled crops) is skipped with its
    reason, in training, index building and queries alike
    (attribnet.data.face_check.FaceCheck). Turn it off only for inputs that are not faces.

    ``image_size``, ``mean`` and ``std`` (frames are ``(x / 255 - mean) / std``): None, or
    absent from a recipe file, means ``model.backbone``'s default
    (attribnet.models.backbones), filled in when the recipe is loaded, so the recipe saved
    in a checkpoint holds the numbers. The defaults here, for recipes built in code, are
    the ResNets' (ImageNet statistics, 224 px).

    ``cache_size``: the side faces are cropped to in the face cache (0: ``image_size``).
    Training, index and queries read the same cache, so it is part of how a model sees
    its input. A face box of exactly ``cache_size`` pixels (e.g. the ``centre`` detector on
    frames of a fixed size, ``face_margin: 0``) is cached without resampling; with
    ``resize`` = ``cache_size`` and ``augment.random_crop`` the model sees crops of the
    video's own pixels.

    ``pretext: transformations`` (default ``none``) trains the pretext task of DNA-Det
    (attribnet.data.pretext): every video of the manifest, whatever its label, in its split,
    each clip labelled with a low-level transformation drawn per clip and applied to all its
    frames; the run's classes are the transformations. Its checkpoint then initialises a
    generator run's encoder (``model.weights``). It needs no ``classes`` or
    ``outlier_classes``, no compression augmentation (``augment.h264_p`` and ``jpeg_p`` 0:
    it would blur the labels) and ``train.build_index: false``.
    """

    manifest: str = ""
    cache: str = ""
    demo: bool = False
    root: str = ""
    detector: str = "none"
    face_margin: float = 0.3
    face_check: bool = True
    max_frames: int = 64
    classes: list[str] = field(default_factory=list)
    outlier_classes: list[str] = field(default_factory=list)
    train_qualities: list[str] = field(default_factory=list)
    eval_qualities: list[str] = field(default_factory=list)
    num_frames: int = 10
    sampling: str = "periodic"
    image_size: int | None = 224
    cache_size: int = 0  # 0: image_size
    resize: int = 0  # > 0: faces resized to resize x resize, then centre-cropped to image_size
    mean: tuple[float, float, float] | None = IMAGENET_MEAN
    std: tuple[float, float, float] | None = IMAGENET_STD
    num_workers: int = 2
    pretext: str = "none"
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    """The encoder and heads (see attribnet.models.encoder.ClipEncoder).

    ``backbone`` names an entry of attribnet.models.backbones.BACKBONES (ResNets, Xception,
    EfficientNet-B0/B4, MesoInception-4); ``sam: every_block`` and ``channel_attention``
    need a ResNet (other trunks take ``sam: last`` or ``none``). ``weights`` is None, a
    local state dict of the trunk, for the ResNets ``imagenet``, or an attribnet training
    checkpoint (e.g. a pretext run's ``best.pt``, see ``data.pretext``): its per-frame
    feature extractor (input filter, trunk with the attention in its blocks, the last SAM)
    initialises this model's, which must have the same backbone and options; its fusion and
    heads are not taken (attribnet.models.checkpoint_trunk).

    Two options keep a generator's high-frequency traces in view; both are off by default.
    ``input_filter``: ``none``, ``srm`` (fixed SRM residuals, greyscale, truncated),
    ``bayar`` (learnt constrained convolution) or ``median`` (each colour channel minus its
    3x3 median, truncated: a denoiser residual) before the trunk
    (attribnet.models.input_filters). ``spectral_dim`` > 0: a branch on each frame's
    radially averaged log-amplitude spectrum (``spectral_bins`` rings; frames need
    ``image_size >= 2 * spectral_bins``) adds that many features before the heads
    (attribnet.models.spectral).

    ``patch_size`` > 0 makes a patch model (attribnet.models.patches): the trunk sees
    ``patch_size`` windows of each frame cut on its own pixel grid (``patches`` at random
    places per frame in training, a ``patch_grid`` x ``patch_grid`` grid at evaluation) and
    their features are averaged. Windows are never resampled, so the frames themselves
    should not be either: cache the faces at their size (``data.cache_size``) and use
    ``data.image_size`` equal to it with ``data.augment.crop_scale: null``.
    """

    backbone: str = "resnet50"
    sam: str = "every_block"
    channel_attention: bool = False
    fusion: str = "tam"
    num_frames: int = 10
    embedding_dim: int = 0
    weights: str | None = None
    input_filter: str = "none"
    spectral_dim: int = 0
    spectral_bins: int = 32
    per_frame_trunk: bool = False  # the authors' loop: BatchNorm over one frame index's B images
    patch_size: int = 0
    patches: int = 4
    patch_grid: int = 3


@dataclass
class LossConfig:
    """Loss weights; total = ce_weight*CE + arcface_weight*ArcFace + triplet_weight*Triplet.

    ArcFace margins are in DEGREES (pytorch-metric-learning's unit): 28.6 deg = 0.5 rad.
    ``arcface_class_margins`` maps class names to per-class margins (ArcFaceMod).

    Two terms teach the open space ("none of the known"); both push a clip's class
    distribution toward uniform (cross-entropy to uniform over the classifier's softmax and,
    with ArcFace, over the scaled cosines to the class centres) and are 0 = off:
    ``outlier_weight`` for the videos of ``data.outlier_classes`` (the two go together);
    ``open_space_weight`` for clips re-synthesised in the training step by a pool of
    ``open_space_nets`` random generator-like nets (attribnet.data.open_space), a fraction
    ``open_space_fraction`` of each batch's clips, appended to the batch.

    ``instance_adversary_weight`` > 0 (needs the manifest's ``instance`` column, >= 2
    training instances): gradient reversal on the training instance, so the clip features
    do not tell which generator training made a video (attribnet.losses.instance_adversary).

    ``arcface_instance_centres`` (needs ArcFace and CE, and the manifest's ``instance``
    column): one ArcFace centre per class and training instance, a clip pulled to its own
    training's centre and every other class counted by its nearest one
    (attribnet.losses.instance_centre_arcface). Predictions come from the classifier.

    ``supcon_weight`` > 0 (needs an embedding head): supervised contrastive loss at
    ``supcon_temperature`` whose positives are clips of the same generator from other
    trainings (the manifest's ``instance`` column; same-training pairs are left out), so the
    embedding gathers what trainings of an architecture share
    (attribnet.losses.cross_instance_supcon_loss).
    """

    ce_weight: float = 1.0
    arcface_weight: float = 0.0
    arcface_margin: float = 28.6
    arcface_scale: float = 64.0
    arcface_class_margins: dict[str, float] = field(default_factory=dict)
    arcface_instance_centres: bool = False
    supcon_weight: float = 0.0
    supcon_temperature: float = 0.1
    triplet_weight: float = 0.0
    triplet_margin: float = 0.2
    triplet_mining: str = "semihard"
    outlier_weight: float = 0.0
    open_space_weight: float = 0.0
    open_space_fraction: float = 0.25
    open_space_nets: int = 8
    instance_adversary_weight: float = 0.0


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule (``step``: lr * gamma every step_epochs).

    Batch size and learning rate: ``lr`` is used as written unless ``lr_batch`` > 0 names
    the batch it was tuned for; then a step of another size gets ``lr * batch / lr_batch``
    (the linear scaling rule, Goyal et al. 2017), ``batch`` being ``train.batch_size``
    times the torchrun processes. The paper's lr 0.01 is for batch 10, so a GPU that trains
    DMA-STA at batch 64 takes lr 0.064 (add ``warmup_epochs`` for large factors). There is
    no gradient accumulation: it would keep a large batch on a small GPU, not the paper's
    batch of 10 on a large one, and BatchNorm would still see the small batches.
    """

    name: str = "sgd"
    lr: float = 0.01
    lr_batch: int = 0  # > 0: the batch lr is for; other batches scale it linearly
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "step"
    step_epochs: int = 40
    gamma: float = 0.1
    warmup_epochs: int = 0


@dataclass
class TrainConfig:
    """The loop. ``m_per_class`` > 0 uses PML's MPerClassSampler (needed by triplet).

    ``instances_per_class`` K > 0 mixes generator trainings instead
    (attribnet.data.instance_batches): each batch's ``m_per_class`` clips of a class come
    from K different trainings (manifest column ``instance``); with ``m_per_class`` = K
    every same-class pair of a batch crosses trainings.

    ``checkpoint_every_steps`` N > 0 also writes last.pt every N optimizer steps inside an
    epoch (0 = at epoch ends only); ``--resume`` continues from that step with the same
    batches, as if never stopped (attribnet.training.state).

    Under torchrun, ``batch_size`` is per process: one optimizer step takes one batch on
    every rank (attribnet.runtime.distributed), so a step sees ``batch_size`` x ranks clips.
    ``sync_bn`` normalises each BatchNorm over all of a step's clips instead of each rank's
    own (torch's SyncBatchNorm on CUDA; attribnet's all-reduce version on the CPU).

    ``compile``: ``torch.compile`` of the encoder's training forward; where compiling fails
    (no C compiler, no Triton, an unsupported Python or operator) one warning line says so
    and the run trains eagerly (attribnet.runtime.compile). ``log_every_steps``: a step
    never waits for the GPU; every this many steps the loss sums are read back (one
    synchronisation) for the progress bar and the NaN/inf check, which therefore stops a
    run up to that many steps after the bad step (attribnet.training.totals).

    ``if_exists``: what a start does when ``out_dir/name`` already holds a run. ``refuse``
    (the default: a run name belongs to one run), ``resume`` (continue it; a finished run
    is left as it is and its index is not rebuilt, so the command can be run again) or
    ``overwrite`` (move it aside to ``<name>.replaced-<UTC time>`` and start again).
    ``--resume``/``--overwrite`` on the command line win (attribnet.training.run_dir).
    """

    epochs: int = 300
    batch_size: int = 10
    m_per_class: int = 0
    instances_per_class: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    log_every_steps: int = 20
    grad_clip: float = 0.0
    seed: int = 0
    out_dir: str = "runs"
    val_every: int = 1
    select_metric: str = "val_accuracy"
    build_index: bool = True
    index_dir: str = "indexes"
    max_steps_per_epoch: int = 0
    checkpoint_every_steps: int = 0
    sync_bn: bool = False
    if_exists: str = "refuse"


@dataclass
class Recipe:
    """One experiment."""

    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
