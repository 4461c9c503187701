"""Finding out what a diffusion model file is, and loading it offline.

Two forms are accepted, both from the user's disk and never from a hub:

- a diffusers folder (``model_index.json`` plus one sub-folder per component),
- a single-file ``.safetensors`` checkpoint in the original (LDM) layout.

A single file carries weights but no configs. The configs of each supported
family ship with the pack in ``core/model_configs/<base>/``; the dimensions that
vary between checkpoints (channels, depth, input channels, text width) are read
from the file's tensor shapes, so any checkpoint of a family, down to the tiny
test models, gets a config that matches its weights. SD 2.x files do not say
whether they predict noise (512 px base and inpainting models) or velocity (768
px models); that is read off one weight, as ComfyUI does (:func:`_sd2_prediction`).
The CLIP tokenizer
vocabulary (1.6 MB, the same for every family) is not shipped: it is taken from
``UNCROP_CLIP_TOKENIZER``, or from the ``tokenizer_dir`` argument (the nodes pass
ComfyUI's own copy, ``comfy/sd1_tokenizer``).

Pickle files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) can run code when loaded and
are refused. :func:`inspect_model` only reads headers and configs;
:func:`load_model` builds the pipeline; loads of the same files share it while any is
held, and nothing else keeps it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import warnings
import weakref
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .errors import UncropError

log = logging.getLogger(__name__)

CONFIG_ROOT = Path(__file__).resolve().parent / "model_configs"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
TOKENIZER_ENV = "UNCROP_CLIP_TOKENIZER"

FAMILIES = {
    "sd-inpaint": "SD 1.x/2.x inpainting model (9-channel UNet)",
    "sd": "SD 1.x/2.x model (inpaints by re-noising only the masked latent)",
    "sdxl-inpaint": "SDXL inpainting model (9-channel UNet)",
    "sdxl": "SDXL model (inpaints by re-noising only the masked latent)",
}
NATIVE_SIZE = {"sd1": 512, "sd2": 512, "sdxl": 1024}
# SD 2.x velocity-prediction models were trained at 768 px (UNet sample size 96).
V_PREDICTION_SAMPLE_SIZE = 96
# The spread of the last output block's first transformer norm bias above which an
# SD 2.x UNet predicts velocity (ComfyUI's test; noise-predicting ones stay near 0.05).
V_PREDICTION_STD = 0.09


@dataclass(frozen=True)
class ModelInfo:
    """What was found at ``path``, read from configs or tensor shapes only."""

    path: str
    form: str  # "diffusers" or "single-file"
    base: str  # "sd1", "sd2" or "sdxl"
    family: str  # a key of FAMILIES
    in_channels: int
    notes: tuple[str, ...] = ()
    prediction: str = "epsilon"  # or "v_prediction"; single files only, folders say it

    @property
    def is_inpaint_unet(self) -> bool:
        return self.in_channels == 9

    def describe(self) -> str:
        name = os.path.basename(self.path.rstrip("/\\"))
        text = f"{name}: {FAMILIES[self.family]}, {self.base.upper()} ({self.form})"
        return text + "".join(f"; {n}" for n in self.notes)


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UncropError(
            f"{path.name} is a pickle checkpoint ({path.suffix}), which can run arbitrary code "
            "when loaded; Uncrop only loads .safetensors files and diffusers folders. Use the "
            ".safetensors version of this model, or convert it once with a tool you trust."
        )


# ---------------------------------------------------------------- diffusers folders


def _read_json(path: Path, who: str = "model") -> dict[str, Any]:
    """A diffusers JSON file of the ``who`` input (model, controlnet), or an error naming it."""
    if not path.is_file():
        raise UncropError(f"{who}: {path} is missing; the {who} folder is incomplete.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UncropError(f"{who}: cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        what = path.stem.replace("_", " ")
        raise UncropError(f"{who}: {path} is not a diffusers {what} (a JSON object).")
    return data


def _check_component(folder: Path, name: str, library: str, who: str = "model") -> None:
    """Raise naming the missing file if a component folder of the ``who`` input cannot
    be loaded."""
    sub = folder / name
    if name.startswith("tokenizer"):
        bpe = all((sub / f).is_file() for f in ("vocab.json", "merges.txt"))
        if not (sub / "tokenizer.json").is_file() and not bpe:
            raise UncropError(
                f"{who}: {sub / 'tokenizer.json'} is missing (or vocab.json with merges.txt); "
                f"component '{name}' cannot be loaded."
            )
        return
    if name == "scheduler":
        _read_json(sub / "scheduler_config.json", who)
        return
    _read_json(sub / "config.json", who)
    files = [p.name for p in sub.iterdir()] if sub.is_dir() else []
    if any(f.endswith(".safetensors") or f.endswith(".safetensors.index.json") for f in files):
        return
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles:
        _refuse_pickle(sub / pickles[0])
    weights = (
        "model.safetensors" if library == "transformers" else "diffusion_pytorch_model.safetensors"
    )
    owner = f"component '{name}'" if who == "model" else f"the {who}"
    raise UncropError(f"{who}: {sub / weights} is missing ({owner} has no weights).")


def _check_in_channels(name: str, in_channels) -> int:
    """The UNet's input channels: 4 (an ordinary model, which inpaints by re-noising) or
    9 (an inpainting model, which also sees the mask and the masked image)."""
    if in_channels not in (4, 9):
        kind = {5: " (a depth model)", 8: " (an InstructPix2Pix model)"}.get(in_channels, "")
        raise UncropError(
            f"model: {name}'s UNet takes {in_channels} input channels{kind}; Uncrop samples "
            "ordinary models (4 channels) and inpainting models (9)."
        )
    return int(in_channels)


_FP16_FILE = re.compile(r"\.fp16(-\d+-of-\d+)?\.safetensors$")  # whole or sharded


def _fp16_only(component: Path) -> bool:
    """Whether a component folder holds its weights only as the fp16 variant
    (``*.fp16.safetensors``, or its shards ``*.fp16-00001-of-00002.safetensors``)."""
    names = [f.name for f in component.glob("*.safetensors")]
    return bool(names) and all(_FP16_FILE.search(name) for name in names)


def _loaded_parts(folder: Path, dtype: torch.dtype) -> dict[str, Any]:
    """The parts of a diffusers folder loaded here rather than by the pipeline, by name.

    - Each text encoder: transformers fills what its files lack with random weights and
      only logs it (a new prompt embedding on every load, never an error), so its load
      report is read and such a file refused.
    - Each weighted part saved only as the fp16 variant (as ``--include "*.fp16.*"``
      downloads give), in that variant: asking the whole pipeline for the variant would
      also take the fp16 copy of a part that has full-precision files.
    """
    index = _read_json(folder / "model_index.json")
    parts = {}
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        entry = index.get(name)
        if not (isinstance(entry, list) and len(entry) == 2):
            continue
        library, class_name = entry
        fp16 = _fp16_only(folder / name)
        if not (fp16 or library == "transformers"):
            continue
        if library not in ("diffusers", "transformers"):  # never import what a file names
            raise UncropError(
                f"model: {name} in {folder / 'model_index.json'} is from "
                f"'{library}'; expected diffusers or transformers."
            )
        part_class = getattr(importlib.import_module(library), class_name)
        path = str(folder / name)
        options: dict[str, Any] = {"use_safetensors": True}
        if fp16:
            options["variant"] = "fp16"
        if library == "diffusers":  # leaves what a file lacks on the meta device: see load_model
            part = part_class.from_pretrained(path, local_files_only=True, **options)
            parts[name] = part.to(dtype)
            continue
        # In its dtype (no float32 copy first), with the report of what its files lacked.
        options.update(torch_dtype=dtype, output_loading_info=True)
        part, loading = part_class.from_pretrained(path, local_files_only=True, **options)
        missing = sorted(loading.get("missing_keys") or [])
        if missing:
            raise UncropError(
                f"model: the weights of {name} in {folder} lack {len(missing)} of its "
                f"parameters (first: {missing[0]}); the file is incomplete or made for "
                "another model."
            )
        parts[name] = part
    return parts


def _inspect_folder(folder: Path) -> ModelInfo:
    index = _read_json(folder / "model_index.json")
    components = {
        k: v for k, v in index.items()
        if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[0]
    }  # fmt: skip
    if "transformer" in components and "unet" not in components:
        raise UncropError(
            f"model: {folder.name} is a {index.get('_class_name', 'transformer')} model; this "
            "version of Uncrop samples UNet models (SD 1.x, SD 2.x, SDXL and their inpainting "
            "versions)."
        )
    for required in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if required not in components:
            raise UncropError(
                f"model: {folder / 'model_index.json'} lists no '{required}' component."
            )
    for name, (library, _cls) in components.items():
        if name in ("safety_checker", "feature_extractor", "image_encoder"):
            continue
        _check_component(folder, name, library)
    unet = _read_json(folder / "unet" / "config.json")
    in_channels = _check_in_channels(folder.name, unet.get("in_channels", 4))
    if "text_encoder_2" in components:
        base = "sdxl"
    else:
        # SD 2.x: OpenCLIP's 1024-wide text, and linear projections in the transformers
        sd2 = int(unet.get("cross_attention_dim", 768)) == 1024 or unet.get("use_linear_projection")
        base = "sd2" if sd2 else "sd1"
    family = ("sdxl" if base == "sdxl" else "sd") + ("-inpaint" if in_channels == 9 else "")
    return ModelInfo(str(folder), "diffusers", base, family, in_channels)


# ---------------------------------------------------------------- single files

_UNET = "model.diffusion_model."


def _read_shapes(path: Path, name: str = "model") -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except Exception as exc:  # safetensors raises its own error types
        raise UncropError(
            f"{name}: {path.name} is not a readable .safetensors file: {exc}"
        ) from None


def _base_from_shapes(path: Path, shapes: dict[str, tuple[int, ...]]) -> str:
    if any(k.startswith("conditioner.embedders.1.model.") for k in shapes):
        return "sdxl"
    if any(k.startswith("cond_stage_model.model.") for k in shapes):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in shapes):
        return "sd1"
    if any(
        k.startswith(("double_blocks.", "model.diffusion_model.double_blocks.")) for k in shapes
    ):
        raise UncropError(
            f"model: {path.name} is a Flux checkpoint; this version of Uncrop samples SD 1.x, "
            "SD 2.x and SDXL models."
        )
    if any(k.startswith("conditioner.embedders.0.model.") for k in shapes):
        raise UncropError(  # the one OpenCLIP encoder, without SDXL's CLIP-L beside it
            f"model: {path.name} is an SDXL refiner; it only refines a base model's output, "
            "so Uncrop does not sample with it: use an SDXL base or inpainting checkpoint."
        )
    if _UNET + "input_blocks.0.0.weight" in shapes:
        raise UncropError(
            f"model: {path.name} holds a UNet but no text encoder; Uncrop needs a full "
            "checkpoint (UNet, VAE and text encoder in one file) or a diffusers folder."
        )
    raise UncropError(
        f"model: {path.name} is not an SD 1.x, SD 2.x or SDXL checkpoint (no UNet weights found)."
    )


def _sd2_prediction(path: Path, shapes: dict[str, tuple[int, ...]]) -> str:
    """``v_prediction`` or ``epsilon`` for an ordinary SD 2.x UNet, from the spread of
    its last output block's first transformer norm bias (one small tensor is read)."""
    suffix = ".1.transformer_blocks.0.norm1.bias"
    keys = [k for k in shapes if k.startswith(_UNET + "output_blocks.") and k.endswith(suffix)]
    if not keys:
        return "epsilon"
    last = max(keys, key=lambda k: int(k[len(_UNET + "output_blocks.") :].split(".")[0]))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        bias = f.get_tensor(last).float()
    return "v_prediction" if float(bias.std(unbiased=False)) > V_PREDICTION_STD else "epsilon"


def _inspect_file(path: Path) -> tuple[ModelInfo, dict[str, tuple[int, ...]]]:
    _refuse_pickle(path)
    if path.suffix.lower() != ".safetensors":
        raise UncropError(
            f"model: expected a .safetensors file or a diffusers folder, got {path.name}."
        )
    shapes = _read_shapes(path)
    base = _base_from_shapes(path, shapes)
    if _UNET + "input_blocks.0.0.weight" not in shapes:
        ema = (
            " (it holds only EMA weights, model_ema.*)"
            if any(k.startswith("model_ema.") for k in shapes)
            else ""
        )
        raise UncropError(f"model: {path.name} has no UNet weights ({_UNET}*){ema}.")
    if "first_stage_model.encoder.conv_in.weight" not in shapes:
        raise UncropError(f"model: {path.name} has no VAE weights (first_stage_model.*).")
    clip = "cond_stage_model.transformer."
    if base == "sd1" and clip + "text_model.embeddings.token_embedding.weight" not in shapes:
        raise UncropError(
            f"model: {path.name} keeps its text encoder in an old layout ({clip}embeddings.*, "
            "without 'text_model.'), which Uncrop does not read. Use the model's diffusers "
            "folder, or sample it with ComfyUI's own nodes (the outpaint-comfyui-ksampler "
            "workflow)."
        )
    in_channels = _check_in_channels(path.name, shapes[_UNET + "input_blocks.0.0.weight"][1])
    family = ("sdxl" if base == "sdxl" else "sd") + ("-inpaint" if in_channels == 9 else "")
    prediction, notes = "epsilon", ()
    if base == "sd2" and in_channels == 4:  # SD 2.x inpainting models all predict noise
        prediction = _sd2_prediction(path, shapes)
        if prediction == "v_prediction":
            notes = ("v-prediction, 768 px (read from the weights)",)
    info = ModelInfo(str(path), "single-file", base, family, in_channels, notes, prediction)
    return info, shapes


def inspect_model(path: str | os.PathLike) -> ModelInfo:
    """Detect the family of a diffusers folder or single ``.safetensors`` file."""
    p = Path(path)
    if not p.exists():
        raise UncropError(f"model: {p} does not exist.")
    if p.is_dir():
        return _inspect_folder(p)
    return _inspect_file(p)[0]


def _count(shapes: dict[str, tuple[int, ...]], prefix: str) -> int:
    """How many consecutive ``prefix{i}.`` indices exist."""
    n = 0
    while any(k.startswith(f"{prefix}{n}.") for k in shapes):
        n += 1
    return n


def unet_config_from_shapes(
    base_config: dict, shapes: dict[str, tuple[int, ...]], base: str
) -> dict:
    """The family's UNet config with the sizes that vary between checkpoints read from the file."""
    s = {k[len(_UNET) :]: v for k, v in shapes.items() if k.startswith(_UNET)}
    cfg = dict(base_config)
    cfg["in_channels"] = s["input_blocks.0.0.weight"][1]
    cfg["out_channels"] = s["out.2.weight"][0]
    n_input = _count(s, "input_blocks.")
    # input_blocks: conv_in, then per level `layers` resnets and a downsampler (not the last).
    downs = [i for i in range(n_input) if f"input_blocks.{i}.0.op.weight" in s]
    layers = downs[0] - 1 if downs else n_input - 1
    levels = len(downs) + 1
    channels, attn, depth = [], [], []
    for level in range(levels):
        first = 1 + level * (layers + 1)
        channels.append(s[f"input_blocks.{first}.0.out_layers.3.weight"][0])
        blocks = _count(s, f"input_blocks.{first}.1.transformer_blocks.")
        attn.append(blocks > 0)
        depth.append(max(blocks, 1))
    cfg["layers_per_block"] = layers
    cfg["block_out_channels"] = channels
    cfg["down_block_types"] = ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn]
    cfg["up_block_types"] = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)]
    first_attn = next(i for i, a in enumerate(attn) if a)
    block = f"input_blocks.{1 + first_attn * (layers + 1)}.1."
    cfg["cross_attention_dim"] = s[block + "transformer_blocks.0.attn2.to_k.weight"][1]
    cfg["use_linear_projection"] = len(s[block + "proj_in.weight"]) == 2
    if base == "sd1":
        cfg["attention_head_dim"] = 8
    else:  # SD 2.x and SDXL use 64-wide attention heads
        cfg["attention_head_dim"] = [max(1, c // 64) for c in channels]
    if "transformer_layers_per_block" in cfg or any(d > 1 for d in depth):
        cfg["transformer_layers_per_block"] = depth
    if "label_emb.0.0.weight" in s:
        pooled = shapes["conditioner.embedders.1.model.text_projection"][1]
        total = s["label_emb.0.0.weight"][1]
        cfg["projection_class_embeddings_input_dim"] = total
        cfg["addition_time_embed_dim"] = (total - pooled) // 6
    return cfg


def vae_config_from_shapes(base_config: dict, shapes: dict[str, tuple[int, ...]]) -> dict:
    p = "first_stage_model."
    cfg = dict(base_config)
    levels = _count(shapes, p + "encoder.down.")
    layers = _count(shapes, p + "encoder.down.0.block.")
    cfg["block_out_channels"] = [
        shapes[f"{p}encoder.down.{i}.block.{layers - 1}.conv2.weight"][0] for i in range(levels)
    ]
    cfg["layers_per_block"] = layers
    cfg["down_block_types"] = ["DownEncoderBlock2D"] * levels
    cfg["up_block_types"] = ["UpDecoderBlock2D"] * levels
    cfg["latent_channels"] = shapes[p + "encoder.conv_out.weight"][0] // 2
    cfg["in_channels"] = shapes[p + "encoder.conv_in.weight"][1]
    cfg["out_channels"] = shapes[p + "decoder.conv_out.weight"][0]
    return cfg


def clip_config_from_shapes(
    base_config: dict, shapes: dict[str, tuple[int, ...]], prefix: str, unused_layers: int = 0
) -> dict:
    """CLIP text config from transformers-layout (``prefix`` = ``...transformer.``) or
    OpenCLIP-layout (``prefix`` = ``...model.``) weights, leaving out the last
    ``unused_layers`` layers the file holds but the model does not run."""
    cfg = dict(base_config)
    if prefix + "text_model.embeddings.token_embedding.weight" in shapes:
        vocab, hidden = shapes[prefix + "text_model.embeddings.token_embedding.weight"]
        positions = shapes[prefix + "text_model.embeddings.position_embedding.weight"][0]
        layers = _count(shapes, prefix + "text_model.encoder.layers.")
        inter = shapes[prefix + "text_model.encoder.layers.0.mlp.fc1.weight"][0]
    else:
        vocab, hidden = shapes[prefix + "token_embedding.weight"]
        positions = shapes[prefix + "positional_embedding"][0]
        layers = _count(shapes, prefix + "transformer.resblocks.")
        inter = shapes[prefix + "transformer.resblocks.0.mlp.c_fc.weight"][0]
        if prefix + "text_projection" in shapes:
            cfg["projection_dim"] = shapes[prefix + "text_projection"][1]
    cfg.update(
        vocab_size=vocab,
        hidden_size=hidden,
        max_position_embeddings=positions,
        num_hidden_layers=layers - unused_layers,
        intermediate_size=inter,
        num_attention_heads=max(1, hidden // 64),
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
    )
    return cfg


def find_clip_tokenizer(tokenizer_dir: str | os.PathLike | None = None) -> Path:
    """A folder with the CLIP BPE files ``vocab.json`` and ``merges.txt``: the one named
    by ``UNCROP_CLIP_TOKENIZER`` (the user's override), else ``tokenizer_dir`` (a host's
    own copy, such as ComfyUI's ``comfy/sd1_tokenizer``)."""
    candidates: list[tuple[str, Path]] = []
    if os.environ.get(TOKENIZER_ENV):
        candidates.append((TOKENIZER_ENV, Path(os.environ[TOKENIZER_ENV])))
    if tokenizer_dir:
        candidates.append(("tokenizer_dir", Path(tokenizer_dir)))
    for _source, folder in candidates:
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            return folder
    tried = ", ".join(f"{s}={f}" for s, f in candidates) or "none"
    raise UncropError(
        "model: a single-file checkpoint needs the CLIP tokenizer files vocab.json and "
        "merges.txt. Inside ComfyUI they come from comfy/sd1_tokenizer; elsewhere set "
        f"{TOKENIZER_ENV} to a folder holding them (for example the 'tokenizer' folder of any "
        f"SD diffusers model). Tried: {tried}."
    )


def write_single_file_config(
    info: ModelInfo, shapes: dict[str, tuple[int, ...]], folder: Path, tokenizer: Path
) -> Path:
    """Materialise a diffusers config folder for a single-file checkpoint."""
    src = CONFIG_ROOT / info.base
    shutil.copytree(src, folder, dirs_exist_ok=True)

    def rewrite(rel: str, fn) -> None:
        path = folder / rel
        path.write_text(json.dumps(fn(json.loads(path.read_text())), indent=1))

    rewrite("unet/config.json", lambda c: unet_config_from_shapes(c, shapes, info.base))
    if info.prediction == "v_prediction":
        rewrite("unet/config.json", lambda c: {**c, "sample_size": V_PREDICTION_SAMPLE_SIZE})
    rewrite("scheduler/scheduler_config.json", lambda c: {**c, "prediction_type": info.prediction})
    rewrite("vae/config.json", lambda c: vae_config_from_shapes(c, shapes))
    first = {
        "sd1": "cond_stage_model.transformer.",
        "sd2": "cond_stage_model.model.",
        "sdxl": "conditioner.embedders.0.transformer.",
    }[info.base]
    # SD 2.x conditions on OpenCLIP's penultimate layer: its files hold one layer more
    # than it runs, and diffusers skips that layer's weights.
    unused = 1 if info.base == "sd2" else 0
    rewrite("text_encoder/config.json", lambda c: clip_config_from_shapes(c, shapes, first, unused))
    if info.base == "sdxl":
        rewrite(
            "text_encoder_2/config.json",
            lambda c: clip_config_from_shapes(c, shapes, "conditioner.embedders.1.model."),
        )
    for sub in ("tokenizer", "tokenizer_2"):
        if (folder / sub).is_dir():
            for name in ("vocab.json", "merges.txt"):
                shutil.copyfile(tokenizer / name, folder / sub / name)
    return folder


# ---------------------------------------------------------------- loading


def default_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA, else Apple's MPS, else the CPU; ``cpu``, ``cuda``, ``cuda:N`` or
    ``mps`` as named, refused when this machine has no such device (ROCm builds of torch
    name their GPUs cuda too)."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            device = None
        if device is None or device.type not in ("cpu", "cuda", "mps"):
            raise UncropError(
                f"device: expected auto, cpu, cuda, cuda:N or mps, got '{name}'."
            ) from None
        if device.type == "cuda" and (
            not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
        ):
            found = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise UncropError(
                f"device: {name} is not available here ({found} CUDA devices; torch "
                f"{torch.__version__}); use auto or cpu."
            )
        mps = getattr(torch.backends, "mps", None)
        if device.type == "mps" and (mps is None or not mps.is_available()):
            raise UncropError(f"device: {name} is not available here; use auto or cpu.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _native_bf16() -> bool:
    """Whether the GPU runs bf16 natively: by default torch also counts the emulation of
    older cards (a T4, a V100), where bf16 is many times slower than fp16."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # a torch from before that option, which counted native support only
        return torch.cuda.is_bf16_supported()


def pick_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """fp32 on the CPU; bf16 on GPUs that run it natively (SDXL's VAE overflows in fp16),
    else fp16."""
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if requested in table:
        return table[requested]
    if requested != "auto":
        raise UncropError(f"dtype: expected auto, fp16, bf16 or fp32, got '{requested}'.")
    if device.type == "cuda":
        return torch.bfloat16 if _native_bf16() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


@dataclass(eq=False)
class InpaintModel:
    """A loaded pipeline plus what the sampler needs to know about it."""

    info: ModelInfo
    pipe: Any  # StableDiffusionInpaintPipeline or StableDiffusionXLInpaintPipeline
    dtype: torch.dtype
    controlnet: Any = None
    controlnet_path: str | None = None
    vae_tiling: bool = False
    extra: dict = field(default_factory=dict)  # host bookkeeping (e.g. ComfyUI's ModelPatcher)
    # The checkpoint's own scheduler settings, kept apart from the pipeline's scheduler,
    # which each run replaces: every run builds its scheduler from these, so no option
    # (Karras sigmas, say) carries over from one run to the next.
    scheduler_config: dict = field(default_factory=dict)
    # The load whose weights this one shares (see load_model): kept alive while this is.
    shares: InpaintModel | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.scheduler_config:
            self.scheduler_config = dict(self.pipe.scheduler.config)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.pipe.vae.config.block_out_channels) - 1)

    @property
    def native_size(self) -> int:
        """The side in px the UNet was trained at (512 for SD 1.5, 1024 for SDXL)."""
        return int(self.pipe.unet.config.sample_size) * self.vae_scale_factor

    @property
    def size_multiple(self) -> int:
        """Image sides must be a multiple of this (64 for SD: 8 px per latent x 3 downsamples)."""
        return self.vae_scale_factor * 2 ** (len(self.pipe.unet.config.block_out_channels) - 1)

    @property
    def device(self) -> torch.device:
        return self.pipe.unet.device

    def modules(self) -> torch.nn.ModuleDict:
        """The weights, as one module, for memory managers that move whole models."""
        parts = {
            name: getattr(self.pipe, name)
            for name in ("unet", "vae", "text_encoder", "text_encoder_2")
            if getattr(self.pipe, name, None) is not None
        }
        if self.controlnet is not None:
            parts["controlnet"] = self.controlnet
        return torch.nn.ModuleDict(parts)

    def to(self, device: torch.device | str) -> InpaintModel:
        self.pipe.to(device)
        if self.controlnet is not None:
            self.controlnet.to(device)
        return self

    def set_vae_tiling(self, enabled: bool) -> None:
        """This model's setting; the VAE, which other loads of the same file share, takes
        it when this model samples (:meth:`apply_vae_tiling`)."""
        self.vae_tiling = enabled

    def apply_vae_tiling(self) -> None:
        if self.vae_tiling:
            self.pipe.vae.enable_tiling()
        else:
            self.pipe.vae.disable_tiling()

    def describe(self) -> str:
        text = self.info.describe() + f"; native {self.native_size} px, {str(self.dtype)[6:]}"
        if self.controlnet_path:
            text += f"; ControlNet {os.path.basename(self.controlnet_path.rstrip('/'))}"
        return text


def diffusers_module():
    """The ``diffusers`` package, or an error that says how to install it."""
    try:
        import diffusers
    except ImportError:
        raise UncropError(
            "model: diffusion sampling needs the 'diffusers' package: pip install -r "
            "requirements.txt in the pack's folder (or pip install -e '.[diffusion]' in a "
            "checkout of it)."
        ) from None
    # diffusers 0.40+ notes on every load that torch_dtype is now dtype; older versions
    # take only torch_dtype, which the loaders here pass. Only that note is muted.
    warnings.filterwarnings(
        "ignore", message=".*`torch_dtype`.*deprecated", category=FutureWarning, module="diffusers"
    )
    return diffusers


def _pipeline_class(base: str):
    diffusers = diffusers_module()
    if base == "sdxl":
        return diffusers.StableDiffusionXLInpaintPipeline
    return diffusers.StableDiffusionInpaintPipeline


def _load_pipeline(info: ModelInfo, dtype: torch.dtype, tokenizer_dir) -> Any:
    cls = _pipeline_class(info.base)
    # The image parts only a safety checker or an IP-Adapter reads are never loaded.
    common: dict[str, Any] = {"torch_dtype": dtype, "feature_extractor": None}
    common["image_encoder"] = None
    if info.base != "sdxl":
        common.update(safety_checker=None, requires_safety_checker=False)
    else:  # and no invisible watermark in the pixels, where that package is installed
        common["add_watermarker"] = False
    if info.form == "diffusers":
        common["use_safetensors"] = True  # a pickle beside the safetensors is never read
        parts = _loaded_parts(Path(info.path), dtype)
        return cls.from_pretrained(info.path, local_files_only=True, **parts, **common)
    _, shapes = _inspect_file(Path(info.path))
    tokenizer = find_clip_tokenizer(tokenizer_dir)
    with tempfile.TemporaryDirectory(prefix="uncrop-config-") as tmp:
        config = write_single_file_config(info, shapes, Path(tmp) / "config", tokenizer)
        return cls.from_single_file(info.path, config=str(config), local_files_only=True, **common)


def _controlnet_config(unet_config: dict, shapes: dict[str, tuple[int, ...]]) -> dict:
    """A ControlNet config for one file: the model's UNet config (a ControlNet copies its
    encoder), with the input channels and hint encoder widths read from the weights.
    Both layouts are read: the original (``control_model.input_hint_block.N``, convolutions
    at even N, the last one the output) and diffusers' (``controlnet_cond_embedding.*``)."""
    import inspect

    ControlNetModel = diffusers_module().ControlNetModel

    accepted = inspect.signature(ControlNetModel.__init__).parameters
    cfg = {k: v for k, v in dict(unet_config).items() if k in accepted}
    if "time_embedding.linear_1.weight" in shapes:  # diffusers layout
        cfg["in_channels"] = shapes["conv_in.weight"][1]
        first = shapes["controlnet_cond_embedding.conv_in.weight"][0]
        blocks = _count(shapes, "controlnet_cond_embedding.blocks.")
        outs = [shapes[f"controlnet_cond_embedding.blocks.{i}.weight"][0] for i in range(blocks)]
    else:
        prefix = "control_model." if any(k.startswith("control_model.") for k in shapes) else ""
        hint = prefix + "input_hint_block."
        if prefix + "input_blocks.0.0.weight" not in shapes or hint + "0.weight" not in shapes:
            raise UncropError("controlnet: the file holds no ControlNet weights.")
        cfg["in_channels"] = shapes[prefix + "input_blocks.0.0.weight"][1]
        convs = sorted(
            int(k[len(hint) :].split(".")[0])
            for k in shapes
            if k.startswith(hint) and k.endswith(".weight")
        )
        first = shapes[f"{hint}0.weight"][0]
        outs = [shapes[f"{hint}{i}.weight"][0] for i in convs[1:-1]]
    # Blocks come in pairs: one keeps the width, the next strides and widens.
    cfg["conditioning_embedding_out_channels"] = [first, *outs[1::2]]
    return cfg


def check_controlnet_path(path: str | os.PathLike) -> Path:
    """``path`` if it can hold a ControlNet (a folder or a ``.safetensors`` file), else
    an UncropError saying why; reads no weights."""
    p = Path(path)
    if not p.exists():
        raise UncropError(f"controlnet: {p} does not exist.")
    if not p.is_dir():
        _refuse_pickle(p)
        if p.suffix.lower() != ".safetensors":
            raise UncropError(
                f"controlnet: expected a .safetensors file or a folder, got {p.name}."
            )
    return p


def load_controlnet(path: str | os.PathLike, dtype: torch.dtype, unet_config: dict) -> Any:
    """An inpaint ControlNet for a model whose UNet has ``unet_config``: a diffusers folder
    (``config.json`` + safetensors weights) or one ``.safetensors`` file, as ComfyUI keeps
    them in ``models/controlnet``, in the original or the diffusers layout."""
    ControlNetModel = diffusers_module().ControlNetModel
    p = check_controlnet_path(path)
    if p.is_dir():
        _check_component(p.parent, p.name, "diffusers", "controlnet")
        own, unet = (
            _read_json(p / "config.json", "controlnet"),
            json.loads(json.dumps(dict(unet_config), default=str)),
        )
        for key in ("cross_attention_dim", "block_out_channels", "addition_embed_type"):
            if own.get(key) != unet.get(key):
                raise UncropError(
                    f"controlnet: {p.name} does not fit this model's UNet (a ControlNet must be "
                    f"made for the same family): its {key} is {own.get(key)}, the UNet's "
                    f"{unet.get(key)}."
                )
        variant = "fp16" if _fp16_only(p) else None
        options = {"torch_dtype": dtype, "use_safetensors": True, "variant": variant}
        return ControlNetModel.from_pretrained(str(p), local_files_only=True, **options)
    cfg = _controlnet_config(unet_config, _read_shapes(p, "controlnet"))
    with tempfile.TemporaryDirectory(prefix="uncrop-config-") as tmp:
        Path(tmp, "config.json").write_text(json.dumps(cfg))
        try:
            options = {"config": tmp, "torch_dtype": dtype}
            return ControlNetModel.from_single_file(str(p), local_files_only=True, **options)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise UncropError(
                f"controlnet: {p.name} does not fit this model's UNet (a ControlNet must be made "
                f"for the same family): {str(exc)[:300]}"
            ) from exc


def _refuse_missing_weights(name: str, path, parts) -> None:
    """Refuse a model whose weight files lacked some of its parameters: diffusers leaves
    those on the ``meta`` device, and sampling failed on them deep inside torch."""
    for part, module in parts:
        if isinstance(module, torch.nn.Module):
            missing = [n for n, p in module.named_parameters() if p.device.type == "meta"]
            if missing:
                raise UncropError(
                    f"{name}: the weights of {part} in {path} lack {len(missing)} of its "
                    f"parameters (first: {missing[0]}); the file is incomplete or made for "
                    "another model."
                )


def _check_tokenizers(pipe, path: Path, files: Path | None = None) -> None:
    """Each tokenizer must read a prompt, and reads at most what its text encoder has
    positions for (77).

    A tokenizer folder of vocab.json and merges.txt alone, with no tokenizer_config.json,
    has no limit: the pipeline padded prompts to 10^30 tokens and failed inside
    transformers. One with an empty vocabulary loads, and failed at the first prompt.
    ``files``: where a single file's tokenizer came from (it is read from a copy)."""
    for tokenizer, encoder in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
        tok, enc = getattr(pipe, tokenizer, None), getattr(pipe, encoder, None)
        if tok is None:
            continue
        why = None
        try:
            tok("a photo")
        except Exception as exc:  # transformers raises a bare Exception for a missing token
            why = f"{type(exc).__name__}: {exc}"
        else:
            if tok.bos_token_id is None or tok.eos_token_id is None:
                why = "it has no start or end token"
        if why:
            raise UncropError(
                f"model: the {tokenizer} of {path} ({files or tok.name_or_path}) cannot read "
                f"a prompt ({why}); replace its vocab.json and merges.txt with a working copy."
            )
        positions = getattr(getattr(enc, "config", None), "max_position_embeddings", None)
        if positions and tok.model_max_length > positions:
            tok.model_max_length = int(positions)


# Loaded models by key, held weakly: a model lives as long as something holds it (in
# ComfyUI the loader's output in the node cache, so "Free model and node cache" frees it
# as it frees ComfyUI's own checkpoints; in a script its variable). The cache only lets
# two holders share one copy of the weights.
_cache: weakref.WeakValueDictionary[tuple, InpaintModel] = weakref.WeakValueDictionary()
_cache_lock = threading.Lock()


def file_stamp(path: str | os.PathLike | None) -> tuple:
    """What tells a file's or folder's contents apart, cheaply: the resolved path and
    each file's path, inode, size, modification and status-change times (None: no file).
    The change time catches a same-size fine-tune copied over with its date kept
    (``cp -p``), which the modification time alone misses (not on Windows, where that
    field is the creation time)."""
    if not path:
        return (None,)
    p = Path(path)
    if p.is_file():
        files = [p]
    else:  # os.walk follows a linked component folder, as loading does (rglob does not)
        files = sorted(Path(d, f) for d, _, names in os.walk(p, followlinks=True) for f in names)
    stats = ((f, f.stat()) for f in files if f.is_file())
    return (str(p.resolve()),) + tuple(
        (str(f), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) for f, st in stats
    )


def load_model(
    path: str | os.PathLike,
    *,
    controlnet: str | os.PathLike | None = None,
    dtype: torch.dtype | None = None,
    vae_tiling: bool = False,
    tokenizer_dir: str | os.PathLike | None = None,
) -> InpaintModel:
    """Load the model at ``path`` on the CPU, or share the weights of a load still held.

    The caller moves it to the device it samples on. Loads are shared by path, file
    dates and sizes, dtype and tokenizer for as long as any of them is held (nothing
    here keeps a model alive); each is a new :class:`InpaintModel`, so its
    ``vae_tiling`` is its own.
    """
    info = inspect_model(path)
    dtype = dtype or torch.float32
    key = (
        file_stamp(info.path),
        file_stamp(controlnet),
        dtype,
        str(tokenizer_dir),
    )
    with _cache_lock:
        shared = _cache.get(key)
    if shared is not None:
        return replace(shared, vae_tiling=vae_tiling, shares=shared)
    log.info("Loading %s", info.describe())
    try:
        pipe = _load_pipeline(info, dtype, tokenizer_dir)
    except UncropError:
        raise
    except Exception as exc:  # diffusers, transformers and safetensors each raise their own
        raise UncropError(f"model: could not load {info.path}: {exc}") from exc
    _refuse_missing_weights("model", info.path, pipe.components.items())
    _check_tokenizers(
        pipe, info.path, None if info.form == "diffusers" else find_clip_tokenizer(tokenizer_dir)
    )
    cn = None
    if controlnet:
        try:
            cn = load_controlnet(controlnet, dtype, pipe.unet.config)
        except UncropError:
            raise
        except Exception as exc:
            raise UncropError(f"controlnet: could not load {controlnet}: {exc}") from exc
        _refuse_missing_weights("controlnet", controlnet, [("controlnet", cn)])
    pipe.set_progress_bar_config(disable=True)
    shared = InpaintModel(info, pipe, dtype, cn, str(controlnet) if controlnet else None)
    with _cache_lock:
        _cache[key] = shared
    return replace(shared, vae_tiling=vae_tiling, shares=shared)


def clear_cache() -> None:
    """Forget every load: the next one reads the files again (the memory of those
    still held is freed once nothing holds them)."""
    with _cache_lock:
        _cache.clear()
