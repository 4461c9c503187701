import io

import numpy as np
import pytest
import torch
from conftest import DeviceSpy, on_meta, run_node
from PIL import Image

from uncrop.core import imageio
from uncrop.core.errors import UncropError
from uncrop.core.masks import refine_mask
from uncrop.nodes import host
from uncrop.nodes import masks as masks_node
from uncrop.nodes.masks import LoadMask, RefineMask


@pytest.fixture
def input_dir(tmp_path, monkeypatch):
    folder = tmp_path / "input"
    folder.mkdir()
    monkeypatch.setattr(host, "input_directory", lambda: str(folder))
    arr = np.zeros((8, 10, 4), np.uint8)
    arr[..., 3] = 255
    arr[2:6, 3:7] = [255, 255, 255, 0]
    Image.fromarray(arr).save(folder / "mask.png")
    return folder


def test_load_mask_from_input_folder(input_dir):
    (mask,) = run_node(LoadMask, image="mask.png", channel="alpha").args
    assert mask.shape == (1, 8, 10) and mask.sum() == 16 and mask[0, 3, 4] == 1
    (lum,) = run_node(
        LoadMask, image="mask.png", channel="luminance", invert=True, threshold=0.5
    ).args
    assert lum[0, 3, 4] == 0 and lum[0, 0, 0] == 1


def test_load_mask_lists_and_fingerprints(input_dir):
    assert "mask.png" in host.input_files()
    first = LoadMask.fingerprint_inputs(
        image="mask.png", channel="alpha", invert=False, threshold=0
    )
    Image.fromarray(np.zeros((8, 10), np.uint8)).save(input_dir / "mask.png")
    second = LoadMask.fingerprint_inputs(
        image="mask.png", channel="alpha", invert=False, threshold=0
    )
    assert first != second and len(first) == 64


def test_load_mask_url_fingerprints_the_content_and_downloads_once(input_dir, monkeypatch):
    pngs = []
    for value in (255, 0):
        buffer = io.BytesIO()
        Image.fromarray(np.full((8, 10), value, np.uint8)).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    served = {"data": pngs[0]}
    calls = []

    def fetch(url, name):
        calls.append(url)
        return served["data"]

    monkeypatch.setattr(masks_node.imageio, "fetch_url", fetch)
    args = {"image": "mask.png", "channel": "luminance", "invert": False, "threshold": 0.0}
    url = "https://example.com/m.png"
    first = LoadMask.fingerprint_inputs(**args, url=url)
    assert LoadMask.fingerprint_inputs(**args, url=url) == first
    (mask,) = run_node(LoadMask, **args, url=url).args
    assert len(calls) == 2 and float(mask.min()) == 1.0  # execute took the fingerprint's bytes
    served["data"] = pngs[1]  # new content at the same URL
    assert LoadMask.fingerprint_inputs(**args, url=url) != first
    (mask,) = run_node(LoadMask, **args, url=url).args
    assert len(calls) == 3 and float(mask.max()) == 0.0
    # Two nodes reading one URL: one download each to fingerprint, none to run.
    other = {**args, "channel": "red"}
    LoadMask.fingerprint_inputs(**args, url=url), LoadMask.fingerprint_inputs(**other, url=url)
    run_node(LoadMask, **args, url=url), run_node(LoadMask, **other, url=url)
    assert len(calls) == 5
    # The latest downloads are kept, up to one download's size limit in all.
    monkeypatch.setattr(masks_node.imageio, "URL_MAX_BYTES", 2 * len(served["data"]))
    for n in range(3):
        LoadMask.fingerprint_inputs(**args, url=f"{url}?{n}")
    assert list(masks_node._fetched) == [f"{url}?1", f"{url}?2"]
    # A linked url is not known to the fingerprint: the run downloads it afresh.
    LoadMask.fingerprint_inputs(**args, url=None)
    (mask,) = run_node(LoadMask, **args, url=f"{url}?2").args
    assert calls[-1] == f"{url}?2" and len(calls) == 9


def test_load_mask_validates_a_url_alone_in_an_empty_input_folder(tmp_path, monkeypatch):
    """With no file to list, the combo holds "": a prompt giving only a url still passes
    ComfyUI's own check that the value is one of the options."""
    monkeypatch.setattr(host, "input_directory", lambda: str(tmp_path))
    (image,) = [i for i in LoadMask.define_schema().inputs if i.id == "image"]
    assert image.options == [""]
    assert LoadMask.validate_inputs(image="", url="https://example.com/m.png") is True
    assert "no mask file chosen" in LoadMask.validate_inputs(image="", url="")


def test_load_mask_refuses_paths_outside_input(input_dir):
    (input_dir.parent / "secret.png").write_bytes(b"x")
    assert "is outside the folder" in LoadMask.validate_inputs(image="../secret.png", url="")
    with pytest.raises(UncropError, match="is outside the folder"):
        run_node(LoadMask, image="../secret.png", channel="alpha")
    assert LoadMask.validate_inputs(image="mask.png", url="") is True
    # A linked url comes as None: the file may well be unused, so it is not checked...
    assert LoadMask.validate_inputs(image="missing.png", url=None) is True
    # ...but a url left out of the prompt is no url, and neither is an empty image name.
    assert "missing.png" in LoadMask.validate_inputs(image="missing.png")
    assert "no mask file chosen" in LoadMask.validate_inputs(image="")
    assert "no mask file chosen" in LoadMask.validate_inputs(url="")


def test_load_mask_with_a_linked_url_keeps_its_fingerprint(input_dir):
    """ComfyUI fingerprints before links are resolved: a linked url is None. The node
    must not re-run (and re-run all that follows) on every queue for that."""
    args = {"image": "mask.png", "channel": "luminance", "invert": False, "threshold": 0.0}
    first = LoadMask.fingerprint_inputs(**args, url=None)
    assert first == LoadMask.fingerprint_inputs(**args, url=None)  # not nan, never equal
    assert first == LoadMask.fingerprint_inputs(**args)  # the file's hash
    missing = {**args, "image": "gone.png"}
    assert LoadMask.fingerprint_inputs(**missing, url=None) == "linked url"
    # The same for a linked image (its combo turned into an input).
    linked = {**args, "image": None}
    assert LoadMask.fingerprint_inputs(**linked) == LoadMask.fingerprint_inputs(**linked)
    assert LoadMask.validate_inputs(image=None, url="") is True
    assert "only http(s)" in LoadMask.validate_inputs(image="mask.png", url="file:///etc/passwd")


def test_refine_mask_node_runs_pipeline():
    mask = torch.zeros(2, 32, 32)
    mask[:, 10:20, 10:20] = 1
    mask[:, 2, 2] = 1  # speck
    (out,) = run_node(RefineMask, mask=mask, grow=2, feather=0, remove_specks=5).args
    assert out.shape == (2, 32, 32)
    assert out[0, 2, 2] == 0 and out[0, 8, 15] == 1 and out[0, 7, 15] == 0


def test_refine_mask_node_passes_every_option():
    mask = torch.zeros(1, 48, 48)
    mask[:, 8:40, 8:40] = 0.8
    mask[:, 20:26, 20:26] = 0.0  # a hole
    mask[:, 2, 2] = 0.9  # a speck
    mask[:, 44:46, 44:46] = 0.3  # under the threshold
    options = {"grow": 2, "feather": 1.5, "fill_holes": True, "remove_specks": 3, "threshold": 0.5}
    (out,) = run_node(RefineMask, mask=mask, **options).args
    expected = refine_mask(
        mask, grow_px=2, feather_px=1.5, fill_holes_=True, min_speck_area=3, threshold_level=0.5
    )
    assert torch.equal(out, expected)
    assert out[0, 23, 23] > 0.99 and out[0, 2, 2] == 0 and out[0, 45, 45] == 0
    assert bool(((out > 0) & (out < 1)).any())  # feathered


def test_load_mask_errors_name_the_input_that_holds_the_bad_file(input_dir, monkeypatch):
    (input_dir / "notes.png").write_bytes(b"not an image")
    with pytest.raises(UncropError, match="^image: "):
        run_node(LoadMask, image="notes.png", channel="alpha")
    monkeypatch.setattr(masks_node.imageio, "fetch_url", lambda url, name: b"not an image")
    with pytest.raises(UncropError, match="^url: "):
        run_node(LoadMask, image="mask.png", channel="alpha", url="https://example.com/m.png")


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:abc/m.png"])
def test_load_mask_names_a_malformed_url_at_every_stage(input_dir, url):
    """validate_inputs and fingerprint_inputs raised from urllib on these; now the
    fingerprint marks the input bad and execute says what is wrong with it."""
    args = dict(image="mask.png", channel="alpha", invert=False, threshold=0.0)
    assert LoadMask.validate_inputs(image="mask.png", url=url) is True
    fingerprint = LoadMask.fingerprint_inputs(**args, url=url)
    assert fingerprint != fingerprint  # nan: never cached
    with pytest.raises(UncropError, match="^url: .* is not a valid URL"):
        run_node(LoadMask, **args, url=url)


def test_refine_node_refines_on_the_device_and_keeps_the_batch_where_it_is(monkeypatch):
    spy, refine = DeviceSpy(), masks_node.refine_mask
    on_meta(monkeypatch, host)
    monkeypatch.setattr(masks_node, "refine_mask", spy(refine))
    mask = torch.zeros(2, 32, 32)
    mask[:, 8:16, 8:16] = 1
    (out,) = run_node(RefineMask, mask=mask, grow=2).args
    assert spy.asked == [("refine_mask", torch.device("cpu"), torch.device("meta"))]
    assert out.shape == (2, 32, 32) and torch.equal(out[1], refine(mask[:1], grow_px=2)[0])
    assert out[1, 6, 12] == 1 and out[1, 5, 12] == 0  # grown by 2 px


@pytest.mark.parametrize("channel", ["alpha", "red", "green", "blue", "luminance"])
def test_load_mask_reads_the_channel_and_threshold_asked(input_dir, channel):
    # Each channel holds a different ramp, so a channel or threshold that did not reach
    # the loader gives other values.
    y, x = np.mgrid[:8, :10]
    arr = np.stack([x * 25, y * 30, 250 - x * 20, 40 + y * 25], axis=-1).astype(np.uint8)
    Image.fromarray(arr, "RGBA").save(input_dir / "ramps.png")
    for invert, threshold in ((False, 0.0), (True, 0.0), (False, 0.45)):
        (mask,) = run_node(
            LoadMask, image="ramps.png", channel=channel, invert=invert, threshold=threshold
        ).args
        expected = imageio.load_mask(input_dir / "ramps.png", channel, invert, threshold)
        assert torch.equal(mask, expected), (channel, invert, threshold)
        assert len(mask.unique()) == (2 if threshold else len(expected.unique())) > 1


def test_load_mask_keeps_the_latest_downloads_within_the_size_limit(input_dir, monkeypatch):
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 10), 255, np.uint8)).save(buffer, format="PNG")
    monkeypatch.setattr(masks_node.imageio, "fetch_url", lambda url, name: buffer.getvalue())
    monkeypatch.setattr(masks_node, "_fetched", masks_node.OrderedDict())
    args = {"image": "mask.png", "channel": "luminance", "invert": False, "threshold": 0.0}
    url = "https://example.com/m.png"
    size = len(buffer.getvalue())
    monkeypatch.setattr(masks_node.imageio, "URL_MAX_BYTES", 2 * size)
    for n in (0, 1, 0, 2):  # the second look at ?0 makes it the latest but one
        LoadMask.fingerprint_inputs(**args, url=f"{url}?{n}")
    assert list(masks_node._fetched) == [f"{url}?0", f"{url}?2"]
    monkeypatch.setattr(masks_node.imageio, "URL_MAX_BYTES", size // 2)
    LoadMask.fingerprint_inputs(**args, url=f"{url}?3")
    assert list(masks_node._fetched) == [f"{url}?3"]  # one download is kept, however big


def test_load_mask_runs_again_when_only_the_end_of_its_file_changes(input_dir):
    pixels = np.zeros((64, 64), np.uint8)
    Image.fromarray(pixels).save(input_dir / "big.png", compress_level=0)
    args = {"image": "big.png", "channel": "luminance", "invert": False, "threshold": 0.0}
    before = LoadMask.fingerprint_inputs(**args)
    pixels[-1, -1] = 255
    Image.fromarray(pixels).save(input_dir / "big.png", compress_level=0)
    assert LoadMask.fingerprint_inputs(**args) != before
