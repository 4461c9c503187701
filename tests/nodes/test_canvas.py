import pytest
import torch
from conftest import DeviceSpy, on_meta, run_node

from uncrop.core import model_free
from uncrop.core.canvas import plan_margins, plan_target
from uncrop.core.errors import UncropError
from uncrop.nodes import canvas as canvas_node
from uncrop.nodes import host
from uncrop.nodes.canvas import ExpandCanvas


def test_target_size_pad(coffee):
    image, mask = run_node(
        ExpandCanvas, image=coffee, width=1024, height=512, fit="pad", fill="mirror"
    ).args
    assert image.shape == (1, 512, 1024, 3) and mask.shape == (1, 512, 1024)
    assert mask[0, :, :100].min() == 1 and mask[0, 256, 512] == 0
    assert image.device.type == "cpu"


def test_the_node_places_the_image_at_its_anchor(coffee):
    image, mask = run_node(
        ExpandCanvas, image=coffee, width=1024, height=512, fit="pad", anchor="top-left"
    ).args
    plan = plan_target(600, 400, 1024, 512, fit="pad", anchor="top-left")
    expected, expected_mask = model_free.outpaint(coffee, plan, "edge")
    assert torch.equal(image, expected) and torch.equal(mask, expected_mask)
    assert mask[0, :, :700].max() == 0  # the image sits on the left


def test_per_side_with_overlap_keeps_original_pixels(coffee):
    image, mask = run_node(
        ExpandCanvas,
        image=coffee,
        size_mode="per side",
        left=64,
        right=0,
        top=0,
        bottom=0,
        overlap=8,
        fill="edge",
    ).args
    assert image.shape == (1, 400, 664, 3)
    assert torch.equal(image[:, :, 64:], coffee)
    assert torch.equal(image[0, :, 0], coffee[0, :, 0])  # edge fill repeats the first column
    assert 0 < mask[0, 200, 66] < 1 and mask[0, 200, 80] == 0


def test_per_side_places_the_image_as_given_past_0_to_1(overshooting):
    image, _ = run_node(
        ExpandCanvas, image=overshooting, size_mode="per side", left=0, right=40, top=8,
        bottom=0, overlap=16, fill="smooth",
    ).args  # fmt: skip
    assert torch.equal(image[:, 8:, :256], overshooting)
    assert float(image[:, :8].min()) >= 0 and float(image[:, :, 256:].max()) <= 1


def test_color_fill_uses_hex(coffee):
    image, _ = run_node(
        ExpandCanvas,
        image=coffee,
        size_mode="per side",
        top=8,
        fill="color",
        color="#ff0000",
        multiple_of=8,
    ).args
    assert image[0, 0, 0].tolist() == [1.0, 0.0, 0.0]


def test_colour_is_read_only_for_the_color_fill(coffee):
    image, _ = run_node(
        ExpandCanvas, image=coffee, size_mode="per side", top=8, fill="edge", color=""
    ).args
    assert torch.equal(image[0, 0], coffee[0, 0])
    with pytest.raises(UncropError, match="^color: expected a hex colour"):
        run_node(ExpandCanvas, image=coffee, size_mode="per side", top=8, fill="color", color="")


def test_an_unknown_size_mode_is_named(coffee):
    """A linked or API value skips the combo's check: it ran as a target size."""
    with pytest.raises(UncropError, match="size_mode: expected one of per side, target size"):
        run_node(ExpandCanvas, image=coffee, size_mode="per_side", left=8)


def test_the_node_fills_on_the_device_and_keeps_the_batch_where_it_is(coffee, monkeypatch):
    spy = DeviceSpy()
    on_meta(monkeypatch, host)
    monkeypatch.setattr(canvas_node.model_free, "outpaint", spy(model_free.outpaint))
    (out, mask) = run_node(
        ExpandCanvas, image=coffee, size_mode="per side", left=16, fill="edge"
    ).args
    assert spy.asked == [("outpaint", torch.device("cpu"), torch.device("meta"))]
    assert out.shape == (1, 400, 616, 3) and torch.equal(out[:, :, 16:], coffee)


@pytest.mark.parametrize(
    "geometry, plan",
    [
        (
            {"size_mode": "per side", "left": 10, "bottom": 25, "unit": "%", "multiple_of": 16},
            lambda: plan_margins(600, 400, 10, 0, 0, 25, unit="%", multiple_of=16),
        ),
        (
            {
                "width": 500,
                "height": 500,
                "fit": "crop",
                "anchor": "bottom-right",
                "multiple_of": 64,
            },
            lambda: plan_target(600, 400, 500, 500, "crop", "bottom-right", 64),
        ),
    ],
    ids=["per side", "target size"],
)
def test_every_geometry_widget_and_the_seed_reach_the_canvas(coffee, geometry, plan):
    image, mask = run_node(ExpandCanvas, image=coffee, fill="noise", seed=11, **geometry).args
    expected, expected_mask = model_free.outpaint(coffee, plan(), "noise", seed=11)
    assert torch.equal(image, expected) and torch.equal(mask, expected_mask)
