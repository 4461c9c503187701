"""nodes/caption.py: Load Captioner and Caption Image, called as ComfyUI calls them."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny_captioners
import torch
from conftest import fingerprints_around_a_touch, run_node, use_models_dir

from uncrop.core import caption as cap
from uncrop.core.errors import UncropError
from uncrop.nodes import NODES, host
from uncrop.nodes import caption as nodes


@pytest.fixture(scope="module")
def models() -> Path:
    return tiny_captioners.models_dir()


@pytest.fixture
def in_models(models, monkeypatch) -> Path:
    """Point the host's model folders at the tiny models."""
    use_models_dir(monkeypatch, models)
    return models


def test_nodes_are_registered():
    ids = {n.define_schema().node_id for n in NODES}
    assert {"UncropLoadCaptioner", "UncropCaptionImage"} <= ids


def test_loader_lists_the_captioners_folder(in_models):
    schema = nodes.LoadCaptioner.define_schema()
    model = next(i for i in schema.inputs if i.id == "model")
    assert model.options == ["tiny-blip", "tiny-git"]
    assert schema.outputs[0].get_io_type() == "UNCROP_CAPTIONER"


@pytest.mark.parametrize("name", ["tiny-blip", "tiny-git"])
def test_caption_image_node(in_models, astronaut, name):
    (captioner,) = run_node(nodes.LoadCaptioner, model=name).result
    assert isinstance(captioner, cap.Captioner) and captioner.name == name
    image = astronaut[:, ::4, ::4]
    out = run_node(
        nodes.CaptionImage,
        captioner=captioner,
        image=image,
        template="{caption}, detailed photo",
        max_length=8,
    )
    (text,) = out.result
    assert isinstance(text, str) and text.endswith(", detailed photo") and len(text) > 16
    assert out.ui.as_dict() == {"text": (text,)}, "the caption is shown on the node"
    again = run_node(
        nodes.CaptionImage,
        captioner=captioner,
        image=image,
        template="{caption}, detailed photo",
        max_length=8,
    )
    assert again.result == (text,)


def test_caption_image_with_mask_hides_the_hole(in_models, astronaut, monkeypatch):
    seen = []
    original = cap.picture_for_model

    def spy(*args):
        picture = original(*args)
        seen.append(picture.size)
        return picture

    monkeypatch.setattr(cap, "picture_for_model", spy)
    (captioner,) = run_node(nodes.LoadCaptioner, model="tiny-blip").result
    image = astronaut[:, ::4, ::4].expand(2, -1, -1, -1)
    mask = torch.zeros(1, 128, 128)
    mask[:, :, 64:] = 1
    (text,) = run_node(
        nodes.CaptionImage, captioner=captioner, image=image, mask=mask, max_length=8
    ).result
    assert seen == [(64, 128), (64, 128)]
    assert len(text.split("\n")) == 2, "one line per image"
    assert text.each == tuple(text.split("\n")), "each image's caption kept for a sampler"


def test_loader_options_are_the_samplers_defaults(in_models, astronaut):
    (captioner,) = run_node(
        nodes.LoadCaptioner, model="tiny-git", template="{caption}, photo", beams=1, max_length=8
    ).result
    assert captioner.options.template == "{caption}, photo" and captioner.options.beams == 1
    assert captioner.caption(astronaut[:, ::4, ::4])[0].endswith(", photo")


def test_loader_loads_in_the_hosts_dtype(in_models, monkeypatch):
    monkeypatch.setattr(nodes.host, "caption_dtype", lambda device: torch.float64)
    (captioner,) = run_node(nodes.LoadCaptioner, model="tiny-git").result
    assert captioner.dtype == torch.float64


def test_no_captioner_installed_says_where_to_put_what(tmp_path, monkeypatch):
    use_models_dir(monkeypatch, tmp_path)
    schema = nodes.LoadCaptioner.define_schema()
    model = next(i for i in schema.inputs if i.id == "model")
    assert model.options == [nodes.NONE_FOUND]
    with pytest.raises(UncropError) as err:
        run_node(nodes.LoadCaptioner, model=nodes.NONE_FOUND)
    text = str(err.value)
    assert "No captioner is installed" in text
    assert str(tmp_path / "captioners") in text
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"):
        assert name in text


def test_loader_runs_again_when_its_files_change(in_models):
    """ComfyUI re-runs a node whose fingerprint changed: replaced weights load again."""

    def fingerprint():
        return nodes.LoadCaptioner.fingerprint_inputs(
            model="tiny-blip", region="whole", max_length=8, beams=1, template="", prefix=""
        )

    weights = in_models / "captioners" / "tiny-blip" / "model.safetensors"
    first, touched = fingerprints_around_a_touch(weights, fingerprint)
    assert touched != first
    assert fingerprint() == fingerprint()  # nothing changed since: no re-run
    # A linked name comes as None; the fingerprint is steady (a NaN ran it on every queue).
    linked = nodes.LoadCaptioner.fingerprint_inputs(
        model=None, region="whole", max_length=8, beams=1, template="", prefix=""
    )
    assert linked == "linked"


def test_unknown_captioner_is_named(in_models):
    with pytest.raises(UncropError, match="Captioner 'blip-large' not found"):
        run_node(nodes.LoadCaptioner, model="blip-large")


def test_bad_template_is_refused_at_the_node(in_models, astronaut):
    (captioner,) = run_node(nodes.LoadCaptioner, model="tiny-blip").result
    with pytest.raises(UncropError, match="template"):
        run_node(nodes.CaptionImage, captioner=captioner, image=astronaut, template="a photo")


def test_loader_hands_the_model_to_the_hosts_memory_management(in_models, astronaut):
    (captioner,) = run_node(nodes.LoadCaptioner, model="tiny-blip", max_length=4).result
    captioner.release()
    placement = captioner.load().placement
    assert isinstance(placement, nodes.ComfyPlacement)
    assert isinstance(placement.modules, torch.nn.ModuleDict), "ModelPatcher sets .device"
    assert captioner.caption(astronaut[:, ::8, ::8])[0]
    assert placement.activate() == host.torch_device()  # the GPU where there is one


OPTIONS = {
    "region": "whole",
    "max_length": 9,
    "beams": 2,
    "template": "{caption}, photo",
    "prefix": "a picture of",
}


def test_every_loader_option_reaches_the_captioner(in_models):
    (captioner,) = run_node(nodes.LoadCaptioner, model="tiny-blip", **OPTIONS).result
    assert captioner.options == cap.CaptionOptions(**OPTIONS)


def test_a_bad_option_is_refused_by_the_loader_itself(in_models):
    with pytest.raises(UncropError, match="template: must contain"):
        run_node(nodes.LoadCaptioner, model="tiny-blip", template="a photo")


def test_caption_image_passes_every_option_and_shows_the_text(in_models, astronaut, monkeypatch):
    (captioner,) = run_node(nodes.LoadCaptioner, model="tiny-blip").result
    asked, shown = [], []
    monkeypatch.setattr(
        captioner, "caption", lambda image, mask, options, progress: asked.append(options) or ["x"]
    )
    monkeypatch.setattr(nodes.host, "show_text", lambda node, text: shown.append(text))
    (text,) = run_node(nodes.CaptionImage, captioner=captioner, image=astronaut, **OPTIONS).result
    assert asked == [cap.CaptionOptions(**OPTIONS)] and shown == ["x"] and str(text) == "x"
    # An output node: it runs, and shows its caption, with nothing wired to its output.
    assert nodes.CaptionImage.define_schema().is_output_node


def test_a_missing_captioners_fingerprint_is_steady(in_models):
    # A NaN never equals itself: ComfyUI would run the node on every queue. Execute
    # says what is missing.
    args = dict(region="visible", max_length=8, beams=1, template="{caption}", prefix="")
    first = nodes.LoadCaptioner.fingerprint_inputs(model="gone", **args)
    assert first == nodes.LoadCaptioner.fingerprint_inputs(model="gone", **args) == "gone"
