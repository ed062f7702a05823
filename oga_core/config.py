"""``AnalysisConfig``: everything that decides an analysis, validated in one place.

Importing this module is cheap (no torch): the CLI builds and checks a configuration before it
loads anything heavy, and the app keeps configurations in its session.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oga_core import options
from oga_core.errors import ModelError, OgaError
from oga_core.roots import check_allowed


@dataclass(frozen=True)
class AnalysisConfig:
    """Everything that decides an analysis.

    ``model``: ``auto`` stands for the data's default (:meth:`for_input`). ``checkpoint``: the
    model to analyse; ``weights`` (or ``pretrained``: the architecture's published weights,
    installed with oga or downloaded on request): a starting point, trained as ``backbone`` says
    (``frozen``: a linear head on cached features; ``finetune``: every layer). ``epochs``,
    ``batch_size``, ``lr`` None: the recipe (``options.RECIPES``, or the head / fine-tuning recipe
    from weights); with a checkpoint, ``epochs=None`` scores it as it is. ``image_size`` None: the
    model's (``options.default_image_size``). ``noise`` > 0 flips that fraction of labels on
    purpose and keeps the truth, for demos and benchmarks. The ranking fields (``detector``,
    ``budget``, ``per_class``) only re-rank stored scores.
    """

    data: str = options.DEFAULT_DATA
    model: str = options.DEFAULT_MODEL
    checkpoint: str | None = None
    weights: str | None = None
    backbone: str = options.DEFAULT_BACKBONE
    pretrained: bool = False
    epochs: int | None = None
    holdout: float = options.DEFAULT_HOLDOUT
    batch_size: int | None = None
    lr: float | None = None
    scope: str = options.DEFAULT_SCOPE
    detector: str = options.DEFAULT_DETECTOR
    budget: float = options.DEFAULT_BUDGET
    per_class: bool = False
    noise: float = 0.0
    noise_kind: str = options.DEFAULT_NOISE_KIND
    seed: int = 0
    device: str = "auto"
    image_size: int | None = None
    grayscale: bool = False
    skip_unreadable: bool = False

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AnalysisConfig:
        """A config from a stored dict (``run.json``, the app's saved settings); keys this version
        does not know are ignored, so settings saved by an older or newer oga still open."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def ranked(
        self, *, detector: str | None = None, budget: float | None = None, per_class: bool | None = None
    ) -> AnalysisConfig:
        """The same analysis ranked otherwise (nothing to recompute)."""
        return dataclasses.replace(
            self,
            detector=self.detector if detector is None else detector,
            budget=self.budget if budget is None else budget,
            per_class=self.per_class if per_class is None else per_class,
        )

    def unranked(self) -> AnalysisConfig:
        """This config with the default ranking: two configs that differ only in ranking share
        one computation."""
        return self.ranked(detector=options.DEFAULT_DETECTOR, budget=options.DEFAULT_BUDGET, per_class=False)

    @property
    def starts_from_weights(self) -> bool:
        """True when training starts from pretrained weights (a file, or the architecture's published ones)."""
        return self.weights is not None or self.pretrained

    @property
    def frozen_backbone(self) -> bool:
        """True when only a linear head is trained, on the cached features of a frozen backbone."""
        return self.starts_from_weights and self.backbone == "frozen"

    @property
    def resolved_image_size(self) -> int:
        """The side file images are decoded at: ``image_size``, or the model's default when None."""
        return options.default_image_size(self.model) if self.image_size is None else self.image_size

    def for_input(self, *, colour: bool) -> AnalysisConfig:
        """This config with ``auto`` replaced by the model for the data (``options.auto_model``)."""
        if self.model != options.AUTO_MODEL:
            return self
        return dataclasses.replace(self, model=options.auto_model(colour))

    def recipe(self) -> options.Recipe:
        """The training recipe with this config's batch size and learning rate, if given: the
        model's own, or from pretrained weights the head's or fine-tuning's."""
        if self.frozen_backbone:
            base = options.HEAD_RECIPE
        elif self.starts_from_weights:
            base = options.FINETUNE_RECIPE
        else:
            model = options.auto_model(colour=False) if self.model == options.AUTO_MODEL else self.model
            base = options.RECIPES.get(model, options.FALLBACK_RECIPE)
        return dataclasses.replace(
            base,
            batch_size=base.batch_size if self.batch_size is None else self.batch_size,
            lr=base.lr if self.lr is None else self.lr,
        )

    def resolved_epochs(self, trained_samples: int) -> int:
        """Epochs to train on ``trained_samples`` samples (0: score a checkpoint as it is)."""
        if self.epochs is not None:
            return self.epochs
        return 0 if self.checkpoint else self.recipe().epochs_for(trained_samples)

    def data_settings(self) -> dict[str, Any]:
        """What, besides the content, names the analysed data: the source and any injected noise."""
        noisy = self.noise > 0
        return {
            "data": self.data,
            "noise": self.noise,
            "noise_kind": self.noise_kind if noisy else None,
            "noise_seed": self.seed if noisy else None,
            "skip_unreadable": self.skip_unreadable,
        }

    def validate(self) -> AnalysisConfig:
        """OgaError naming the first setting a person must change; returns self when all is well."""
        from oga_core import detectors, noise  # numpy and pandas: not needed to build a config

        options.check_choice(self.scope, options.SCOPES, "scope")
        if self.model not in options.names(options.MODELS):
            from oga_core.models import torchvision_architectures  # torchvision: only for a name oga does not define

            if self.model not in torchvision_architectures():
                raise OgaError(
                    f"unknown model '{self.model}': choose {' or '.join(options.names(options.MODELS))}, "
                    "or a torchvision classification architecture (e.g. mobilenet_v3_small)"
                )
        options.check_choice(self.backbone, options.BACKBONES, "backbone")
        if self.checkpoint is not None and self.starts_from_weights:
            raise OgaError(
                "give either a checkpoint (the model to analyse) or pretrained weights (a starting point), not both"
            )
        if self.weights is not None and self.pretrained:
            raise OgaError(
                "give either --weights FILE or --pretrained (the architecture's published weights), not both"
            )
        if (
            self.pretrained
            and self.model in options.names(options.MODELS)
            and not self.model.endswith("_imagenet")
            and self.model not in options.INSTALLED_WEIGHTS
        ):
            raise OgaError(
                f"no published weights exist for oga's '{self.model}': use --pretrained with efficientnet_lite0 "
                "(its ImageNet weights come with oga) or a torchvision architecture (resnet18_imagenet, ...)"
            )
        if self.epochs == 0 and self.starts_from_weights:
            raise OgaError("pretrained weights are a starting point: train the head for at least one epoch")
        detectors.get(self.detector)
        detectors.check_budget(self.budget)
        noise.check_noise(self.noise, self.noise_kind)
        if self.device not in options.DEVICES and not self.device.startswith("cuda:"):
            raise OgaError(f"unknown device '{self.device}': use {', '.join(options.DEVICES)}")
        if self.epochs is not None and self.epochs < 0:
            raise OgaError("epochs must be 0 or more")
        if self.epochs == 0 and self.checkpoint is None:
            raise OgaError(
                "0 training epochs without a checkpoint would score an untrained model, whose ranking means "
                "nothing: train for at least one epoch, or give a checkpoint to score"
            )
        if not 0 <= self.holdout <= 0.5:
            raise OgaError(f"the held-out fraction must be between 0 and 0.5, got {self.holdout}")
        if self.batch_size is not None and self.batch_size < 2:
            raise OgaError("batch size must be at least 2 (a batch of one cannot be normalised by BatchNorm)")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise OgaError(f"learning rate must be a positive number, got {self.lr}")
        if not 0 <= self.seed < 2**32:
            raise OgaError(f"seed must be between 0 and 2**32 - 1, got {self.seed}")
        if self.weights is not None:
            check_allowed(self.weights, "the weights file")
            if not Path(self.weights).is_file():
                raise ModelError(f"weights file {self.weights} does not exist or is not a file")
        if self.checkpoint is not None:
            check_allowed(self.checkpoint, "the checkpoint")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            # checked here, before any cache key: a mistyped path must not quietly score an untrained model
            raise ModelError(f"checkpoint {self.checkpoint} does not exist or is not a file")
        low, high = options.IMAGE_SIZE_RANGE
        if self.image_size is not None and not low <= self.image_size <= high:
            raise OgaError(f"image size must be between {low} and {high} pixels, got {self.image_size}")
        return self
