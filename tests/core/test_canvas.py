import itertools

import pytest
import torch

from uncrop.core import canvas
from uncrop.core.errors import UncropError


@pytest.mark.parametrize("fit,anchor", list(itertools.product(canvas.FITS, canvas.ANCHORS)))
@pytest.mark.parametrize(
    "src,target", [((1000, 1500), (2000, 1000)), ((640, 480), (512, 512)), ((300, 200), (300, 200))]
)
def test_every_fit_and_anchor(fit, anchor, src, target):
    w, h = src
    plan = canvas.plan_target(w, h, *target, fit=fit, anchor=anchor, multiple_of=8)
    tw, th = (-(-target[0] // 8) * 8, -(-target[1] // 8) * 8)
    assert (plan.canvas_w, plan.canvas_h) == (tw, th)
    if fit == "stretch":
        assert (plan.scaled_w, plan.scaled_h, plan.x, plan.y) == (tw, th, 0, 0)
        return
    # aspect ratio of the image is kept
    assert abs(plan.scaled_w / plan.scaled_h - w / h) < 0.01
    if fit == "pad":
        assert plan.x >= 0 and plan.y >= 0
        assert plan.x + plan.scaled_w <= tw and plan.y + plan.scaled_h <= th
        assert plan.scaled_w == tw or plan.scaled_h == th  # fits one axis exactly
    else:
        assert plan.x <= 0 and plan.y <= 0
        assert plan.x + plan.scaled_w >= tw and plan.y + plan.scaled_h >= th
        assert not plan.adds_area
    free_x, free_y = tw - plan.scaled_w, th - plan.scaled_h
    expected_x = {"left": 0, "right": free_x}.get(
        next((a for a in ("left", "right") if a in anchor), ""), round(free_x / 2)
    )
    expected_y = {"top": 0, "bottom": free_y}.get(
        next((a for a in ("top", "bottom") if a in anchor), ""), round(free_y / 2)
    )
    assert (plan.x, plan.y) == (expected_x, expected_y)


def test_api_example_portrait_to_landscape():
    plan = canvas.plan_target(1000, 1500, 2000, 1000, fit="pad", anchor="center", multiple_of=8)
    assert (plan.scaled_w, plan.scaled_h) == (667, 1000)
    assert (plan.left, plan.right, plan.top, plan.bottom) == (666, 667, 0, 0)


@pytest.mark.parametrize("multiple", [1, 8, 64])
def test_margins_px_rounding_goes_to_grown_sides(multiple):
    plan = canvas.plan_margins(500, 300, left=10, right=30, multiple_of=multiple)
    assert plan.canvas_w % multiple == 0 and plan.canvas_h % multiple == 0
    assert plan.left >= 10 and plan.right >= 30
    assert plan.canvas_w - 500 - 40 < multiple
    assert plan.x == plan.left
    # an axis with no margins is rounded up evenly on both sides
    assert (plan.top, plan.bottom) == {1: (0, 0), 8: (2, 2), 64: (10, 10)}[multiple]


def test_margins_percent():
    plan = canvas.plan_margins(400, 200, left=25, top=50, unit="%", multiple_of=1)
    assert (plan.left, plan.top, plan.right, plan.bottom) == (100, 100, 0, 0)


def test_bad_geometry_errors():
    with pytest.raises(UncropError, match="left: expected a finite margin >= 0, got -1"):
        canvas.plan_margins(10, 10, left=-1)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(UncropError, match="top: expected a finite margin >= 0"):
            canvas.plan_margins(10, 10, top=bad)
    with pytest.raises(UncropError, match="unit"):
        canvas.plan_margins(10, 10, left=1, unit="cm")
    # a margin past the largest canvas is refused by name before rounding to an int
    # (1e308 % of 10 px is inf: round() raised OverflowError)
    with pytest.raises(UncropError, match=r"left: 1e\+308 % of 10 px is more than a canvas"):
        canvas.plan_margins(10, 10, left=1e308, unit="%")
    with pytest.raises(UncropError, match="bottom: 20000 px is more than a canvas side"):
        canvas.plan_margins(10, 10, bottom=20000)
    with pytest.raises(UncropError, match="fit: expected one of pad, crop, stretch"):
        canvas.plan_target(10, 10, 20, 20, fit="zoom")
    with pytest.raises(UncropError, match="anchor"):
        canvas.plan_target(10, 10, 20, 20, anchor="middle")
    with pytest.raises(UncropError, match="target size"):
        canvas.plan_target(10, 10, 0, 20)
    with pytest.raises(UncropError, match="multiple_of"):
        canvas.plan_target(10, 10, 20, 20, multiple_of=0)
    with pytest.raises(
        UncropError, match="image size: expected whole px, 1 or more a side, got 0x3"
    ):
        canvas.plan_target(0, 3, 5, 5)  # was a ZeroDivisionError
    # found by a fuzz: raw OverflowError, TypeError or ValueError (NaN passed the range
    # checks), or a plan for an image of -5 px
    for bad in (10**400, "8", True):
        with pytest.raises(UncropError, match="left: expected a finite margin >= 0"):
            canvas.plan_margins(10, 10, left=bad)
    for size in ((-5, 10), (0, 10), (10.5, 10)):
        with pytest.raises(UncropError, match="image size: expected whole px"):
            canvas.plan_margins(*size, left=8)
    with pytest.raises(
        UncropError, match="multiple_of: expected 1 or more, a whole number, got nan"
    ):
        canvas.plan_margins(10, 10, 8, multiple_of=float("nan"))
    with pytest.raises(UncropError, match="target size: nanx2.5 is outside 1..16384 whole px"):
        canvas.plan_target(160, 5, float("nan"), 2.5)
    assert canvas.plan_target(20000, 1000, 2048, 1024).scaled_w == 2048  # a panorama, down
    # 'crop' scales the whole image before cutting: a 1x1000 strip to cover 512x512 would
    # be 512x512000 px (6 GB), so it is refused by name; 'pad' of the same is fine.
    with pytest.raises(
        UncropError, match=r"fit: 'crop' would scale the 1x1000 image to 512x512000"
    ):
        canvas.plan_target(1, 1000, 512, 512, fit="crop")
    assert canvas.plan_target(1, 1000, 512, 512, fit="pad").scaled_h == 512
    assert canvas.plan_target(100, 1600, 1024, 1024, fit="crop").scaled_h == 16384  # at the limit


def test_expand_canvas_places_image_exactly(coffee):
    plan = canvas.plan_margins(600, 400, left=40, top=8, right=0, bottom=16, multiple_of=8)
    out, mask = canvas.expand_canvas(coffee, plan)
    assert out.shape == (1, plan.canvas_h, plan.canvas_w, 3) and mask.shape == (
        1,
        plan.canvas_h,
        plan.canvas_w,
    )
    assert torch.equal(out[:, plan.y : plan.y + 400, plan.x : plan.x + 600], coffee)
    assert mask[:, plan.y : plan.y + 400, plan.x : plan.x + 600].max() == 0
    assert mask.sum() == plan.canvas_w * plan.canvas_h - 600 * 400


def test_overlap_band_ramps_into_image_from_grown_sides_only():
    plan = canvas.plan_margins(40, 20, left=8, multiple_of=1)
    mask = canvas.outpaint_mask(plan, overlap=4)[0]
    row = mask[10]
    assert row[:8].tolist() == [1.0] * 8
    assert row[8:13].tolist() == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0])
    assert row[13:].max() == 0
    assert mask[0, 20:].max() == 0  # no band along the top: it was not grown


def test_crop_plan_crops_by_anchor(astronaut):
    plan = canvas.plan_target(512, 512, 512, 256, fit="crop", anchor="top", multiple_of=8)
    out, mask = canvas.expand_canvas(astronaut, plan)
    assert out.shape == (1, 256, 512, 3) and mask.max() == 0
    assert torch.equal(out, astronaut[:, :256])


@pytest.mark.parametrize(
    "target,channels",
    [((64, 300), 3), ((300, 64), 3), ((300, 64), 4), ((150, 150), 3), ((1, 97), 1)],
)
def test_a_crop_resamples_only_what_the_canvas_shows(monkeypatch, coffee, target, channels):
    """The whole image was scaled to cover the canvas, then cut: a 2x2 image cropped to an
    8x16384 canvas took 6.6 GB. Now each axis is cut right after its pass: the same
    pixels as scaling whole (to the bit when the width goes first, to float rounding
    when the height does), and nothing resampled much larger than the canvas."""
    image = coffee[..., :3] if channels in (3, 4) else coffee.mean(-1, keepdim=True)
    if channels == 4:
        image = torch.cat([image, torch.rand_like(image[..., :1]).round()], -1)
    h, w = image.shape[1:3]
    plan = canvas.plan_target(w, h, *target, fit="crop", anchor="bottom-right", multiple_of=1)
    ys, xs, sys_, sxs = canvas.known_region(plan)
    whole = canvas.resize_image(image, plan.scaled_w, plan.scaled_h)[:, sys_, sxs]
    out, _ = canvas.expand_canvas(image, plan)
    assert out.shape[1:3] == (target[1], target[0])
    width_first = (sxs.stop - sxs.start) / plan.scaled_w <= (sys_.stop - sys_.start) / plan.scaled_h
    if width_first:
        assert torch.equal(out, whole)
    else:  # RGBA's colour is divided by its alpha, where nearly transparent
        assert (out - whole).abs().max() < (1e-4 if channels == 4 else 1e-6)
    sizes = []
    interpolate = canvas.F.interpolate
    monkeypatch.setattr(
        canvas.F, "interpolate", lambda t, **kw: sizes.append(kw["size"]) or interpolate(t, **kw)
    )
    tiny = torch.rand(1, 2, 2, 3)
    plan = canvas.plan_target(2, 2, 8, 16384, fit="crop", multiple_of=8)
    assert (plan.scaled_w, plan.scaled_h) == (16384, 16384)
    out, _ = canvas.expand_canvas(tiny, plan)
    assert out.shape == (1, 16384, 8, 3)
    assert max(a * b for a, b in sizes) <= 16384 * 8


@pytest.mark.parametrize("w", [1, 2, 7])
def test_an_image_resized_to_1px_wide_keeps_its_column(w):
    """torch's antialiased bicubic repeated the first row down a 1 px wide output: a 10x1000
    image padded onto a 1x500 canvas came back one colour."""
    ramp = torch.linspace(0, 1, 400).view(1, 400, 1, 1).expand(1, 400, w, 3)
    out = canvas.resize_image(ramp.contiguous(), 1, 97)
    wide = canvas.resize_image(ramp[:, :, :1].expand(1, 400, 3, 3).contiguous(), 3, 97)
    if w == 1:
        assert torch.equal(out, wide[:, :, 1:2])
    assert (out - wide[:, :, 1:2]).abs().max() < 1e-6
    assert bool((out[0, 1:, 0, 0] > out[0, :-1, 0, 0]).all())
    plan = canvas.plan_target(10, 1000, 1, 500, fit="pad", multiple_of=1)
    column = torch.linspace(0, 1, 1000).view(1, 1000, 1, 1).expand(1, -1, 10, 3)
    placed, _ = canvas.expand_canvas(column, plan)
    ys, xs, _, _ = canvas.known_region(plan)
    assert (plan.scaled_w, ys.stop - ys.start) == (1, 100)
    shown = placed[0, ys, xs, 0].flatten()
    assert float(shown[-1] - shown[0]) > 0.9


def test_expand_canvas_refuses_other_size(coffee):
    plan = canvas.plan_margins(100, 100, left=8)
    with pytest.raises(UncropError, match="100x100"):
        canvas.expand_canvas(coffee, plan)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_resize_keeps_half_precision(dtype):
    # Computed in float32: the CPU has no half-precision antialiased bicubic.
    image = torch.rand(1, 30, 40, 3, generator=torch.Generator().manual_seed(0))
    out = canvas.resize_image(image.to(dtype), 64, 48)
    assert out.dtype == dtype and out.shape == (1, 48, 64, 3)
    assert (out.float() - canvas.resize_image(image, 64, 48)).abs().max() < 0.01


def test_resize_down_is_antialiased():
    """1 px stripes shrunk 3x are grey: without antialiasing they alias to stripes."""
    stripes = torch.zeros(1, 60, 60, 3)
    stripes[:, :, ::2] = 1.0
    out = canvas.resize_image(stripes, 20, 20)
    assert (out - 0.5).abs().max() < 0.05


@pytest.mark.parametrize("size", [64, 25])  # up and down
def test_resizing_rgba_keeps_hidden_colours_out_of_visible_pixels(size):
    """A white square on transparent black: resampled straight, its edge turned grey."""
    image = torch.zeros(1, 40, 40, 4)
    image[0, 10:30, 10:30] = 1.0
    out = canvas.resize_image(image, size, size)
    alpha = out[0, ..., 3]
    assert bool(((alpha > 0.05) & (alpha < 0.95)).any())  # there is an edge
    assert torch.allclose(out[0, ..., :3][alpha > 0.05], torch.tensor(1.0), atol=1e-3)
    grey = image.clone()
    grey[..., :3] = 0.5  # where bicubic overshoots alpha past 1, the colour stays
    out = canvas.resize_image(grey, size, size)
    assert torch.allclose(out[0, ..., :3][out[0, ..., 3] > 0.05], torch.tensor(0.5), atol=1e-5)
    opaque = torch.rand(1, 40, 40, 4)
    opaque[..., 3] = 1.0  # and an opaque RGBA resizes as its RGB does
    assert torch.allclose(
        canvas.resize_image(opaque, size, size)[..., :3],
        canvas.resize_image(opaque[..., :3], size, size),
        atol=1e-5,
    )


def test_a_rounding_strip_ramps_no_deeper_than_it_is_wide():
    """Only left=256 asked for on a 1000x667 photo: rounding to 8 adds 2 px on top and 3 at
    the bottom, and each started a 64 px ramp across the width (24 % of the photo masked)."""
    plan = canvas.plan_margins(1000, 667, left=256, multiple_of=8)
    assert (plan.top, plan.bottom) == (2, 3)
    mask = canvas.outpaint_mask(plan, overlap=64)[0, plan.y : plan.y + 667, plan.x :]
    assert torch.equal(mask[3:-4, 64:], torch.zeros(660, 936))  # the rows past both strips
    assert float(mask[2, 500]) == 0 and 0 < float(mask[1, 500]) < 1  # 2 px deep on top
    assert float(mask[-4, 500]) == 0 and 0 < float(mask[-3, 500]) < 1  # 3 at the bottom
    assert torch.allclose(mask[300, :64], 1 - torch.arange(1, 65) / 65)  # the side asked for


def test_a_resampled_image_fills_the_canvas_rather_than_leave_a_1px_sliver():
    plan = canvas.plan_target(1000, 1001, 1024, 1024, fit="pad")
    assert (plan.scaled_w, plan.scaled_h) == (1024, 1024) and not plan.adds_area
    # Not resampled otherwise: its pixels are kept, and the sliver ramps 1 px deep.
    plan = canvas.plan_target(1023, 1024, 1024, 1024, fit="pad", anchor="left")
    assert (plan.scaled_w, plan.scaled_h, plan.right) == (1023, 1024, 1)
    mask = canvas.outpaint_mask(plan, overlap=64)[0]
    assert float(mask[500, 1022]) == 0.5 and float(mask[500, 1021]) == 0
