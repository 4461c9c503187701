"""core/pattern.py: the period estimate, and the lattice fill against its plain definition."""

from __future__ import annotations

import pytest
import torch
from conftest import ProgressRecorder

from uncrop.core.pattern import Period, estimate_period, extend_pattern

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _by_definition(image: torch.Tensor, hole: torch.Tensor, steps: list[tuple[int, int]]):
    """Pass after pass, step after step: every missing pixel whose pixel one step on is
    filled or known copies it (extend_pattern looks only at the newly filled ones)."""
    h, w, _ = image.shape
    out, missing = image.clone(), hole.clone()
    while True:
        changed = False
        for sy, sx in steps:
            # Sources as they were before this step: a pixel it fills is not yet one.
            ready = [
                (y, x)
                for y, x in torch.nonzero(missing).tolist()
                if 0 <= y + sy < h and 0 <= x + sx < w and not missing[y + sy, x + sx]
            ]
            for y, x in ready:
                out[y, x] = out[y + sy, x + sx]
                missing[y, x] = False
            changed |= bool(ready)
        if not changed:
            return out, missing


@pytest.mark.parametrize("seed", range(8))
def test_lattice_fill_is_the_pass_by_pass_copy(seed: int) -> None:
    """Scattered holes, bands several steps deep, and (seeds 6, 7) a fine lattice over
    a wide band, where most passes look from the pixels the last one filled."""
    gen = torch.Generator().manual_seed(seed)
    h, w = 23 + seed, 31 - seed
    image = torch.rand(h, w, 3, generator=gen)
    hole = torch.rand(h, w, generator=gen) < 0.2 + 0.12 * (seed % 6)
    if seed % 2:
        hole[:, :9] = True  # a band, several lattice steps deep
    a, b = ((2, -3), (1, 4)) if seed < 6 else ((0, 2), (3, 1))
    if seed >= 6:
        hole[:, -14:] = True
    if seed == 5:  # one vector: some pixels stay unreachable
        steps, period = [a, (-a[0], -a[1])], Period(a, None, 0.9)
    else:
        ab, a_b = (a[0] + b[0], a[1] + b[1]), (a[0] - b[0], a[1] - b[1])
        steps = [
            a,
            (-a[0], -a[1]),
            b,
            (-b[0], -b[1]),
            ab,
            (-ab[0], -ab[1]),
            a_b,
            (-a_b[0], -a_b[1]),
        ]
        period = Period(a, b, 0.9)
    out, left = extend_pattern(image, hole, period)
    want, want_left = _by_definition(image, hole, steps)
    assert torch.equal(left, want_left)
    assert torch.equal(out, want)
    assert bool(hole.any()) and torch.equal(out[~hole], image[~hole])


def test_extending_stops_between_passes_at_cancel() -> None:
    # A 60 px band of a 4 px period takes 15 passes; Cancel is asked before each.
    image = torch.rand(32, 96, 3, generator=torch.Generator().manual_seed(0))
    hole = torch.zeros(32, 96, dtype=torch.bool)
    hole[:, 36:] = True
    out, left = extend_pattern(image, hole, Period((0, 4), None, 0.9))
    assert not bool(left.any())  # as it runs to the end uncancelled
    hook = ProgressRecorder(stop=3)
    with pytest.raises(KeyboardInterrupt):
        extend_pattern(image, hole, Period((0, 4), None, 0.9), progress=hook)
    assert hook.checks == 3


def test_recovers_the_period_of_a_tiling() -> None:
    tile = torch.rand(13, 21, 3, generator=torch.Generator().manual_seed(0))
    image = tile.repeat(13, 12, 1)[:160, :240].unsqueeze(0)
    known = torch.ones(160, 240, dtype=torch.bool)
    known[:, :48] = False
    known[:, 192:] = False
    period = estimate_period(image[0], known)
    assert period is not None
    vectors = {tuple(abs(v) for v in period.first), tuple(abs(v) for v in period.second)}
    assert vectors == {(13, 0), (0, 21)}


def test_pattern_recovers_a_sheared_lattice_on_an_odd_frame() -> None:
    """Rows of 12 px tiles, each row shifted 7 px: the shortest period, (12, -7), points
    left. The frame's padded sizes (157 and 233 px sides) have large prime factors."""
    gen = torch.Generator().manual_seed(5)
    tile = torch.rand(12, 20, 3, generator=gen)
    yy, xx = torch.meshgrid(torch.arange(157), torch.arange(233), indexing="ij")
    image = tile[yy % 12, (xx + (yy // 12) * 7) % 20]
    known = torch.ones(157, 233, dtype=torch.bool)
    known[:, :47] = False
    known[:, 186:] = False
    period = estimate_period(image, known)
    assert period is not None and period.second is not None
    (ay, ax), (by, bx) = period.first, period.second
    # Both on the lattice {(12k, d): d = -7k mod 20}, and together spanning it.
    for dy, dx in (period.first, period.second):
        assert dy % 12 == 0 and (dx + dy // 12 * 7) % 20 == 0
    assert abs(ay * bx - ax * by) == 12 * 20
    assert period.first == (12, -7)


@pytest.mark.parametrize("shape", [(1, 40), (40, 1), (2, 2)])
def test_a_frame_without_lags_has_no_period(shape: tuple[int, int]) -> None:
    image = torch.rand(*shape, 3, generator=torch.Generator().manual_seed(0))
    assert estimate_period(image, torch.ones(shape, dtype=torch.bool)) is None


def test_a_gradient_has_no_period() -> None:
    """An 8-bit sky's quantisation steps and a ramp's mask edge are not a texture."""
    yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    known = torch.ones(256, 256, dtype=torch.bool)
    known[76:153, 76:179] = False
    sky = ((yy / 256 * 0.3 + 0.5) * 255).round() / 255
    ramp = 0.2 + 0.002 * yy + 0.001 * xx
    for grey in (sky, ramp):
        assert estimate_period(grey[..., None].expand(256, 256, 3), known) is None


@pytest.mark.parametrize("tile", [(48, 60), (60, 80)])
def test_finds_a_period_that_repeats_less_than_twice_across_the_known_box(
    tile: tuple[int, int],
) -> None:
    """A 96x120 known box: the periods are half of it or more (up to 3/4, where a
    shifted rectangle still overlaps itself on MIN_OVERLAP of its area)."""
    th, tw = tile
    pattern = torch.rand(th, tw, 3, generator=torch.Generator().manual_seed(3))
    image = pattern.repeat(2, 2, 1)[:96, :120]
    period = estimate_period(image, torch.ones(96, 120, dtype=torch.bool))
    assert period is not None and period.second is not None
    assert {period.first, period.second} == {(th, 0), (0, tw)}


def test_only_the_known_box_counts() -> None:
    """A tiling on a larger canvas, with another texture where nothing is known: the
    same lattice as the tiling alone (the estimate looks only inside the known box)."""
    gen = torch.Generator().manual_seed(4)
    tiling = torch.rand(11, 17, 3, generator=gen).repeat(8, 6, 1)[:80, :90]
    canvas = torch.rand(5, 7, 3, generator=gen).repeat(40, 40, 1)[:170, :250]
    canvas[37:117, 101:191] = tiling
    known = torch.zeros(170, 250, dtype=torch.bool)
    known[37:117, 101:191] = True
    known[50:60, 120:150] = False  # and a hole inside the box
    alone = estimate_period(tiling, known[37:117, 101:191])
    assert alone is not None and {alone.first, alone.second} == {(11, 0), (0, 17)}
    assert estimate_period(canvas, known) == alone


def test_a_photo_with_one_weak_lag_has_no_period(astronaut: torch.Tensor) -> None:
    """A 96 px crop of the astronaut's shoulder repeats only along one lag, (56, 17),
    at correlation 0.59: copied along it, the outpainted third came out with three
    times patch's squared error. One vector needs MIN_CORRELATION_ONE."""
    crop = astronaut[0, 48:144, 48:144]
    known = torch.ones(96, 96, dtype=torch.bool)
    known[:, 64:] = False
    assert estimate_period(crop, known) is None


def _stripes_and_their_double(seed: int, size: int = 256, period: int = 16) -> torch.Tensor:
    """Grey noise that repeats every ``period`` px along x (random along y), plus a
    faint part that flips sign every period, and noise: lag (0, 16) correlates about
    0.60-0.62, lag (0, 32) 0.66-0.67."""
    g = torch.Generator().manual_seed(seed)
    x = torch.arange(size)
    repeat = torch.randn(size, period, generator=g)[:, x % period]
    half = torch.randn(size, period, generator=g)
    flip = torch.cat([half, -half], 1)[:, x % (2 * period)]
    noise = torch.randn(size, size, generator=g)
    grey = 0.635**0.5 * repeat + 0.025**0.5 * flip + 0.34**0.5 * noise
    return (0.5 + 0.08 * grey).clamp(0, 1)[..., None].expand(-1, -1, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_lone_vector_is_judged_by_its_own_correlation(seed: int) -> None:
    """The shortest near-best lag is kept; a lone one must itself reach
    MIN_CORRELATION_ONE, not just its longer multiple (0.66 here, the kept 0.60)."""
    known = torch.ones(256, 256, dtype=torch.bool)
    assert estimate_period(_stripes_and_their_double(seed), known) is None
    g = torch.Generator().manual_seed(seed)
    clear = torch.randn(256, 16, generator=g)[:, torch.arange(256) % 16]
    period = estimate_period((0.5 + 0.08 * clear).clamp(0, 1)[..., None].expand(-1, -1, 3), known)
    assert period is not None and (period.first, period.second) == ((0, 16), None)
