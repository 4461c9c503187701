"""Static checks of every workflow in workflows/: node types, widget values, links.

The editor saves widget values as a flat list in input order; a number with
``control_after_generate`` adds one right after it (the control mode), and an upload
combo adds one at the very end (the upload button's: the editor adds that input after
the node's listed ones). Those rules are applied here exactly as the
in-process ComfyUI run would, so a file that passes loads in the editor.
"""

import json
from pathlib import Path

import pytest
from PIL import Image

from uncrop.nodes import NODES, SAMPLES

WORKFLOWS = sorted((Path(__file__).resolve().parent.parent / "workflows").glob("*.json"))
OURS = {node.define_schema().node_id: node.define_schema() for node in NODES}
WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}

# ComfyUI core nodes the workflows may use: input sockets and output types.
CORE = {
    "LoadImage": ({}, ["IMAGE", "MASK"]),
    "SaveImage": ({"images": "IMAGE"}, []),
    "PreviewImage": ({"images": "IMAGE"}, []),
    "MaskPreview": ({"mask": "MASK"}, []),
    "CheckpointLoaderSimple": ({}, ["MODEL", "CLIP", "VAE"]),
    "CLIPTextEncode": ({"clip": "CLIP"}, ["CONDITIONING"]),
    "InpaintModelConditioning": (
        {
            "positive": "CONDITIONING",
            "negative": "CONDITIONING",
            "vae": "VAE",
            "pixels": "IMAGE",
            "mask": "MASK",
        },
        ["CONDITIONING", "CONDITIONING", "LATENT"],
    ),
    "KSampler": (
        {
            "model": "MODEL",
            "positive": "CONDITIONING",
            "negative": "CONDITIONING",
            "latent_image": "LATENT",
        },
        ["LATENT"],
    ),
    "VAEDecode": ({"samples": "LATENT", "vae": "VAE"}, ["IMAGE"]),
    "VAEEncodeForInpaint": ({"pixels": "IMAGE", "vae": "VAE", "mask": "MASK"}, ["LATENT"]),
    "Note": ({}, []),
    "MarkdownNote": ({}, []),
    "Reroute": ({"": "*"}, ["*"]),
}


def widget_values(schema, values):
    """Map saved widget values onto widget input ids, skipping the editor's extras."""
    mapped, k, uploads = {}, 0, 0
    for inp in schema.inputs:
        if inp.get_io_type() not in WIDGETS:
            continue
        if k < len(values):
            mapped[inp.id] = values[k]
        k += 1
        control = getattr(inp, "control_after_generate", None)
        if control is None and inp.get_io_type() == "INT":  # the editor adds one to any seed
            control = inp.id in ("seed", "noise_seed")
        k += bool(control)
        uploads += getattr(inp, "upload", None) is not None
    k += uploads
    assert k == len(values), f"{schema.node_id}: {len(values)} widget values, expected {k}"
    return mapped


def has_fixed_choices(inp):
    """File lists (uploads, model folders) depend on the user's machine; other combos don't."""
    is_file_list = getattr(inp, "upload", None) is not None or inp.id.endswith(
        ("model", "ckpt_name", "captioner")
    )
    return bool(inp.options) and not is_file_list


def check_value(schema, inp, value):
    where = f"{schema.node_id}.{inp.id}={value!r}"
    kind = inp.get_io_type()
    if kind == "INT":
        assert isinstance(value, int) and not isinstance(value, bool), where
        assert inp.min <= value <= inp.max, where
    elif kind == "FLOAT":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), where
        assert inp.min <= value <= inp.max, where
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), where
    elif kind == "STRING":
        assert isinstance(value, str), where
    elif kind == "COMBO" and has_fixed_choices(inp):
        assert value in inp.options, where


@pytest.fixture(params=WORKFLOWS, ids=lambda p: p.name)
def workflow(request):
    return json.loads(request.param.read_text())


def test_there_are_workflows_for_each_scenario():
    names = {p.name for p in WORKFLOWS}
    assert {"outpaint-model-free.json", "inpaint-model-free.json"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_workflow_has_a_thumbnail_for_the_template_browser(path):
    """ComfyUI's template browser shows ``<name>.jpg`` beside ``<name>.json``, fitted
    into a square card (workflows/make_thumbnails.py draws them)."""
    thumb = path.with_suffix(".jpg")
    assert thumb.is_file(), f"no {thumb.name}: run workflows/make_thumbnails.py"
    with Image.open(thumb) as picture:
        assert picture.format == "JPEG" and picture.mode == "RGB"
        assert picture.size == (512, 512)
    assert thumb.stat().st_size < 100_000  # served to every editor that opens the browser


def test_every_file_a_workflow_loads_is_a_sample_the_pack_provides(workflow):
    # The pack copies SAMPLES into ComfyUI's input folder on load (nodes/__init__.py).
    loaders = {"LoadImage": 0, "UncropLoadMask": 0}
    names = {
        node["widgets_values"][loaders[node["type"]]]
        for node in workflow["nodes"]
        if node["type"] in loaders
    }
    assert names, "no file loaded"
    assert names <= {sample.name for sample in SAMPLES}
    assert all(sample.is_file() for sample in SAMPLES)


def test_nodes_exist_and_widgets_fit(workflow):
    for node in workflow["nodes"]:
        kind = node["type"]
        assert kind in OURS or kind in CORE, f"unknown node type {kind}"
        if kind in OURS:
            schema = OURS[kind]
            for name, value in widget_values(schema, node.get("widgets_values", [])).items():
                check_value(schema, next(i for i in schema.inputs if i.id == name), value)
            sockets = {i.id for i in schema.inputs if i.get_io_type() not in WIDGETS}
            required = {i.id for i in schema.inputs if i.id in sockets and not i.optional}
            listed = {i["name"] for i in node["inputs"]}
            linked = {i["name"] for i in node["inputs"] if i.get("link") is not None}
            assert sockets <= listed, f"{kind}: inputs missing from the graph {sockets - listed}"
            assert required <= linked, f"{kind}: unconnected {required - linked}"


def socket_type(node, name=None, slot=None):
    kind = node["type"]
    if kind in OURS:
        schema = OURS[kind]
        if name is not None:
            return next(i.get_io_type() for i in schema.inputs if i.id == name)
        return schema.outputs[slot].get_io_type()
    inputs, outputs = CORE[kind]
    return inputs.get(name, "*") if name is not None else outputs[slot]


def test_links_connect_matching_types(workflow):
    nodes = {n["id"]: n for n in workflow["nodes"]}
    for link_id, src, src_slot, dst, dst_slot, kind in workflow["links"]:
        a, b = nodes[src], nodes[dst]
        target = b["inputs"][dst_slot]
        assert target["link"] == link_id
        assert link_id in a["outputs"][src_slot]["links"]
        produced = socket_type(a, slot=src_slot)
        expected = socket_type(b, name=target["name"])
        assert kind == produced, f"link {link_id}: says {kind}, {a['type']} gives {produced}"
        assert expected in (produced, "*"), (
            f"link {link_id}: {b['type']}.{target['name']} wants {expected}, gets {produced}"
        )


def test_nodes_do_not_overlap(workflow):
    """Opened in the editor, no node hides another (the title bar, about 30 px, sits
    above ``pos``)."""
    boxes = []
    for node in workflow["nodes"]:
        (x, y), (w, h) = node["pos"], node["size"]
        boxes.append((node["id"], x, y - 30, x + w, y + h))
    for i, (a, ax0, ay0, ax1, ay1) in enumerate(boxes):
        for b, bx0, by0, bx1, by1 in boxes[i + 1 :]:
            overlap = min(ax1, bx1) > max(ax0, bx0) and min(ay1, by1) > max(ay0, by0)
            assert not overlap, f"nodes {a} and {b} overlap"


# The editor offers to download a missing model file a loader node lists in its
# properties.models, from these hosts only, and only files (a diffusers or captioner
# folder cannot be offered, so none is listed).
DOWNLOAD_HOSTS = ("https://huggingface.co/", "https://civitai.com/")
LOADERS = {"UncropLoadInpaintModel": "checkpoints", "CheckpointLoaderSimple": "checkpoints"}


def test_every_model_file_a_workflow_needs_can_be_downloaded_by_the_editor(workflow):
    for node in workflow["nodes"]:
        listed = node.get("properties", {}).get("models", [])
        if node["type"] not in LOADERS:
            assert not listed, f"{node['type']} lists models the editor would misread"
            continue
        model = node["widgets_values"][0]
        assert model.endswith(".safetensors"), f"{node['type']}: '{model}' is not a file"
        assert [m["name"] for m in listed] == [model], f"{node['type']}: no download for {model}"
        (entry,) = listed
        assert (
            entry["url"].startswith(DOWNLOAD_HOSTS) and entry["directory"] == LOADERS[node["type"]]
        )
        assert entry["url"].split("?")[0].endswith("/" + model)
