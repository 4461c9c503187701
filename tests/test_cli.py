import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from uncrop import cli


def test_demo_writes_inpaint_and_outpaint(tmp_path, capsys):
    assert cli.main(["demo", "-o", str(tmp_path)]) == 0
    inpainted = np.asarray(Image.open(tmp_path / "inpaint.png"))
    outpainted = np.asarray(Image.open(tmp_path / "outpaint.png"))
    original = np.asarray(Image.open(cli.SAMPLE_IMAGE))
    mask = np.asarray(Image.open(cli.SAMPLE_MASK)) > 0
    assert inpainted.shape == original.shape and outpainted.shape == (512, 1024, 3)
    # Far from the (grown, feathered) mask the pixels are exactly the input's.
    far = ~np.asarray(Image.fromarray(mask).filter(ImageFilter.MaxFilter(31)))
    assert np.array_equal(inpainted[far], original[far])
    assert np.abs(inpainted[mask].astype(int) - original[mask]).mean() > 5  # the spoon is gone
    assert "wrote" in capsys.readouterr().out


def test_inpaint_command_exact_outside_mask(tmp_path):
    mask = np.zeros((400, 600), np.uint8)
    mask[100:140, 200:260] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    out = tmp_path / "out.png"
    code = cli.main(
        [
            "inpaint",
            str(cli.SAMPLE_IMAGE),
            "--mask",
            str(tmp_path / "m.png"),
            "-o",
            str(out),
            "--method",
            "edge",
        ]
    )
    assert code == 0
    result, original = np.asarray(Image.open(out)), np.asarray(Image.open(cli.SAMPLE_IMAGE))
    assert np.array_equal(result[mask == 0], original[mask == 0])
    assert not np.array_equal(result[mask > 0], original[mask > 0])


@pytest.mark.parametrize(
    "args,message",
    [
        (["outpaint", "IMG", "--width", "100", "-o", "x.png"], "--width and --height go together"),
        (["outpaint", "IMG", "-o", "x.png"], "say how to grow the canvas"),
        (["outpaint", "IMG", "--width", "0", "-o", "x.png"], "--width and --height go together"),
        (
            ["outpaint", "IMG", "--width", "0", "--height", "8", "-o", "x.png"],
            "target size: 0x8 is outside 1..16384",
        ),
        (
            ["outpaint", "IMG", "--width", "10", "--height", "10", "--left", "5", "-o", "x.png"],
            "not both",
        ),
        (["outpaint", "missing.png", "--left", "8", "-o", "x.png"], "file not found"),
        (
            ["outpaint", "IMG", "--left", "15784", "-o", "x.webp"],
            "--output: WEBP holds at most 16383 px per side, and this image is 16384x",
        ),
        (
            [
                "inpaint",
                "IMG",
                "--mask",
                "IMG",
                "--color",
                "blue",
                "--method",
                "color",
                "-o",
                "x.png",
            ],
            "hex colour",
        ),
    ],
)
def test_bad_input_exits_2_with_a_message(args, message, capsys, tmp_path):
    args = [str(cli.SAMPLE_IMAGE) if a == "IMG" else a for a in args]
    args = [str(tmp_path / a) if a in ("x.png", "x.webp") else a for a in args]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("uncrop: error:") and message in err


def test_console_entry_point_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "uncrop.cli", "outpaint", str(cli.SAMPLE_IMAGE), "--left", "10", "--unit", "%",
         "-o", str(tmp_path / "o.png")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "o.png").size == (664, 400)


def test_grow_is_in_the_image_pixels_whatever_the_mask_file_size(tmp_path):
    """A quarter-size mask was grown in its own pixels: --grow 8 grew 34 image px."""
    mask = np.zeros((400, 600), np.uint8)
    mask[160:240, 280:320] = 255
    Image.fromarray(mask).save(tmp_path / "full.png")
    Image.fromarray(mask[::4, ::4]).save(tmp_path / "quarter.png")
    outs = []
    for name in ("full", "quarter"):
        out = tmp_path / f"{name}-out.png"
        args = ["inpaint", str(cli.SAMPLE_IMAGE), "--mask", str(tmp_path / f"{name}.png")]
        assert cli.main([*args, "-o", str(out), "--method", "color", "--grow", "8"]) == 0
        outs.append(np.asarray(Image.open(out)) != np.asarray(Image.open(cli.SAMPLE_IMAGE)))
    changed = [np.nonzero(o.any(-1).any(0))[0] for o in outs]  # the columns filled
    assert (changed[0].min(), changed[0].max()) == (272, 327)
    assert abs(changed[1].min() - 272) <= 2 and abs(changed[1].max() - 327) <= 2


def test_the_model_free_fill_takes_the_seed(tmp_path):
    mask = np.zeros((400, 600), np.uint8)
    mask[100:200, 200:300] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    outs = []
    for k, seed in enumerate(["1", "2", "1"]):
        out = tmp_path / f"out{k}.png"
        args = ["inpaint", str(cli.SAMPLE_IMAGE), "--mask", str(tmp_path / "m.png")]
        assert cli.main([*args, "-o", str(out), "--method", "noise", "--seed", seed]) == 0
        outs.append(np.asarray(Image.open(out)))
    assert not np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])


def test_source_mask_keeps_patch_from_copying_excluded_area(tmp_path):
    image = np.asarray(Image.open(cli.SAMPLE_IMAGE)).copy()
    # A colour found nowhere else, against the hole's edge: copied in unless excluded.
    image[150:230, 220:250] = [255, 0, 255]
    Image.fromarray(image).save(tmp_path / "img.png")
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[150:230, 250:330] = 255
    Image.fromarray(mask).save(tmp_path / "hole.png")
    source = np.full(image.shape[:2], 255, np.uint8)
    source[140:240, 210:250] = 0
    Image.fromarray(source).save(tmp_path / "source.png")
    found = []
    for extra in ([], ["--source-mask", str(tmp_path / "source.png")]):
        out = tmp_path / "out.png"
        code = cli.main(
            ["inpaint", str(tmp_path / "img.png"), "--mask", str(tmp_path / "hole.png"),
             "--method", "patch", "--patch-size", "5", *extra, "-o", str(out)]
        )  # fmt: skip
        assert code == 0
        filled = np.asarray(Image.open(out))[150:230, 250:330].reshape(-1, 3).astype(int)
        found.append(int(((filled[:, 0] > 200) & (filled[:, 1] < 60) & (filled[:, 2] > 200)).sum()))
    assert found[0] > 100 and found[1] == 0  # copied when allowed, never when excluded


def test_bad_patch_size_is_refused(tmp_path, capsys):
    args = ["outpaint", str(cli.SAMPLE_IMAGE), "--left", "16", "--method", "patch", "--patch-size", "4",
            "-o", str(tmp_path / "o.png")]  # fmt: skip
    assert cli.main(args) == 2
    assert "--patch-size: expected an odd number from 3 to 31, got 4" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--method", "patch", "--patch-size", "201"], "--patch-size: expected an odd number"),
        # 0 and "" are values given, not defaults to fill in
        (["--method", "patch", "--patch-size", "0"], "--patch-size: expected an odd number"),
        (["--method", "color", "--color", ""], "--color: expected a hex colour"),
        # the engine names the nodes' inputs; the CLI, the flags typed
        (["--grow", "100000"], "error: --grow: expected -1024 to 1024 px"),
        (["--feather", "1e9"], "error: --feather: expected 0 to 512 px"),
        (["--device", "cuda:99"], "device: cuda:99 is not available here"),
        (["--model", "no-such-model", "--strength", "0"], "strength: expected a value in (0, 1]"),
        (["--device", "xpu"], "device: expected auto, cpu, cuda, cuda:N or mps, got 'xpu'"),
        # a captioner a prompt leaves unused is still checked, before the model loads
        (["--model", "no-such-model", "--prompt", "a", "--captioner", "nope"], "'nope' does not"),
        # Given but unused: each was silently ignored.
        (["--prompt", "a red apple"], "--prompt: this sets the diffusion run; add --model"),
        (["--steps", "50", "--dtype", "fp16"], "--steps, --dtype: these set the diffusion run"),
        (["--controlnet", "cn.safetensors"], "--controlnet: this sets the diffusion run"),
        (["--model", ""], "--model: empty"),
        (
            ["--color", "#ff0000"],
            "--color: --method smooth does not use it (it is for --method color)",
        ),
        (["--method", "edge", "--patch-size", "5"], "--patch-size: --method edge does not use it"),
        (["--source-mask", "m.png"], "it is for --method patch or pattern"),
    ],
)
def test_out_of_range_options_are_refused_up_front(tmp_path, capsys, extra, message):
    # Each of these ran out of memory, ran for minutes, raised a traceback, or (the
    # sampler's settings) was checked only after the model had loaded.
    args = ["inpaint", str(cli.SAMPLE_IMAGE), "--mask", str(cli.SAMPLE_MASK), *extra,
            "-o", str(tmp_path / "o.png")]  # fmt: skip
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--left", "8", "--multiple-of", "0"], "error: --multiple-of: expected 1 or more"),
        (["--left", "inf"], "error: --left: expected a finite margin >= 0, got inf"),
        (["--left", "8", "--overlap", "8"], "error: --overlap: this sets the diffusion run"),
    ],
)
def test_outpaint_errors_name_the_flag(tmp_path, capsys, extra, message):
    code = cli.main(["outpaint", str(cli.SAMPLE_IMAGE), *extra, "-o", str(tmp_path / "o.png")])
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "output,message",
    [("o.xyz", "needs one of the extensions"), ("d.png", "is a folder"), ("f/o.png", "is a file")],
)
def test_bad_output_paths_are_refused_before_the_work(tmp_path, capsys, output, message):
    (tmp_path / "d.png").mkdir()
    (tmp_path / "f").write_text("")
    args = ["outpaint", str(cli.SAMPLE_IMAGE), "--left", "8", "-o", str(tmp_path / output)]
    assert cli.main(args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_unwritable_output_folder_is_refused_before_the_work(tmp_path, capsys):
    """Root can write in a read-only folder, so /proc stands in for one: before, the
    model loaded and sampled, and only the save failed."""
    args = ["outpaint", str(cli.SAMPLE_IMAGE), "--left", "8", "-o", "/proc/uncrop-test.png"]
    assert cli.main(args) == 2
    assert "--output: cannot write in '/proc'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command,shown",
    [
        ("inpaint", ["--grow GROW grow .* \\(default: 0\\)", "--feather .*\\(default: 0.0\\)"]),
        ("outpaint", ["--unit .*\\(default: px\\)", "\\(default: 8\\)"]),
        ("caption", ["--beams BEAMS .*\\(default: 3\\)"]),
    ],
)
def test_help_names_each_default(command, shown, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for pattern in shown:
        assert re.search(pattern, text), pattern
    assert "(default: None)" not in text and "(default: False)" not in text


def test_verbose_goes_before_or_after_the_subcommand():
    parser = cli.build_parser()
    assert parser.parse_args(["-v", "demo"]).verbose and parser.parse_args(["demo", "-v"]).verbose
    assert not parser.parse_args(["demo"]).verbose


def test_rgba_input_keeps_its_alpha_and_webp_keeps_every_pixel(tmp_path):
    rgb = np.asarray(Image.open(cli.SAMPLE_IMAGE))
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :100] = 0  # a transparent strip, whose hidden colours must survive
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    mask = np.zeros(rgb.shape[:2], np.uint8)
    mask[150:200, 300:360] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    for ext in (".png", ".webp"):
        out = tmp_path / f"out{ext}"
        args = ["inpaint", str(tmp_path / "rgba.png"), "--mask", str(tmp_path / "m.png"),
                "-o", str(out)]  # fmt: skip
        assert cli.main(args) == 0
        result = np.asarray(Image.open(out))
        assert result.shape == (*rgb.shape[:2], 4)
        keep = mask == 0
        assert np.array_equal(result[keep], np.dstack([rgb, alpha])[keep])
        assert not np.array_equal(result[~keep, :3], rgb[~keep])


def test_16bit_grey_input_keeps_every_pixel_and_colour_warns(tmp_path, caplog):
    """A 16-bit grey PNG comes back 16-bit where Pillow can write it (PNG, TIFF), its
    unmasked pixels exact; elsewhere (WebP) at 8 bits, with a warning saying so."""
    rng = np.random.default_rng(0)
    grey = (rng.random((40, 56)) * 65535).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    mask = np.zeros(grey.shape, np.uint8)
    mask[10:20, 15:30] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    keep = mask == 0
    for ext in (".png", ".tif"):
        out = tmp_path / f"out{ext}"
        args = ["inpaint", str(tmp_path / "g16.png"), "--mask", str(tmp_path / "m.png"),
                "-o", str(out)]  # fmt: skip
        assert cli.main(args) == 0
        result = np.asarray(Image.open(out))
        assert result.dtype == np.uint16 and result.shape == grey.shape
        assert np.array_equal(result[keep], grey[keep])
    # 8-bit values widened to 16 are still a 16-bit file (the bits came from its values)
    Image.fromarray(grey // 257 * 257).save(tmp_path / "wide8.png")
    args = ["inpaint", str(tmp_path / "wide8.png"), "--mask", str(tmp_path / "m.png"),
            "-o", str(tmp_path / "wide8-out.png")]  # fmt: skip
    assert cli.main(args) == 0
    assert np.asarray(Image.open(tmp_path / "wide8-out.png")).dtype == np.uint16
    with caplog.at_level("WARNING"):
        args = ["inpaint", str(tmp_path / "g16.png"), "--mask", str(tmp_path / "m.png"),
                "-o", str(tmp_path / "out.webp")]  # fmt: skip
        assert cli.main(args) == 0
    assert "16 bits per channel; this output is written with 8" in caplog.text


def test_float_grey_tiff_input_keeps_every_pixel_in_a_float_tiff(tmp_path, caplog):
    """32-bit float grey (depth and height maps) went out as 16-bit integers, its
    unmasked pixels rounded; a float TIFF comes back float and exact, a PNG at 16 bits
    with a warning that says so."""
    rng = np.random.default_rng(0)
    grey = rng.random((40, 56), dtype=np.float32)
    Image.fromarray(grey, "F").save(tmp_path / "f32.tif")
    mask = np.zeros(grey.shape, np.uint8)
    mask[10:20, 15:30] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    keep = mask == 0
    out = tmp_path / "out.tif"
    args = ["inpaint", str(tmp_path / "f32.tif"), "--mask", str(tmp_path / "m.png"), "-o", str(out)]
    assert cli.main(args) == 0
    result = np.asarray(Image.open(out))
    assert result.dtype == np.float32 and result.shape == grey.shape
    assert np.array_equal(result[keep], grey[keep])
    assert not np.array_equal(result[~keep], grey[~keep])
    with caplog.at_level("WARNING"):
        args[-1] = str(tmp_path / "out.png")
        assert cli.main(args) == 0
    assert np.asarray(Image.open(tmp_path / "out.png")).dtype == np.uint16
    assert "holds 32-bit floats; PNG holds 16-bit integers at most" in caplog.text


def test_the_input_colour_profile_is_written_with_the_result(tmp_path, caplog):
    # A phone photo in Display P3 written without its profile shows other colours in a
    # colour-managed viewer, though its pixels outside the mask are the same.
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb = np.asarray(Image.open(cli.SAMPLE_IMAGE))[:64, :96]
    Image.fromarray(rgb).save(tmp_path / "tagged.png", icc_profile=profile)
    mask = np.zeros(rgb.shape[:2], np.uint8)
    mask[20:40, 30:60] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    for ext in (".png", ".jpg", ".webp", ".tif"):
        out = tmp_path / f"out{ext}"
        args = ["inpaint", str(tmp_path / "tagged.png"), "--mask", str(tmp_path / "m.png"),
                "-o", str(out)]  # fmt: skip
        assert cli.main(args) == 0
        assert Image.open(out).info.get("icc_profile") == profile
    # A profile for another colour space (a CMYK file's, read as RGB) is left out, saying so.
    cmyk = profile[:16] + b"CMYK" + profile[20:]
    Image.fromarray(rgb).save(tmp_path / "cmyk-tagged.png", icc_profile=cmyk)
    with caplog.at_level("WARNING"):
        args = ["inpaint", str(tmp_path / "cmyk-tagged.png"), "--mask", str(tmp_path / "m.png"),
                "-o", str(tmp_path / "out2.png")]  # fmt: skip
        assert cli.main(args) == 0
    assert "icc_profile" not in Image.open(tmp_path / "out2.png").info
    assert "colour profile is for CMYK and this output is RGB" in caplog.text
    # A grey file (read as RGB) is written grey again with its grey profile; WebP
    # stores grey as RGB, so it goes without, saying so.
    grey = profile[:16] + b"GRAY" + profile[20:]
    Image.fromarray(rgb[..., 1]).save(tmp_path / "grey.png", icc_profile=grey)
    for ext in (".png", ".tif", ".jpg", ".webp"):
        out = tmp_path / f"grey-out{ext}"
        caplog.clear()
        with caplog.at_level("WARNING"):
            args = ["inpaint", str(tmp_path / "grey.png"), "--mask", str(tmp_path / "m.png"),
                    "-o", str(out)]  # fmt: skip
            assert cli.main(args) == 0
        written = Image.open(out)
        if ext == ".webp":
            assert "icc_profile" not in written.info
            assert "profile is for GRAY and this output is RGB" in caplog.text
        else:
            assert written.mode == "L" and written.info.get("icc_profile") == grey


def test_inpaint_reads_the_mask_channel_asked_and_a_mask_url(tmp_path, monkeypatch):
    # Red marks one box and green another: --channel picks which is filled.
    marks = np.zeros((400, 600, 3), np.uint8)
    marks[100:150, 100:200, 0] = 255
    marks[250:300, 350:450, 1] = 255
    Image.fromarray(marks).save(tmp_path / "marks.png")
    original = np.asarray(Image.open(cli.SAMPLE_IMAGE))
    fetched = []

    def fetch(url, name):
        fetched.append((url, name))
        return (tmp_path / "marks.png").read_bytes()

    monkeypatch.setattr(cli.imageio, "fetch_url", fetch)
    for mask, channel, filled, kept in (
        (str(tmp_path / "marks.png"), "red", np.s_[100:150, 100:200], np.s_[250:300, 350:450]),
        (
            "https://example.com/marks.png",
            "green",
            np.s_[250:300, 350:450],
            np.s_[100:150, 100:200],
        ),
    ):
        out = tmp_path / "out.png"
        args = ["inpaint", str(cli.SAMPLE_IMAGE), "--mask", mask, "--channel", channel]
        assert cli.main([*args, "--method", "noise", "-o", str(out)]) == 0
        result = np.asarray(Image.open(out))
        assert np.array_equal(result[kept], original[kept])
        assert not np.array_equal(result[filled], original[filled])
    assert fetched == [("https://example.com/marks.png", "--mask")]


def _as_8bit(image):
    """A ``[1,H,W,C]`` result as the CLI writes it to an 8-bit file."""
    return (image[0].clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)


def test_outpaint_follows_fit_anchor_seed_and_its_default_method(tmp_path):
    from uncrop.core import canvas, imageio, model_free

    image, _ = imageio.load_image(cli.SAMPLE_IMAGE)
    args = ["outpaint", str(cli.SAMPLE_IMAGE), "--width", "640", "--height", "640"]
    pad = canvas.plan_target(600, 400, 640, 640, "pad", "center", 8)
    for extra, plan, method, seed in (
        (["--fit", "crop", "--anchor", "bottom-right"],
         canvas.plan_target(600, 400, 640, 640, "crop", "bottom-right", 8), "pattern", 0),
        ([], pad, "pattern", 0),  # without --method a pattern is continued, with --fit pad
        (["--method", "noise", "--seed", "5"], pad, "noise", 5),
    ):  # fmt: skip
        out = tmp_path / "o.png"
        assert cli.main([*args, *extra, "-o", str(out)]) == 0
        expected, _ = model_free.outpaint(image, plan, method, seed=seed)
        assert np.array_equal(np.asarray(Image.open(out)), _as_8bit(expected)), extra


def test_an_error_about_the_image_is_not_named_as_a_flag(tmp_path, capsys):
    args = ["outpaint", str(tmp_path / "missing.png"), "--left", "8", "-o", str(tmp_path / "o.png")]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "error: image:" in err and "--image" not in err
