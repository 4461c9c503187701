"""Tiny random-weight diffusion models, built from configs, for the loader and sampler tests.

Each builder returns a diffusers pipeline small enough to run a few steps at
64-128 px on a CPU in well under a second. :func:`save_folder` writes it as a
diffusers folder (``model_index.json`` + components) and :func:`save_single_file`
as one LDM-layout ``.safetensors`` checkpoint, the two forms users have in their
ComfyUI ``diffusers`` and ``checkpoints`` folders.

The configs follow the rules :mod:`uncrop.core.models` uses to rebuild a config
from a single file's tensor shapes (SD 1.x: 8 attention heads; SDXL: 64-wide
heads, at least one; CLIP: 64-wide heads, at least one), so a single file loads
back into exactly the same network.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import torch

# A hand-written byte-level BPE vocabulary: every byte alone and as a word end,
# the special tokens, and a few merges so common words become single tokens.
_WORDS = ("a", "cat", "dog", "sky", "red", "photo", "of", "the", "tree", "sea")


def _bytes_to_unicode() -> list[str]:
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1))
    keep += list(range(0xAE, 0xFF + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_tiny_tokenizer(folder: str | os.PathLike, pad_token: str = "<|endoftext|>") -> int:
    """Write a CLIP tokenizer (vocab.json, merges.txt, configs); return the vocab size."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = _bytes_to_unicode()
    vocab_list = base + [c + "</w>" for c in base]
    merges: list[str] = []
    for word in _WORDS:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            a, b = parts[0], parts[1]
            merges.append(f"{a} {b}")
            parts = [a + b] + parts[2:]
            if parts[0] not in vocab_list:
                vocab_list.append(parts[0])
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    specials = {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    return len(vocab)


def _tokenizer(tmp: Path, name: str, pad_token: str = "<|endoftext|>"):
    from transformers import CLIPTokenizer

    size = write_tiny_tokenizer(tmp / name, pad_token)
    return CLIPTokenizer.from_pretrained(str(tmp / name), local_files_only=True), size


def _text_encoder(
    vocab_size: int, with_projection: bool = False, seed: int = 1, act: str = "quick_gelu"
):
    """CLIP text encoder; SDXL's second one (with projection) is wider, as in the real model,
    which is also how diffusers tells the two apart in a single file."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=64 if with_projection else 32,
        intermediate_size=128 if with_projection else 64,
        # diffusers recognises SDXL's OpenCLIP encoder in a single file by its 10th layer
        num_hidden_layers=10 if with_projection else 2,
        num_attention_heads=1,
        max_position_embeddings=77,
        projection_dim=32,
        hidden_act="gelu" if with_projection else act,
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
    )
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(config).eval()


def _vae(seed: int = 2):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 32, 32),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
    ).eval()


def _scheduler(**extra):
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        **extra,
    )


def tiny_sd(tmp: str | os.PathLike, in_channels: int = 9, seed: int = 0, version: int = 1):
    """SD 1.x layout: 9 input channels for an inpainting UNet, 4 for an ordinary one.

    ``version=2`` gives the SD 2.x layout (64-wide attention heads, linear projections,
    an OpenCLIP-style gelu text encoder); its ordinary model predicts velocity like SD
    2.1 768-v, with the spread in the last output block's norm bias a trained one has.
    """
    from diffusers import (
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    tmp = Path(tmp)
    tokenizer, vocab_size = _tokenizer(tmp, "tok")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8 if version == 1 else (1, 1),
        use_linear_projection=version == 2,
        norm_num_groups=32,
    ).eval()
    velocity = version == 2 and in_channels == 4
    if velocity:
        with torch.no_grad():
            unet.up_blocks[-1].attentions[-1].transformer_blocks[0].norm1.bias.normal_(0, 0.2)
    cls = StableDiffusionInpaintPipeline if in_channels == 9 else StableDiffusionPipeline
    return cls(
        vae=_vae(),
        text_encoder=_text_encoder(vocab_size, act="quick_gelu" if version == 1 else "gelu"),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_scheduler(prediction_type="v_prediction" if velocity else "epsilon"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_sdxl(tmp: str | os.PathLike, in_channels: int = 4, seed: int = 0):
    """SDXL layout: two text encoders, pooled text and size conditioning."""
    from diffusers import (
        StableDiffusionXLInpaintPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    tmp = Path(tmp)
    tokenizer, vocab_size = _tokenizer(tmp, "tok")
    tokenizer_2, _ = _tokenizer(tmp, "tok2", pad_token="!")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32 + 64,
        attention_head_dim=(1, 1),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=8 * 6 + 32,
        transformer_layers_per_block=(1, 2),
        norm_num_groups=32,
    ).eval()
    cls = StableDiffusionXLInpaintPipeline if in_channels == 9 else StableDiffusionXLPipeline
    extra = {"requires_aesthetics_score": False} if in_channels == 9 else {}
    return cls(
        vae=_vae(),
        text_encoder=_text_encoder(vocab_size),
        text_encoder_2=_text_encoder(vocab_size, with_projection=True, seed=3),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=_scheduler(timestep_spacing="leading"),
        **extra,
    )


def tiny_controlnet(unet, seed: int = 4, hint: tuple[int, ...] = (16, 16, 32)):
    """A ControlNet shaped like ``unet``; its hint encoder downsamples 4x, like the tiny VAE
    (an inpaint ControlNet takes the image with the hole set to -1). Real ones downsample
    8x (``hint`` of four widths), the only depth the original file layout can express."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=hint)
    with torch.no_grad():  # a trained ControlNet's zero convolutions are no longer zero
        for param in net.parameters():
            if param.ndim > 1 and not param.any():
                param.normal_(0.0, 0.05)
    return net.eval()


def save_folder(pipe, folder: str | os.PathLike) -> Path:
    """Save as a diffusers folder (safetensors weights)."""
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return Path(folder)


# --- diffusers -> LDM ("original") key layout, for single-file checkpoints ---------------

_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _unet_to_ldm(sd: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """Rename a diffusers UNet state dict to the LDM ``model.diffusion_model.`` layout."""
    n = config.layers_per_block
    levels = len(config.block_out_channels)
    up_attn = ["CrossAttn" in t for t in getattr(config, "up_block_types", ())]
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        parts = key.split(".")
        new = None
        for src, dst in _UNET_TOP.items():
            if key.startswith(src + "."):
                new = dst + key[len(src) :]
        if parts[0] == "down_blocks":
            i, kind, j = int(parts[1]), parts[2], int(parts[3])
            rest = ".".join(parts[4:])
            if kind == "downsamplers":
                new = f"input_blocks.{(i + 1) * (n + 1)}.0.op.{parts[5]}"
            else:
                sub = 0 if kind == "resnets" else 1
                new = f"input_blocks.{1 + i * (n + 1) + j}.{sub}.{rest}"
        elif parts[0] == "up_blocks":
            i, kind, j = int(parts[1]), parts[2], int(parts[3])
            rest = ".".join(parts[4:])
            if kind == "upsamplers":
                sub = 2 if up_attn[i] else 1
                new = f"output_blocks.{i * (n + 1) + n}.{sub}.{rest}"
            else:
                sub = 0 if kind == "resnets" else 1
                new = f"output_blocks.{i * (n + 1) + j}.{sub}.{rest}"
        elif parts[0] == "mid_block":
            kind, j, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            new = f"middle_block.{1 if kind == 'attentions' else 2 * j}.{rest}"
        if new is None:
            raise KeyError(f"unmapped UNet key {key}")
        if ".resnets." in key or parts[0] == "mid_block" and parts[1] == "resnets":
            for src, dst in _RESNET:
                new = new.replace(f".{src}.", f".{dst}.")
        out["model.diffusion_model." + new] = value
    assert levels >= 1
    return out


def controlnet_to_ldm(net) -> dict[str, torch.Tensor]:
    """A diffusers ControlNet's weights in the original ``control_model.`` layout, as the
    ControlNet files ComfyUI users keep in ``models/controlnet`` have them."""
    own = ("controlnet_cond_embedding.", "controlnet_down_blocks.", "controlnet_mid_block.")
    sd = {k: v for k, v in net.state_dict().items() if not k.startswith(own)}
    out = {
        "control_model." + k[len("model.diffusion_model.") :]: v
        for k, v in _unet_to_ldm(sd, net.config).items()
    }
    hint = "control_model.input_hint_block."
    blocks = len(net.controlnet_cond_embedding.blocks)
    for key, value in net.state_dict().items():
        parts = key.split(".")
        if key.startswith("controlnet_cond_embedding.conv_in."):
            out[f"{hint}0.{parts[-1]}"] = value
        elif key.startswith("controlnet_cond_embedding.blocks."):
            out[f"{hint}{2 * (int(parts[2]) + 1)}.{parts[-1]}"] = value
        elif key.startswith("controlnet_cond_embedding.conv_out."):
            out[f"{hint}{2 * (blocks + 1)}.{parts[-1]}"] = value
        elif key.startswith("controlnet_down_blocks."):
            out[f"control_model.zero_convs.{parts[1]}.0.{parts[-1]}"] = value
        elif key.startswith("controlnet_mid_block."):
            out[f"control_model.middle_block_out.0.{parts[-1]}"] = value
    return {k: v.detach().contiguous() for k, v in out.items()}


def _vae_to_ldm(sd: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    levels = len(config.block_out_channels)
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        new = key.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
        parts = new.split(".")
        if parts[1] == "down_blocks":
            i = int(parts[2])
            if parts[3] == "resnets":
                new = f"{parts[0]}.down.{i}.block.{parts[4]}." + ".".join(parts[5:])
            else:
                new = f"{parts[0]}.down.{i}.downsample." + ".".join(parts[5:])
        elif parts[1] == "up_blocks":
            i = levels - 1 - int(parts[2])
            if parts[3] == "resnets":
                new = f"{parts[0]}.up.{i}.block.{parts[4]}." + ".".join(parts[5:])
            else:
                new = f"{parts[0]}.up.{i}.upsample." + ".".join(parts[5:])
        elif parts[1] == "mid_block" and parts[2] == "resnets":
            new = f"{parts[0]}.mid.block_{int(parts[3]) + 1}." + ".".join(parts[4:])
        elif parts[1] == "mid_block" and parts[2] == "attentions":
            rest = ".".join(parts[4:])
            for src, dst in attn.items():
                if rest.startswith(src + "."):
                    rest = dst + rest[len(src) :]
            new = f"{parts[0]}.mid.attn_1.{rest}"
            if value.ndim == 2:
                value = value.reshape(*value.shape, 1, 1)
        out["first_stage_model." + new] = value
    return out


def _open_clip_to_ldm(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """transformers CLIP (with projection) -> OpenCLIP layout, as SDXL's second encoder."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    names = {
        "layer_norm1": "ln_1",
        "layer_norm2": "ln_2",
        "mlp.fc1": "mlp.c_fc",
        "mlp.fc2": "mlp.c_proj",
        "self_attn.out_proj": "attn.out_proj",
    }
    for key, value in sd.items():
        if key == "text_model.embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = value
        elif key == "text_model.embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = value
        elif key.startswith("text_model.final_layer_norm."):
            out[prefix + "ln_final." + key.rsplit(".", 1)[1]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif key.startswith("text_model.encoder.layers."):
            parts = key.split(".")
            layer, rest = parts[3], ".".join(parts[4:])
            base = f"{prefix}transformer.resblocks.{layer}."
            if rest.startswith("self_attn.") and rest.split(".")[1] in (
                "q_proj",
                "k_proj",
                "v_proj",
            ):
                kind = rest.split(".")[-1]
                qkv.setdefault(base + "attn.in_proj_" + kind, {})[rest.split(".")[1]] = value
                continue
            for src, dst in names.items():
                if rest.startswith(src + "."):
                    rest = dst + rest[len(src) :]
            out[base + rest] = value
    for key, parts in qkv.items():
        out[key] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]])
    return out


def _clip_state_dict(model) -> dict[str, torch.Tensor]:
    """transformers' CLIP weights with the ``text_model.`` prefix real checkpoints carry
    (recent transformers versions leave it out of ``state_dict()``)."""
    return {
        k if k.startswith(("text_model.", "text_projection")) else "text_model." + k: v
        for k, v in model.state_dict().items()
    }


def single_file_state_dict(pipe) -> dict[str, torch.Tensor]:
    """The pipeline's weights in the LDM single-file layout (SD 1.x, SD 2.x or SDXL).

    SD 2.x runs OpenCLIP without its last layer, which real files still hold: the
    file gets one more layer (a copy of the last) that the loader must leave out.
    """
    sd = _unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config)
    sd.update(_vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    text = _clip_state_dict(pipe.text_encoder)
    if getattr(pipe, "text_encoder_2", None) is not None:
        sd.update({"conditioner.embedders.0.transformer." + k: v for k, v in text.items()})
        sd.update(
            _open_clip_to_ldm(
                _clip_state_dict(pipe.text_encoder_2), "conditioner.embedders.1.model."
            )
        )
    elif pipe.unet.config.use_linear_projection:  # SD 2.x
        clip = _open_clip_to_ldm(text, "cond_stage_model.model.")
        blocks = "cond_stage_model.model.transformer.resblocks."
        last = pipe.text_encoder.config.num_hidden_layers - 1
        for key in [k for k in clip if k.startswith(f"{blocks}{last}.")]:
            clip[key.replace(f"{blocks}{last}.", f"{blocks}{last + 1}.")] = clip[key].clone()
        sd.update(clip)
    else:
        sd.update({"cond_stage_model.transformer." + k: v for k, v in text.items()})
    return {k: v.detach().contiguous() for k, v in sd.items()}


def save_single_file(pipe, path: str | os.PathLike) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(single_file_state_dict(pipe), str(path))
    return path


_trees: dict[str, dict[str, Path]] = {}


def build_model_tree(root: str | os.PathLike) -> dict[str, Path]:
    """A ComfyUI ``models`` tree with every tiny family, built once per process.

    Keys: ``root`` (the models folder), ``tokenizer`` (the tiny CLIP BPE files a
    single file needs), one per diffusers folder (``sd-inpaint``, ``sd``, ``sdxl``,
    ``sdxl-inpaint``, ``sd2-inpaint``, ``sd2``, ``controlnet``) and per single file
    (``sd-inpaint.safetensors``, ``sd.safetensors``, ``sdxl.safetensors``,
    ``sd2-inpaint.safetensors``, ``sd2.safetensors``), ControlNets for ``sd`` as a folder
    (``controlnet``) and as single files in the diffusers layout
    (``controlnet.safetensors``, 4x hint like the folder) and the original one
    (``controlnet-ldm.safetensors``, 8x hint); ``pipes`` holds the in-memory
    originals for weight comparisons.
    """
    if _trees:
        return next(iter(_trees.values()))
    root = Path(root)
    work = root / "_build"
    models = root / "models"
    tree: dict = {"root": models, "tokenizer": work / "sd" / "tok", "pipes": {}}
    builders = {
        "sd-inpaint": lambda: tiny_sd(work / "sd", 9),
        "sd": lambda: tiny_sd(work / "sd", 4),
        "sdxl": lambda: tiny_sdxl(work / "sdxl", 4),
        "sdxl-inpaint": lambda: tiny_sdxl(work / "sdxl", 9),
        "sd2-inpaint": lambda: tiny_sd(work / "sd2", 9, version=2),
        "sd2": lambda: tiny_sd(work / "sd2", 4, version=2),
    }
    for name, build in builders.items():
        pipe = build()
        tree["pipes"][name] = pipe
        tree[name] = save_folder(pipe, models / "diffusers" / f"tiny-{name}")
        if name != "sdxl-inpaint":
            file = models / "checkpoints" / f"tiny-{name}.safetensors"
            tree[f"{name}.safetensors"] = save_single_file(pipe, file)
    cn = tiny_controlnet(tree["pipes"]["sd"].unet)
    cn.save_pretrained(str(models / "controlnet" / "tiny-inpaint-cn"), safe_serialization=True)
    tree["controlnet"] = models / "controlnet" / "tiny-inpaint-cn"
    from safetensors.torch import save_file

    tree["controlnet.safetensors"] = models / "controlnet" / "tiny-inpaint-cn.safetensors"
    save_file(
        {k: v.contiguous() for k, v in cn.state_dict().items()}, tree["controlnet.safetensors"]
    )
    ldm = tiny_controlnet(tree["pipes"]["sd"].unet, seed=5, hint=(16, 16, 32, 32))
    tree["pipes"]["controlnet-ldm"] = ldm
    tree["controlnet-ldm.safetensors"] = models / "controlnet" / "tiny-cn-ldm.safetensors"
    save_file(controlnet_to_ldm(ldm), tree["controlnet-ldm.safetensors"])
    _trees[str(root)] = tree
    return tree


@contextlib.contextmanager
def one_thread():
    """Run torch on one thread: the tiny models are far too small to gain from more, and
    on a busy CI machine extra threads only contend (a 0.5 s test took 35 s with two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
