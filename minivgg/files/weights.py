"""Read weights from Keras' HDF5 files, name for name, in both layouts Keras writes.

**Legacy layout** (the published files ``vgg16_weights_tf_dim_ordering_tf_kernels.h5`` and
``..._notop.h5``, ``save_weights("x.h5")`` in every Keras, and ``model.save("x.h5")``):

    /                      attribute ``layer_names``: every layer, in model order (bytes or str;
    |                      a long list is split into ``layer_names0``, ``layer_names1``, ...)
    +-- block1_conv1/      one group per layer, attribute ``weight_names``: dataset paths relative
    |   +-- block1_conv1_W_1:0    to the group, in order (kernel, bias). The published files name
    |   +-- block1_conv1_b_1:0    them like this; Keras 3 writes ``block1_conv1/kernel``, Keras 2
    +-- block1_pool/             ``block1_conv1/kernel:0``. So the names are read, never guessed.
    ...                    Layers without weights (pools, flatten, the input) have an empty list.

A full model saved with ``model.save("x.h5")`` has the same tree under ``/model_weights`` and its
config (JSON) in the root attribute ``model_config``. A model nested in another (a VGG base inside
a ``Sequential``) is one group whose ``weight_names`` run over its layers: ``block1_conv1/kernel``,
``block1_conv2/kernel``, ...; the layer is then the name's parent component.

**Keras 3 layout** (``save_weights("x.weights.h5")``, and ``model.weights.h5`` inside a ``.keras``
archive): a group per layer at its *path* in the model, variables numbered in order:

    /layers/conv2d/vars/0          block1_conv1's kernel   (vars has attribute name="block1_conv1"
    /layers/conv2d/vars/1          block1_conv1's bias      since Keras 3.10; older files have none)
    /layers/conv2d_1/vars/0        block1_conv2's kernel
    /layers/functional/layers/conv2d/vars/0     the same, in a model nested in another

A path is the layer's class in snake case, numbered within its model (``conv2d``, ``conv2d_1``, ...),
so a file without the ``name`` attributes is read by path (``WeightFile.rename``), the paths
worked out from the model's structure.

The array layouts are Keras' own and need no change: a conv kernel is (KH, KW, C, K), a dense
kernel (D, U), and fc1's D = 7*7*512 runs over block5_pool flattened in (H, W, C) order, which is how
``flatten`` reshapes an NHWC array. ``load_params`` checks every shape against the model's table.
"""

import mmap

import h5py
import numpy as np

from ..errors import MinivggError


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


def _text_attr(obj, name):
    value = obj.attrs.get(name)
    return value.decode("utf8") if isinstance(value, bytes) else value


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
    if head.startswith(b"pk\x03\x04"):
        return "is a zip file cut short or damaged (its directory at the end is missing): a truncated .keras archive?"
    return "is not an HDF5 weight file"


def _legacy_layers(root):
    """Legacy layout: layer name -> [datasets] (kernel, bias), in file order."""
    layers = {}
    for name in _attr_list(root, "layer_names"):
        if name not in root:
            raise MinivggError(f"lists layer {name!r} but has no group for it")
        group = root[name]
        weight_names = _attr_list(group, "weight_names")
        parents = {w.rsplit("/", 2)[-2] if w.count("/") else name for w in weight_names}
        for w in weight_names:
            # A nested model's group holds several layers: the layer is the parent component of the
            # dataset path ("block1_conv1/kernel"). Otherwise the group is the layer ("fc1_1/kernel:0").
            layer = w.rsplit("/", 2)[-2] if len(parents) > 1 else name
            layers.setdefault(layer, []).append(group[w])
    return layers


def _keras3_layers(root):
    """Keras 3 layout: layer name (or path, for files without names) -> [vars/0, vars/1, ...]."""
    layers = {}

    def visit(path, obj):
        if isinstance(obj, h5py.Group) and path.endswith("/vars") and len(obj):
            name = _text_attr(obj, "name") or path[: -len("/vars")]  # "layers/conv2d" without a name
            if name in layers:
                raise MinivggError(f"holds two layers named {name!r}")
            layers[name] = [obj[str(i)] for i in range(len(obj))]  # "0", "1", ...: kernel, bias

    root["layers"].visititems(lambda p, o: visit("layers/" + p, o))
    return layers


class WeightFile:
    """An open Keras HDF5 weight file, in either layout.

    - ``layers``: layer name -> list of h5py datasets (kernel, bias), for every layer with weights
    - ``layout``: "legacy" or "keras3"; ``named``: False for a Keras 3 file without layer names
      (then ``layers`` is keyed by path until ``rename``)
    - ``config``: the model's saved config as JSON text (``model.save("x.h5")``), else None
    Use as a context manager; ``fileobj`` and ``offset`` read an HDF5 file stored inside another
    (``model.weights.h5`` in a ``.keras`` archive; offset None: ``fileobj`` is not in ``path`` as is,
    so nothing is mapped), ``path`` is what error messages show.
    """

    def __init__(self, path, fileobj=None, offset=0):
        self.path, self.offset, self.config = str(path), offset, None
        try:
            self.file = h5py.File(fileobj if fileobj is not None else path, "r")
        except FileNotFoundError:
            raise MinivggError(f"weight file {path} does not exist") from None
        except IsADirectoryError:
            raise MinivggError(f"weight file {path} is a directory") from None
        except OSError:
            why = "is a damaged or truncated HDF5 file" if fileobj is not None else _sniff(path)
            raise MinivggError(f"weight file {path} {why}") from None
        try:
            f = self.file
            if "layer_names" in f.attrs or "layer_names0" in f.attrs:
                self.layout, self.layers = "legacy", _legacy_layers(f)
            elif "model_weights" in f:
                self.layout, self.layers = "legacy", _legacy_layers(f["model_weights"])
                self.config = _text_attr(f, "model_config")
            elif isinstance(f.get("layers"), h5py.Group):
                self.layout, self.layers = "keras3", _keras3_layers(f)
            else:
                raise MinivggError("is an HDF5 file but not a Keras weight file (it has neither "
                                   "layer_names nor a layers group)")
            self.named = self.layout == "legacy" or all(not n.startswith("layers/") for n in self.layers)
        except MinivggError as e:
            self.close()
            raise MinivggError(f"weight file {path} {e}") from None
        except (OSError, KeyError, ValueError, TypeError) as e:
            self.close()
            raise MinivggError(f"weight file {path} is damaged or truncated ({e.__class__.__name__}: {e})") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.file.close()

    def rename(self, names):
        """Key the layers of a Keras 3 file without names by layer name: ``names`` maps path -> name."""
        self.layers = {names.get(path, path): datasets for path, datasets in self.layers.items()}
        self.named = True

    def read(self, name):
        """Layer ``name``'s arrays as float32, C-contiguous (mapped from the file when stored plainly)."""
        try:
            return [_read(d, self.path, self.offset) for d in self.layers[name]]
        except (OSError, KeyError, ValueError, TypeError) as e:
            raise MinivggError(
                f"weight file {self.path} is damaged or truncated ({e.__class__.__name__}: {e})"
            ) from None


def _read(dataset, path, base=0):
    """A dataset as a float32 array, mapped from the file when it is stored plainly.

    The published files store every array contiguously, uncompressed, as little-endian float32:
    then the array is a read-only ``np.memmap`` of those bytes, which the OS pages in from its file
    cache as they are used (far faster than copying 530 MB through h5py: docs/performance.md). ``base``: where the HDF5
    file starts inside ``path`` (0, or its offset inside a ``.keras`` archive; None: not in ``path``
    byte for byte, read it). Anything else is read.
    """
    offset = dataset.id.get_offset()
    if base is not None and dataset.chunks is None and dataset.compression is None and offset is not None and dataset.dtype == "<f4":
        # np.memmap fails (ValueError) if the file is shorter than offset + size: a truncated file
        return np.memmap(path, dtype="<f4", mode="r", offset=base + offset, shape=dataset.shape)
    return np.ascontiguousarray(dataset, dtype=np.float32)


def read_weight_file(path, skip=()):
    """All weighted layers of a Keras HDF5 weight file, either layout.

    Returns:
    - a dict, in file order, layer name -> list of float32 arrays (kernel, bias); layers named in
      ``skip`` are listed but not read (None), which spares reading fc1's 400 MB when it is not used
    Raises MinivggError if the file is missing, is not HDF5, or is not in a Keras layout.
    """
    with WeightFile(path) as f:
        return {name: None if name in skip else f.read(name) for name in f.layers}


def load_params(f, expected, title="VGG16", ignore=(), hint=""):
    """Read and check the weights a model's table expects from an open ``WeightFile`` (or archive).

    Inputs:
    - expected: layer name -> [kernel shape, bias shape] for every weighted layer the model has, in
      model order (from its table)
    - title: the network's name, for messages
    - ignore: weighted layers of the file the model leaves out on purpose (a top not asked for)
    - hint: added to the message about layers the model does not have
    Returns:
    - params: layer name -> (kernel, bias) float32, C-contiguous
    Raises MinivggError naming the first layer that is missing, unknown or of the wrong shape.
    """
    unknown = [name for name in f.layers if name not in expected and name not in ignore]
    if unknown:
        raise MinivggError(
            f"{f.path} holds weights for layers {title} does not have ({', '.join(unknown[:4])}"
            f"{', ...' if len(unknown) > 4 else ''}): it is the weight file of another network{hint}"
        )
    params = {}
    for name, shapes in expected.items():
        if name not in f.layers:
            raise MinivggError(f"{f.path} has no weights for layer {name}: it is not a complete {title} weight file")
        arrays = f.read(name)
        got = [a.shape for a in arrays]
        if got != [tuple(s) for s in shapes]:
            raise MinivggError(f"{f.path}: layer {name} has weights of shapes {got}, {title} needs {shapes}")
        kernel, bias = (np.ascontiguousarray(a) for a in arrays)
        params[name] = (kernel, bias)
    return params


def release(*arrays):
    """Drop the pages of weight arrays mapped from a file (``_read``) from this process's memory.

    Memory hygiene for long runs: a mapped layer's pages count in the process's resident memory
    from its first use on (all 58 MB of the notop file by block5, fc1's 411 MB with the top).
    Released, they stay in the OS's file cache, and the next use maps them back without reading
    the disk. Arrays that are not mapped (read, or random) are left alone.
    """
    for a in arrays:
        while a is not None and not isinstance(getattr(a, "_mmap", None), mmap.mmap):
            a = getattr(a, "base", None)  # np.ascontiguousarray(memmap) is a view: its base is the memmap
        if a is not None:
            a._mmap.madvise(mmap.MADV_DONTNEED)
