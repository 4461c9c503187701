"""host.py outside ComfyUI: the fallbacks the CLI and tests rely on."""

import asyncio
import logging
import sys
import types

import pytest
import torch

import uncrop
from uncrop.core import models
from uncrop.nodes import SAMPLES, host


def test_devices_fall_back_without_comfyui():
    assert host.torch_device() == models.default_device()  # CUDA, else MPS, else CPU
    assert host.intermediate_device() == torch.device("cpu")


def test_progress_reports_steps_and_a_preview_to_comfyui(monkeypatch):
    calls = []

    class Bar:
        def __init__(self, total, node_id=None):
            calls.append(("new", total))

        def update_absolute(self, value, total=None, preview=None):
            calls.append((value, total, preview))

    comfy = types.ModuleType("comfy")
    comfy.utils = types.SimpleNamespace(ProgressBar=Bar)
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.utils", comfy.utils)
    progress = host.Progress()
    progress.update(1, 3, torch.rand(1, 8, 8, 3))
    progress.update(3, 3)
    assert calls[0] == ("new", 1)
    (v1, t1, preview), (v2, t2, none) = calls[1:]
    assert (v1, t1, v2, t2, none) == (1, 3, 3, 3, None)
    fmt, image, _size = preview
    assert fmt == "JPEG" and image.size == (8, 8)


def test_register_model_folder_merges_with_existing(monkeypatch, tmp_path):
    fake = types.SimpleNamespace(
        models_dir=str(tmp_path),
        folder_names_and_paths={"captioners": (["/other/pack/captioners"], {".bin"})},
        get_folder_paths=lambda name: fake.folder_names_and_paths[name][0],
    )
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    host.register_model_folder("captioners", {".safetensors"})
    host.register_model_folder("brand_new", {".json"})
    paths, exts = fake.folder_names_and_paths["captioners"]
    assert paths == ["/other/pack/captioners", str(tmp_path / "captioners")]
    assert exts == {".bin", ".safetensors"}
    assert fake.folder_names_and_paths["brand_new"] == ([str(tmp_path / "brand_new")], {".json"})
    host.register_model_folder("captioners", {".safetensors"})  # idempotent
    assert len(fake.folder_names_and_paths["captioners"][0]) == 2


def test_clip_tokenizer_dir_is_comfyuis_own_copy(monkeypatch, tmp_path):
    (tmp_path / "comfy").mkdir()
    (tmp_path / "comfy" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))  # this "ComfyUI" comes first
    monkeypatch.delitem(sys.modules, "comfy", raising=False)
    assert host.clip_tokenizer_dir() is None  # a ComfyUI without the tokenizer files
    (tmp_path / "comfy" / "sd1_tokenizer").mkdir()
    assert host.clip_tokenizer_dir() == str(tmp_path / "comfy" / "sd1_tokenizer")


def test_show_text_writes_on_the_running_node_through_the_prompt_server(monkeypatch):
    sent = []

    class Server:
        def send_progress_text(self, text, node_id):
            sent.append((node_id, text))

    server = types.ModuleType("server")
    server.PromptServer = types.SimpleNamespace(instance=Server())
    monkeypatch.setitem(sys.modules, "server", server)
    node = types.SimpleNamespace(hidden=types.SimpleNamespace(unique_id="12"))
    host.show_text(node, "a red barn")
    host.show_text(types.SimpleNamespace(hidden=None), "no node id: nothing to write on")
    assert sent == [("12", "a red barn")]
    monkeypatch.setitem(sys.modules, "server", None)  # outside ComfyUI: nothing happens
    host.show_text(node, "ignored")
    assert sent == [("12", "a red barn")]


def test_pixel_nodes_hand_on_float32_whatever_came_in(coffee):
    """ComfyUI's nodes expect float32 IMAGE and MASK; a float16 or float64 input (from
    another pack) must not travel on down the graph."""
    from conftest import run_node

    from uncrop.nodes.canvas import ExpandCanvas
    from uncrop.nodes.composite import Composite
    from uncrop.nodes.fill import Fill
    from uncrop.nodes.masks import RefineMask

    image = coffee[:, :48, :64]
    mask = torch.zeros(1, 48, 64)
    mask[:, 10:30, 20:40] = 1
    for dtype in (torch.float16, torch.float64):
        img, m = image.to(dtype), mask.to(dtype)
        (filled,) = run_node(Fill, image=img, mask=m, method="edge").args
        canvas, new_area = run_node(ExpandCanvas, image=img, size_mode="per side", left=8).args
        (pasted,) = run_node(Composite, original=img, generated=filled, mask=m).args
        (refined,) = run_node(RefineMask, mask=m, grow=2).args
        for out in (filled, canvas, new_area, pasted, refined):
            assert out.dtype == torch.float32
        keep = mask[0] == 0
        assert torch.equal(filled[0][keep], img[0][keep].float())


def test_auto_dtype_inside_comfyui_is_comfyuis_choice(monkeypatch):
    """ComfyUI's --force-fp16 / --force-fp32 and its per-card table decide "auto" on a GPU;
    a dtype asked for by name, and the CPU, stay the engine's."""
    choice = {"bf16": False, "fp16": True}
    mm = types.SimpleNamespace(
        should_use_bf16=lambda device: choice["bf16"],
        should_use_fp16=lambda device: choice["fp16"],
    )
    monkeypatch.setattr(host, "_comfy_mm", lambda: mm)
    gpu = torch.device("cuda")
    assert host.model_dtype("auto", gpu) == torch.float16
    choice["fp16"] = False  # a card whose fp16 is broken, or --force-fp32
    assert host.model_dtype("auto", gpu) == torch.float32
    choice["bf16"] = True
    assert host.model_dtype("auto", gpu) == torch.bfloat16
    assert host.model_dtype("fp16", gpu) == torch.float16
    assert host.model_dtype("auto", torch.device("cpu")) == torch.float32


def test_captioner_dtype_inside_comfyui_is_comfyuis_fp16_choice(monkeypatch):
    choice = {"fp16": True}
    mm = types.SimpleNamespace(should_use_fp16=lambda device: choice["fp16"])
    monkeypatch.setattr(host, "_comfy_mm", lambda: mm)
    gpu = torch.device("cuda")
    assert host.caption_dtype(gpu) == torch.float16
    choice["fp16"] = False  # --force-fp32, or a card whose fp16 is broken
    assert host.caption_dtype(gpu) == torch.float32
    assert host.caption_dtype(torch.device("cpu")) == torch.float32
    monkeypatch.setattr(host, "_comfy_mm", lambda: None)  # outside ComfyUI: the engine's
    assert host.caption_dtype(gpu) == torch.float16


def in_comfyui(monkeypatch, input_folder) -> None:
    """As inside ComfyUI, with ``input_folder`` as its input folder."""
    fake = types.SimpleNamespace(get_input_directory=lambda: str(input_folder))
    monkeypatch.setattr(host, "_folder_paths", lambda: fake)


def test_the_samples_are_copied_into_the_input_folder_on_load(tmp_path, monkeypatch):
    # The example workflows load the sample photo and mask by name: on load the pack puts
    # them in the input folder, so a workflow dropped into the editor runs as it is.
    in_comfyui(monkeypatch, tmp_path / "input")
    asyncio.run(uncrop.comfy_entrypoint())  # what ComfyUI calls, in every version
    for sample in SAMPLES:
        assert (tmp_path / "input" / sample.name).read_bytes() == sample.read_bytes()


def test_outside_comfyui_no_input_folder_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where host.input_directory() falls back to ./input
    asyncio.run(uncrop.comfy_entrypoint())
    assert host.provide_input_files(SAMPLES) == []
    assert list(tmp_path.iterdir()) == []


def test_a_file_of_the_same_name_in_the_input_folder_is_never_replaced(tmp_path, monkeypatch):
    in_comfyui(monkeypatch, tmp_path)
    (tmp_path / SAMPLES[0].name).write_bytes(b"the user's own")
    assert host.provide_input_files(SAMPLES) == [SAMPLES[1].name]
    assert (tmp_path / SAMPLES[0].name).read_bytes() == b"the user's own"
    assert host.provide_input_files(SAMPLES) == []  # nothing again on the next start


def test_an_input_folder_that_cannot_be_written_is_logged_not_raised(tmp_path, monkeypatch, caplog):
    (tmp_path / "a file").write_text("")
    in_comfyui(monkeypatch, tmp_path / "a file" / "input")
    with caplog.at_level(logging.WARNING, logger="uncrop"):
        assert host.provide_input_files(SAMPLES) == []
    assert f"could not copy {SAMPLES[0].name} into the input folder" in caplog.text


def test_a_preview_past_0_to_1_is_clipped_not_wrapped():
    _fmt, image, _size = host._preview(torch.tensor([[[[1.5, -0.5, 0.5]]]]))
    assert image.getpixel((0, 0)) == (255, 0, 127)


def test_model_folders_list_in_order_of_registration_and_find_nested_files(tmp_path, monkeypatch):
    first, second = tmp_path / "a" / "diffusers", tmp_path / "b" / "diffusers"
    (first / "shared" / "unet").mkdir(parents=True)
    (second / "shared").mkdir(parents=True)
    (second / "only-b").mkdir()
    (second / "loose.safetensors").write_text("")
    (first / "deep" / "er").mkdir(parents=True)
    (first / "deep" / "er" / "x.safetensors").write_text("")
    monkeypatch.setattr(host, "_folder_paths", lambda: None)  # listed by the pack itself
    monkeypatch.setattr(host, "model_folders", lambda name: [str(first), str(second)])
    assert host.list_model_dirs("diffusers") == ["deep", "only-b", "shared"]  # no files
    assert host.list_model_files("diffusers") == ["deep/er/x.safetensors", "loose.safetensors"]
    assert host.model_path("diffusers", "shared") == str(first / "shared")  # the first wins
    assert host.model_path("diffusers", "only-b") == str(second / "only-b")
    assert host.model_path("diffusers", "missing") is None
    assert host.model_path("diffusers", "") is None  # not the folder itself
    # a name leaving the folders is not looked for (a linked or API value), as ComfyUI
    # reads its own names; a model linked in from elsewhere is found
    outside = first.parent / "elsewhere"  # reached by .. from the first folder
    outside.mkdir()
    for name in (str(outside), "../elsewhere", "shared/../../elsewhere"):
        assert host.model_path("diffusers", name) is None, name
    (first / "linked").symlink_to(outside, target_is_directory=True)
    assert host.model_path("diffusers", "linked") == str(first / "linked")


def test_input_files_are_comfyuis_images_sorted_and_annotated_names_find_their_folder(
    tmp_path, monkeypatch
):
    for name in ("b.png", "a.png", "notes.txt"):
        (tmp_path / name).write_text("")
    fake = types.SimpleNamespace(
        get_input_directory=lambda: str(tmp_path),
        filter_files_content_types=lambda files, kinds: [  # in an order of its own
            f for f in sorted(files, reverse=True) if f.endswith(".png")
        ],
        annotated_filepath=lambda name: (
            (name[: -len(" [output]")], "/out") if name.endswith(" [output]") else (name, None)
        ),
    )
    monkeypatch.setattr(host, "_folder_paths", lambda: fake)
    assert host.input_files() == ["a.png", "b.png"]
    assert host.input_file_path("a.png [output]") == ("/out", "a.png")
    assert host.input_file_path("a.png") == (str(tmp_path), "a.png")


def test_comfyuis_cancel_button_and_offload_device_are_used(monkeypatch):
    class Interrupted(Exception):
        pass

    def interrupted():
        raise Interrupted

    mm = types.SimpleNamespace(
        throw_exception_if_processing_interrupted=interrupted,
        unet_offload_device=lambda: torch.device("meta"),
        get_torch_device=lambda: torch.device("cpu"),
    )
    monkeypatch.setattr(host, "_comfy_mm", lambda: mm)
    assert host.offload_device() == torch.device("meta")
    with pytest.raises(Interrupted):
        host.check_interrupted()


class FakeComfy:
    """ComfyUI's model management and ModelPatcher, as far as load_to_device uses them."""

    def __init__(self, monkeypatch):
        self.patchers, self.loads = [], []
        fake = self

        class ModelPatcher:
            def __init__(self, model, load_device, offload_device):
                fake.patchers.append(self)
                self.model, self.load_device = model, load_device
                self.offload_device = offload_device

        self.mm = types.SimpleNamespace(
            get_torch_device=lambda: torch.device("cpu"),
            unet_offload_device=lambda: torch.device("meta"),
            load_models_gpu=lambda patchers, **kw: self.loads.append((patchers, kw)),
        )
        patcher_module = types.ModuleType("comfy.model_patcher")
        patcher_module.ModelPatcher = ModelPatcher
        monkeypatch.setattr(host, "_comfy_mm", lambda: self.mm)
        monkeypatch.setitem(sys.modules, "comfy.model_patcher", patcher_module)
        comfy = sys.modules.get("comfy") or types.ModuleType("comfy")
        monkeypatch.setitem(sys.modules, "comfy", comfy)
        monkeypatch.setattr(comfy, "model_patcher", patcher_module, raising=False)


def test_a_model_is_wrapped_once_and_loaded_whole_by_comfyuis_manager(monkeypatch):
    comfy = FakeComfy(monkeypatch)
    modules, holder = torch.nn.Linear(2, 2), {}
    assert host.load_to_device(modules, holder) == torch.device("cpu")
    assert host.load_to_device(modules, holder) == torch.device("cpu")
    (patcher,) = comfy.patchers  # one wrapper for the model's life: ComfyUI tracks it
    assert patcher.model is modules and patcher.offload_device == torch.device("meta")
    # Diffusers layers cannot be part-loaded by ComfyUI's lowvram: the whole model goes.
    assert comfy.loads == [([patcher], {"force_full_load": True})] * 2


def test_a_captioner_is_loaded_once_and_released_to_the_offload_device(monkeypatch):
    from uncrop.nodes.caption import ComfyPlacement

    comfy = FakeComfy(monkeypatch)
    model = torch.nn.Linear(2, 2)
    placement = ComfyPlacement(model, torch.device("cpu"))
    placement.activate(), placement.activate()
    assert len(comfy.patchers) == 1 and comfy.patchers[0].model is placement.modules
    placement.release()
    assert placement.holder == {} and model.weight.device == torch.device("meta")
    placement.activate()
    assert len(comfy.patchers) == 2  # a released captioner is wrapped afresh


def test_a_model_folder_comfyui_does_not_know_is_looked_for_under_its_models_dir(
    monkeypatch, tmp_path
):
    fake = types.SimpleNamespace(
        models_dir=str(tmp_path),
        folder_names_and_paths={"checkpoints": ([str(tmp_path / "ckpt")], set())},
        get_folder_paths=lambda name: fake.folder_names_and_paths[name][0],
    )
    monkeypatch.setattr(host, "_folder_paths", lambda: fake)
    assert host.model_folders("checkpoints") == [str(tmp_path / "ckpt")]
    assert host.model_folders("captioners") == [str(tmp_path / "captioners")]


@pytest.mark.parametrize("base", ["sd15", "sdxl"])
def test_latent_previews_use_the_families_factors_unless_previews_are_off(monkeypatch, base):
    class SD15:
        latent_rgb_factors = [[0.1, 0.0, 0.0]] * 4
        latent_rgb_factors_bias = None

    class SDXL:
        latent_rgb_factors = [[0.0, 0.2, 0.0]] * 4
        latent_rgb_factors_bias = [0.0, 0.0, -0.5]

    method = types.SimpleNamespace(NoPreviews="none", Latent2RGB="latent2rgb")
    cli_args = types.SimpleNamespace(LatentPreviewMethod=method, args=types.SimpleNamespace())
    formats = types.SimpleNamespace(SD15=SD15, SDXL=SDXL)
    comfy = types.SimpleNamespace(latent_formats=formats, cli_args=cli_args)
    for name, module in (
        ("comfy", comfy),
        ("comfy.latent_formats", formats),
        ("comfy.cli_args", cli_args),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    cli_args.args.preview_method = "none"
    assert host.latent_previewer(base) is None
    cli_args.args.preview_method = "latent2rgb"
    rgb = host.latent_previewer(base)(torch.ones(2, 4, 3, 5))
    expected = [0.7, 0.5, 0.5] if base == "sd15" else [0.5, 0.9, 0.25]  # (x + 1) / 2
    assert rgb.shape == (1, 3, 5, 3)
    assert torch.allclose(rgb[0, 0, 0], torch.tensor(expected))
