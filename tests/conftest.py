"""Shared fixtures: real photos, a way to call nodes as ComfyUI does, tiny inputs.

Without ``COMFYUI_PATH`` the nodes run against the stand-in API in
``tests/comfy_stub``; with it, against that ComfyUI checkout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
# Test helper modules (tiny model builders, the ComfyUI harness) import by name.
sys.path.insert(0, str(ROOT / "tests"))
if os.environ.get("COMFYUI_PATH"):
    import atexit
    import shutil
    import tempfile

    import comfy_harness

    _comfy_work = tempfile.mkdtemp(prefix="uncrop-comfy-")
    atexit.register(shutil.rmtree, _comfy_work, ignore_errors=True)
    comfy_harness.prepare_comfyui(os.environ["COMFYUI_PATH"], _comfy_work)
else:
    sys.path.insert(0, str(ROOT / "tests" / "comfy_stub"))


def _photo(name: str) -> torch.Tensor:
    from skimage import data

    arr = getattr(data, name)()
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return torch.from_numpy(arr[..., :3].astype(np.float32) / 255.0).unsqueeze(0)


_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=_CUDA)])
def device(request) -> torch.device:
    """Tests that take it run on the CPU and again on the GPU where there is one
    (never in CI: run the suite on a GPU machine to check the GPU paths)."""
    return torch.device(request.param)


@pytest.fixture(scope="session")
def astronaut() -> torch.Tensor:
    """512x512 RGB photo, ``[1,H,W,3]``."""
    return _photo("astronaut")


@pytest.fixture(scope="session")
def coffee() -> torch.Tensor:
    """400x600 RGB photo, ``[1,H,W,3]``."""
    return _photo("coffee")


@pytest.fixture(scope="session")
def brick() -> torch.Tensor:
    """512x512 grey brick wall texture as RGB, ``[1,H,W,3]``."""
    return _photo("brick")


@pytest.fixture(scope="session")
def overshooting(coffee) -> torch.Tensor:
    """A 128x128 crop of coffee upscaled 2x bicubic and left unclamped, as ComfyUI's
    Upscale Image (bicubic) leaves it: values a little past 0..1, ``[1,256,256,3]``."""
    crop = coffee[:, 150:278, 250:378].movedim(-1, 1)
    up = torch.nn.functional.interpolate(crop, scale_factor=2, mode="bicubic").movedim(1, -1)
    assert float(up.min()) < 0 or float(up.max()) > 1
    return up.contiguous()


def run_node(node_cls, **inputs):
    """Call a V3 node the way ComfyUI does: build the schema, then ``execute``.

    Missing optional inputs are left out and missing widget inputs take their
    schema defaults, as the editor would fill them in.
    """
    schema = node_cls.define_schema()
    kwargs = {}
    for inp in schema.inputs:
        if inp.id in inputs:
            kwargs[inp.id] = inputs.pop(inp.id)
        elif not inp.optional and getattr(inp, "default", None) is not None:
            kwargs[inp.id] = inp.default
    if inputs:
        raise TypeError(f"{schema.node_id} has no inputs {sorted(inputs)}")
    return node_cls.execute(**kwargs)


class ProgressRecorder:
    """A progress hook that records its updates and counts its checks, cancelling
    (``KeyboardInterrupt``) at check number ``stop``; 0 never cancels."""

    def __init__(self, stop: int = 0) -> None:
        self.stop, self.checks, self.updates = stop, 0, []

    def update(self, done: int, total: int, preview: torch.Tensor | None = None) -> None:
        self.updates.append((done, total))

    def check_interrupted(self) -> None:
        self.checks += 1
        if self.checks == self.stop:
            raise KeyboardInterrupt("cancelled")


class FillRecorder:
    """A fill method that notes where and how many images it was given (then returns
    them, on the CPU): a stand-in for a real method where only the hand-over is tested."""

    def __init__(self) -> None:
        self.calls = []

    def __call__(self, image, hole, source_mask=None, **_):
        self.calls.append((image.device, image.shape[0], hole.device, source_mask))
        return torch.zeros(image.shape)


class DeviceSpy:
    """Stands in for an engine function a node calls with ``device=``: notes the name,
    where its first argument is and the device asked, then runs the real function
    without the device (the CPU stands in for a GPU that nothing can be read back from,
    "meta" in the tests)."""

    def __init__(self) -> None:
        self.asked = []

    def __call__(self, real):
        def call(*args, device=None, **kwargs):
            self.asked.append((real.__name__, args[0].device, device))
            return real(*args, **kwargs)

        return call


def on_meta(monkeypatch, host) -> None:
    """Make ``host.torch_device()`` the "meta" device."""
    monkeypatch.setattr(host, "torch_device", lambda: torch.device("meta"))


def fingerprints_around_a_touch(path: Path, fingerprint) -> tuple:
    """``fingerprint()`` before and after ``path``'s date moves a second (then it is put
    back): what a node's ``fingerprint_inputs`` says when a file is replaced."""
    st = path.stat()
    before = fingerprint()
    try:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        return before, fingerprint()
    finally:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def use_models_dir(monkeypatch, path) -> None:
    """Make the host find models under ``path`` whether or not ComfyUI is loaded.

    The host's no-ComfyUI mode reads ``UNCROP_MODELS_DIR``; inside ComfyUI it asks
    ``folder_paths``, which the integration test exercises with real registrations.
    """
    from uncrop.nodes import host

    monkeypatch.setenv("UNCROP_MODELS_DIR", str(path))
    monkeypatch.setattr(host, "_folder_paths", lambda: None)


@pytest.fixture(scope="session")
def tree(tmp_path_factory):
    """Every tiny diffusion model family, built once per session (see tiny_models.py)."""
    import tiny_models

    return tiny_models.build_model_tree(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from more threads, and on a busy 2-core machine a
    second thread made single tests 10-70x slower. Use with ``pytestmark``."""
    import tiny_models

    with tiny_models.one_thread():
        yield
