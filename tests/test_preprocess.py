"""preprocess_input and load_image against Keras, and load_image on the images people really have.

Shapes are lopsided on purpose (H != W, odd sizes, N > 1): a swapped height and width fails them.
All comparisons are exact: both sides run the same float32 operations on the same 8-bit pixels.
"""
import io
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

from minivgg.errors import MinivggError
from minivgg.files.preprocess import IMAGENET_MEAN_BGR, load_image, preprocess_input

MEAN_BGR = np.array(IMAGENET_MEAN_BGR, dtype=np.float32)  # (3,)


def rgb_pixels(shape, seed=0):
    """Integer-valued float32 RGB pixels 0..255, like load_image returns."""
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.float32)


def one_line_error(excinfo):
    message = str(excinfo.value)
    assert message and "\n" not in message, repr(message)
    return message


# ---- preprocess_input ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 7, 3), (2, 5, 7, 3)], ids=["single", "batch"])
def test_preprocess_input_formula(shape):
    x = rgb_pixels(shape)
    expected = x[..., ::-1] - MEAN_BGR  # BGR minus the BGR means, in float32 like Keras
    out = preprocess_input(x.copy())
    assert out.shape == shape and out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


def test_preprocess_input_float_works_in_place():
    x = rgb_pixels((2, 5, 7, 3))
    original = x.copy()
    out = preprocess_input(x)
    assert np.shares_memory(out, x)  # a view of the input, not a copy
    np.testing.assert_array_equal(x, original - MEAN_BGR[::-1])  # input: still RGB, means gone
    np.testing.assert_array_equal(out, x[..., ::-1])  # output: the same memory seen as BGR
    again = preprocess_input(x)  # the documented trap: a second call subtracts the means again
    np.testing.assert_array_equal(again, original[..., ::-1] - MEAN_BGR - MEAN_BGR)


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, bool])
def test_preprocess_input_integer_makes_a_new_float32_array(dtype):
    x = np.random.default_rng(1).integers(0, 2 if dtype is bool else 256, (5, 7, 3)).astype(dtype)
    original = x.copy()
    out = preprocess_input(x)
    assert out.dtype == np.float32 and not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, original)  # untouched
    np.testing.assert_array_equal(out, original.astype(np.float32)[..., ::-1] - MEAN_BGR)


def test_preprocess_input_keeps_float64():
    x = rgb_pixels((3, 5, 3)).astype(np.float64)
    out = preprocess_input(x.copy())
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, x[..., ::-1] - np.array(IMAGENET_MEAN_BGR))


@pytest.mark.tensorflow
@pytest.mark.parametrize("shape", [(5, 7, 3), (2, 5, 7, 3)], ids=["single", "batch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_preprocess_input_equals_keras(tf, shape, dtype):
    import keras

    x = rgb_pixels(shape, seed=2).astype(dtype)
    ours_in, keras_in = x.copy(), x.copy()
    ours = preprocess_input(ours_in)
    theirs = keras.applications.vgg16.preprocess_input(keras_in)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours_in, keras_in)  # the input modified (or not) the same way
    assert np.shares_memory(ours, ours_in) == np.shares_memory(theirs, keras_in)


@pytest.mark.parametrize(
    "x",
    [np.zeros((5, 7)), np.zeros((5, 7, 4)), np.zeros((1, 1, 5, 7, 3)), np.zeros((5, 7, 3), complex),
     np.full((5, 7, 3), "a")],
    ids=["2d", "4-channels", "5d", "complex", "strings"],
)
def test_preprocess_input_refuses(x):
    with pytest.raises(MinivggError) as e:
        preprocess_input(x)
    one_line_error(e)


def test_preprocess_input_refuses_read_only_float():
    x = rgb_pixels((5, 7, 3))
    x.flags.writeable = False
    with pytest.raises(MinivggError) as e:
        preprocess_input(x)
    assert "copy" in one_line_error(e)


# ---- load_image: equal to Keras ------------------------------------------------------------------


def keras_load(path, **kwargs):
    import keras

    return keras.utils.img_to_array(keras.utils.load_img(path, **kwargs))


@pytest.mark.tensorflow
@pytest.mark.parametrize(
    "target_size, interpolation",
    [((224, 224), "nearest"), ((160, 224), "nearest"), ((224, 160), "bilinear"), (None, "nearest")],
)
def test_load_image_equals_keras_on_photo(tf, photo, target_size, interpolation):
    ours = load_image(photo, target_size=target_size, interpolation=interpolation)
    theirs = keras_load(photo, target_size=target_size, interpolation=interpolation)
    expected_shape = (600, 512, 3) if target_size is None else (*target_size, 3)  # photo: 512 wide, 600 high
    assert ours.shape == theirs.shape == expected_shape
    assert ours.dtype == theirs.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)


def make_mode_images(folder):
    """One small file per colour mode that Keras converts with Pillow as we do. Returns {mode: path}."""
    rng = np.random.default_rng(3)
    h, w = 34, 40  # >= 32 a side, lopsided
    paths = {}

    def save(key, img, fmt="PNG"):
        paths[key] = folder / f"{key}.{fmt.lower()}"
        img.save(paths[key], fmt)

    save("L", Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)))
    save("LA", Image.fromarray(rng.integers(0, 256, (h, w, 2), dtype=np.uint8), mode="LA"))
    save("RGBA", Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8)))
    save("1", Image.fromarray(rng.integers(0, 2, (h, w)).astype(bool)))
    save("CMYK", Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), mode="CMYK"), "TIFF")
    palette = Image.fromarray(rng.integers(0, 4, (h, w), dtype=np.uint8), mode="P")
    palette.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0, 90, 90, 90])
    save("P", palette)
    palette.info["transparency"] = 1  # colour 1 is transparent
    save("P-transparent", palette)
    palette.info["transparency"] = bytes([255, 0, 128, 255])  # an alpha per colour
    save("P-alphas", palette)
    palette.info["transparency"] = 1
    save("P-transparent-gif", palette, "GIF")
    return paths


@pytest.mark.tensorflow
@pytest.mark.parametrize("target_size", [None, (45, 33)])
# Keras' convert("RGB") of "P-alphas" warns; load_image does not (test_load_image_palette).
@pytest.mark.filterwarnings("ignore:Palette images with Transparency:UserWarning")
def test_load_image_equals_keras_on_every_mode(tf, tmp_path, target_size):
    for key, path in make_mode_images(tmp_path).items():
        ours = load_image(path, target_size=target_size)
        theirs = keras_load(path, target_size=target_size)
        assert ours.shape == theirs.shape == ((34, 40, 3) if target_size is None else (45, 33, 3)), key
        np.testing.assert_array_equal(ours, theirs, err_msg=key)


# ---- load_image: each mode gives the right pixels ------------------------------------------------


def test_load_image_grey_stays_grey(tmp_path):
    grey = np.random.default_rng(4).integers(0, 256, (34, 40), dtype=np.uint8)
    grey[0, 0] = 128
    Image.fromarray(grey).save(tmp_path / "grey.png")
    out = load_image(tmp_path / "grey.png", target_size=None)
    assert out.shape == (34, 40, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(out[0, 0], [128, 128, 128])


def test_load_image_drops_alpha(tmp_path):
    rgba = np.random.default_rng(5).integers(0, 256, (34, 40, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: the stored colours come through, as in Keras
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png", target_size=None), rgba[..., :3])
    la = np.stack([rgba[..., 0], rgba[..., 3]], axis=2)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png", target_size=None)
    np.testing.assert_array_equal(out, np.repeat(la[..., :1], 3, axis=2))


def test_load_image_palette(tmp_path):
    colours = np.array([[10, 20, 30], [200, 100, 50], [0, 255, 0]], dtype=np.uint8)  # (3, 3)
    indices = np.random.default_rng(6).integers(0, 3, (34, 40), dtype=np.uint8)
    img = Image.fromarray(indices, mode="P")
    img.putpalette(colours.ravel().tolist())
    # one transparent colour (PNG and GIF), and an alpha per colour (PNG tRNS as bytes, for which
    # Pillow's convert("RGB") warns "should be converted to RGBA images")
    for fmt, transparency in (("PNG", 1), ("GIF", 1), ("PNG", bytes([255, 0, 128]))):
        img.info["transparency"] = transparency
        path = tmp_path / f"palette-{type(transparency).__name__}.{fmt.lower()}"
        img.save(path, fmt)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no Pillow warning reaches the user
            out = load_image(path, target_size=None)
        np.testing.assert_array_equal(out, colours[indices], err_msg=f"{fmt} {transparency!r}")


def test_load_image_cmyk_and_bilevel(tmp_path):
    cmyk = np.zeros((34, 40, 4), dtype=np.uint8)  # white: no ink
    cmyk[:, :10] = (0, 255, 255, 0)  # magenta + yellow = red
    cmyk[:, 10:20, 3] = 255  # black ink
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "cmyk.tif")
    out = load_image(tmp_path / "cmyk.tif", target_size=None)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 15], [0, 0, 0])
    np.testing.assert_array_equal(out[0, 30], [255, 255, 255])

    bits = np.zeros((34, 40), dtype=bool)
    bits[:, 25:] = True
    Image.fromarray(bits).save(tmp_path / "bits.png")
    out = load_image(tmp_path / "bits.png", target_size=None)
    np.testing.assert_array_equal(out, np.repeat(bits[..., None], 3, axis=2) * 255.0)


def test_load_image_16bit_grey_scales_to_8bit(tmp_path):
    values = np.array([0, 257 * 100, 65535, 128 * 257, 12345, 128], dtype=np.uint16)
    expected = np.array([0, 100, 255, 128, 48, 0], dtype=np.float32)  # round(v / 257); 12345/257 = 48.04
    image = np.tile(values, (33, 7))  # (33, 42) uint16
    Image.fromarray(image).save(tmp_path / "grey16.png")
    with Image.open(tmp_path / "grey16.png") as img:
        assert img.mode == "I;16"  # Pillow's 16-bit mode: the case under test
    out = load_image(tmp_path / "grey16.png", target_size=None)
    assert out.shape == (33, 42, 3)
    np.testing.assert_array_equal(out[0, :6], np.repeat(expected[:, None], 3, axis=1))

    # mode "I" (32-bit signed; older Pillow opens 16-bit files so): also 0..65535, clipped.
    int32 = np.tile(np.array([0, 257 * 100, 65535, 70000, -5, 128 * 257], dtype=np.int32), (33, 7))
    Image.fromarray(int32).save(tmp_path / "grey32.tif")
    with Image.open(tmp_path / "grey32.tif") as img:
        assert img.mode == "I"
    out = load_image(tmp_path / "grey32.tif", target_size=None)
    np.testing.assert_array_equal(out[0, :6, 0], [0, 100, 255, 255, 0, 128])
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def marked_image():
    """(40, 64, 3) uint8, blue with a red top-left 16x16 corner: 64 wide, 40 high, 8x8-block aligned."""
    img = np.zeros((40, 64, 3), dtype=np.uint8)
    img[...] = (0, 0, 255)
    img[:16, :16] = (255, 0, 0)
    return img


def save_with_orientation(array, path, orientation, fmt):
    exif = Image.Exif()
    exif[0x0112] = orientation  # EXIF "Orientation" tag
    Image.fromarray(array).save(path, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))


def test_load_image_applies_exif_orientation(tmp_path):
    stored = marked_image()  # (40, 64, 3): red at the stored top-left
    path = tmp_path / "rotated.png"
    save_with_orientation(stored, path, 6, "PNG")  # 6: "rotate 90 degrees clockwise to display"
    out = load_image(path, target_size=None)
    assert out.shape == (64, 40, 3)  # upright: 40 wide, 64 high
    np.testing.assert_array_equal(out, np.rot90(stored, k=-1))  # k=-1: clockwise
    np.testing.assert_array_equal(out[0, -1], [255, 0, 0])  # the red corner is now top-right
    np.testing.assert_array_equal(out[0, 0], [0, 0, 255])

    # Rotation happens before resizing: the upright 40 x 64 image is stretched to 60 x 96, not
    # the stored 64 x 40 one (that would come out 96 wide and 60 high).
    out = load_image(path, target_size=(96, 60))
    assert out.shape == (96, 60, 3)
    np.testing.assert_array_equal(out[0, -1], [255, 0, 0])
    np.testing.assert_array_equal(out[-1, 0], [0, 0, 255])


def test_load_image_applies_exif_orientation_jpeg(tmp_path):
    path = tmp_path / "rotated.jpg"  # as phones write them
    save_with_orientation(marked_image(), path, 6, "JPEG")
    out = load_image(path, target_size=None)
    assert out.shape == (64, 40, 3)
    # JPEG is lossy: corner pixels of flat 8x8-aligned blocks stay within a few levels; 40 leaves
    # room for chroma subsampling while red and blue still differ by 255 in two channels.
    np.testing.assert_allclose(out[0, -1], [255, 0, 0], atol=40)
    np.testing.assert_allclose(out[0, 0], [0, 0, 255], atol=40)


def test_load_image_target_size_is_height_width(tmp_path):
    # columns 0..59 hold their own index in red: after a nearest resize to width 120, column j
    # holds j // 2. Swapping height and width would give the wrong shape and columns.
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[..., 0] = np.arange(60, dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "columns.png")
    out = load_image(tmp_path / "columns.png", target_size=(40, 120))
    assert out.shape == (40, 120, 3)
    np.testing.assert_array_equal(out[7, :, 0], np.arange(120) // 2)


def test_load_image_very_wide_and_tall(tmp_path):
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (33, 1000, 3), dtype=np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(rng.integers(0, 256, (1500, 1, 3), dtype=np.uint8)).save(tmp_path / "thread.png")
    assert load_image(tmp_path / "wide.png").shape == (224, 224, 3)
    assert load_image(tmp_path / "wide.png", target_size=None).shape == (33, 1000, 3)
    assert load_image(tmp_path / "thread.png").shape == (224, 224, 3)  # 1 pixel wide: resized
    with pytest.raises(MinivggError) as e:  # ... but not usable at its own size
        load_image(tmp_path / "thread.png", target_size=None)
    assert "1 x 1500" in one_line_error(e)


def test_load_image_file_object_and_writable_result(photo):
    from_path = load_image(photo)
    from_bytes = load_image(io.BytesIO(photo.read_bytes()))
    np.testing.assert_array_equal(from_path, from_bytes)
    assert from_path.dtype == np.float32 and from_path.flags.writeable
    preprocess_input(from_path)  # in place on the loaded array: must not raise


def test_load_image_min_size(tmp_path):
    Image.new("RGB", (31, 40)).save(tmp_path / "narrow.png")  # 31 wide
    with pytest.raises(MinivggError) as e:
        load_image(tmp_path / "narrow.png", target_size=None)
    assert "32" in one_line_error(e)
    assert load_image(tmp_path / "narrow.png", target_size=None, min_size=31).shape == (40, 31, 3)
    assert load_image(tmp_path / "narrow.png").shape == (224, 224, 3)


# ---- load_image: refusals ------------------------------------------------------------------------


def bad_files(folder, photo):
    """{reason: path} for files that cannot be loaded."""
    (folder / "dir.jpg").mkdir()
    (folder / "text.jpg").write_text("this is not an image\n")
    (folder / "empty.png").write_bytes(b"")
    jpeg = photo.read_bytes()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    png = io.BytesIO()
    Image.fromarray(np.random.default_rng(8).integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(png, "PNG")
    (folder / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (folder / "garbled.png").write_bytes(png.getvalue()[:100] + bytes(200) + png.getvalue()[300:])
    return {
        "missing": folder / "missing.jpg",
        "directory": folder / "dir.jpg",
        "not an image": folder / "text.jpg",
        "empty": folder / "empty.png",
        "truncated jpeg": folder / "truncated.jpg",
        "truncated png": folder / "truncated.png",
        "garbled png": folder / "garbled.png",
    }


def test_load_image_refuses_bad_files(tmp_path, photo):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # else Pillow pads truncated files with grey
    expected_words = {
        "missing": "not found",
        "directory": "directory",
        "not an image": "not an image",
        "empty": "not an image",
        "truncated jpeg": "truncated",
        "truncated png": "truncated",
        "garbled png": "decoded",
    }
    for reason, path in bad_files(tmp_path, photo).items():
        with pytest.raises(MinivggError) as e:
            load_image(path)
        message = one_line_error(e)
        assert expected_words[reason] in message, (reason, message)
        assert path.name in message, (reason, message)


@pytest.mark.parametrize("pixels, reason", [(40 * 40, "warning"), (50 * 50, "error")])
def test_load_image_refuses_decompression_bombs(tmp_path, monkeypatch, pixels, reason):
    # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; we refuse both. A small
    # limit stands in for the real one (89 million pixels) to keep the test light.
    side = int(pixels**0.5)
    Image.new("RGB", (side, side)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    filters = list(warnings.filters)
    with pytest.raises(MinivggError) as e:
        load_image(tmp_path / "bomb.png")
    assert "too large" in one_line_error(e)
    assert warnings.filters == filters  # our "warning is an error" filter did not leak


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_size": (16, 224)},
        {"target_size": 224},
        {"target_size": (224,)},
        {"target_size": (0, 224)},
        {"target_size": (224.0, 224)},
        {"interpolation": "cubic"},
        {"min_size": 0},
        {"target_size": None, "min_size": 2.5},
    ],
    ids=lambda kwargs: repr(kwargs),
)
def test_load_image_refuses_bad_arguments(photo, kwargs):
    with pytest.raises(MinivggError) as e:
        load_image(photo, **kwargs)
    one_line_error(e)


def test_load_image_refuses_a_non_path():
    with pytest.raises(MinivggError) as e:
        load_image(123)
    assert "int" in one_line_error(e)


def test_load_image_min_source_size_is_checked_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation 6: upright, the stored 300 x 20 strip is 20 wide, 300 high
    Image.new("RGB", (300, 20), (200, 100, 50)).save(tmp_path / "strip.jpg", exif=exif.tobytes())
    assert load_image(tmp_path / "strip.jpg").shape == (224, 224, 3)  # default 1: any image is resized
    assert load_image(tmp_path / "strip.jpg", min_source_size=20).shape == (224, 224, 3)
    with pytest.raises(MinivggError) as e:
        load_image(tmp_path / "strip.jpg", min_source_size=32)
    message = one_line_error(e)
    assert "strip.jpg" in message and "20 x 300" in message and "too small" in message and "32" in message
    with pytest.raises(MinivggError) as e:
        load_image(tmp_path / "strip.jpg", target_size=None, min_size=8, min_source_size=21)  # either floor
    assert "21" in one_line_error(e)


@pytest.mark.parametrize("value", [0, 2.5, True])
def test_load_image_refuses_bad_min_source_size(photo, value):
    with pytest.raises(MinivggError) as e:
        load_image(photo, min_source_size=value)
    assert "min_source_size" in one_line_error(e)
