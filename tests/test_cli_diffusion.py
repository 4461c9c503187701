"""``uncrop inpaint/outpaint --model``: the diffusion sampler from the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
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


def test_outpaint_overlap_paints_into_the_image_only_as_asked(tree, files, capsys):
    """The 16 px band fading into the photo was fixed, and no flag or help told of it."""
    src = np.asarray(Image.open(files / "in.png"))
    kept = {}
    for overlap in (None, "0", "8"):
        out = files / f"left-{overlap}.png"
        code = cli.main([
            "outpaint", str(files / "in.png"), "--left", "16", "-o", str(out), "--seed", "1",
            "--model", str(tree["sd-inpaint"]), "--steps", "2", "--device", "cpu",
            *(["--overlap", overlap] if overlap else []),
        ])  # fmt: skip
        assert code == 0
        photo = np.asarray(Image.open(out))[:, 16:]
        assert photo.shape == src.shape
        same = (photo == src).all(axis=(0, 2))  # each column of the photo kept whole
        kept[overlap] = int(np.argmax(same))  # the first column kept, and all after it
        assert same[kept[overlap] :].all()
    assert kept == {None: 16, "0": 0, "8": 8}
    assert cli.main(["outpaint", str(files / "in.png"), "--left", "16", "--overlap", "-1",
                     "--model", str(tree["sd-inpaint"]), "-o", str(files / "x.png")]) == 2  # fmt: skip
    assert "--overlap: expected 0 or more px, got -1" in capsys.readouterr().err


def test_a_pickle_model_is_refused_with_exit_code_2(files, capsys):
    (files / "m.ckpt").write_bytes(b"x")
    code = cli.main([
        "inpaint", str(files / "in.png"), "--mask", str(files / "mask.png"),
        "-o", str(files / "o.png"), "--model", str(files / "m.ckpt"),
    ])  # fmt: skip
    assert code == 2 and "pickle" in capsys.readouterr().err


def test_the_pre_fill_is_the_nodes_and_model_free_options_are_refused(files, monkeypatch, capsys):
    """With --model, --method is the pre-fill: the nodes' default (edge), or none; the
    flags that set the model-free fill were ignored without a word, and are refused
    before the model loads."""
    seen = []

    def load_model(*args, **kwargs):
        raise cli.UncropError("stop here")  # the settings were checked first

    monkeypatch.setattr(cli.models, "load_model", load_model)
    monkeypatch.setattr(
        cli.sampling.SamplerSettings, "check", lambda self: seen.append(self.prefill)
    )
    base = ["inpaint", str(files / "in.png"), "--mask", str(files / "mask.png"),
            "-o", str(files / "o.png"), "--model", "m"]  # fmt: skip
    assert cli.main(base) == 2 and cli.main([*base, "--method", "none"]) == 2
    assert seen == ["edge", "none"]
    for flags in (["--color", "#ff0000"], ["--patch-size", "9"], ["--source-mask", "s.png"]):
        assert cli.main([*base, "--method", "color", *flags]) == 2
        assert f"{flags[0]}: with --model the pre-fill takes its default options" in (
            capsys.readouterr().err
        )
    assert len(seen) == 2  # refused before the settings, let alone the model


def test_method_none_needs_a_model(files, capsys):
    code = cli.main([
        "inpaint", str(files / "in.png"), "--mask", str(files / "mask.png"),
        "-o", str(files / "o.png"), "--method", "none",
    ])  # fmt: skip
    assert code == 2 and "--method none leaves the hole unfilled" in capsys.readouterr().err


def test_controlnet_and_captioner_paths_are_checked_before_the_model_loads(
    files, monkeypatch, capsys
):
    monkeypatch.setattr(cli.models, "load_model", lambda *a, **k: pytest.fail("loaded"))
    base = ["inpaint", str(files / "in.png"), "--mask", str(files / "mask.png"),
            "-o", str(files / "o.png"), "--model", "m"]  # fmt: skip
    assert cli.main([*base, "--controlnet", str(files / "no-cn.safetensors")]) == 2
    assert "controlnet: " in capsys.readouterr().err
    for name, message in (("cn.ckpt", "pickle"), ("cn.txt", "expected a .safetensors file")):
        (files / name).write_bytes(b"x")
        assert cli.main([*base, "--controlnet", str(files / name)]) == 2
        assert message in capsys.readouterr().err
    assert cli.main([*base, "--captioner", str(files / "no-captioner")]) == 2
    assert "Captioner folder" in capsys.readouterr().err


def test_the_seed_and_dtype_reach_the_sampler_and_the_loader(tree, files, monkeypatch):
    monkeypatch.setenv(models.TOKENIZER_ENV, str(tree["tokenizer"]))
    loaded = []
    load = models.load_model

    def spy(path, **options):
        loaded.append(options["dtype"])
        return load(path, **options)

    monkeypatch.setattr(cli.models, "load_model", spy)
    results = []
    for seed in ("3", "4", "3"):
        out = files / f"out{seed}.png"
        code = cli.main([
            "inpaint", str(files / "in.png"), "--mask", str(files / "mask.png"), "-o", str(out),
            "--model", str(tree["sd-inpaint"]), "--prompt", "a cat", "--steps", "2",
            "--seed", seed, "--device", "cpu", "--resolution", "64", "--dtype", "bf16",
        ])  # fmt: skip
        assert code == 0
        results.append(np.asarray(Image.open(out)))
    assert loaded == [torch.bfloat16] * 3
    assert np.array_equal(results[0], results[2]) and not np.array_equal(results[0], results[1])
