"""nodes/sampling.py: Load Inpaint Model, Inpaint and Outpaint, called as ComfyUI calls them."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch
from conftest import fingerprints_around_a_touch, run_node, use_models_dir

from uncrop.core import canvas, models
from uncrop.core.errors import UncropError
from uncrop.nodes import NODES
from uncrop.nodes import sampling as nodes

FAST = {"steps": 2, "guidance": 2.0}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def in_models(tree, monkeypatch):
    """Point the host's model folders at the tiny models tree."""
    use_models_dir(monkeypatch, tree["root"])
    monkeypatch.setenv(models.TOKENIZER_ENV, str(tree["tokenizer"]))
    return tree


@pytest.fixture
def photo(astronaut):
    return canvas.resize_image(astronaut, 128, 96)


def test_nodes_are_registered_with_their_ids():
    ids = {n.define_schema().node_id for n in NODES}
    assert {"UncropLoadInpaintModel", "UncropInpaint", "UncropOutpaint"} <= ids
    outputs = nodes.Inpaint.define_schema().outputs
    assert [o.display_name for o in outputs] == ["image", "prompt_used"]


def test_loader_lists_diffusers_folders_and_safetensors_checkpoints(in_models):
    schema = nodes.LoadInpaintModel.define_schema()
    choices = next(i for i in schema.inputs if i.id == "model").options
    assert {"tiny-sd-inpaint", "tiny-sdxl", "tiny-sd-inpaint.safetensors"} <= set(choices)
    cn = next(i for i in schema.inputs if i.id == "controlnet").options
    assert cn == [
        "none",
        "tiny-inpaint-cn",
        "tiny-cn-ldm.safetensors",
        "tiny-inpaint-cn.safetensors",
    ]


def test_loader_says_what_it_found(in_models):
    out = run_node(nodes.LoadInpaintModel, model="tiny-sd-inpaint.safetensors")
    model, info = out.args
    assert isinstance(model, models.InpaintModel)
    assert "inpainting model (9-channel UNet), SD1 (single-file)" in info
    assert out.ui.as_dict() == {"text": (info,)}


def test_loader_takes_a_single_file_controlnet(in_models):
    out = run_node(nodes.LoadInpaintModel, model="tiny-sd", controlnet="tiny-cn-ldm.safetensors")
    model, info = out.args
    assert model.controlnet is not None
    assert info.endswith("ControlNet tiny-cn-ldm.safetensors")


def test_loader_runs_again_when_its_files_change(in_models):
    """ComfyUI re-runs a node whose fingerprint changed: replaced weights load again."""

    def fingerprint(model="tiny-sd", controlnet="tiny-cn-ldm.safetensors"):
        return nodes.LoadInpaintModel.fingerprint_inputs(
            model=model, controlnet=controlnet, dtype="auto", vae_tiling=False
        )

    unet = next(Path(in_models["root"], "diffusers", "tiny-sd", "unet").iterdir())
    before, after = fingerprints_around_a_touch(unet, fingerprint)
    assert before != after and fingerprint() == fingerprint()
    cn = Path(in_models["root"], "controlnet", "tiny-cn-ldm.safetensors")
    before, after = fingerprints_around_a_touch(cn, fingerprint)
    assert before != after
    assert fingerprint(controlnet=nodes.NO_CONTROLNET) != before
    assert fingerprint(model="missing") == "missing|tiny-cn-ldm.safetensors"
    # A linked name comes as None; the fingerprint is steady (a NaN ran it on every queue).
    assert fingerprint(model=None) == fingerprint(controlnet=None) == "linked"


def test_loader_refuses_an_unknown_name(in_models):
    with pytest.raises(UncropError, match="'missing.safetensors' is not there. Put a diffusers"):
        run_node(nodes.LoadInpaintModel, model="missing.safetensors")


def test_loader_with_no_models_installed_says_where_they_go(tmp_path, monkeypatch):
    monkeypatch.setattr(nodes.host, "model_folders", lambda name: [str(tmp_path / name)])
    schema = nodes.LoadInpaintModel.define_schema()
    assert next(i for i in schema.inputs if i.id == "model").options == [nodes.NONE_FOUND]
    with pytest.raises(UncropError, match="no model is installed.*models/checkpoints"):
        run_node(nodes.LoadInpaintModel, model=nodes.NONE_FOUND)


def test_inpaint_node(in_models, photo):
    (model, _info) = run_node(nodes.LoadInpaintModel, model="tiny-sd-inpaint").args
    mask = torch.zeros(1, 96, 128)
    mask[:, 30:50, 40:70] = 1
    out = run_node(nodes.Inpaint, image=photo, mask=mask, model=model, prompt="a cat", **FAST)
    image, prompt_used = out.args
    assert image.shape == photo.shape and prompt_used == "a cat"
    assert torch.equal(image[0][mask[0] == 0], photo[0][mask[0] == 0])


class FakeCaptioner:
    def caption(self, image, mask, progress=None):
        return ["a photo of the sea"] * image.shape[0]


def test_inpaint_node_shows_and_outputs_the_caption(in_models, photo):
    (model, _info) = run_node(nodes.LoadInpaintModel, model="tiny-sd-inpaint").args
    mask = torch.zeros(1, 96, 128)
    mask[:, 30:50, 40:70] = 1
    out = run_node(
        nodes.Inpaint, image=photo, mask=mask, model=model, captioner=FakeCaptioner(), **FAST
    )
    assert out.args[1] == "a photo of the sea"
    assert out.ui.as_dict() == {"text": ("a photo of the sea",)}


def test_prompt_used_goes_into_the_saved_png_metadata(in_models, photo, monkeypatch):
    """SaveImage writes ComfyUI's extra_pnginfo into the PNG; the node adds its prompt."""
    (model, _info) = run_node(nodes.LoadInpaintModel, model="tiny-sd-inpaint").args
    pnginfo = {"workflow": {}}
    monkeypatch.setattr(nodes.Inpaint, "hidden", types.SimpleNamespace(extra_pnginfo=pnginfo))
    mask = torch.zeros(1, 96, 128)
    mask[:, 30:50, 40:70] = 1
    run_node(nodes.Inpaint, image=photo, mask=mask, model=model, captioner=FakeCaptioner(), **FAST)
    assert pnginfo == {"workflow": {}, "uncrop_prompt": "a photo of the sea"}


def test_outpaint_node_per_side(in_models, photo):
    (model, _info) = run_node(nodes.LoadInpaintModel, model="tiny-sd-inpaint").args
    out = run_node(
        nodes.Outpaint, image=photo, model=model, size_mode="per side", right=32, overlap=0,
        prompt="the sky", **FAST,
    )  # fmt: skip
    image, mask, prompt_used = out.args
    assert image.shape == (1, 96, 160, 3) and mask.shape == (1, 96, 160)
    assert torch.equal(image[:, :, :128], photo)
    assert float(mask[:, :, 128:].min()) == 1.0 and prompt_used == "the sky"
    # An overlap repaints a band of the photo that fades in: the mask ramps over it.
    image, mask, _ = run_node(
        nodes.Outpaint, image=photo, model=model, size_mode="per side", right=32, overlap=8,
        prompt="the sky", **FAST,
    ).args  # fmt: skip
    assert torch.equal(image[:, :, :120], photo[:, :, :120])
    assert float(mask[:, :, :120].max()) == 0.0 and 0 < float(mask[0, 0, 124]) < 1


def test_loader_passes_dtype_tiling_and_tokenizer_and_shows_what_it_found(in_models, monkeypatch):
    asked, shown = [], []
    load = models.load_model

    def spy(path, **options):
        asked.append(options)
        return load(path, **options)

    monkeypatch.setattr(models, "load_model", spy)
    monkeypatch.setattr(nodes.host, "clip_tokenizer_dir", lambda: str(in_models["tokenizer"]))
    monkeypatch.setattr(nodes.host, "show_text", lambda node, text: shown.append(text))
    model, info = run_node(
        nodes.LoadInpaintModel, model="tiny-sd-inpaint", dtype="bf16", vae_tiling=True
    ).args
    assert asked == [
        {
            "controlnet": None,
            "dtype": torch.bfloat16,
            "vae_tiling": True,
            "tokenizer_dir": str(in_models["tokenizer"]),
        }
    ]
    assert model.vae_tiling and shown == [info]


def test_loader_names_a_controlnet_that_is_not_there(in_models):
    with pytest.raises(
        UncropError, match="controlnet: 'gone.safetensors' is not in models/control"
    ):
        run_node(nodes.LoadInpaintModel, model="tiny-sd", controlnet="gone.safetensors")


def test_a_controlnet_folder_is_a_choice_only_with_its_config(in_models):
    assert "tiny-inpaint-cn" in nodes.controlnet_choices()
    stray = Path(in_models["root"], "controlnet", "not-a-model")
    stray.mkdir()
    try:
        (stray / "notes.txt").write_text("")
        assert "not-a-model" not in nodes.controlnet_choices()
    finally:
        (stray / "notes.txt").unlink()
        stray.rmdir()


def test_outpaint_node_takes_its_prompt_from_the_captioner(in_models, photo, monkeypatch):
    (model, _info) = run_node(nodes.LoadInpaintModel, model="tiny-sd-inpaint").args
    prepared, shown = [], []
    prepare = nodes.host.load_to_device
    monkeypatch.setattr(nodes.host, "load_to_device", lambda *a: prepared.append(1) or prepare(*a))
    monkeypatch.setattr(nodes.host, "show_text", lambda node, text: shown.append(text))
    out = run_node(
        nodes.Outpaint, image=photo, model=model, size_mode="per side", right=16,
        captioner=FakeCaptioner(), **FAST,
    )  # fmt: skip
    assert out.args[2] == "a photo of the sea" and shown == ["a photo of the sea"]
    assert prepared, "the model is put on the device through the host (ComfyUI's manager)"


def test_a_sampler_widget_without_a_setting_is_a_bug_not_ignored():
    with pytest.raises(TypeError, match="without a SamplerSettings field: \\['denoise'\\]"):
        nodes._settings({"steps": 2, "denoise": 0.5})


def test_an_empty_model_name_is_named_not_taken_for_the_folder(in_models):
    with pytest.raises(UncropError, match="'' is not there"):
        run_node(nodes.LoadInpaintModel, model="")
