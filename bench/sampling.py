"""Benchmark: diffusion inpainting of a fixed small hole, this pack's sampler vs diffusers'
``StableDiffusionInpaintPipeline`` on the whole image, with the tiny test model.

    OMP_NUM_THREADS=1 python3 bench/sampling.py   # prints a markdown table
    python3 bench/sampling.py --device cuda
    python3 bench/sampling.py --steps 4          # a shorter job: fixed costs weigh more

Each measurement runs in a fresh process so its peak memory (max RSS on the
CPU, ``torch.cuda.max_memory_allocated`` on a GPU) is its own. Not a test.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

SIZES = (512, 1024, 2048, 4096)
HOLE = 64  # px, centred
WHOLE_IMAGE_MAX = 512  # whole-image attention beyond this does not fit on a CPU (see README)


def _model_dir(work: Path) -> Path:
    import tiny_models

    folder = work / "tiny-sd-inpaint"
    if not (folder / "model_index.json").exists():
        tiny_models.save_folder(tiny_models.tiny_sd(work / "build", 9), folder)
    return folder


def _inputs(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, size, size, 3, generator=g)
    mask = torch.zeros(1, size, size)
    c = size // 2
    mask[:, c - HOLE // 2 : c + HOLE // 2, c - HOLE // 2 : c + HOLE // 2] = 1
    return image.to(device), mask.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(
    methods: list[str], size: int, steps: int, device: torch.device, model_dir: Path
) -> dict:
    """Timings in this process, the methods interleaved run by run: ``pack``, ``whole``
    (pipeline on the whole image) or ``bare`` (pipeline on exactly the window the pack
    samples, for the overhead). Returns ``{method: seconds}`` (best run), ``peak_mb``
    and ``copy_seconds`` (one copy of the image)."""
    from uncrop.core import models, sampling

    dtype = models.pick_dtype(device)
    model = models.load_model(model_dir, dtype=dtype).to(device)
    image, mask = _inputs(size, device)
    settings = sampling.SamplerSettings(prompt="a cat", steps=steps, guidance=7.0, prefill="edge")
    pipe = model.pipe
    # The same scheduler the pack uses, so only the pack's own work differs.
    pipe.scheduler = sampling.make_scheduler(model, settings.scheduler)
    gen = torch.Generator("cpu")

    def run(method: str) -> None:
        if method == "pack":
            sampling.inpaint(model, image, mask, settings)
        else:
            if method == "whole":
                img, m, h, w = image, mask, size, size
            else:  # the pack's window, same size and steps, no crop/paste/composite
                win = sampling.SampleWindow.around(
                    sampling.mask_box(mask[0]), size, size, model.native_size, model.size_multiple
                )
                ys, xs = win.slices
                img, m, h, w = image[:, ys, xs], mask[:, ys, xs], win.sample_h, win.sample_w
            pipe(
                prompt="a cat",
                image=img.movedim(-1, 1).to(dtype),
                mask_image=m[:, None].to(dtype),
                height=h,
                width=w,
                num_inference_steps=steps,
                guidance_scale=7.0,
                generator=gen.manual_seed(0),
                output_type="pt",
            )
        _sync(device)

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - start

    with torch.inference_mode():
        warm_up = max(timed(lambda m=m: run(m)) for m in methods)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(1 if warm_up > 10 else 7):
            for m in methods:
                times[m].append(timed(lambda m=m: run(m)))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The floor for any node that returns a new image of this size.
    copy = min(timed(image.clone) for _ in range(5))
    return {**{m: min(t) for m, t in times.items()}, "peak_mb": peak, "copy_seconds": copy}


def _child(methods: str, size: int, steps: int, device: str, model_dir: Path) -> dict | None:
    cmd = [sys.executable, __file__, "--one", methods, str(size), "--device", device]
    cmd += ["--steps", str(steps)]
    cmd += ["--model-dir", str(model_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from uncrop.core import sampling

    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--one", nargs=2, metavar=("METHODS", "SIZE"))
    parser.add_argument("--model-dir")
    parser.add_argument(
        "--no-whole", action="store_true", help="skip the (slow) whole-image pipeline cells"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=sampling.SamplerSettings.steps,
        help="denoising steps (default: the Inpaint node's default)",
    )
    args = parser.parse_args()
    if args.one:
        result = measure(
            args.one[0].split(","), int(args.one[1]), args.steps, torch.device(args.device),
            Path(args.model_dir),
        )  # fmt: skip
        print(json.dumps(result))
        return
    work = Path(tempfile.mkdtemp(prefix="uncrop-bench-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    model_dir = _model_dir(work)
    import diffusers

    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor()
    print(
        f"Device {args.device} ({gpu or platform.machine()}, {os.cpu_count()} CPUs), "
        f"torch {torch.__version__}, diffusers {diffusers.__version__}, "
        f"tiny SD inpaint model, {args.steps} steps, {HOLE} px hole, CFG on.\n"
    )
    print(
        "| image | pack time | one copy of the image | pack peak MB | whole-image time "
        "| whole-image peak MB |"
    )
    print("|---|---|---|---|---|---|")
    base = None
    for size in SIZES:
        pack = _child("pack", size, args.steps, args.device, model_dir)
        whole = (
            _child("whole", size, args.steps, args.device, model_dir)
            if size <= WHOLE_IMAGE_MAX and not args.no_whole
            else None
        )
        base = base or pack["pack"]
        w = f"{whole['whole']:.3f} s | {whole['peak_mb']:.0f}" if whole else "not run | -"
        print(
            f"| {size} px | {pack['pack']:.3f} s ({pack['pack'] / base:.2f}x) | "
            f"{pack['copy_seconds'] * 1000:.0f} ms | {pack['peak_mb']:.0f} | {w} |"
        )
    both = _child("pack,bare", 1024, args.steps, args.device, model_dir)
    overhead = (both["pack"] - both["bare"]) / both["bare"] * 100
    print(
        f"\nOverhead at 1024 px (same window, same steps, runs interleaved in one process): "
        f"pack {both['pack']:.3f} s, bare pipeline {both['bare']:.3f} s, "
        f"overhead {overhead:+.1f}%"
    )


if __name__ == "__main__":
    main()
