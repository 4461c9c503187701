"""Benchmark: model-free fill methods against OpenCV, scikit-image and PatchMatch peers.

    pip install -e ".[bench]"
    python3 bench/fill.py --runs 3 --out /tmp/fill_results.md --sheet bench/fill_sheet.jpg

Real photos from ``skimage.data`` (astronaut, coffee) at longest side 512 and
1536; masks: centred rectangle 10%, free-form brush strokes ~15%, thin scratches
~3%, a centred 30% block, and an outpaint task (keep the middle 60% of the width).
The original is the ground truth. Metrics over the masked pixels: PSNR, SSIM
(mean of the SSIM map) and a texture ratio (mean |Laplacian| inside the fill over
that in an 8 px band around it: 1.0 = as detailed as the surroundings, a blur
scores near 0). Times: median of ``--runs`` runs (1 for runs over 5 s), one thread
(``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``); ``--threads`` adds a
default-threads timing of ours. Pattern: periodic textures tiled from crops of
real photos, outpaint task, period recovery checked against the tile size.

``--device cuda`` runs our methods on the GPU (the peers stay on the CPU): each
timing then follows one untimed warm-up run and includes the copies to the GPU and
back, as a ComfyUI node makes them.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from uncrop.core.fill import fill
from uncrop.core.pattern import estimate_period

TASKS = ("rect10", "brush15", "scratch3", "block30", "outpaint")


def make_masks(h: int, w: int, seed: int = 0) -> dict[str, np.ndarray]:
    import cv2

    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    m = np.zeros((h, w), bool)
    rh, rw = int(h * 0.316), int(w * 0.316)
    m[(h - rh) // 2 : (h - rh) // 2 + rh, (w - rw) // 2 : (w - rw) // 2 + rw] = True
    out["rect10"] = m
    scale = max(h, w) / 512

    def strokes(target: float, lo: float, hi: float, n_pts: int) -> np.ndarray:
        s = np.zeros((h, w), np.uint8)
        while s.mean() < target:
            pts = [rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h])]
            for _ in range(n_pts):
                a, length = rng.uniform(0, 2 * np.pi), rng.uniform(20, 60) * scale
                step = length * np.array([np.cos(a), np.sin(a)])
                pts.append(np.clip(pts[-1] + step, 0, [w - 1, h - 1]))
            width = max(1, int(round(rng.uniform(lo, hi) * scale)))
            cv2.polylines(s, [np.array(pts, np.int32)], False, 1, width)
        return s.astype(bool)

    out["brush15"] = strokes(0.15, 12, 28, 6)
    out["scratch3"] = strokes(0.03, 2, 4, 4)
    m = np.zeros((h, w), bool)
    bh, bw = int(h * 0.548), int(w * 0.548)
    m[(h - bh) // 2 : (h - bh) // 2 + bh, (w - bw) // 2 : (w - bw) // 2 + bw] = True
    out["block30"] = m
    m = np.zeros((h, w), bool)
    k = int(round(w * 0.2))
    m[:, :k] = True
    m[:, w - k :] = True
    out["outpaint"] = m
    return out


def photo(name: str, size: int) -> np.ndarray:
    from skimage import data, transform

    arr = getattr(data, name)()
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    arr = arr[..., :3].astype(np.float32) / 255
    if max(arr.shape[:2]) != size:
        s = size / max(arr.shape[:2])
        shape = (round(arr.shape[0] * s), round(arr.shape[1] * s))
        arr = transform.resize(arr, shape, order=3, anti_aliasing=s < 1).astype(np.float32)
    return np.clip(arr, 0, 1)


def tiled(name: str, tile: tuple[int, int], size: int) -> np.ndarray:
    """A periodic texture: a crop of a real photo repeated to fill the frame."""
    base = photo(name, 512)
    th, tw = tile
    y0, x0 = base.shape[0] // 3, base.shape[1] // 3
    crop = base[y0 : y0 + th, x0 : x0 + tw]
    reps = (size // th + 1, size // tw + 1, 1)
    return np.tile(crop, reps)[:size, :size].copy()


# ---- methods: image float32 [H,W,3] 0..1, mask bool [H,W] -> filled float32 image

DEVICE = torch.device("cpu")  # where ours run (--device); the peers run on the CPU


def ours(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def run(img: np.ndarray, m: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(img)[None].to(DEVICE)
        mm = torch.from_numpy(m.astype(np.float32))[None].to(DEVICE)
        return fill(t, mm, method, seed=0)[0].cpu().numpy()

    return run


def cv2_inpaint(flag_name: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def run(img: np.ndarray, m: np.ndarray) -> np.ndarray:
        import cv2

        u8 = (img * 255 + 0.5).astype(np.uint8)
        out = cv2.inpaint(u8, m.astype(np.uint8), 3, getattr(cv2, flag_name))
        return out.astype(np.float32) / 255

    return run


def biharmonic(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    return np.clip(inpaint_biharmonic(img, m, channel_axis=-1), 0, 1).astype(np.float32)


def pypatchmatch(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    from patchmatch import patch_match

    u8 = (img * 255 + 0.5).astype(np.uint8)
    out = patch_match.inpaint(u8, m.astype(np.uint8) * 255, patch_size=3)
    return out.astype(np.float32) / 255


def patchmatch_cython(img: np.ndarray, m: np.ndarray) -> np.ndarray:
    import patchmatch_cython as pmc

    u8 = (img * 255 + 0.5).astype(np.uint8)
    out = pmc.inpaint_pyramid(u8, m, seed=0)
    return out.astype(np.float32) / 255


METHODS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "uncrop smooth": ours("smooth"),
    "uncrop patch": ours("patch"),
    "cv2 TELEA r3": cv2_inpaint("INPAINT_TELEA"),
    "cv2 NS r3": cv2_inpaint("INPAINT_NS"),
    "skimage biharmonic": biharmonic,
    "pypatchmatch": pypatchmatch,
    "patchmatch-cython": patchmatch_cython,
}


# ---- metrics


def _laplace(img: np.ndarray) -> np.ndarray:
    g = img.mean(-1)
    p = np.pad(g, 1, mode="edge")
    return np.abs(4 * g - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:])


def metrics(truth: np.ndarray, out: np.ndarray, m: np.ndarray) -> tuple[float, float, float]:
    from scipy import ndimage
    from skimage.metrics import structural_similarity

    mse = float(((out[m] - truth[m]) ** 2).mean())
    psnr = 10 * np.log10(1 / max(mse, 1e-12))
    _s, smap = structural_similarity(truth, out, channel_axis=-1, data_range=1.0, full=True)
    ssim = float(smap.mean(-1)[m].mean())
    band = ndimage.binary_dilation(m, iterations=8) & ~m
    lap = _laplace(out)
    texture = float(lap[m].mean() / max(lap[band].mean(), 1e-9))
    return psnr, ssim, texture


def timed(fn: Callable[[], np.ndarray], runs: int, warm: bool = False) -> tuple[float, np.ndarray]:
    """Median time of ``runs`` calls (after one untimed call if ``warm``) and the output."""
    if warm:
        fn()
    times, out = [], None
    for i in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
        if i == 0 and times[0] > 5:
            break
    return statistics.median(times), out


def set_threads(n: int | None, default: int) -> None:
    import cv2

    torch.set_num_threads(n or default)
    cv2.setNumThreads(n or -1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="512,1536")
    ap.add_argument("--photos", default="astronaut,coffee")
    ap.add_argument("--photos-large", default="astronaut", help="photos also run at size > 512")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--tasks", default=",".join(TASKS), help="subset of the mask tasks to run")
    ap.add_argument("--no-pattern", action="store_true", help="skip the pattern-texture section")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", action="store_true", help="also time ours with default threads")
    ap.add_argument("--out", default="fill_results.md", help="markdown tables to write")
    ap.add_argument(
        "--sheet",
        default=str(Path(__file__).with_name("fill_sheet.jpg")),
        help="contact sheet to write (default: the one beside this script; '' for none)",
    )
    ap.add_argument("--device", default="cpu", help="where ours run: cpu or cuda")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    on_gpu = DEVICE.type == "cuda"
    default_threads = torch.get_num_threads()
    names = [m for m in args.methods.split(",") if m]
    tasks = [t for t in args.tasks.split(",") if t]
    for given, known, what in ((names, METHODS, "--methods"), (tasks, TASKS, "--tasks")):
        unknown = [x for x in given if x not in known]
        if unknown:
            ap.error(f"{what}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    gpu = f"; ours on {torch.cuda.get_device_name(DEVICE)}" if on_gpu else ""
    # with --device cuda ours run on the GPU, the peers still on one CPU thread
    time_col = "time: ours GPU, peers 1 thread (s)" if on_gpu else "time 1 thread (s)"
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"default torch threads; Python {platform.python_version()}, torch {torch.__version__}"
        + gpu,
        "",
        f"| method | task | size | {time_col} | PSNR | SSIM | texture |",
        "|---|---|---|---|---|---|---|",
    ]
    sheet_rows: list[list[np.ndarray]] = []
    for size in [int(s) for s in args.sizes.split(",")]:
        photos = args.photos.split(",") if size <= 512 else args.photos_large.split(",")
        for name in photos:
            img = photo(name, size)
            masks = make_masks(*img.shape[:2])
            for task in tasks:
                m = masks[task]
                row = [np.where(m[..., None], 0.5, img)]
                for method in names:
                    set_threads(1, default_threads)
                    warm = on_gpu and method.startswith("uncrop")
                    try:
                        t, out = timed(lambda: METHODS[method](img, m), args.runs, warm)  # noqa: B023
                    except Exception as exc:  # a peer that fails is reported, not fatal
                        lines.append(f"| {method} | {task} | {size} {name} | failed: {exc} | | | |")
                        row.append(np.zeros_like(img))
                        continue
                    out = np.where(m[..., None], out, img)
                    p, s, tex = metrics(img, out, m)
                    extra = ""
                    if args.threads and method.startswith("uncrop"):
                        set_threads(None, default_threads)
                        t_all, _ = timed(lambda: METHODS[method](img, m), args.runs)  # noqa: B023
                        extra = f" ({t_all:.3f} all threads)"
                    lines.append(
                        f"| {method} | {task} | {size} {name} | {t:.3f}{extra} | {p:.2f} | "
                        f"{s:.3f} | {tex:.2f} |"
                    )
                    print(lines[-1], flush=True)
                    row.append(out)
                if size == 512 and task in ("brush15", "outpaint"):
                    sheet_rows.append(row)
    set_threads(1, default_threads)
    if not args.no_pattern:
        lines += pattern_section(args.runs, on_gpu, time_col)
    Path(args.out).write_text("\n".join(lines) + "\n")
    if args.sheet and sheet_rows:
        contact_sheet(sheet_rows, ["masked"] + names, args.sheet)


def pattern_section(runs: int, warm: bool, time_col: str) -> list[str]:
    lines = [
        "",
        f"| texture | tile (h, w) | found period | method | {time_col} | PSNR | SSIM | texture |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, tile in (("brick", (37, 29)), ("coffee", (41, 53)), ("astronaut", (23, 61))):
        for size in (512, 1536):
            img = tiled(name, tile, size)
            m = make_masks(size, size)["outpaint"]
            period = estimate_period(torch.from_numpy(img), torch.from_numpy(~m))
            found = "none" if period is None else f"{period.first} {period.second}"
            for method in ("pattern", "patch"):
                t, out = timed(lambda: ours(method)(img, m), runs, warm)  # noqa: B023
                p, s, tex = metrics(img, out, m)
                lines.append(
                    f"| {name} {size} | {tile} | {found} | {method} | {t:.3f} | "
                    f"{min(p, 99):.2f} | {s:.3f} | {tex:.2f} |"
                )
                print(lines[-1], flush=True)
    return lines


def contact_sheet(rows: list[list[np.ndarray]], titles: list[str], path: str) -> None:
    from PIL import Image, ImageDraw

    cell = 200  # a column's width; each row is as high as its photo at that width
    tiles = []
    for row in rows:
        tiles.append([Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)) for img in row])
        for tile in tiles[-1]:
            tile.thumbnail((cell, cell))
    heights = [max(t.height for t in row) for row in tiles]
    sheet = Image.new("RGB", (cell * len(titles), 16 + sum(heights)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, title in enumerate(titles):
        draw.text((j * cell + 3, 2), title, fill="black")
    top = 16
    for row, height in zip(tiles, heights, strict=True):
        for j, tile in enumerate(row):
            sheet.paste(tile, (j * cell, top))
        top += height
    sheet.save(path, quality=85)


if __name__ == "__main__":
    main()
