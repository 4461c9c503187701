"""Pattern extension internals: the lattice fill against its plain definition."""

from __future__ import annotations

import pytest
import torch

from uncrop.core.pattern import Period, extend_pattern

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
