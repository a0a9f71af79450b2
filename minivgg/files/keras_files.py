"""Open any file Keras writes for a model, without Keras: weights, and the saved config if any.

    file                                  written by                   weights            config
    x.h5 (published VGG files too)        save_weights("x.h5")         legacy layout      -
    x.h5                                  model.save("x.h5")           legacy layout      root attribute model_config
    x.weights.h5                          save_weights("x.weights.h5") Keras 3 layout     -
    x.keras (a zip)                       model.save("x.keras")        model.weights.h5   config.json

``weights.py`` reads both HDF5 layouts. This file adds the ``.keras`` archive, a zip holding
``metadata.json``, ``config.json`` and ``model.weights.h5``. Keras stores the members uncompressed,
so the weights are read in place: h5py gets a window onto the archive's bytes, and plain arrays are
mapped from the archive itself (``weights._read``). An archive someone re-zipped with compression is
decompressed into memory instead. Nothing is ever extracted to disk.

``read_config`` turns the saved config into a flat list of ``KerasLayer``: each layer's name, class,
settings, Keras 3 weight path and inputs, models nested in others inlined, in the config's order;
``keras_model.py`` accepts only a plain chain of layers (each takes the previous one's output). Whatever a
config names is only ever compared with known strings: no name or text from a file becomes a path
or code.
"""
import io
import json
import re
import struct
import zipfile
from typing import NamedTuple

from ..errors import MinivggError
from .weights import WeightFile

MAX_CONFIG_BYTES = 64 << 20  # a VGG's config.json is ~20 KB; refuse to read a member claiming more
MODELS = ("Functional", "Sequential", "Model")  # classes that hold layers (Keras 2 called Functional "Model")


class KerasLayer(NamedTuple):
    name: str  # the layer's name, e.g. "block1_conv1", "dense_1"
    cls: str  # its Keras class, e.g. "Conv2D", "Dense", "Dropout"
    config: dict  # its settings as saved ("filters", "activation", ...)
    path: str  # where a Keras 3 weight file keeps its variables, e.g. "layers/conv2d_1"
    inbound: tuple = ()  # the layers feeding it, as its config says (a functional model's; () if not said)
    after: str = ""  # the layer before it in the config's list: a plain chain has inbound == (after,)


class SavedModel(NamedTuple):
    layers: list  # [KerasLayer], input layers left out
    input_shape: tuple  # (H, W, C) as saved, None for a free size


# ---------------------------------------------------------------- the .keras archive


class _Window(io.RawIOBase):
    """A read-only file object over bytes [start, start + size) of an open file: h5py reads an HDF5
    file stored uncompressed inside a zip through it, without copying it out."""

    def __init__(self, fh, start, size):
        self.fh, self.start, self.size, self.pos = fh, start, size, 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, pos, whence=io.SEEK_SET):
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + pos
        return self.pos

    def tell(self):
        return self.pos

    def readinto(self, buffer):
        n = max(0, min(len(buffer), self.size - self.pos))
        self.fh.seek(self.start + self.pos)
        got = self.fh.readinto(memoryview(buffer)[:n])
        self.pos += got
        return got


def _member_start(fh, info):
    """Where a zip member's data starts: after its local header (30 bytes, the name, an extra field)."""
    fh.seek(info.header_offset)
    header = fh.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"no local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


class KerasArchive:
    """An open ``.keras`` archive: ``layers`` and ``read`` as an open ``WeightFile``, ``config`` text."""

    def __init__(self, path):
        self.path = str(path)
        why = None
        try:
            self.fh = open(path, "rb")
        except OSError as e:
            raise MinivggError(f"weight file {path} cannot be read ({e.strerror})") from None
        try:
            zf = zipfile.ZipFile(self.fh)
            names = set(zf.namelist())
            missing = [m for m in ("config.json", "model.weights.h5") if m not in names]
            if missing:
                why = f"is a zip file but not a Keras archive (.keras): it has no {' or '.join(missing)}"
            else:
                info = zf.getinfo("config.json")
                if info.file_size > MAX_CONFIG_BYTES:
                    why = f"is not a Keras archive: its config.json claims {info.file_size:,} bytes"
                else:
                    self.config = zf.read("config.json").decode("utf8")
                    info = zf.getinfo("model.weights.h5")
                    start = _member_start(self.fh, info)
                    if info.compress_type != zipfile.ZIP_STORED:  # not as Keras writes it: inflate it in memory
                        data = io.BytesIO(zf.read("model.weights.h5"))  # checks the CRC: a damaged member fails
                        self.weights = WeightFile(self.path, fileobj=data, offset=None)
                    elif start + info.file_size > self._length():
                        why = "is a damaged or truncated Keras archive (model.weights.h5 is cut short)"
                    else:
                        window = io.BufferedReader(_Window(self.fh, start, info.file_size), 1 << 20)
                        self.weights = WeightFile(self.path, fileobj=window, offset=start)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, UnicodeDecodeError, OSError) as e:
            why = f"is a damaged or truncated Keras archive ({e.__class__.__name__}: {e})"
        except MinivggError:
            self.fh.close()
            raise
        if why:
            self.fh.close()
            raise MinivggError(f"weight file {path} {why}")
        self.layers = self.weights.layers
        self.named = self.weights.named

    def _length(self):
        self.fh.seek(0, io.SEEK_END)
        return self.fh.tell()

    def read(self, name):
        return self.weights.read(name)

    def rename(self, names):
        self.weights.rename(names)
        self.layers = self.weights.layers
        self.named = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.weights.close()
        self.fh.close()


def open_model_file(path):
    """Open a Keras weight file or archive: a ``WeightFile`` or a ``KerasArchive``, by content (not name)."""
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError:
        is_zip = False  # missing, a directory, unreadable: WeightFile says which
    return KerasArchive(path) if is_zip else WeightFile(path)


# ---------------------------------------------------------------- the saved config


def snake_case(name):
    """Keras' ``naming.to_snake_case``: "MaxPooling2D" -> "max_pooling2d", the start of a weight path."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_paths(classes, prefix="layers"):
    """Keras 3's weight paths of a model's layers, given their classes in model order:
    ["Conv2D", "Conv2D", "Dense"] -> ["layers/conv2d", "layers/conv2d_1", "layers/dense"]."""
    used, paths = {}, []
    for cls in classes:
        key = snake_case(cls)
        if key in used:
            used[key] += 1
            key = f"{key}_{used[key]}"
        else:
            used[key] = 0
        paths.append(f"{prefix}/{key}")
    return paths


def _inbound(layer):
    """The names of the layers feeding ``layer`` in a functional config (Keras 3 and Keras 2 forms)."""
    nodes = layer.get("inbound_nodes") or []
    names = []
    for node in nodes:
        if isinstance(node, dict):  # Keras 3: {"args": [{"config": {"keras_history": [name, 0, 0]}}], ...}
            for arg in node.get("args", []):
                for item in arg if isinstance(arg, list) else [arg]:
                    history = item.get("config", {}).get("keras_history") if isinstance(item, dict) else None
                    if history:
                        names.append(history[0])
        elif isinstance(node, list):  # Keras 2: [[name, 0, 0, {}], ...]
            names += [item[0] for item in node if isinstance(item, list) and item]
    return names


def _flatten(model, prefix, path, out, shape):
    """Append the layers of a model config (nested models inlined) to ``out``; returns the input shape."""
    cls, cfg = model.get("class_name"), model.get("config")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("layers"), list):
        raise MinivggError(f"{path}: the saved config of {cls!r} has no list of layers")
    layers = [l for l in cfg["layers"] if isinstance(l, dict)]
    counted = [l for l in layers if not (cls == "Sequential" and l.get("class_name") == "InputLayer")]
    paths = dict(zip(map(id, counted), unique_paths([str(l.get("class_name")) for l in counted], prefix)))
    previous = None
    for layer in layers:
        lcls, lcfg = str(layer.get("class_name")), layer.get("config") or {}
        name = str(lcfg.get("name") or layer.get("name"))
        inbound = tuple(map(str, _inbound(layer))) if cls != "Sequential" and previous is not None else ()
        if lcls == "InputLayer":
            given = lcfg.get("batch_shape") or lcfg.get("batch_input_shape")
            if shape is None and isinstance(given, list) and len(given) == 4:
                shape = tuple(given[1:])
        elif lcls in MODELS:
            shape = _flatten(layer, paths[id(layer)] + "/layers", path, out, shape)
        else:
            if shape is None and isinstance(lcfg.get("batch_input_shape"), list):  # Keras 2 Sequential
                shape = tuple(lcfg["batch_input_shape"][1:])
            out.append(KerasLayer(name, lcls, lcfg, paths[id(layer)], inbound, previous or ""))
        previous = name
    return shape


def read_config(text, path):
    """The saved config (JSON text) as a ``SavedModel``: its layers in order, and its input shape.

    Raises MinivggError if it is not JSON or not a model of layers.
    """
    try:
        model = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise MinivggError(f"{path}: its saved config is not valid JSON ({e.__class__.__name__})") from None
    if not isinstance(model, dict) or model.get("class_name") not in MODELS:
        cls = model.get("class_name") if isinstance(model, dict) else type(model).__name__
        raise MinivggError(f"{path}: its saved config describes a {cls!r}, not a Keras model of layers")
    layers = []
    try:
        shape = _flatten(model, "layers", path, layers, None)
    except RecursionError:
        raise MinivggError(f"{path}: its saved config nests models too deeply") from None
    return SavedModel(layers, shape)
