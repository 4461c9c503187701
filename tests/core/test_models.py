"""core/models.py: family detection, offline loading of both forms, refusals, cache."""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import time
import weakref
from pathlib import Path

import pytest
import torch

from uncrop.core import models
from uncrop.core.errors import UncropError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tokenizer_env(tree, monkeypatch):
    monkeypatch.setenv(models.TOKENIZER_ENV, str(tree["tokenizer"]))


@pytest.mark.parametrize(
    ("entry", "family", "base", "form"),
    [
        ("sd-inpaint", "sd-inpaint", "sd1", "diffusers"),
        ("sd", "sd", "sd1", "diffusers"),
        ("sdxl", "sdxl", "sdxl", "diffusers"),
        ("sdxl-inpaint", "sdxl-inpaint", "sdxl", "diffusers"),
        ("sd-inpaint.safetensors", "sd-inpaint", "sd1", "single-file"),
        ("sd.safetensors", "sd", "sd1", "single-file"),
        ("sdxl.safetensors", "sdxl", "sdxl", "single-file"),
        ("sd2", "sd", "sd2", "diffusers"),
        ("sd2-inpaint.safetensors", "sd-inpaint", "sd2", "single-file"),
        ("sd2.safetensors", "sd", "sd2", "single-file"),
    ],
)
def test_family_is_detected_from_the_files(tree, entry, family, base, form):
    info = models.inspect_model(tree[entry])
    assert (info.family, info.base, info.form) == (family, base, form)
    assert info.is_inpaint_unet == family.endswith("inpaint")
    assert models.FAMILIES[family] in info.describe()


@pytest.mark.parametrize("name", ["sd-inpaint", "sdxl", "sd2", "sd2-inpaint"])
def test_single_file_loads_the_same_weights_as_the_folder(tree, tokenizer_env, name):
    loaded = models.load_model(tree[f"{name}.safetensors"])
    original = tree["pipes"][name]
    assert loaded.info.form == "single-file"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if getattr(original, part, None) is None:
            continue
        want, got = getattr(original, part).state_dict(), getattr(loaded.pipe, part).state_dict()
        assert want.keys() == got.keys(), part
        assert all(torch.equal(want[k], got[k]) for k in want), part


@pytest.mark.parametrize(
    ("name", "prediction", "sample_size"),
    [("sd2", "v_prediction", 96), ("sd2-inpaint", "epsilon", 64), ("sd", "epsilon", 64)],
)
def test_single_file_prediction_type_is_read_from_the_weights(
    tree, tokenizer_env, name, prediction, sample_size
):
    info = models.inspect_model(tree[f"{name}.safetensors"])
    assert info.prediction == prediction
    assert ("v-prediction" in info.describe()) == (prediction == "v_prediction")
    loaded = models.load_model(tree[f"{name}.safetensors"])
    assert loaded.pipe.scheduler.config.prediction_type == prediction
    assert loaded.pipe.unet.config.sample_size == sample_size  # 768 px for SD 2.x v models


@pytest.mark.parametrize(
    ("entry", "original"),
    [
        ("controlnet.safetensors", "controlnet"),  # diffusers layout in one file
        ("controlnet-ldm.safetensors", "controlnet-ldm"),  # original control_model.* layout
    ],
)
def test_controlnet_single_file_loads_the_same_weights(tree, entry, original):
    unet_config = tree["pipes"]["sd"].unet.config
    net = models.load_controlnet(tree[entry], torch.float32, unet_config)
    if original == "controlnet":
        from diffusers import ControlNetModel

        want = ControlNetModel.from_pretrained(str(tree["controlnet"])).state_dict()
    else:
        want = tree["pipes"][original].state_dict()
    got = net.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_controlnet_for_another_family_is_refused_by_name(tree):
    sdxl_unet = tree["pipes"]["sdxl"].unet.config
    with pytest.raises(UncropError, match=r"tiny-cn-ldm\.safetensors does not fit"):
        models.load_controlnet(tree["controlnet-ldm.safetensors"], torch.float32, sdxl_unet)


def test_controlnet_folder_for_another_family_is_refused_before_sampling(tree):
    # A folder loads whatever its config says; sampling then failed deep in the UNet.
    sdxl_unet = tree["pipes"]["sdxl"].unet.config
    with pytest.raises(UncropError, match=r"does not fit this model's UNet.*cross_attention_dim"):
        models.load_controlnet(tree["controlnet"], torch.float32, sdxl_unet)
    sd_unet = tree["pipes"]["sd"].unet.config
    assert models.load_controlnet(tree["controlnet"], torch.float32, sd_unet) is not None


def test_controlnet_pickle_and_non_controlnet_files_are_refused(tree, tmp_path):
    unet_config = tree["pipes"]["sd"].unet.config
    (tmp_path / "cn.pth").write_bytes(b"\x80\x04")
    with pytest.raises(UncropError, match=r"cn\.pth is a pickle checkpoint"):
        models.load_controlnet(tmp_path / "cn.pth", torch.float32, unet_config)
    with pytest.raises(UncropError, match="holds no ControlNet weights"):
        models.load_controlnet(tree["sd.safetensors"], torch.float32, unet_config)


def test_missing_diffusers_says_how_to_install_it(tree, monkeypatch):
    models.clear_cache()
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import fails as if not installed
    with pytest.raises(UncropError, match=r"needs the 'diffusers' package: pip install"):
        models.load_model(tree["sd-inpaint"])


def test_folder_load_is_cached_until_cleared(tree):
    models.clear_cache()
    first = models.load_model(tree["sd-inpaint"])
    assert models.load_model(tree["sd-inpaint"]).pipe is first.pipe  # the same weights
    assert first.native_size == 64 and first.size_multiple == 8
    models.clear_cache()
    assert models.load_model(tree["sd-inpaint"]).pipe is not first.pipe


def test_a_model_lives_only_as_long_as_something_holds_it(tree):
    """In ComfyUI the loader's output holds it: "Free model and node cache" drops that,
    and the weights must go with it (the pack kept the last one in RAM)."""
    models.clear_cache()
    first = models.load_model(tree["sd-inpaint"])
    tiled = models.load_model(tree["sd-inpaint"], vae_tiling=True)
    assert tiled.pipe is first.pipe and tiled.extra is first.extra  # one copy, one patcher
    assert tiled.vae_tiling and not first.vae_tiling
    del first
    gc.collect()
    assert models.load_model(tree["sd-inpaint"]).pipe is tiled.pipe  # still held by `tiled`
    weights = weakref.ref(tiled.pipe.unet)
    del tiled
    gc.collect()
    assert weights() is None


def test_a_load_in_another_dtype_is_its_own(tree):
    # The loader's dtype widget changed while the first load is still held: sharing its
    # weights would silently keep the old dtype.
    models.clear_cache()
    full = models.load_model(tree["sd-inpaint"])
    half = models.load_model(tree["sd-inpaint"], dtype=torch.bfloat16)
    assert half.pipe is not full.pipe and half.dtype == torch.bfloat16
    assert next(half.pipe.unet.parameters()).dtype == torch.bfloat16
    assert next(full.pipe.unet.parameters()).dtype == torch.float32


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".bin"])
def test_pickle_checkpoints_are_refused_by_name(tmp_path, suffix):
    path = tmp_path / f"dangerous{suffix}"
    path.write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(UncropError, match=rf"dangerous\{suffix} is a pickle checkpoint"):
        models.load_model(path)


def test_pickle_weights_inside_a_folder_are_refused(tree, tmp_path):
    folder = shutil.copytree(tree["sd-inpaint"], tmp_path / "m")
    (folder / "vae" / "diffusion_pytorch_model.safetensors").rename(
        folder / "vae" / "diffusion_pytorch_model.bin"
    )
    with pytest.raises(UncropError, match=r"diffusion_pytorch_model\.bin is a pickle"):
        models.inspect_model(folder)


@pytest.mark.parametrize(
    "missing",
    [
        "unet/diffusion_pytorch_model.safetensors",
        "text_encoder/config.json",
        "tokenizer/tokenizer.json",
    ],
)
def test_folder_with_a_missing_component_names_the_file(tree, tmp_path, missing):
    folder = shutil.copytree(tree["sd-inpaint"], tmp_path / "m")
    (folder / missing).unlink()
    with pytest.raises(UncropError, match=str(folder / missing).replace("\\", "\\\\")):
        models.load_model(folder)


def test_single_file_without_a_tokenizer_says_where_to_get_one(tree, monkeypatch):
    monkeypatch.delenv(models.TOKENIZER_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "comfy", None)  # as if ComfyUI were not installed
    models.clear_cache()
    with pytest.raises(UncropError, match=models.TOKENIZER_ENV):
        models.load_model(tree["sd.safetensors"])


def test_not_a_model_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"some.weight": torch.zeros(2)}, str(tmp_path / "lora.safetensors"))
    with pytest.raises(UncropError, match="lora.safetensors is not an SD"):
        models.inspect_model(tmp_path / "lora.safetensors")
    with pytest.raises(UncropError, match="does not exist"):
        models.inspect_model(tmp_path / "nothing")


def test_dtype_choice():
    assert models.pick_dtype(torch.device("cpu")) == torch.float32
    assert models.pick_dtype(torch.device("cpu"), "fp16") == torch.float16
    with pytest.raises(UncropError, match="dtype"):
        models.pick_dtype(torch.device("cpu"), "int8")


def test_auto_dtype_takes_bf16_only_where_the_gpu_runs_it_natively(monkeypatch):
    """torch counts emulated bf16 by default: a T4 or V100 got bf16, many times slower."""
    cards = {"t4": False, "a100": True}
    for card, native in cards.items():

        def supported(including_emulation=True, native=native):
            return native or including_emulation

        monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
        expected = torch.bfloat16 if native else torch.float16
        assert models.pick_dtype(torch.device("cuda")) == expected, card


@pytest.mark.parametrize(
    "cuda,mps,expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_auto_device_prefers_cuda_then_mps(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert models.default_device() == torch.device(expected)


def test_default_device_names_and_refusal():
    assert models.default_device("cpu") == torch.device("cpu")
    with pytest.raises(
        UncropError, match="device: expected auto, cpu, cuda, cuda:N or mps, got 'gpu0'"
    ):
        models.default_device("gpu0")
    # A device torch can name but this machine lacks is refused up front, by name.
    missing = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(UncropError, match=f"device: {missing} is not available here"):
        models.default_device(missing)


def test_a_cuda_index_past_the_last_gpu_is_refused(monkeypatch):
    # On a one-GPU machine cuda:1 crashed later, inside torch.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert models.default_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(UncropError, match=r"device: cuda:1 is not available here \(1 CUDA"):
        models.default_device("cuda:1")


def test_tokenizer_override_wins_over_the_hosts_copy(tree, tmp_path, monkeypatch):
    monkeypatch.setenv(models.TOKENIZER_ENV, str(tree["tokenizer"]))
    assert models.find_clip_tokenizer(tmp_path) == tree["tokenizer"]
    host_copy = shutil.copytree(tree["tokenizer"], tmp_path / "host_tokenizer")
    assert models.find_clip_tokenizer(host_copy) == tree["tokenizer"]  # a usable one too
    monkeypatch.delenv(models.TOKENIZER_ENV)
    assert models.find_clip_tokenizer(tree["tokenizer"]) == tree["tokenizer"]
    with pytest.raises(UncropError, match="needs the CLIP tokenizer files"):
        models.find_clip_tokenizer(tmp_path)


def test_fp16_variant_folder_and_missing_image_parts_load(tree, tmp_path):
    # Weights saved only as *.fp16.safetensors (a `--include "*.fp16.*"` download), and a
    # model index naming a feature_extractor whose folder is absent.

    folder = tmp_path / "fp16-only"
    shutil.copytree(tree["sd-inpaint"], folder)
    for path in list(folder.glob("*/*.safetensors")):
        path.rename(path.with_name(path.name.replace(".safetensors", ".fp16.safetensors")))
    index = json.loads((folder / "model_index.json").read_text())
    index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    (folder / "model_index.json").write_text(json.dumps(index))
    shutil.rmtree(folder / "feature_extractor", ignore_errors=True)
    models.clear_cache()
    loaded = models.load_model(folder)
    want = models.load_model(tree["sd-inpaint"]).pipe.unet.state_dict()
    got = loaded.pipe.unet.state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_a_file_copied_over_with_its_date_kept_is_a_new_file(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 64)
    before = models.file_stamp(weights)
    stat = weights.stat()
    time.sleep(0.01)
    weights.write_bytes(b"b" * 64)  # a fine-tune of the same size, written in place...
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...its date kept (cp -p)
    assert models.file_stamp(weights) != before
    assert models.file_stamp(weights) == models.file_stamp(weights)


def test_each_part_loads_its_own_safetensors_never_a_pickle(tree, tmp_path):
    from safetensors.torch import save_file

    # The VAE saved only as the fp16 variant, in shards, with a pickle of other weights
    # beside it; the UNet with full-precision files and a (zeroed) fp16 copy beside them.
    folder = tmp_path / "mixed"
    shutil.copytree(tree["sd-inpaint"], folder)
    original = models.load_model(tree["sd-inpaint"]).pipe
    vae = folder / "vae"
    (vae / "diffusion_pytorch_model.safetensors").unlink()
    original.vae.save_pretrained(str(vae), variant="fp16", max_shard_size="20KB")
    assert len(list(vae.glob("*.fp16-*-of-*.safetensors"))) > 1
    zeros = {k: torch.zeros_like(v) for k, v in original.vae.state_dict().items()}
    torch.save(zeros, vae / "diffusion_pytorch_model.bin")
    unet = {k: torch.zeros_like(v) for k, v in original.unet.state_dict().items()}
    save_file(unet, str(folder / "unet" / "diffusion_pytorch_model.fp16.safetensors"))
    models.clear_cache()
    loaded = models.load_model(folder).pipe
    for part in ("vae", "unet"):
        want, got = getattr(original, part).state_dict(), getattr(loaded, part).state_dict()
        assert all(torch.equal(want[k], got[k]) for k in want), part
    # The same for a ControlNet folder saved only as the fp16 variant.
    cn = tmp_path / "cn-fp16"
    shutil.copytree(tree["controlnet"], cn)
    for path in list(cn.glob("*.safetensors")):
        path.rename(path.with_name(path.name.replace(".safetensors", ".fp16.safetensors")))
    unet_config = tree["pipes"]["sd"].unet.config
    want = models.load_controlnet(tree["controlnet"], torch.float32, unet_config).state_dict()
    got = models.load_controlnet(cn, torch.float32, unet_config).state_dict()
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_unets_that_take_other_inputs_are_refused_before_loading(tree, tmp_path):
    # 5 channels (a depth model) or 8 (InstructPix2Pix) failed only once sampling began.
    folder = tmp_path / "depth"
    shutil.copytree(tree["sd"], folder)
    config = folder / "unet" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "in_channels": 5}))
    with pytest.raises(UncropError, match=r"depth's UNet takes 5 input channels \(a depth model\)"):
        models.inspect_model(folder)
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tree["sd.safetensors"]))
    key = "model.diffusion_model.input_blocks.0.0.weight"
    weights[key] = torch.cat([weights[key], weights[key]], 1)  # 8 channels
    save_file(weights, str(tmp_path / "ip2p.safetensors"))
    with pytest.raises(UncropError, match=r"ip2p.safetensors's UNet takes 8 .*InstructPix2Pix"):
        models.inspect_model(tmp_path / "ip2p.safetensors")


def test_a_text_encoder_in_the_old_layout_is_named(tree, tmp_path):
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tree["sd.safetensors"]))
    old = {k.replace("transformer.text_model.", "transformer."): v for k, v in weights.items()}
    save_file(old, str(tmp_path / "old-clip.safetensors"))
    with pytest.raises(UncropError, match=r"old-clip.safetensors keeps its text encoder in an old"):
        models.inspect_model(tmp_path / "old-clip.safetensors")


def test_damaged_parts_are_named_not_raised_from_deep_inside(tree, tmp_path):
    folder = tmp_path / "damaged"
    shutil.copytree(tree["sd-inpaint"], folder)
    weights = folder / "text_encoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a cut-off download
    models.clear_cache()
    with pytest.raises(UncropError, match=r"model: could not load .*damaged"):
        models.load_model(folder)
    (folder / "unet" / "config.json").write_text("[1, 2]")
    with pytest.raises(UncropError, match=r"unet.config\.json is not a diffusers config"):
        models.inspect_model(folder)


def test_checkpoints_without_unet_weights_and_odd_indexes_are_refused(tree, tmp_path):
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tree["sd.safetensors"]))
    prefix = "model.diffusion_model."
    ema = {  # an EMA-only file: its UNet under model_ema.*, dots dropped, as such files have
        ("model_ema." + k[len(prefix) :].replace(".", "")) if k.startswith(prefix) else k: v
        for k, v in weights.items()
    }
    save_file(ema, str(tmp_path / "ema-only.safetensors"))
    with pytest.raises(UncropError, match=r"ema-only.safetensors has no UNet weights .*EMA"):
        models.inspect_model(tmp_path / "ema-only.safetensors")
    folder = tmp_path / "listed"
    folder.mkdir()
    (folder / "model_index.json").write_text("[1, 2]")
    with pytest.raises(UncropError, match="is not a diffusers model index"):
        models.inspect_model(folder)


def test_loading_says_nothing_about_torch_dtype(tree, recwarn):
    # diffusers 0.40+ notes on every load that torch_dtype is now dtype; older ones take
    # only torch_dtype, so the pack passes it and keeps the note out of users' logs.
    models.clear_cache()
    model = models.load_model(tree["sd-inpaint"], dtype=torch.float32)
    models.load_controlnet(tree["controlnet"], torch.float32, model.pipe.unet.config)
    assert not [w for w in recwarn if "torch_dtype" in str(w.message)]


def test_weights_lacking_parameters_are_named_at_load(tree, tmp_path):
    """diffusers leaves what a file lacks on the meta device: the load went through and
    sampling failed deep inside torch."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "partial"
    shutil.copytree(tree["sd-inpaint"], folder)
    unet = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights = load_file(str(unet))
    save_file({k: v for k, v in weights.items() if not k.startswith("up_blocks.")}, str(unet))
    models.clear_cache()
    with pytest.raises(UncropError, match=r"model: the weights of unet in .*partial lack \d+"):
        models.load_model(folder)
    cn = tmp_path / "cn"
    shutil.copytree(tree["controlnet"], cn)
    file = cn / "diffusion_pytorch_model.safetensors"
    weights = load_file(str(file))
    save_file({k: v for k, v in weights.items() if "mid_block" not in k}, str(file))
    models.clear_cache()
    with pytest.raises(UncropError, match=r"controlnet: the weights of controlnet in .*cn lack"):
        models.load_model(tree["sd"], controlnet=cn)


def test_a_text_encoder_lacking_weights_is_refused_at_load(tree, tmp_path):
    """transformers fills what a text encoder's file lacks with random weights and only
    logs it: the load went through and every load gave another prompt embedding."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "partial-text"
    shutil.copytree(tree["sdxl"], folder)
    file = folder / "text_encoder_2" / "model.safetensors"
    weights = load_file(str(file))
    save_file({k: v for k, v in weights.items() if "layers.0.mlp" not in k}, str(file))
    models.clear_cache()
    with pytest.raises(
        UncropError, match=r"model: the weights of text_encoder_2 in .*partial-text lack 4 "
    ):
        models.load_model(folder)


def test_controlnet_failures_are_blamed_on_the_controlnet(tree, tmp_path):
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(tree["controlnet.safetensors"].read_bytes()[:-200])
    models.clear_cache()
    with pytest.raises(UncropError, match=r"^controlnet: .*cut\.safetensors"):
        models.load_model(tree["sd"], controlnet=cut)


def test_an_image_encoder_listed_in_an_sd_folder_is_not_loaded(tree, tmp_path):
    """IP-Adapter's image encoder, listed but absent: skipped for SD 1.x as for SDXL."""
    folder = tmp_path / "with-encoder"
    shutil.copytree(tree["sd-inpaint"], folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["image_encoder"] = ["transformers", "CLIPVisionModelWithProjection"]
    (folder / "model_index.json").write_text(json.dumps(index))
    models.clear_cache()
    assert models.load_model(folder).pipe.image_encoder is None


def test_a_linked_component_folder_is_in_the_stamp(tree, tmp_path):
    """rglob does not enter a linked folder: a rewritten UNet kept its cached model."""
    folder = tmp_path / "linked"
    shutil.copytree(tree["sd-inpaint"], folder)
    shutil.move(folder / "unet", tmp_path / "shared-unet")
    (folder / "unet").symlink_to(tmp_path / "shared-unet", target_is_directory=True)
    before = models.file_stamp(folder)
    weights = tmp_path / "shared-unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes())  # rewritten: new inode or times
    time.sleep(0.01)
    os.utime(weights)
    assert any("diffusion_pytorch_model" in str(entry[0]) for entry in before[1:])
    assert models.file_stamp(folder) != before


def test_an_sdxl_refiner_is_named(tree, tmp_path):
    """Its one OpenCLIP encoder sits where SDXL keeps its second: it was told it had
    no text encoder."""
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tree["sdxl.safetensors"]))
    first, second = "conditioner.embedders.0.", "conditioner.embedders.1."
    refiner = {
        (first + k[len(second) :]) if k.startswith(second) else k: v
        for k, v in weights.items()
        if not k.startswith(first)
    }
    save_file(refiner, str(tmp_path / "refiner.safetensors"))
    with pytest.raises(UncropError, match="refiner.safetensors is an SDXL refiner"):
        models.inspect_model(tmp_path / "refiner.safetensors")


def test_a_tokenizer_of_vocab_and_merges_alone_reads_77_tokens(tree, tmp_path, coffee):
    """With no tokenizer_config.json a CLIP tokenizer has no length limit: the pipeline
    padded the prompt to 10^30 tokens and sampling failed inside transformers."""
    from uncrop.core import sampling

    folder = tmp_path / "vocab-only"
    shutil.copytree(tree["sd-inpaint"], folder)
    shutil.rmtree(folder / "tokenizer")
    (folder / "tokenizer").mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(tree["tokenizer"] / name, folder / "tokenizer" / name)
    models.clear_cache()
    model = models.load_model(folder)
    assert model.pipe.tokenizer.model_max_length == 77
    photo = coffee[:, :64, :64].contiguous()
    mask = torch.zeros(1, 64, 64)
    mask[:, 20:40, 20:40] = 1
    settings = sampling.SamplerSettings(prompt="a cat", steps=1)
    out = sampling.inpaint(model, photo, mask, settings).image
    assert torch.equal(out[mask == 0], photo[mask == 0])


def _empty_vocabulary(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        (folder / name).unlink(missing_ok=True)
    (folder / "vocab.json").write_text("{}")
    (folder / "merges.txt").write_text("")
    return folder


def test_a_tokenizer_that_cannot_read_a_prompt_is_refused_at_load(tree, tmp_path, monkeypatch):
    """An empty vocabulary loaded, then the first prompt raised a bare Exception inside
    transformers (its unknown token missing), naming no folder."""
    folder = tmp_path / "empty-vocab"
    shutil.copytree(tree["sd-inpaint"], folder)
    shutil.rmtree(folder / "tokenizer")
    _empty_vocabulary(folder / "tokenizer")
    models.clear_cache()
    with pytest.raises(
        UncropError, match=r"the tokenizer of .*empty-vocab .* cannot read a prompt"
    ):
        models.load_model(folder)
    files = _empty_vocabulary(tmp_path / "tokenizer-files")
    monkeypatch.setenv(models.TOKENIZER_ENV, str(files))
    with pytest.raises(UncropError, match=r"sd.safetensors \(.*tokenizer-files\) cannot read"):
        models.load_model(tree["sd.safetensors"])


def test_controlnet_folder_errors_name_the_controlnet(tree, tmp_path):
    """They came from the model folder's checks, saying "model:"."""
    for cut, message in (
        ("config.json", r"^controlnet: .*nocfg/config\.json is missing; the controlnet folder"),
        (
            "diffusion_pytorch_model.safetensors",
            r"^controlnet: .*noweights/diffusion_pytorch_model\.safetensors is missing \(the "
            "controlnet has no weights",
        ),
    ):
        folder = tmp_path / ("nocfg" if cut == "config.json" else "noweights")
        shutil.copytree(tree["controlnet"], folder)
        (folder / cut).unlink()
        with pytest.raises(UncropError, match=message):
            models.load_controlnet(folder, torch.float32, tree["pipes"]["sd"].unet.config)
