"""The Fill node, called as ComfyUI calls it."""

from __future__ import annotations

import pytest
import torch
from conftest import DeviceSpy, FillRecorder, on_meta, run_node

from uncrop.core import model_free
from uncrop.core.errors import UncropError
from uncrop.core.fill import FILL_METHODS
from uncrop.nodes import host
from uncrop.nodes.fill import Fill

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_schema_lists_new_methods_and_options() -> None:
    schema = Fill.define_schema()
    assert schema.node_id == "UncropFill"
    inputs = {i.id: i for i in schema.inputs}
    assert {"image", "mask", "method", "seed", "color", "patch_size", "source_mask"} <= set(inputs)
    assert {"smooth", "patch", "pattern"} <= set(inputs["method"].options)
    assert inputs["source_mask"].optional


@pytest.mark.parametrize("method", ["smooth", "patch", "pattern"])
def test_fill_node_keeps_unmasked_pixels(method: str, coffee: torch.Tensor) -> None:
    image = coffee[:, 100:228, 200:328].contiguous()
    mask = torch.zeros(1, 128, 128)
    mask[:, 40:80, 50:90] = 1
    (out,) = run_node(Fill, image=image, mask=mask, method=method, seed=2).args
    keep = mask[0] == 0
    assert torch.equal(out[0][keep], image[0][keep])
    assert not torch.equal(out[0][~keep], image[0][~keep])


def test_fill_node_returns_unmasked_pixels_as_given_past_0_to_1(overshooting) -> None:
    mask = torch.zeros(1, 256, 256)
    mask[:, 100:140, 60:200] = 1
    (out,) = run_node(Fill, image=overshooting, mask=mask, method="smooth").args
    keep = mask[0] == 0
    assert torch.equal(out[0][keep], overshooting[0][keep])
    assert float(out[0][~keep].min()) >= 0 and float(out[0][~keep].max()) <= 1


def test_fill_node_passes_its_seed(coffee: torch.Tensor) -> None:
    image = coffee[:, :64, :64].contiguous()
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    (two,) = run_node(Fill, image=image, mask=mask, method="noise", seed=2).args
    (three,) = run_node(Fill, image=image, mask=mask, method="noise", seed=3).args
    assert torch.equal(two, model_free.inpaint(image, mask, "noise", seed=2))
    assert not torch.equal(two, three)


def test_fill_node_source_mask_excludes_a_colour(brick: torch.Tensor) -> None:
    image = brick[:, :128, :128].clone()
    image[0, :, :40] = torch.tensor([0.0, 1.0, 0.0])
    mask = torch.zeros(1, 128, 128)
    mask[:, 40:90, 40:90] = 1
    source = torch.ones(1, 128, 128)
    source[:, :, :44] = 0
    (out,) = run_node(
        Fill, image=image, mask=mask, method="patch", patch_size=5, source_mask=source
    ).args
    filled = out[0][mask[0] > 0]
    assert (filled - torch.tensor([0.0, 1.0, 0.0])).abs().sum(dim=-1).min() > 0.3


def test_fill_node_names_a_bad_source_mask(coffee: torch.Tensor) -> None:
    mask = torch.zeros(1, 400, 600)
    mask[:, 100:200, 100:200] = 1
    with pytest.raises(UncropError, match="source_mask size 50x50 has a different aspect ratio"):
        run_node(Fill, image=coffee, mask=mask, method="patch", source_mask=torch.rand(1, 50, 50))


@pytest.mark.parametrize("method", ["smooth", "edge", "mirror", "color", "noise"])
def test_fill_node_reads_the_source_mask_only_for_the_methods_that_copy(
    coffee: torch.Tensor, method: str
) -> None:
    # A source mask left connected while trying the other methods stopped them.
    mask = torch.zeros(1, 400, 600)
    mask[:, 100:200, 100:200] = 1
    for source in (torch.rand(1, 50, 50), torch.ones(2, 400, 600)):  # wrong aspect, batch
        (out,) = run_node(Fill, image=coffee, mask=mask, method=method, source_mask=source).args
        (alone,) = run_node(Fill, image=coffee, mask=mask, method=method).args
        assert torch.equal(out, alone)


def test_fill_node_reads_the_colour_only_for_the_color_method() -> None:
    image = torch.full((1, 32, 32, 3), 0.25)
    mask = torch.zeros(1, 32, 32)
    mask[:, 8:24, 8:24] = 1
    (out,) = run_node(Fill, image=image, mask=mask, method="edge", color="").args
    assert torch.allclose(out, image)  # edge extension of a flat image
    (out,) = run_node(Fill, image=image, mask=mask, method="color", color="#ff0000").args
    assert out[0, 16, 16].tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(UncropError, match="^color: expected a hex colour"):
        run_node(Fill, image=image, mask=mask, method="color", color="grey")


def test_fill_node_moves_one_image_at_a_time_to_the_device(monkeypatch) -> None:
    # A batch of frames stays where ComfyUI keeps it; each image goes to the device
    # as it is filled ("meta" stands in for the GPU: tensors move there, nothing reads).
    on_meta(monkeypatch, host)
    method = FillRecorder()
    monkeypatch.setitem(FILL_METHODS, "smooth", method)
    spy = DeviceSpy()
    monkeypatch.setattr(model_free, "composite", spy(model_free.composite))
    images = torch.rand(3, 32, 32, 3)
    mask = torch.zeros(1, 32, 32)
    mask[:, 8:24, 8:24] = 1
    (out,) = run_node(Fill, image=images, mask=mask, method="smooth").args
    assert [call[:3] for call in method.calls] == [
        (torch.device("meta"), 1, torch.device("meta"))
    ] * 3
    assert spy.asked == [("composite", torch.device("cpu"), torch.device("meta"))]
    assert out.device.type == "cpu" and bool((out[:, 8:24, 8:24] == 0).all())


def test_fill_node_passes_its_patch_size(brick: torch.Tensor) -> None:
    image = brick[:, :96, :96].contiguous()
    mask = torch.zeros(1, 96, 96)
    mask[:, 30:66, 30:66] = 1
    (eleven,) = run_node(Fill, image=image, mask=mask, method="patch", patch_size=11, seed=1).args
    assert torch.equal(eleven, model_free.inpaint(image, mask, "patch", seed=1, patch_size=11))
    assert not torch.equal(eleven, model_free.inpaint(image, mask, "patch", seed=1))
