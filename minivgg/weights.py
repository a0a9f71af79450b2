"""Read VGG16 weights from a Keras HDF5 weight file, name for name.

The published files (``vgg16_weights_tf_dim_ordering_tf_kernels.h5`` and ``..._notop.h5``) use
Keras' legacy HDF5 layout, which every Keras since 1.x can still write:

    /                      attribute ``layer_names``: every layer, in model order (bytes or str;
    |                      a long list is split into ``layer_names0``, ``layer_names1``, ...)
    +-- block1_conv1/      one group per layer, attribute ``weight_names``: dataset paths relative
    |   +-- block1_conv1_W_1:0    to the group, in order (kernel, bias). The published files name
    |   +-- block1_conv1_b_1:0    them like this; Keras 3 writes ``block1_conv1/kernel``, Keras 2
    +-- block1_pool/             ``block1_conv1/kernel:0``. So the names are read, never guessed.
    ...                    Layers without weights (pools, flatten, the input) have an empty list.

A full model saved with ``model.save("x.h5")`` has the same tree under ``/model_weights``.

The layouts are Keras' own and need no change: a conv kernel is (KH, KW, C, K), a dense kernel
(D, U), and fc1's D = 7*7*512 runs over block5_pool flattened in (H, W, C) order, which is how
``flatten`` reshapes an NHWC array. Every shape is checked against the VGG16 table.
"""
import h5py
import numpy as np

from .errors import MinivggError
from .vgg16 import TOP


def _attr_list(group, name):
    """A string-list attribute, joined from its chunks ``name0``, ``name1``, ... if it was split."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, i = [], 0
        while f"{name}{i}" in group.attrs:
            values += list(group.attrs[f"{name}{i}"])
            i += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _weights_root(f, path):
    if "layer_names" in f.attrs or "layer_names0" in f.attrs:
        return f
    if "model_weights" in f:
        return f["model_weights"]
    raise MinivggError(f"{path} is an HDF5 file but not a Keras weight file (it has no layer_names)")


def _sniff(path):
    """A one-line reason why ``path`` is not HDF5, for the error message."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512).lstrip().lower()
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if head.startswith((b"<!doctype html", b"<html")):
        return "is an HTML page, not an HDF5 weight file (a failed download saved as .h5?)"
    if head.startswith(b"\x89hdf"):
        return "is a damaged or truncated HDF5 file (an interrupted download?)"
    return "is not an HDF5 weight file"


def _read(dataset, path):
    """A dataset as a float32 array, mapped from the file when it is stored plainly.

    The published files store every array contiguously, uncompressed, as little-endian float32:
    then the array is a read-only ``np.memmap`` of those bytes, which the OS pages in from its file
    cache as they are used (~10x faster than copying 530 MB through h5py). Anything else is read.
    """
    offset = dataset.id.get_offset()
    if dataset.chunks is None and dataset.compression is None and offset is not None and dataset.dtype == "<f4":
        return np.memmap(path, dtype="<f4", mode="r", offset=offset, shape=dataset.shape)  # fails if truncated
    return np.asarray(dataset, dtype=np.float32)


def read_weight_file(path, skip=()):
    """All weighted layers of a Keras HDF5 weight file.

    Returns:
    - a dict, in file order, layer name -> list of float32 arrays (kernel, bias); layers named in
      ``skip`` are listed but not read (None), which spares reading fc1's 400 MB when it is not used
    Raises MinivggError if the file is missing, is not HDF5, or is not in Keras' layout.
    """
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise MinivggError(f"weight file {path} does not exist") from None
    except IsADirectoryError:
        raise MinivggError(f"weight file {path} is a directory") from None
    except OSError:
        raise MinivggError(f"weight file {path} {_sniff(path)}") from None
    try:
        with f:
            root = _weights_root(f, path)
            layers = {}
            for name in _attr_list(root, "layer_names"):
                if name not in root:
                    raise MinivggError(f"weight file {path} lists layer {name!r} but has no group for it")
                group = root[name]
                names = _attr_list(group, "weight_names")
                if names:
                    layers[name] = None if name in skip else [_read(group[w], path) for w in names]
            return layers
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise MinivggError(f"weight file {path} is damaged or truncated ({e.__class__.__name__}: {e})") from None


def load_vgg16_weights(path, expected, include_top=None):
    """Load and check the VGG16 weights in ``path``.

    Inputs:
    - expected: layer name -> [kernel shape, bias shape] for every weighted layer of VGG16 with
      its top, in model order (from the table in ``vgg16.py``)
    - include_top: True (the file must hold fc1, fc2, predictions), False (ignore them if present),
      None (whatever the file holds)
    Returns:
    - (params, include_top): params maps layer name -> (kernel, bias) float32, C-contiguous
    """
    top = [name for name in expected if name in TOP]  # the weighted layers of the top: fc1, fc2, predictions
    layers = read_weight_file(path, skip=top if include_top is False else ())
    unknown = [name for name in layers if name not in expected]
    if unknown:
        raise MinivggError(
            f"{path} holds weights for layers VGG16 does not have ({', '.join(unknown[:4])}"
            f"{', ...' if len(unknown) > 4 else ''}): it is the weight file of another network"
        )
    has_top = any(name in layers for name in top)
    if include_top is None:
        include_top = has_top
    if include_top and not has_top:
        raise MinivggError(f"{path} holds no top (fc1, fc2, predictions): use include_top=False or the full file")
    params = {}
    for name, shapes in expected.items():
        if name in top and not include_top:
            continue
        if name not in layers:
            raise MinivggError(f"{path} has no weights for layer {name}: it is not a complete VGG16 weight file")
        arrays = layers[name]
        got = [a.shape for a in arrays]
        if got != [tuple(s) for s in shapes]:
            raise MinivggError(f"{path}: layer {name} has weights of shapes {got}, VGG16 needs {shapes}")
        kernel, bias = (np.ascontiguousarray(a) for a in arrays)
        params[name] = (kernel, bias)
    return params, include_top
