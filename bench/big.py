"""Benchmark: the model-free fill on a 4K frame, time and peak memory.

    python3 bench/big.py [--size 4096] [--methods smooth,patch] [--device cpu]

The astronaut photo from ``skimage.data`` scaled to ``--size``, with the fill
benchmark's brush strokes (``brush15``, strokes 48-112 px wide at 4096), wide
strokes over 30 % of the frame (``wide30``, 150-240 px wide: one box of several
million hole pixels), a fence to remove (``fence``: wires 12 px wide every 48 px
at 4096, both ways, 44 % of the frame, one thin hole) and its outpaint task (keep
the middle 60 % of the width).
Each row runs once in its own process, one torch thread, so its peak memory (max
RSS, or the CUDA allocator's peak on a GPU) is its own.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fill import make_masks, photo  # noqa: E402

MASKS = ("brush15", "wide30", "fence", "outpaint")


def wide_strokes(h: int, w: int, seed: int = 1) -> np.ndarray:
    """Strokes 150-240 px wide (at any size: this is a 4K user's big brush) over 30 %."""
    import cv2

    rng = np.random.default_rng(seed)
    s = np.zeros((h, w), np.uint8)
    while s.mean() < 0.3:
        pts = [rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h])]
        for _ in range(5):
            a, length = rng.uniform(0, 2 * np.pi), rng.uniform(300, 900)
            step = length * np.array([np.cos(a), np.sin(a)])
            pts.append(np.clip(pts[-1] + step, 0, [w - 1, h - 1]))
        cv2.polylines(s, [np.array(pts, np.int32)], False, 1, int(rng.uniform(150, 240)))
    return s.astype(bool)


def fence(h: int, w: int) -> np.ndarray:
    """Wires 12 px wide every 48 px at 4096 (scaled with the frame), both ways."""
    period = max(4, round(48 * max(h, w) / 4096))
    wire = max(1, period // 4)
    at_y = (np.arange(h) + period // 2) % period < wire
    at_x = (np.arange(w) + period // 2) % period < wire
    return at_y[:, None] | at_x[None, :]


def run_row(method: str, mask_name: str, size: int, device: str) -> dict:
    from uncrop.core.fill import fill

    torch.set_num_threads(1)
    img = photo("astronaut", size)
    h, w = img.shape[:2]
    if mask_name in ("wide30", "fence"):
        m = wide_strokes(h, w) if mask_name == "wide30" else fence(h, w)
    else:
        m = make_masks(h, w)[mask_name]
    dev = torch.device(device)
    image = torch.from_numpy(img)[None].to(dev)
    mask = torch.from_numpy(m.astype(np.float32))[None].to(dev)
    if dev.type == "cuda":  # a warm process, as ComfyUI's after its first job: CUDA set up
        fill(image[:, :256, :256], mask[:, :256, :256], method, seed=0)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = fill(image, mask, method, seed=0)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    keep = torch.from_numpy(~m).to(dev)
    assert torch.equal(out[0][keep], image[0][keep])
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return {"seconds": seconds, "peak_gib": peak, "hole": float(m.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--methods", default="smooth,patch")
    ap.add_argument("--masks", default=",".join(MASKS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--row", help=argparse.SUPPRESS)  # method,mask: one row, as JSON
    args = ap.parse_args()
    if args.row:
        method, mask_name = args.row.split(",")
        print(json.dumps(run_row(method, mask_name, args.size, args.device)))
        return
    peak = "peak GPU memory (GiB)" if args.device.startswith("cuda") else "peak RSS (GiB)"
    lines = [
        f"Fill at {args.size} px, astronaut, one torch thread, device {args.device}; "
        f"{platform.machine()}, Python {platform.python_version()}, torch {torch.__version__}.",
        "",
        f"| method | mask | hole | time (s) | {peak} |",
        "|---|---|---|---|---|",
    ]
    for method in args.methods.split(","):
        for mask_name in args.masks.split(","):
            cmd = [sys.executable, __file__, "--row", f"{method},{mask_name}"]
            cmd += ["--size", str(args.size), "--device", args.device]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(done.stdout.strip().splitlines()[-1])
            lines.append(
                f"| {method} | {mask_name} | {r['hole']:.0%} | {r['seconds']:.1f} "
                f"| {r['peak_gib']:.2f} |"
            )
            print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
