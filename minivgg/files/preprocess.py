"""From an image file to the array VGG16 was trained on: `load_image`, then `preprocess_input`.

Shapes: N batch, H height, W width, 3 colour channels (RGB from `load_image`, BGR after
`preprocess_input`). Images are NHWC, the layout of the published Keras weights.

    x = load_image("cat.jpg")            # (224, 224, 3) float32, RGB, values 0..255
    x = preprocess_input(x[None])        # (1, 224, 224, 3) float32, BGR, ImageNet means removed

Both follow Keras (`keras.utils.load_img` + `img_to_array`, and
`keras.applications.vgg16.preprocess_input`) value for value, so the published weights see the
inputs they were trained with. Where Keras would mangle an image people really have (16-bit
greyscale saturates, a phone photo comes out lying on its side), `load_image` does the sensible
thing instead and says so below.
"""
import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import MinivggError
from ..network.table import MIN_SIZE  # 32: the smallest side VGG16 takes (five 2x2 pools)

# The mean pixel of the ImageNet training set in B, G, R order: the "caffe" preprocessing that the
# original VGG16 (a Caffe model) was trained with, and that Keras' VGG16 weights inherit.
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)

# Keras' names for PIL's resampling filters (keras/src/utils/image_utils.py).
INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "hamming": Image.Resampling.HAMMING,
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}

# 16-bit greyscale modes; Pillow opens 16-bit PNG and TIFF as "I;16", older versions as "I".
_MODES_16BIT = ("I", "I;16", "I;16L", "I;16B", "I;16N")


def preprocess_input(x):
    """RGB 0..255 -> BGR minus the ImageNet mean pixel; == keras.applications.vgg16.preprocess_input.

    !!! IN PLACE for float input !!!
    Like Keras, a float array is MODIFIED IN PLACE and the result is a view of it: after
    ``y = preprocess_input(x)`` with float ``x``, ``x`` itself has lost its means (its channels stay
    in RGB order, ``y`` is the same memory seen in BGR order). Calling it twice on the same array
    subtracts the means twice. Pass ``x.copy()`` to keep ``x``. Integer input (e.g. uint8) is first
    converted to a new float32 array, so it is left untouched.

    Inputs:
    - x: (H, W, 3) or (N, H, W, 3), RGB, values in 0..255; float (any precision, kept) or
      integer/bool (converted to float32). Lists are converted to a new array first.

    Returns:
    - out: same shape as x, BGR, out[..., c] = x[..., 2 - c] - IMAGENET_MEAN_BGR[c]; no scaling.
      A view with a negative channel stride (not C-contiguous), exactly as Keras returns it.

    Raises MinivggError for another shape, a non-numeric dtype or a read-only float array.
    """
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.ndim not in (3, 4) or x.shape[-1] != 3:
        raise MinivggError(
            f"preprocess_input expects an RGB image (H, W, 3) or a batch (N, H, W, 3); got shape {x.shape}"
        )
    if x.dtype.kind in "biu":  # bool, signed, unsigned integers: a new float32 array, x untouched
        x = x.astype(np.float32)
    elif x.dtype.kind != "f":
        raise MinivggError(f"preprocess_input expects numbers (float or integer); got dtype {x.dtype}")
    elif not x.flags.writeable:
        raise MinivggError(
            "preprocess_input works in place on float arrays and this one is read-only; pass x.copy()"
        )

    x = x[..., ::-1]  # RGB -> BGR: (..., 3) view with the channel axis reversed, no copy
    x[..., 0] -= IMAGENET_MEAN_BGR[0]  # B; written through the view into the input's channel 2
    x[..., 1] -= IMAGENET_MEAN_BGR[1]  # G
    x[..., 2] -= IMAGENET_MEAN_BGR[2]  # R; into the input's channel 0
    return x


def load_image(path, target_size=(224, 224), interpolation="nearest", min_size=MIN_SIZE, min_source_size=1):
    """Read an image file as a float32 RGB array; == keras.utils.load_img + img_to_array, plus EXIF.

    Steps: decode the whole file (Pillow), turn it upright by its EXIF orientation, convert to
    8-bit RGB, resize to target_size, return as float32. For an upright 8-bit image this is value
    for value what ``img_to_array(load_img(path, target_size=target_size,
    interpolation=interpolation))`` gives.

    Inputs:
    - path: a file path (str, bytes, os.PathLike) or a binary file object (e.g. io.BytesIO).
    - target_size: (height, width) as in Keras -- NOT Pillow's (width, height) -- or None to keep
      the image's own size.
    - interpolation: Keras' name of the resampling filter: one of INTERPOLATIONS ("nearest", the
      Keras default, "bilinear", "bicubic", "hamming", "box", "lanczos").
    - min_size: the smallest height and width accepted for the returned array (VGG16 needs 32).
      With target_size given, it applies to target_size (any image of at least 1 x 1 pixel is
      resized to it); with target_size=None, to the image itself.
    - min_source_size: the smallest height and width accepted for the image itself, upright (after
      EXIF), before any resizing. 1 (any image) by default, as Keras; ``minivgg-visualize`` passes
      MIN_SIZE so that a 20-pixel strip is not blown up into a 224 x 224 smear.

    Returns:
    - x: (H, W, 3) float32, RGB, values 0..255; (H, W) = target_size, or the image's upright size.
      A new, writable array.

    Colour modes, converted like Keras (Pillow's ``convert("RGB")``) unless said otherwise:
    - L (grey), 1 (black and white): R = G = B.
    - RGBA, LA, P with transparency: the alpha channel is dropped, as Keras drops it; transparent
      pixels show whatever colour is stored under them.
    - CMYK: Pillow's conversion (no colour profile).
    - 16-bit greyscale (I;16, and I as older Pillow opens 16-bit files): v -> round(v / 257), clipped
      to 0..65535 first, so 0 -> 0 and 65535 -> 255 (what "16 to 8 bit" does in image editors).
      Keras' convert("RGB") would clip at 255 instead and turn almost every pixel white.
    - EXIF orientation (phone photos): applied before resizing (Keras ignores it).
    - Multi-frame files (GIF, TIFF): the first frame, as Keras.

    Raises MinivggError (one line, no traceback) for: a missing file, a directory, a file that is
    not an image, a truncated or corrupt image, an image over Pillow's decompression-bomb limit
    (PIL.Image.MAX_IMAGE_PIXELS; its warning counts as an error here too), an image or a
    target_size smaller than min_size, an image smaller than min_source_size, and bad arguments.
    A truncated file is only caught while PIL.ImageFile.LOAD_TRUNCATED_IMAGES is False, Pillow's
    default; minivgg never changes it.
    """
    _check_arguments(target_size, interpolation, min_size, min_source_size)
    name = _display_name(path)
    img = _decode_rgb(path, name)  # PIL image, mode RGB, upright; img.size is (W, H)
    _check_image_size(img, name, min_source_size)
    if target_size is None:
        _check_image_size(img, name, min_size, ": pass a target_size to resize it")
    else:
        height, width = target_size
        if img.size != (width, height):  # PIL sizes are (width, height)
            img = img.resize((width, height), INTERPOLATIONS[interpolation])
    return np.asarray(img, dtype=np.float32)  # (H, W, 3), as keras.utils.img_to_array


def _check_image_size(img, name, least, hint=""):
    """Refuse an upright PIL image narrower or lower than ``least`` pixels."""
    if min(img.size) < least:
        raise MinivggError(
            f"{name} is {img.width} x {img.height} pixels (width x height), too small: "
            f"VGG16 needs at least {least} x {least}{hint}"
        )


def _check_arguments(target_size, interpolation, min_size, min_source_size):
    for arg, value in (("min_size", min_size), ("min_source_size", min_source_size)):
        if not _is_int(value) or value < 1:
            raise MinivggError(f"{arg} must be a positive integer; got {value!r}")
    if interpolation not in INTERPOLATIONS:
        raise MinivggError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}")
    if target_size is None:
        return
    pair = isinstance(target_size, (tuple, list)) and len(target_size) == 2
    if not (pair and all(map(_is_int, target_size))):
        raise MinivggError(f"target_size must be (height, width) in pixels or None; got {target_size!r}")
    if min(target_size) < min_size:
        raise MinivggError(
            f"target_size {tuple(target_size)} is too small: VGG16 needs at least {min_size} pixels a side"
        )


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _display_name(path):
    """How messages name the image: the quoted path, or "the image file" for a file object."""
    if hasattr(path, "read"):
        return "the image file"
    try:
        return repr(os.fsdecode(path))  # repr: quotes, and escapes a newline in a file name
    except TypeError:
        raise MinivggError(
            f"load_image expects a file path or a binary file object; got {type(path).__name__}"
        ) from None


def _decode_rgb(path, name):
    """Open, fully decode, turn upright by EXIF, convert to 8-bit RGB. Every failure -> MinivggError."""
    if not hasattr(path, "read"):
        if not os.path.exists(path):
            raise MinivggError(f"image not found: {name}")
        if os.path.isdir(path):
            raise MinivggError(f"{name} is a directory, not an image file")
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # reads the header only
                img.load()  # decodes every pixel now, so a truncated file fails here and not later
                img = ImageOps.exif_transpose(img)  # a new image, upright
                return _to_rgb(img)
    except FileNotFoundError:
        raise MinivggError(f"image not found: {name}") from None
    except IsADirectoryError:
        raise MinivggError(f"{name} is a directory, not an image file") from None
    except PermissionError:
        raise MinivggError(f"no permission to read {name}") from None
    except UnidentifiedImageError:
        raise MinivggError(f"{name} is not an image file that Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise MinivggError(
            f"{name} is too large to decode safely: {_one_line(e)} "
            "(raise PIL.Image.MAX_IMAGE_PIXELS if you trust this file)"
        ) from None
    except Exception as e:  # noqa: BLE001
        # Only Pillow runs in this block, on the user's bytes, and its decoders signal a damaged
        # file with many types (OSError "image file is truncated", SyntaxError, ValueError,
        # EOFError, struct.error, ...): all of them mean "this file cannot be read".
        raise MinivggError(f"{name} could not be decoded (truncated or corrupt?): {_one_line(e)}") from None


def _to_rgb(img):
    """A PIL image in any mode -> 8-bit RGB (see load_image's docstring for each mode)."""
    if img.mode in _MODES_16BIT:
        v = np.asarray(img)  # (H, W) uint16 or int32
        v = np.rint(np.clip(v, 0, 65535) / 257.0).astype(np.uint8)  # 0..65535 -> 0..255, no ties
        img = Image.fromarray(v)  # mode L
    elif img.mode in ("P", "PA"):
        img = img.convert("RGBA")  # same colours as convert("RGB"), without Pillow's transparency warning
    return img if img.mode == "RGB" else img.convert("RGB")


def _one_line(e):
    return " ".join(str(e).split()) or type(e).__name__
