import http.server
import struct
import threading
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from uncrop.core import imageio
from uncrop.core.errors import UncropError


def save(path, arr, mode=None):
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


def test_rgba_image_and_alpha_mask(tmp_path):
    arr = np.zeros((6, 8, 4), np.uint8)
    arr[..., 0] = 200
    arr[..., 3] = 255
    arr[2:4, 2:4, 3] = 0  # transparent hole
    image, mask = imageio.load_image(save(tmp_path / "a.png", arr))
    assert image.shape == (1, 6, 8, 3) and mask.shape == (1, 6, 8)
    assert image[0, 0, 0, 0] == pytest.approx(200 / 255)
    assert mask[0, 2:4, 2:4].min() == 1 and mask.sum() == 4


def test_grayscale_image_becomes_rgb(tmp_path):
    arr = np.arange(48, dtype=np.uint8).reshape(6, 8)
    image, mask = imageio.load_image(save(tmp_path / "g.png", arr))
    assert image.shape == (1, 6, 8, 3) and mask.max() == 0
    assert torch.equal(image[..., 0], image[..., 2])


def test_16bit_grayscale_keeps_precision(tmp_path):
    arr = np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000 + 7
    image, _ = imageio.load_image(save(tmp_path / "g16.png", arr))
    assert image[0, 0, 1, 0].item() == pytest.approx(1007 / 65535, abs=1e-7)


def test_a_rotated_uncompressed_tiff_reads_the_same_from_a_path_as_from_bytes(tmp_path):
    """Opened by path, Pillow mapped it into memory and its EXIF rotation scrambled it."""
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "rotated.tif"
    Image.fromarray(arr).save(path, tiffinfo={274: 6})  # orientation: rotate 90 cw
    want = np.rot90(arr, -1) / 255
    for source in (path, path.read_bytes()):
        image, _ = imageio.load_image(source)
        assert np.allclose(image[0, ..., 0].numpy(), want)
        assert np.allclose(imageio.load_mask(source)[0].numpy(), want)


def test_32_bit_grey_files_on_a_known_scale_only(tmp_path):
    """16-bit data in Pillow's 32-bit integer mode and floats in 0..1 are read; a float
    file in 0..255 or integers past 16 bits came back white or black without a word."""
    ramp = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    image, _ = imageio.load_image(save(tmp_path / "f.tif", ramp, "F"))
    assert np.allclose(image[0, ..., 0].numpy(), ramp)
    sixteen = (ramp * 65535).round().astype(np.int32)
    image, _ = imageio.load_image(save(tmp_path / "i16.tif", sixteen, "I"))
    assert np.allclose(image[0, ..., 0].numpy(), sixteen / 65535)
    for arr, mode, kind in (
        (ramp * 255, "F", "floating-point values from 0 to 255"),
        (sixteen * 1000, "I", "32-bit integer values from 0 to 6.5535e"),
    ):
        with pytest.raises(UncropError, match=f"image: the file holds {kind}.*8 or 16 bits"):
            imageio.load_image(save(tmp_path / f"bad{mode}.tif", arr, mode))


def test_float_values_past_0_to_1_are_clipped_with_a_warning(tmp_path, caplog):
    """A linear float file's highlights at 1.3 were clipped without a word."""
    arr = np.array([[0.2, 1.3], [-0.1, 1.0]], np.float32)
    image, _ = imageio.load_image(save(tmp_path / "hdr.tif", arr, "F"))
    assert np.allclose(image[0, ..., 0].numpy(), arr.clip(0, 1))
    assert "values from -0.1 to 1.3; the 2 outside 0..1 are clipped" in caplog.text


def test_an_animation_is_read_as_its_first_frame_and_says_so(tmp_path, caplog):
    frames = [Image.fromarray(np.full((4, 6), v, np.uint8)) for v in (10, 200)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    image, _ = imageio.load_image(path)
    assert image.shape == (1, 4, 6, 3) and float(image.max()) == pytest.approx(10 / 255)
    assert "image: the file holds 2 frames" in caplog.text


def test_damaged_later_frames_and_exif_are_warned_about_not_raised(tmp_path, caplog):
    # Pillow reads the first frame of these; counting frames or reading the EXIF
    # failed deep in its parsers, and the command line printed a traceback.
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(5)]
    whole = tmp_path / "anim.gif"
    frames[0].quantize(32).save(
        whole, save_all=True, append_images=[f.quantize(32) for f in frames[1:]]
    )
    cut = whole.read_bytes()[:3513]  # into the second frame
    image, _ = imageio.load_image(cut)
    first, _ = imageio.load_image(whole)
    assert first.shape == (1, 64, 64, 3) and torch.equal(image, first)
    assert "frames after the first are unreadable" in caplog.text
    exif = Image.Exif()
    exif[274] = 6  # rotated, but the block's byte-order mark is garbage
    bad = bytearray(exif.tobytes())
    bad[6:8] = b"XX"
    path = tmp_path / "bad_exif.png"
    Image.fromarray(np.zeros((10, 15, 3), np.uint8)).save(path, exif=bytes(bad))
    assert imageio.load_image(path)[0].shape == (1, 10, 15, 3)  # not rotated
    assert "EXIF data is unreadable, so its orientation is ignored" in caplog.text
    for n in range(8, len(cut), 97):  # truncated anywhere: a clean error or the image
        try:
            part, _ = imageio.load_image(cut[:n])
        except UncropError as exc:
            assert str(exc).startswith("image: the downloaded data is not")
        else:
            assert part.shape == (1, 64, 64, 3) and torch.isfinite(part).all()


def _grey_2bit_png(values: np.ndarray, key: int) -> bytes:
    """A 2-bit greyscale PNG of ``values`` (0..3) whose tRNS colour key is ``key``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    h, w = values.shape
    packed = np.packbits(
        np.unpackbits(values.astype(np.uint8)[..., None], axis=-1)[..., 6:].reshape(h, -1), axis=1
    )
    rows = b"".join(b"\0" + row.tobytes() for row in packed)  # filter type 0 on each row
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 2, 0, 0, 0, 0))
        + chunk(b"tRNS", struct.pack(">H", key))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("mode, key", [("RGB", (1, 2, 3)), ("L", 7), ("L;2", 1)])
def test_a_colour_key_becomes_alpha(tmp_path, mode, key):
    # PNG's tRNS on an RGB or grey file: pixels of that colour are transparent. A 2-bit
    # file's key is a raw sample (1), which Pillow reads as 85.
    values = np.full((4, 5, 3) if mode == "RGB" else (4, 5), 2 if mode == "L;2" else 50, np.uint8)
    values[1, 2] = key
    path = tmp_path / "keyed.png"
    if mode == "L;2":  # written by hand: Pillow writes bits=2 as 8 bits before 13.0
        path.write_bytes(_grey_2bit_png(values, key))
    else:
        Image.fromarray(values, mode).save(path, transparency=key)
    image, mask = imageio.load_image(path, keep_alpha=True)
    assert image.shape == (1, 4, 5, 4)
    assert mask[0, 1, 2] == 1 and float(mask.sum()) == 1
    assert float(image[0, 0, 0, 0]) == pytest.approx(170 / 255 if mode == "L;2" else 50 / 255)


def test_a_colour_key_on_16_bit_values_is_ignored_saying_so(tmp_path, caplog):
    # 16-bit grey keeps its 16 bits exactly (an alpha would send it out at 8); 16-bit
    # colour is read with 8 bits, which match the key only by chance.
    grey = np.full((4, 5), 300, np.uint16)
    grey[1, 2] = 7
    Image.fromarray(grey).save(tmp_path / "g16.png", transparency=7)
    image, mask = imageio.load_image(tmp_path / "g16.png", keep_alpha=True)
    assert image.shape == (1, 4, 5, 3) and float(mask.sum()) == 0
    assert float(image[0, 0, 0, 0]) == pytest.approx(300 / 65535)
    assert "colour key is ignored: it has 16 bits per channel, which are kept" in caplog.text


def test_overlapping_reads_never_lift_pillows_guard_and_restore_it_last():
    # The guard is one global that readers in other threads share: raised (never to
    # None) while any read is under way, back to what it was when the last one ends,
    # whatever order they end in (each restoring its own saved value left it lifted).
    before = Image.MAX_IMAGE_PIXELS
    first, second = imageio._pixel_limit(), imageio._pixel_limit()
    first.__enter__()
    assert Image.MAX_IMAGE_PIXELS == imageio.MAX_SIDE**2
    second.__enter__()
    first.__exit__(None, None, None)  # the first to start ends first
    assert Image.MAX_IMAGE_PIXELS == imageio.MAX_SIDE**2
    second.__exit__(None, None, None)
    assert before == Image.MAX_IMAGE_PIXELS
    with pytest.raises(UncropError), imageio._pixel_limit():
        raise UncropError("a failed read")
    assert before == Image.MAX_IMAGE_PIXELS


def test_a_mask_drawn_as_transparency_read_by_its_colour_is_refused(tmp_path):
    arr = np.zeros((6, 8, 4), np.uint8)
    arr[..., 3] = 255
    arr[2:4, 2:5, 3] = 0  # the hole is transparent; the colour is black everywhere
    path = save(tmp_path / "m.png", arr)
    with pytest.raises(UncropError, match="mask: its luminance is the same everywhere .* 'alpha'"):
        imageio.load_mask(path)
    assert float(imageio.load_mask(path, channel="alpha").sum()) == 6
    arr[..., 3] = 255  # opaque throughout: an empty mask, as drawn
    assert float(imageio.load_mask(save(tmp_path / "m.png", arr)).sum()) == 0


def test_big_photos_are_read_and_bigger_than_any_canvas_refused(tmp_path, monkeypatch):
    # Pillow's own guard refused a 16384x11200 photo (183 Mpx) that the CLI itself
    # writes; Uncrop's limit is its largest canvas, checked before decoding.
    monkeypatch.setattr(imageio, "MAX_SIDE", 8)
    path = save(tmp_path / "a.png", np.zeros((8, 8, 3), np.uint8))
    assert imageio.load_image(path)[0].shape == (1, 8, 8, 3)
    with pytest.raises(UncropError, match=r"image: .*b\.png is 9x8 px, more than the 8x8"):
        imageio.load_image(save(tmp_path / "b.png", np.zeros((8, 9, 3), np.uint8)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # Pillow's guard, lowered
    assert imageio.load_image(path)[0].shape == (1, 8, 8, 3)
    assert Image.MAX_IMAGE_PIXELS == 10  # and left as it was


def _png16_rgb(arr: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one)."""
    import struct
    import zlib

    h, w, _ = arr.shape
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + (chunk(b"IEND", b""))
    )


def test_16bit_colour_is_read_with_8_bits_and_says_so(tmp_path, caplog):
    # Pillow reads 16-bit colour as 8 bits: the precision lost is reported, not hidden
    arr = (np.arange(60).reshape(4, 5, 3) * 1000 + 7).astype(np.uint16)
    with caplog.at_level("WARNING"):
        image, _ = imageio.load_image(_png16_rgb(arr), name="--image")
    assert "--image: the file has 16 bits per colour channel" in caplog.text
    assert torch.allclose(image[0], torch.from_numpy(arr / 65535.0).float(), atol=1 / 255)
    caplog.clear()
    with caplog.at_level("WARNING"):
        imageio.load_image(save(tmp_path / "g16.png", arr[..., 0]))
        imageio.load_image(save(tmp_path / "rgb8.png", (arr // 257).astype(np.uint8)))
    assert "16 bits" not in caplog.text


@pytest.mark.parametrize(
    "channel,expected", [("luminance", 0.299), ("red", 1.0), ("green", 0.0), ("blue", 0.0)]
)
def test_mask_channels(tmp_path, channel, expected):
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[..., 0] = 255
    mask = imageio.load_mask(save(tmp_path / "m.png", arr), channel=channel)
    assert mask.shape == (1, 4, 4) and mask[0, 0, 0].item() == pytest.approx(expected, abs=1e-3)


def test_mask_alpha_is_inverted_like_loadimage(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 3] = 255
    arr[0, 0, 3] = 0
    mask = imageio.load_mask(save(tmp_path / "m.png", arr), channel="alpha")
    assert mask[0, 0, 0] == 1 and mask[0, 1, 1] == 0


def test_mask_alpha_without_alpha_is_an_actionable_error(tmp_path):
    path = save(tmp_path / "m.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(UncropError, match="^channel: expected one of alpha, luminance"):
        imageio.load_mask(path, channel="bogus", name="image")  # not the file's fault
    with pytest.raises(UncropError, match="no alpha channel.*luminance"):
        imageio.load_mask(path, channel="alpha")


def test_mask_invert_and_threshold(tmp_path):
    arr = np.array([[0, 100, 200, 255]], np.uint8)
    mask = imageio.load_mask(save(tmp_path / "m.png", arr), invert=True, threshold=0.5)
    assert mask.tolist() == [[[1.0, 1.0, 0.0, 0.0]]]


def test_mask_threshold_1_keeps_white(tmp_path):
    path = save(tmp_path / "m.png", np.array([[0, 254, 255]], np.uint8))
    assert imageio.load_mask(path, threshold=1.0).tolist() == [[[0.0, 0.0, 1.0]]]


@pytest.mark.parametrize("threshold", [1.5, -0.1, float("nan")])
def test_mask_threshold_out_of_range_is_refused(tmp_path, threshold):
    path = save(tmp_path / "m.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(UncropError, match=f"threshold: expected a value in 0..1, got {threshold}"):
        imageio.load_mask(path, threshold=threshold)


def test_not_an_image_and_missing_file(tmp_path):
    (tmp_path / "x.png").write_text("hello")
    with pytest.raises(UncropError, match=r"x\.png is not in an image format this can read \(PNG"):
        imageio.load_image(tmp_path / "x.png")
    with pytest.raises(UncropError, match="file not found"):
        imageio.load_image(tmp_path / "nope.png")


def test_resolve_in_folder_refuses_escape(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (tmp_path / "in" / "ok.png").write_bytes(b"x")
    assert imageio.resolve_in_folder(tmp_path / "in", "ok.png").name == "ok.png"
    for bad in ["../secret.png", str(tmp_path / "secret.png"), "sub/../../secret.png"]:
        with pytest.raises(UncropError, match="is outside the folder"):
            imageio.resolve_in_folder(tmp_path / "in", bad)
    # The folder is named as it is (ComfyUI's "[output]" names point elsewhere).
    with pytest.raises(UncropError, match=r"'missing.png' was not found in the folder .*in\."):
        imageio.resolve_in_folder(tmp_path / "in", "missing.png")
    for bad in ["a\x00b.png", "x" * 5000 + ".png"]:  # were a raw ValueError and OSError
        with pytest.raises(UncropError, match="is not a file name this system can open"):
            imageio.resolve_in_folder(tmp_path / "in", bad)


def test_save_image_roundtrip(tmp_path):
    img = torch.rand(1, 5, 7, 3)
    imageio.save_image(img, tmp_path / "o" / "x.png")
    back, _ = imageio.load_image(tmp_path / "o" / "x.png")
    assert torch.allclose(back, img, atol=1 / 255)


def test_8_bit_output_rounds_to_the_nearest_level(tmp_path):
    # Truncated, the filled pixels came out half a level dark on average.
    values = torch.tensor([0.0, 127.4, 127.6, 254.6, 255.0]) / 255
    image = values.view(1, 1, 5, 1).expand(1, 1, 5, 3)
    imageio.save_image(image, tmp_path / "r.png")
    assert np.asarray(Image.open(tmp_path / "r.png"))[0, :, 0].tolist() == [0, 127, 128, 255, 255]


def test_dark_32bit_mode_i_image_is_not_taken_for_8_bit(tmp_path):
    arr = np.full((4, 6), 200, np.int32)  # 200 of 65535: nearly black
    Image.fromarray(arr, mode="I").save(tmp_path / "dark.tif")
    image, _ = imageio.load_image(tmp_path / "dark.tif")
    assert image.max().item() == pytest.approx(200 / 65535, abs=1e-7)


@pytest.mark.parametrize("ext", [".png", ".webp", ".tif"])
def test_lossless_formats_keep_every_pixel_and_the_alpha(tmp_path, ext):
    gen = torch.Generator().manual_seed(0)
    img = (torch.randint(0, 256, (1, 9, 11, 4), generator=gen) / 255.0).float()
    imageio.save_image(img, tmp_path / f"x{ext}")
    back, mask = imageio.load_image(tmp_path / f"x{ext}", keep_alpha=True)
    assert back.shape == (1, 9, 11, 4)
    assert torch.equal((back * 255).round(), (img * 255).round())
    assert torch.allclose(mask, 1 - img[..., 3])


def test_jpeg_warns_that_it_is_lossy_and_drops_alpha(tmp_path, caplog):
    imageio.save_image(torch.rand(1, 8, 8, 4), tmp_path / "x.jpg")
    assert "no alpha channel" in caplog.text and "lossy" in caplog.text
    assert Image.open(tmp_path / "x.jpg").mode == "RGB"


def test_output_paths_are_checked_before_any_work(tmp_path):
    (tmp_path / "afile").write_text("")
    (tmp_path / "dir.png").mkdir()
    cases = [
        (tmp_path / "out.xyz", r"needs one of the extensions \.png, \.webp, \.tif"),
        (tmp_path / "noextension", "needs one of the extensions"),
        # Pillow writes these, but wrongly (.ico at 32x23) or only after the fill fails
        (tmp_path / "out.ico", "needs one of the extensions"),
        (tmp_path / "out.xbm", "needs one of the extensions"),
        (tmp_path / "dir.png", "is a folder"),
        (f"{tmp_path}/new.png/", "is a folder"),  # a Path would drop the slash
        (tmp_path / "afile" / "x.png", "is a file"),
    ]
    for path, message in cases:
        with pytest.raises(UncropError, match=message):
            imageio.output_format(path, "--output")
        with pytest.raises(UncropError, match=message):
            imageio.save_image(torch.rand(1, 4, 4, 3), path)
    assert imageio.output_format(tmp_path / "new" / "x.JPG") == "JPEG"


def test_a_format_too_small_for_the_image_is_refused_before_any_work(tmp_path):
    # WebP stores sides up to 16383 px; Pillow's own error came only after the fill
    assert imageio.output_format(tmp_path / "x.webp", "--output", (16383, 8)) == "WEBP"
    with pytest.raises(UncropError, match="--output: WEBP holds at most 16383 px .* 8x16384"):
        imageio.output_format(tmp_path / "x.webp", "--output", (8, 16384))
    with pytest.raises(UncropError, match="output: WEBP holds at most 16383"):
        imageio.save_image(torch.zeros(1, 16384, 1, 3), tmp_path / "x.webp")
    assert not (tmp_path / "x.webp").exists()
    assert imageio.output_format(tmp_path / "x.png", "--output", (16384, 16384)) == "PNG"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A loopback HTTP server with a PNG (also under a name with a space and an accent),
    a text page, a big PNG, redirects, a malformed response and a trickle."""
    root = tmp_path_factory.mktemp("www")
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(root / "mask.png")
    Image.fromarray(np.full((4, 4), 255, np.uint8)).save(root / "my mask é.png")
    (root / "page.html").write_text("<html></html>")
    (root / "big.png").write_bytes(b"\x89PNG" + b"0" * 5000)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def do_GET(self):
            if self.path.startswith("/redirect-"):
                target = {
                    "/redirect-file": "file:///etc/passwd",
                    "/redirect-ftp": "ftp://127.0.0.1/a.png",
                }
                self.send_response(302)
                self.send_header("Location", target[self.path])
                self.end_headers()
                return
            if self.path == "/malformed":
                self.wfile.write(b"not http at all\r\n\r\n")
                return
            if self.path == "/trickle":  # a byte every 0.1 s, each read well within a timeout
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()
                for _ in range(40):
                    self.wfile.write(b"0")
                    self.wfile.flush()
                    time.sleep(0.1)
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetch_url_reads_a_mask(server):
    data = imageio.fetch_url(f"{server}/mask.png")
    assert imageio.load_mask(data).min() == 1


def test_fetch_url_refuses_non_images_and_big_files(server):
    with pytest.raises(UncropError, match="text/html', not an image"):
        imageio.fetch_url(f"{server}/page.html")
    with pytest.raises(UncropError, match="over the 1000-byte limit"):
        imageio.fetch_url(f"{server}/big.png", max_bytes=1000)
    with pytest.raises(UncropError, match="could not download"):
        imageio.fetch_url(f"{server}/missing.png")


def test_fetch_url_refuses_other_schemes(server):
    for url in ["file:///etc/passwd", "ftp://example.com/a.png", "/etc/passwd", "http://"]:
        with pytest.raises(UncropError, match="only http:// and https://"):
            imageio.fetch_url(url)
    with pytest.raises(UncropError, match="file:///etc/passwd' is not allowed"):
        imageio.fetch_url(f"{server}/redirect-file")
    with pytest.raises(UncropError, match="refused a redirect to 'ftp://"):
        imageio.fetch_url(f"{server}/redirect-ftp")


def test_fetch_url_encodes_spaces_and_accents(server):
    """As a browser sends them: urllib refused the space and failed on the accent."""
    assert imageio.load_mask(imageio.fetch_url(f"{server}/my mask é.png")).min() == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:abc/m.png", "is not a valid URL"),
        ("http://[::1", "is not a valid URL"),
        ("/malformed", "could not download"),
    ],
)
def test_fetch_url_names_bad_urls_and_bad_responses(server, url, message):
    url = server + url if url.startswith("/") else url
    with pytest.raises(UncropError, match=f"mask_url: .*{message}"):
        imageio.fetch_url(url)
    assert imageio.is_url(url)


def test_fetch_url_timeout_covers_the_whole_download(server):
    start = time.monotonic()
    with pytest.raises(UncropError, match="took over 0.5 s to download"):
        imageio.fetch_url(f"{server}/trickle", timeout=0.5)
    assert time.monotonic() - start < 2.0  # the trickle lasts 4 s
