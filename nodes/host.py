"""What ComfyUI provides to the pack, in one place, with fallbacks outside ComfyUI.

Nodes reach ComfyUI's services (devices, progress bar, cancel button, model
folders, input folder) only through this module. Each function works without
ComfyUI too, with sensible defaults, so the nodes can be unit-tested and the
same code paths run from scripts.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core import caption as captioning
from ..core import models

log = logging.getLogger("uncrop")

PREVIEW_MAX_SIZE = 512


def _comfy_mm():
    try:
        import comfy.model_management as mm
    except ImportError:
        return None
    return mm


def _folder_paths():
    try:
        import folder_paths
    except ImportError:
        return None
    return folder_paths


def torch_device() -> torch.device:
    """The device heavy work runs on: ComfyUI's choice, else CUDA, MPS or CPU."""
    mm = _comfy_mm()
    return mm.get_torch_device() if mm is not None else models.default_device()


def model_dtype(requested: str, device: torch.device) -> torch.dtype:
    """The dtype a diffusion model loads in on ``device``: ``requested``, and for auto
    ComfyUI's own choice (its --force-fp16 and --force-fp32 flags, bf16 only on cards
    that run it natively, fp32 on those whose fp16 is broken), else the engine's."""
    mm = _comfy_mm()
    if requested != "auto" or mm is None or device.type == "cpu":
        return models.pick_dtype(device, requested)
    if mm.should_use_bf16(device):
        return torch.bfloat16
    return torch.float16 if mm.should_use_fp16(device) else torch.float32


def caption_dtype(device: torch.device) -> torch.dtype:
    """The dtype a captioner loads in on ``device``: fp16 where ComfyUI would run a model
    in fp16 (so --force-fp32 and cards whose fp16 is broken get fp32), else fp32; the
    engine's choice outside ComfyUI and on the CPU."""
    mm = _comfy_mm()
    if mm is None or device.type == "cpu":
        return captioning.default_dtype(device)
    return torch.float16 if mm.should_use_fp16(device) else torch.float32


def clip_tokenizer_dir() -> str | None:
    """ComfyUI's own copy of the CLIP tokenizer files (``comfy/sd1_tokenizer``), if any."""
    try:
        spec = importlib.util.find_spec("comfy")
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location) / "sd1_tokenizer"
        if folder.is_dir():
            return str(folder)
    return None


def intermediate_device() -> torch.device:
    """Where node outputs live between nodes (the CPU in ComfyUI's default setup)."""
    mm = _comfy_mm()
    return mm.intermediate_device() if mm is not None else torch.device("cpu")


def node_output(t: torch.Tensor) -> torch.Tensor:
    """An IMAGE or MASK as nodes hand it on: float32 (what ComfyUI's nodes expect, whatever
    came in) on the intermediate device."""
    return t.to(intermediate_device(), torch.float32)


def offload_device() -> torch.device:
    """Where idle models are parked."""
    mm = _comfy_mm()
    return mm.unet_offload_device() if mm is not None else torch.device("cpu")


def check_interrupted() -> None:
    """Raise ComfyUI's interruption exception if the user pressed cancel."""
    mm = _comfy_mm()
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


def _preview(image: torch.Tensor) -> tuple[str, Image.Image, int]:
    arr = (image[0, ..., :3].detach().float().cpu().clamp(0, 1).numpy() * 255).astype(np.uint8)
    return ("JPEG", Image.fromarray(arr), PREVIEW_MAX_SIZE)


class Progress:
    """ComfyUI's progress bar (with live preview) and cancel button as a ProgressHook."""

    def __init__(self, node_id: str | None = None):
        self._bar = None
        try:
            import comfy.utils

            # The total arrives with every update: the core knows it once it has planned.
            self._bar = comfy.utils.ProgressBar(1, node_id=node_id)
        except ImportError:
            pass

    def update(self, done: int, total: int, preview: torch.Tensor | None = None) -> None:
        if self._bar is not None:
            self._bar.update_absolute(
                done, total, _preview(preview) if preview is not None else None
            )

    def check_interrupted(self) -> None:
        check_interrupted()


@functools.cache
def _schema_fields() -> frozenset[str]:
    from comfy_api.latest import io

    return frozenset(inspect.signature(io.Schema).parameters)


def search_aliases(*words: str) -> dict[str, list[str]]:
    """``io.Schema`` keywords naming other words the node search finds the node by.

    ComfyUI after 0.8.0 takes ``search_aliases``; 0.8.0 and older refuse the keyword,
    so there it is left out (spread the result into ``io.Schema``).
    """
    return {"search_aliases": list(words)} if "search_aliases" in _schema_fields() else {}


def show_text(node, text: str) -> None:
    """Write ``text`` on ``node`` (a running V3 node class with ``io.Hidden.unique_id``)
    in the editor, as ComfyUI's Get Image Size does. The ``ui`` text a node returns goes
    to the history (API users read it there), but the editor draws it only for nodes
    that ship a script of their own."""
    node_id = getattr(node.hidden, "unique_id", None) if node.hidden is not None else None
    try:
        from server import PromptServer
    except ImportError:
        return
    server = getattr(PromptServer, "instance", None)
    if node_id is not None and server is not None:
        server.send_progress_text(text, node_id)


def input_directory() -> str:
    fp = _folder_paths()
    return fp.get_input_directory() if fp is not None else os.path.abspath("input")


def provide_input_files(files: list[Path]) -> list[str]:
    """Copy each file into the input folder under its own name where no file of that name
    is there (one is never replaced); return the names copied. A folder that cannot be
    written to is logged, not raised: the pack still loads. Outside ComfyUI there is no
    input folder to provide for, and nothing is copied."""
    if _folder_paths() is None:
        return []
    folder = input_directory()
    copied = []
    for source in files:
        target = os.path.join(folder, source.name)
        if os.path.lexists(target):
            continue
        try:
            os.makedirs(folder, exist_ok=True)
            shutil.copyfile(source, target)
        except OSError as exc:
            log.warning(
                "Uncrop: could not copy %s into the input folder %s (%s); copy it there from "
                "%s to run the example workflows as they are.", source.name, folder, exc,
                source.parent,
            )  # fmt: skip
            continue
        copied.append(source.name)
    if copied:
        log.info("Uncrop: copied %s into %s for the example workflows.", ", ".join(copied), folder)
    return copied


def input_files(content: str = "image") -> list[str]:
    """Files in the input folder, as LoadImage lists them."""
    folder = input_directory()
    if not os.path.isdir(folder):
        return []
    files = [f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f))]
    fp = _folder_paths()
    if fp is not None:
        files = fp.filter_files_content_types(files, [content])
    return sorted(files)


def input_file_path(name: str) -> tuple[str, str]:
    """Split ComfyUI's annotated name (``a.png [output]``) into (folder, filename)."""
    fp = _folder_paths()
    if fp is not None:
        filename, base = fp.annotated_filepath(name)
        return base or input_directory(), filename
    return input_directory(), name


def _default_models_dir() -> str:
    fp = _folder_paths()
    if fp is not None:
        return fp.models_dir
    return os.environ.get("UNCROP_MODELS_DIR", os.path.abspath("models"))


def register_model_folder(name: str, extensions: set[str] | None = None) -> None:
    """Make ``models/<name>`` a ComfyUI model folder, keeping what others registered.

    If another pack or ``extra_model_paths.yaml`` already registered ``name``, our
    default path and extensions are added to theirs instead of replacing them.
    """
    fp = _folder_paths()
    if fp is None:
        return
    default = os.path.join(fp.models_dir, name)
    exts = set(extensions or ())
    if name in fp.folder_names_and_paths:
        paths, known = fp.folder_names_and_paths[name]
        if default not in paths:
            paths.append(default)
        if exts:
            merged = set(known) | exts
            fp.folder_names_and_paths[name] = (paths, merged)
    else:
        fp.folder_names_and_paths[name] = ([default], exts)


def model_folders(name: str) -> list[str]:
    """Every folder registered for ``name``."""
    fp = _folder_paths()
    if fp is not None and name in fp.folder_names_and_paths:
        return list(fp.get_folder_paths(name))
    return [os.path.join(_default_models_dir(), name)]


def list_model_dirs(name: str) -> list[str]:
    """Sub-folders (diffusers-style models) found in the ``name`` model folders."""
    found: set[str] = set()
    for root in model_folders(name):
        if os.path.isdir(root):
            found.update(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    return sorted(found)


def list_model_files(name: str) -> list[str]:
    fp = _folder_paths()
    if fp is not None and name in fp.folder_names_and_paths:
        return list(fp.get_filename_list(name))
    found: list[str] = []
    for root in model_folders(name):
        base = Path(root)
        if base.is_dir():
            found.extend(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
    return sorted(found)


def model_path(name: str, entry: str) -> str | None:
    """Full path of a file or folder ``entry`` in the ``name`` model folders; None for an
    empty ``entry`` (a linked or API value), which would name the folder itself, and for
    one that leaves the folders (an absolute path, ``..``). The name is read as written,
    as ComfyUI reads its own: a model linked in from elsewhere is found."""
    if not entry.strip():
        return None
    normal = os.path.normpath(entry)
    if os.path.isabs(normal) or normal == os.pardir or normal.startswith(os.pardir + os.sep):
        return None
    for root in model_folders(name):
        candidate = os.path.join(root, entry)
        if os.path.exists(candidate):
            return candidate
    return None


def load_to_device(modules: torch.nn.Module, holder: dict) -> torch.device:
    """Put a model's weights on the sampling device through ComfyUI's memory management.

    Inside ComfyUI the weights are wrapped once in a ``ModelPatcher`` (kept in
    ``holder``) and loaded with ``load_models_gpu``: other models are freed first
    when memory is short, and ComfyUI's "unload models" and later memory pressure
    move ours back to the offload device like any other model. Outside ComfyUI the
    weights simply move to :func:`torch_device`.
    """
    mm = _comfy_mm()
    if mm is None:
        device = torch_device()
        modules.to(device)
        return device
    import comfy.model_patcher

    patcher = holder.get("patcher")
    if patcher is None:
        patcher = comfy.model_patcher.ModelPatcher(
            modules, load_device=mm.get_torch_device(), offload_device=mm.unet_offload_device()
        )
        holder["patcher"] = patcher
    mm.load_models_gpu([patcher], force_full_load=True)
    return patcher.load_device


def latent_previewer(base: str):
    """A function turning SD/SDXL latents ``[1,4,h,w]`` into a preview IMAGE, using
    ComfyUI's latent-to-RGB factors; None outside ComfyUI or when previews are off."""
    try:
        import comfy.latent_formats as formats
        from comfy.cli_args import LatentPreviewMethod, args
    except ImportError:
        return None
    if args.preview_method == LatentPreviewMethod.NoPreviews:
        return None
    fmt = formats.SDXL() if base == "sdxl" else formats.SD15()
    factors = torch.tensor(fmt.latent_rgb_factors)
    bias = torch.tensor(fmt.latent_rgb_factors_bias or [0.0, 0.0, 0.0])

    def preview(latents: torch.Tensor) -> torch.Tensor:
        lat = latents[:1].float().cpu()
        rgb = torch.einsum("bchw,cr->bhwr", lat, factors) + bias
        return ((rgb + 1.0) / 2.0).clamp(0, 1)

    return preview
