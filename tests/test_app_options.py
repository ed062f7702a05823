"""One source of options: every choice the app's widgets offer, and every default they start
from, is the engine's (oga_core.options, oga_core.detectors), in the engine's order."""

from __future__ import annotations

import inspect

from oga_core import options, summaries
from oga_core.config import AnalysisConfig
from oga_core.detectors import DETECTORS
from oga_core.pipeline import Analysis

from helpers import TIMEOUT, assert_clean, open_app, open_page


def offers(widget, choices) -> list[str]:
    """The widget's options are exactly ``choices`` (values), each shown through its format_func;
    returns them as shown."""
    shown = [str(widget.format_func(c)) for c in choices]
    assert widget.options == shown, (widget.options, shown)
    return shown


def test_sidebar_ranking_offers_every_detector():
    at = open_app()
    box = at.sidebar.selectbox(key="rank_detector")
    assert offers(box, list(DETECTORS)) == [d.label for d in DETECTORS.values()]
    assert box.value == options.DEFAULT_DETECTOR
    assert at.sidebar.slider(key="rank_budget").value == options.DEFAULT_BUDGET * 100


def test_setup_form_offers_the_engines_choices_and_defaults(home):
    at = open_app()
    default = AnalysisConfig()
    source = at.radio(key="setup_source")
    assert offers(source, options.names(options.SOURCE_KINDS)) == [c.label for c in options.SOURCE_KINDS]
    demo = at.selectbox(key="setup_demo")
    assert offers(demo, options.names(options.DEMOS)) == [c.label for c in options.DEMOS]
    assert f"demo:{demo.value}" == options.DEFAULT_DATA
    scope = at.radio(key="setup_scope")
    assert offers(scope, options.names(options.SCOPES)) == [c.label for c in options.SCOPES]
    assert scope.value == options.DEFAULT_SCOPE
    kinds = at.radio(key="setup_noise_kind")  # the demo flips labels, so the kind is offered
    assert offers(kinds, options.names(options.NOISE_KINDS)) == list(options.names(options.NOISE_KINDS))
    assert kinds.value == options.DEFAULT_NOISE_KIND
    assert list(kinds.proto.captions) == [c.label for c in options.NOISE_KINDS]
    offers(at.selectbox(key="setup_device"), options.DEVICES)
    size = at.number_input(key="setup_image_size")
    assert size.value is default.image_size is None  # the model's own: 32, or 128 for the ImageNet backbone
    assert str(options.DEFAULT_IMAGE_SIZE) in size.proto.placeholder
    size = size.proto
    assert (size.min, size.max) == options.IMAGE_SIZE_RANGE
    # None: the model's recipe, shown as the placeholder
    batch = at.number_input(key="setup_batch")
    assert batch.value is default.batch_size is None and str(default.recipe().batch_size) in batch.proto.placeholder
    epochs = at.number_input(key=f"setup_epochs_{options.DEFAULT_MODEL}")
    assert epochs.value is default.epochs is None and "recipe" in epochs.proto.placeholder

    at.radio(key="setup_model_mode").set_value("torchvision").run()
    trainable = [n for n in options.names(options.MODELS) if n != options.DEFAULT_MODEL]
    arch = at.selectbox(key="setup_arch")
    assert offers(arch, trainable) == [c.label for c in options.MODELS if c.name != options.DEFAULT_MODEL]
    model = arch.value
    assert at.number_input(key="setup_epochs_torchvision").value is AnalysisConfig(model=model).epochs is None

    at.radio(key="setup_model_mode").set_value("checkpoint").run()
    offers(at.selectbox(key="setup_ckpt_arch"), options.names(options.MODELS))
    ckpt_epochs = at.number_input(key="setup_epochs_checkpoint")  # empty: a checkpoint is scored as it is
    assert ckpt_epochs.value is None and "as it is" in ckpt_epochs.proto.placeholder

    at.radio(key="setup_source").set_value("torchvision").run()
    offers(at.selectbox(key="setup_tv_name"), options.TORCHVISION_SETS)
    assert_clean(at)


def test_progress_names_the_engines_stages(home):
    at = open_app()
    at.button(key="analyze").click().run(timeout=TIMEOUT)
    assert_clean(at)
    (status,) = at.status
    bars = [p.proto.text for p in status.get("progress")]
    assert len(bars) == len(options.STAGES)
    for text, stage in zip(bars, options.STAGES):
        assert text.startswith(stage.label), (text, stage)


def test_explore_and_review_offer_the_engines_choices(home, demo):
    at = open_page("explore", map_method="pca")
    method, space = at.button_group(key="map_method"), at.button_group(key="map_space")
    assert offers(method, options.names(options.MAP_METHODS)) == [c.label for c in options.MAP_METHODS]
    assert offers(space, options.names(options.MAP_SPACES)) == [c.label for c in options.MAP_SPACES]
    # A new session starts from the engine's own default map (Analysis.map_coords).
    defaults = inspect.signature(Analysis.map_coords).parameters
    assert (method.proto.default[:], space.proto.default[:]) == ([0], [0])
    assert options.MAP_METHODS[0].name == defaults["method"].default
    assert options.MAP_SPACES[0].name == defaults["space"].default

    at.switch_page("pages/review.py").run()
    assert offers(at.selectbox(key="review_state"), summaries.REVIEW_STATES)
    assert_clean(at)


def test_a_fresh_session_starts_from_the_engines_defaults(home):
    config = open_app().session_state["oga_config"]
    assert config.data == options.DEFAULT_DATA and config.model == options.DEFAULT_MODEL
    assert (config.scope, config.detector, config.budget) == (
        options.DEFAULT_SCOPE,
        options.DEFAULT_DETECTOR,
        options.DEFAULT_BUDGET,
    )
