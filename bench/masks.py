"""Benchmark: mask operations on a 4K (3840x2160) mask.

    python bench/masks.py            # prints a markdown table

Median of 5 runs after one warm-up, with torch's default threads and with one
thread, on the device given by --device (default: cuda if available, else cpu).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from uncrop.core import masks


def timed(fn, device: torch.device, runs: int = 5) -> float:
    fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    # Sparse blobs: a realistic mask with many components and holes.
    mask = (torch.rand(1, 2160 // 8, 3840 // 8, generator=gen) > 0.97).float()
    mask = torch.nn.functional.interpolate(mask[None], size=(2160, 3840), mode="nearest")[0].to(
        device
    )
    cases = {
        "grow 5 px": lambda: masks.grow(mask, 5),
        "grow 50 px": lambda: masks.grow(mask, 50),
        "grow 200 px": lambda: masks.grow(mask, 200),
        "shrink 50 px": lambda: masks.grow(mask, -50),
        "feather 4 px": lambda: masks.feather(mask, 4),
        "feather 64 px": lambda: masks.feather(mask, 64),
        "fill holes": lambda: masks.fill_holes(mask),
        "remove specks < 500 px": lambda: masks.remove_specks(mask, 500),
    }
    default_threads = torch.get_num_threads()
    rows = []
    for name, fn in cases.items():
        torch.set_num_threads(default_threads)
        multi = timed(fn, device)
        torch.set_num_threads(1)
        single = timed(fn, device)
        rows.append((name, multi, single))
    torch.set_num_threads(default_threads)
    print(
        f"Machine: {platform.processor() or platform.machine()}, {default_threads} threads, device {device}; "
        f"torch {torch.__version__}, Python {platform.python_version()}\n"
    )
    print(f"| 3840x2160 mask | {default_threads} threads (s) | 1 thread (s) |")
    print("| --- | ---: | ---: |")
    for name, multi, single in rows:
        print(f"| {name} | {multi:.3f} | {single:.3f} |")


if __name__ == "__main__":
    main()
