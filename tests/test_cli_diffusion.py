"""``uncrop inpaint/outpaint --model``: the diffusion sampler from the command line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from uncrop import cli
from uncrop.core import models

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    mask = np.zeros((48, 64), np.uint8)
    mask[16:32, 20:40] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path


def test_inpaint_with_a_single_file_model(tree, files, monkeypatch, capsys):
    monkeypatch.setenv(models.TOKENIZER_ENV, str(tree["tokenizer"]))
    out = files / "out.png"
    code = cli.main([
        "inpaint", str(files / "in.png"), "--mask", str(files / "mask.png"), "-o", str(out),
        "--model", str(tree["sd-inpaint.safetensors"]), "--prompt", "a cat", "--steps", "2",
        "--seed", "3", "--device", "cpu", "--resolution", "64", "--mask-blur", "0",
    ])  # fmt: skip
    assert code == 0
    assert "SD1 (single-file)" in capsys.readouterr().err
    src, res = np.asarray(Image.open(files / "in.png")), np.asarray(Image.open(out))
    keep = np.asarray(Image.open(files / "mask.png")) == 0
    assert res.shape == src.shape
    assert np.array_equal(res[keep], src[keep])
    assert not np.array_equal(res[~keep], src[~keep])
    assert Image.open(out).text["uncrop_prompt"] == "a cat"


def test_outpaint_with_a_diffusers_folder(tree, files):
    out = files / "wide.png"
    code = cli.main([
        "outpaint", str(files / "in.png"), "--right", "16", "-o", str(out),
        "--model", str(tree["sd-inpaint"]), "--steps", "2", "--device", "cpu",
    ])  # fmt: skip
    assert code == 0
    assert Image.open(out).size == (80, 48)


def test_a_pickle_model_is_refused_with_exit_code_2(files, capsys):
    (files / "m.ckpt").write_bytes(b"x")
    code = cli.main([
        "inpaint", str(files / "in.png"), "--mask", str(files / "mask.png"),
        "-o", str(files / "o.png"), "--model", str(files / "m.ckpt"),
    ])  # fmt: skip
    assert code == 2 and "pickle" in capsys.readouterr().err
