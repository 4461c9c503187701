"""Runs every workflow in workflows/ inside a real ComfyUI, in-process.

Skipped (and shown as skipped in the summary) unless ``COMFYUI_PATH`` points at
a ComfyUI checkout whose Python dependencies are importable. The pack is loaded
the way ComfyUI loads custom nodes, each UI workflow is converted to the API
prompt format and executed, and the saved images are checked.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
COMFYUI_PATH = os.environ.get("COMFYUI_PATH")

pytestmark = pytest.mark.skipif(
    not COMFYUI_PATH,
    reason="set COMFYUI_PATH to a ComfyUI checkout to run the workflows in ComfyUI",
)

# Size every SaveImage in a workflow must produce (width, height).
EXPECTED_SIZES = {
    "outpaint-model-free.json": (1024, 512),
    "inpaint-model-free.json": (600, 400),
    "inpaint-diffusion.json": (600, 400),
    "outpaint-diffusion.json": (1024, 512),
    "outpaint-autocaption.json": (1024, 512),
}
# ComfyUI's own checkpoint loader needs a real SD checkpoint's shapes, which the
# tiny random test models do not have: these are validated as ComfyUI validates a
# queued prompt (node types, links, widget values, file names) but not executed.
NEEDS_REAL_CHECKPOINT = {"outpaint-comfyui-ksampler.json"}
# Keep the tiny-model runs short: few steps on small windows.
FAST_SAMPLING = {"steps": 2, "resolution": 64}


def install_tiny_models(root: Path) -> None:
    """Put tiny random models where the workflows expect real ones, under the same names."""
    import folder_paths
    import tiny_captioners
    import tiny_models

    with tiny_models.one_thread():
        tree = tiny_models.build_model_tree(root / "tiny")
    models = root / "models"
    (models / "checkpoints").mkdir(parents=True)
    shutil.copy(
        tree["sd-inpaint.safetensors"], models / "checkpoints" / "sd-v1-5-inpainting.safetensors"
    )
    shutil.copytree(tree["sd-inpaint"], models / "diffusers" / "stable-diffusion-inpainting")
    tiny_captioners.build_blip(models / "captioners" / "blip-image-captioning-large")
    for kind in ("checkpoints", "diffusers", "captioners"):
        folder_paths.add_model_folder_path(kind, str(models / kind), is_default=True)
    os.environ["UNCROP_CLIP_TOKENIZER"] = str(tree["tokenizer"])


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    import comfy_harness

    root = tmp_path_factory.mktemp("comfyui")
    comfy_harness.prepare_comfyui(COMFYUI_PATH, str(root))
    ids = comfy_harness.load_pack(str(ROOT))  # which copies the samples into input/
    install_tiny_models(root)
    return comfy_harness, root, ids


def test_pack_registers_every_node(comfy):
    from uncrop.nodes import NODES

    _, _, ids = comfy
    assert set(ids) == {node.define_schema().node_id for node in NODES}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_runs_in_comfyui(comfy, path):
    harness, root, _ = comfy
    workflow = json.loads(path.read_text())
    prompt = harness.ui_to_api(workflow)
    if path.name in NEEDS_REAL_CHECKPOINT:
        _, outputs = harness.validate_prompt(prompt)
        assert outputs, f"{path.name} has no output node"
        return
    for node in prompt.values():
        if node["class_type"] in ("UncropInpaint", "UncropOutpaint"):
            node["inputs"].update(FAST_SAMPLING)
    result = harness.run_prompt(prompt, {"extra_pnginfo": {"workflow": workflow}})
    saved = [
        image
        for node_id, node in prompt.items()
        if node["class_type"] == "SaveImage"
        for image in result["outputs"][node_id]["images"]
    ]
    assert saved, f"{path.name} saved no image"
    for image in saved:
        file = root / "output" / image["subfolder"] / image["filename"]
        pixels = np.asarray(Image.open(file))
        assert pixels.std() > 5, f"{file.name} is flat"
        if path.name in EXPECTED_SIZES:
            assert (pixels.shape[1], pixels.shape[0]) == EXPECTED_SIZES[path.name]
        if path.name == "outpaint-autocaption.json":
            # The caption written for the empty prompt is saved with the image.
            prompt_used = json.loads(Image.open(file).text["uncrop_prompt"])
            assert prompt_used.endswith("detailed photo")
            # ...and written on the sampler node in the editor.
            sampler = next(i for i, n in prompt.items() if n["class_type"] == "UncropOutpaint")
            assert result["progress_text"][sampler] == prompt_used


def test_free_model_and_node_cache_frees_the_packs_models(comfy):
    """ComfyUI's "Free model and node cache" unloads the models, drops the node cache
    and collects garbage: no model of the pack may stay in memory after it."""
    import sys

    import comfy.model_management as mm

    import nodes

    harness, _, _ = comfy
    # The pack as ComfyUI imported it (under its folder's path, not as `uncrop`).
    pack = sys.modules[nodes.NODE_CLASS_MAPPINGS["UncropLoadInpaintModel"].__module__]
    models, caption = (
        pack.models,
        sys.modules[pack.__name__.replace("sampling", "caption")].captioning,
    )
    prompt = harness.ui_to_api(
        json.loads((ROOT / "workflows" / "outpaint-autocaption.json").read_text())
    )
    for node in prompt.values():
        if node["class_type"] == "UncropOutpaint":
            node["inputs"].update(FAST_SAMPLING)
    executor = harness.new_executor()
    gc.collect()  # the executors of earlier tests, and the models they held
    harness.run_prompt(prompt, executor=executor)
    assert len(models._cache) == 1 and len(caption._CACHE) == 1  # held by the node cache
    mm.unload_all_models()  # what main.py's prompt worker does on that request
    executor.reset()
    gc.collect()
    assert len(models._cache) == 0 and len(caption._CACHE) == 0


def test_caption_image_text_paints_each_image_of_its_batch_with_its_own_line(comfy):
    """Caption Image's output wired into the sampler's prompt, through ComfyUI's
    execution: each image of the batch is painted with its own caption, never with
    the whole multi-line text."""
    harness, _, _ = comfy
    prompt = harness.ui_to_api(
        json.loads((ROOT / "workflows" / "inpaint-diffusion.json").read_text())
    )
    options = {"region": "visible", "max_length": 6, "beams": 1, "template": "{caption}"}
    sampler = next(i for i, n in prompt.items() if n["class_type"] == "UncropInpaint")
    prompt.update(
        {
            "20": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "21": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["20", 0]}},
            "22": {
                "class_type": "UncropLoadCaptioner",
                "inputs": {"model": "blip-image-captioning-large", "prefix": "", **options},
            },
            "23": {
                "class_type": "UncropCaptionImage",
                "inputs": {"captioner": ["22", 0], "image": ["21", 0], "prefix": "", **options},
            },
        }
    )
    prompt[sampler]["inputs"].update(FAST_SAMPLING, image=["21", 0], prompt=["23", 0])
    result = harness.run_prompt(prompt)
    lines = result["progress_text"]["23"].split("\n")
    assert len(lines) == 2 and all(lines)
    assert result["progress_text"][sampler] == " | ".join(dict.fromkeys(lines))
