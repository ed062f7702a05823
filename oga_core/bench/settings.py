"""What each part of ``oga bench`` runs: one frozen dataclass per part, with its quick variant.

Only dataclasses here (no torch), so the settings of a run can be read, compared and stored in
the results JSON (``dataclasses.asdict``) without importing what measures them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class QualitySettings:
    """The quality part: every (data set, regime, noise kind, rate, seed) is one run.

    The model is the product's default trained by its recipe (``epochs`` None), holding out
    ``holdout`` of the training samples as the product does; the ``memorise`` regime trains
    ``memorise_factor`` times as many epochs, at ``memorise_rates``, ``memorise_kinds`` and
    ``memorise_seeds``, so the model memorises the flipped labels. ``overrides`` gives a data set
    its own noise kinds and rates (the shapes' flips go to a look-alike class). Larger sets are
    subsampled, stratified, to ``max_samples``.

    The full grid is sized to finish in about three and a half hours on two busy CPU cores: every
    kind, rate and seed on the two data sets the recipe was checked on (digits, MNIST-5k); 20% and
    40% of each kind on animals and fashion and 15% look-alike flips on shapes, the sets nobody
    tuned for; the memorising regime (three times the epochs, the costly one) at one seed, on the
    structured flips where final-epoch scores collapse.
    """

    datasets: tuple[str, ...] = ("demo:digits", "demo:mnist5k", "demo:animals", "demo:fashion", "demo:shapes")
    kinds: tuple[str, ...] = ("symmetric", "pair")
    rates: tuple[float, ...] = (0.1, 0.2, 0.4)
    seeds: tuple[int, ...] = (0, 1, 2)
    overrides: tuple[tuple[str, tuple[str, ...], tuple[float, ...]], ...] = (
        ("demo:animals", ("symmetric", "pair"), (0.2, 0.4)),
        ("demo:fashion", ("symmetric", "pair"), (0.2, 0.4)),
        ("demo:shapes", ("lookalike",), (0.15,)),
    )
    memorise_rates: tuple[float, ...] = (0.2,)
    memorise_kinds: tuple[str, ...] = ("pair", "lookalike")
    memorise_seeds: tuple[int, ...] = (0,)
    memorise_factor: float = 3.0
    # The pretrained-features regime (photos): ``backbone``'s published ImageNet weights, frozen; a
    # linear head on the cached features (``training.pretrained_features``).
    backbone: str = "efficientnet_lite0"
    features_datasets: tuple[str, ...] = ()
    features_kinds: tuple[str, ...] = ()
    features_rates: tuple[float, ...] = ()
    features_seeds: tuple[int, ...] = ()
    model: str = "cnn"
    epochs: int | None = None
    holdout: float = 0.1
    folds: int = 5
    budget: float = 0.05
    test_fraction: float = 0.2
    split_seed: int = 0
    max_samples: int = 5000

    @classmethod
    def for_run(cls, *, quick: bool) -> QualitySettings:
        """The full grid, or for ``quick`` one setting for CI: digits, symmetric 20%, one seed, few
        epochs, no memorising regime."""
        if not quick:
            return cls()
        return cls(
            datasets=("demo:digits",),
            kinds=("symmetric",),
            rates=(0.2,),
            seeds=(0,),
            overrides=(),
            memorise_rates=(),
            memorise_kinds=(),
            memorise_seeds=(),
            epochs=4,
            folds=3,
        )

    @classmethod
    def photos(cls, *, quick: bool) -> QualitySettings:
        """The photo grid (``oga bench --parts photos``): real CIFAR-10 photos and colour emoji,
        the product's automatic model (``photo_resnet`` for colour) from scratch, and a linear
        head on the frozen ImageNet backbone that comes with oga (``backbone``). Sized for two CPU
        cores: the from-scratch runs (seven trainings each, with cleanlab's five folds) at 20% of
        each kind on two seeds; the features runs (seconds each, after one pass of the backbone)
        at 10/20/40% of every kind on three seeds. Quick: one features run of few epochs."""
        if quick:
            return cls(
                datasets=(),
                kinds=(),
                rates=(),
                seeds=(),
                overrides=(),
                memorise_rates=(),
                memorise_kinds=(),
                memorise_seeds=(),
                features_datasets=("photos:cifar10-3k",),
                features_kinds=("human",),
                features_rates=(0.2,),
                features_seeds=(0,),
                model="auto",
                epochs=3,
                folds=3,
            )
        return cls(
            datasets=("photos:cifar10-3k", "demo:emoji"),
            kinds=("symmetric", "pair", "human"),
            rates=(0.2,),
            seeds=(0, 1),
            overrides=(),
            memorise_rates=(),
            memorise_kinds=(),
            memorise_seeds=(),
            features_datasets=("photos:cifar10-3k", "demo:emoji"),
            features_kinds=("symmetric", "pair", "human"),
            features_rates=(0.1, 0.2, 0.4),
            features_seeds=(0, 1, 2),
            model="auto",
        )

    def noise_of(self, dataset: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
        """The noise kinds and rates ``dataset`` is run at."""
        for name, kinds, rates in self.overrides:
            if name == dataset:
                return kinds, rates
        return self.kinds, self.rates

    def grid(self) -> list[tuple[str, str, str, float, int]]:
        """Every (data set, regime, kind, rate, seed) in run order: the usual regime first."""
        out = []
        for regime in ("usual", "memorise", "features"):
            if regime == "features":
                out += [
                    (d, regime, k, r, s)
                    for d in self.features_datasets
                    for k in self.features_kinds
                    for r in self.features_rates
                    for s in self.features_seeds
                ]
                continue
            for d in self.datasets:
                kinds, rates = self.noise_of(d)
                if regime == "memorise":
                    rates = tuple(r for r in rates if r in self.memorise_rates) or (
                        (rates[0],) if self.memorise_rates else ()
                    )
                    kinds = tuple(k for k in kinds if k in self.memorise_kinds)
                    seeds = self.memorise_seeds
                else:
                    seeds = self.seeds
                out += [(d, regime, k, r, s) for k in kinds for r in rates for s in seeds]
        return out

    def signature(self) -> dict[str, Any]:
        """Everything that makes two runs comparable (a resumed run must match it): all but the grid."""
        return {
            k: v
            for k, v in asdict(self).items()
            if k
            not in (
                "datasets",
                "kinds",
                "rates",
                "seeds",
                "overrides",
                "memorise_rates",
                "memorise_kinds",
                "memorise_seeds",
                "features_datasets",
                "features_kinds",
                "features_rates",
                "features_seeds",
            )
        }


@dataclass(frozen=True)
class ModelCase:
    """One model's speed case: ``n`` samples of ``shape`` (C, H, W); references on ``n_loop`` /
    ``n_vmap`` samples, vmap in chunks of ``vmap_chunk``."""

    model: str
    shape: tuple[int, int, int]
    n: int
    n_loop: int
    n_vmap: int
    vmap_chunk: int
    all_scores: bool = True  # time the product's all-layer path (L1 + sketch + every score) too
    n_all: int | None = None  # ... on this many samples (scaled to n; it is the slowest path), None: n
    pipelines: bool = True  # time OGA's and cleanlab's whole pipelines (K + 1 trainings)


MEMORY_KINDS = ("train_epoch", "ghost_all", "inference", "last_norms")


@dataclass(frozen=True)
class SpeedSettings:
    """The speed part on one device. Batch sizes in samples; ``pipeline_epochs`` for both whole
    pipelines; ``cache_epochs`` None: the product default (12 for the small CNN)."""

    cases: tuple[ModelCase, ...] = (
        ModelCase("cnn", (1, 28, 28), n=5000, n_loop=1000, n_vmap=1000, vmap_chunk=125),
        # ResNet-18 runs at ~20 ms per sample forward on one busy CPU core: 512 samples keep the CPU
        # part to minutes; the materialised all-layer path (L1 + sketch) is timed on 128 of them.
        # The per-sample loop stacks every sample's 11 M-parameter gradient (45 MB each, twice
        # while stacking): 64 samples, not 128, which took 22 GiB and the OOM killer with it.
        ModelCase("resnet18", (3, 32, 32), n=512, n_loop=64, n_vmap=32, vmap_chunk=16, n_all=128),
    )
    repeats: int = 3
    batch_size: int = 256  # inference and last-layer scoring
    grad_batch_size: int = 128  # training and all-layer passes (what gradient_stats uses)
    pipeline_epochs: int = 2
    folds: int = 5
    memory_kinds: tuple[str, ...] = MEMORY_KINDS
    memory_models: tuple[str, ...] | None = None  # None: every case
    cache_data: str = "demo:mnist5k"
    cache_epochs: int | None = None

    @classmethod
    def for_run(cls, *, quick: bool, device_type: str = "cpu") -> SpeedSettings:
        """Quick: a few hundred small-CNN samples and 64 ResNet-18 samples (at least 5 per class,
        for 5 folds), about a minute on a CPU. Full: on a GPU the data are larger (a few hundred
        samples are a handful of batches there, all launch overhead); the per-sample references
        keep their sample counts."""
        if quick:
            return cls(
                cases=(
                    ModelCase("cnn", (1, 28, 28), n=384, n_loop=64, n_vmap=64, vmap_chunk=64),
                    ModelCase(
                        "resnet18",
                        (3, 32, 32),
                        n=64,
                        n_loop=8,
                        n_vmap=4,
                        vmap_chunk=4,
                        all_scores=False,
                        pipelines=False,
                    ),
                ),
                repeats=1,
                pipeline_epochs=1,
                memory_kinds=("train_epoch", "ghost_all"),
                memory_models=("cnn",),
                cache_data="demo:digits",
                cache_epochs=2,
            )
        if device_type != "cuda":
            return cls()
        return cls(
            cases=(
                ModelCase("cnn", (1, 28, 28), n=10_000, n_loop=1000, n_vmap=2000, vmap_chunk=500),
                ModelCase("resnet18", (3, 32, 32), n=2500, n_loop=256, n_vmap=256, vmap_chunk=32),
            )
        )


@dataclass(frozen=True)
class ScalingSettings:
    """The scaling part: ``oga analyze`` on each of ``sizes`` samples (``epochs`` of training; the
    UMAP map up to ``umap_max`` samples), image decoding with 1 process against one per core on
    ``decode_images`` PNG files, and the scoring stage on ``distributed_n`` samples in 1 process
    against 2 (torchrun, gloo)."""

    sizes: tuple[int, ...] = (5_000, 20_000, 100_000, 1_000_000)
    images: str = "shifted MNIST digits"  # what the analysed images are (the report says it)
    model: str = "cnn"
    epochs: int = 1
    umap: bool = True
    umap_max: int = 100_000
    decode_images: int = 6_000
    distributed_n: int = 100_000

    @classmethod
    def for_run(cls, *, quick: bool) -> ScalingSettings:
        """Quick: 2,000 samples, no UMAP (its first fit in a process pays ~15 s of numba JIT), a
        small decoding test, no torchrun (tests/test_distributed.py covers it)."""
        return cls(sizes=(2_000,), umap=False, decode_images=200, distributed_n=0) if quick else cls()


@dataclass(frozen=True)
class AppSettings:
    """The app part: the app driven by AppTest on synthetic analyses of ``sizes`` samples (the
    first is the baseline of the ratios), every action timed ``repeats`` times after its first."""

    sizes: tuple[int, ...] = (1_797, 100_000, 1_000_000)
    repeats: int = 3

    @classmethod
    def for_run(cls, *, quick: bool) -> AppSettings:
        """Quick: the baseline and 20,000 samples, two repeats (about a minute)."""
        return cls(sizes=(1_797, 20_000), repeats=2) if quick else cls()
