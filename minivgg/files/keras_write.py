"""Write a model as Keras writes it: a ``.keras`` archive or a legacy full-model ``.h5``.

    file      what it holds                                                    Keras reads it with
    x.keras   a zip, members stored: metadata.json, config.json,               keras.models.load_model
              model.weights.h5 (Keras 3 layout: /layers/<path>/vars/0, 1)
    x.h5      HDF5: root attribute model_config (the same config), weights     keras.models.load_model
              under /model_weights (legacy layout: <layer>/<layer>/kernel, bias)

Both are what ``keras_files.py`` reads back (``minivgg.VGG(weights=path)``). The config is a
functional model, one Keras layer per row of the table (``network/table.py``), each taking the
previous one's output, named as the rows are; the layer settings are those minivgg computes (3x3
"same" convolutions with a ReLU, 2x2 max-pools, dense layers with their activation). Weight paths
in the Keras 3 layout are the layers' classes in snake case, numbered in model order
(``keras_files.unique_paths``), the input layer first.

Files are written to a temporary name in the target folder and renamed into place: a reader never
sees half a file, and an interrupted write leaves the old file as it was.
"""
import datetime
import io
import json
import zipfile

import h5py
import numpy as np

from ..errors import MinivggError
from ..network.table import TOP_SIZE, shapes
from .atomic import replacing
from .keras_files import unique_paths
from .keras_model import DEFAULT_RATE, KERAS_CLASSES

KERAS_VERSION = "3.15.1"  # the Keras whose files these mirror (written into metadata.json and the .h5)


def _layer_config(row, model):
    """Keras' config dict for one row of the table."""
    c = {"name": row.name, "trainable": True, "dtype": "float32"}
    if row.kind == "conv":
        c.update(filters=row.out, kernel_size=[3, 3], strides=[1, 1], padding="same", data_format="channels_last",
                 dilation_rate=[1, 1], groups=1, activation="relu", use_bias=True)
    elif row.kind == "pool":
        c.update(pool_size=[2, 2], padding="valid", strides=[2, 2], data_format="channels_last")
    elif row.kind == "flatten":
        c.update(data_format="channels_last")
    elif row.kind in ("global_avg_pool", "global_max_pool"):
        c.update(data_format="channels_last", keepdims=False)
    elif row.kind == "dense":
        c.update(units=row.out, activation=row.activation or "linear", use_bias=True)
    elif row.kind == "dropout":
        # the rate does not change inference, only training: the model's own (read from its file, or set
        # by train.with_head), else Keras' usual one
        c.update(rate=getattr(model, "dropout", {}).get(row.name, DEFAULT_RATE), seed=None, noise_shape=None)
    return c


def model_config(model, name="functional"):
    """The model as Keras' functional config (a dict, what ``config.json`` and ``model_config`` hold)."""
    size = model.input_size
    layers = [{"module": "keras.layers", "class_name": "InputLayer", "name": "input_layer", "inbound_nodes": [],
               "config": {"batch_shape": [None, size[0] if size else None, size[1] if size else None, 3],
                          "dtype": "float32", "sparse": False, "name": "input_layer"}}]
    h, w = size or (TOP_SIZE, TOP_SIZE)
    out_shapes = [list(shape) for _, shape, _ in shapes(model.layers, h, w)]  # (None, H', W', C') or (None, D)
    if size is None:  # a free input size: H', W' unknown, as Keras writes them
        out_shapes = [s[:1] + [None, None] + s[3:] if len(s) == 4 else s for s in out_shapes]
    previous, shape = "input_layer", [None, size[0] if size else None, size[1] if size else None, 3]
    for row, out_shape in zip(model.layers, out_shapes):
        layers.append({"module": "keras.layers", "class_name": KERAS_CLASSES[row.kind], "name": row.name,
                       "config": _layer_config(row, model), "registered_name": None,
                       "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__",
                                                    "config": {"shape": shape, "dtype": "float32",
                                                               "keras_history": [previous, 0, 0]}}],
                                          "kwargs": {}}]})
        previous, shape = row.name, out_shape
    return {"module": "keras.src.models.functional", "class_name": "Functional", "registered_name": "Functional",
            "config": {"name": name, "trainable": True, "layers": layers,
                       "input_layers": ["input_layer", 0, 0], "output_layers": [previous, 0, 0]}}


def _weights_keras3(model, fh):
    """model.weights.h5 of a .keras archive: /layers/<path>/vars/{0,1} for every layer, named."""
    classes = ["InputLayer"] + [KERAS_CLASSES[row.kind] for row in model.layers]
    names = ["input_layer"] + [row.name for row in model.layers]
    with h5py.File(fh, "w") as f:
        f.create_group("layers")
        for path, name in zip(unique_paths(classes), names):
            group = f.create_group(f"{path}/vars")
            group.attrs["name"] = name
            for i, a in enumerate(model.params.get(name, ())):
                group.create_dataset(str(i), data=np.asarray(a, np.float32))
        f.create_group("vars").attrs["name"] = "functional"


def _weights_legacy(model, f):
    """The legacy layout under /model_weights: a group per layer, weight_names, <layer>/kernel and bias."""
    group = f.create_group("model_weights")
    names = ["input_layer"] + [row.name for row in model.layers]
    group.attrs["backend"], group.attrs["keras_version"] = "tensorflow", KERAS_VERSION
    group.attrs["layer_names"] = np.array([n.encode("utf8") for n in names])
    for name in names:
        g = group.create_group(name)
        arrays = model.params.get(name, ())
        weight_names = [f"{name}/{w}" for w in ("kernel", "bias")][: len(arrays)]
        g.attrs["weight_names"] = np.array([w.encode("utf8") for w in weight_names])
        for w, a in zip(weight_names, arrays):
            g.create_dataset(w, data=np.asarray(a, np.float32))


def _write_atomic(path, write):
    """Call write(temporary path) in path's folder, then rename it onto ``path``."""
    try:
        target = replacing(path)  # the temporary file is made here, with the mode open() would give
    except OSError as e:
        raise MinivggError(f"cannot write {path}: {e.strerror}") from None
    with target as tmp:
        write(tmp)


def save(model, path):
    """Write ``model`` to ``path`` as Keras would: ``.keras`` (the archive) or ``.h5`` (legacy), by extension."""
    path = str(path)
    config = json.dumps(model_config(model))
    if path.endswith(".keras"):
        def write(tmp):
            weights = io.BytesIO()
            _weights_keras3(model, weights)
            meta = json.dumps({"keras_version": KERAS_VERSION,
                               "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")})
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:  # stored, as Keras writes it
                z.writestr("metadata.json", meta)
                z.writestr("config.json", config)
                z.writestr("model.weights.h5", weights.getvalue())
    elif path.endswith(".h5"):
        def write(tmp):
            with h5py.File(tmp, "w") as f:
                f.attrs["backend"], f.attrs["keras_version"] = "tensorflow", KERAS_VERSION
                f.attrs["model_config"] = config
                _weights_legacy(model, f)
    else:
        raise MinivggError(f"cannot tell the format of {path}: name it .keras (Keras 3's archive) or .h5 (legacy)")
    _write_atomic(path, write)
    return path
