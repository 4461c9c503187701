import pytest
import torch
from conftest import DeviceSpy, on_meta, run_node

from uncrop.core.errors import UncropError
from uncrop.nodes import host
from uncrop.nodes.composite import Composite


def test_composite_node_exact_outside_mask_with_color_match(astronaut):
    mask = torch.zeros(1, 512, 512)
    mask[:, 200:300, 200:300] = 1
    generated = (astronaut * 0.5 + 0.4).clamp(0, 1)
    (out,) = run_node(
        Composite, original=astronaut, generated=generated, mask=mask, color_match="mean_std"
    ).args
    keep = mask[0] == 0
    assert torch.equal(out[0][keep], astronaut[0][keep])
    assert (out[0][~keep] - astronaut[0][~keep]).abs().mean() < (
        generated[0][~keep] - astronaut[0][~keep]
    ).abs().mean()


@pytest.mark.parametrize("name", ["original", "generated", "mask"])
def test_composite_node_names_an_input_that_is_not_a_tensor(name):
    inputs = {
        "original": torch.rand(1, 8, 8, 3),
        "generated": torch.rand(1, 8, 8, 3),
        "mask": torch.ones(1, 8, 8),
    }
    inputs[name] = inputs[name].numpy()
    with pytest.raises(
        UncropError, match=f"^{name}: expected an? (IMAGE|MASK) tensor, got ndarray"
    ):
        run_node(Composite, color_match="none", **inputs)


def test_composite_node_returns_kept_pixels_as_given_past_0_to_1(overshooting):
    """A bicubic upscale's overshoot was clamped away under mask 0 (1.5 % of a photo's
    values moved, by up to 0.1): those pixels come back bit for bit."""
    mask = torch.zeros(1, 256, 256)
    mask[:, 96:160, 80:200] = torch.linspace(0.2, 1, 120)
    (out,) = run_node(
        Composite, original=overshooting, generated=torch.rand(1, 256, 256, 3), mask=mask,
        color_match="none",
    ).args  # fmt: skip
    keep = mask[0] == 0
    assert torch.equal(out[0][keep], overshooting[0][keep])
    assert float(out[0][~keep].min()) >= 0 and float(out[0][~keep].max()) <= 1


def test_composite_node_color_match_stops_at_cancel(astronaut, monkeypatch):
    checks = []

    def cancel_at_second():
        checks.append(1)
        if len(checks) == 2:
            raise InterruptedError("cancel pressed")

    monkeypatch.setattr(host, "check_interrupted", cancel_at_second)
    image = astronaut[:, ::8, ::8].expand(3, -1, -1, -1)
    mask = torch.zeros(1, 64, 64)
    mask[:, 20:40, 20:40] = 1
    with pytest.raises(InterruptedError):
        run_node(Composite, original=image, generated=image, mask=mask, color_match="histogram")
    assert len(checks) == 2


def test_the_node_matches_and_blends_on_the_device_one_image_at_a_time(astronaut, monkeypatch):
    from uncrop.core import composite as compositing

    spy = DeviceSpy()
    on_meta(monkeypatch, host)
    monkeypatch.setattr(compositing, "color_match", spy(compositing.color_match))
    monkeypatch.setattr(compositing, "composite", spy(compositing.composite))
    mask = torch.zeros(1, 512, 512)
    mask[:, 200:300, 200:300] = 1
    (out,) = run_node(
        Composite, original=astronaut, generated=1 - astronaut, mask=mask, color_match="mean_std"
    ).args
    cpu, meta = torch.device("cpu"), torch.device("meta")
    assert spy.asked == [("color_match", cpu, meta), ("composite", cpu, meta)]
    assert torch.equal(out[0][mask[0] == 0], astronaut[0][mask[0] == 0])
