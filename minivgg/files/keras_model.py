"""A saved Keras model as a VGG table: its config read into rows, its weights into params.

Legend: N batch, H, W height and width, C channels, D features, U units.

``keras_files.py`` opens the file (a legacy ``.h5``, a Keras 3 ``.weights.h5`` or a ``.keras`` zip)
and reads its saved config into plain layer records; ``weights.py`` reads the arrays name for name.
This module puts the two together for the network (``network/table.py``):

- ``row_from_keras``: one Keras layer -> one row of the table, or a one-line refusal naming the layer
  when minivgg cannot compute it exactly as Keras does (a tanh dense layer, a 5x5 conv, ...);
- ``rows_from_config``: the whole saved model -> (arch, rows, input size): the conv base must be
  VGG16's or VGG19's layer for layer; the head after it is any chain of flatten or a global pool,
  dense layers and dropout;
- ``load``: a file -> (arch, rows, input size, params, dropout rates), what ``VGG(weights=FILE)`` holds.

A dropout layer is the identity at inference, so its row has no settings; its rate matters to
training only (``train/step.py``) and travels beside the rows: ``dropout_rates`` reads it from the
config, ``VGG`` keeps it as ``model.dropout`` ({layer name: rate}), ``keras_write.py`` writes it again.
"""
from ..errors import MinivggError
from ..layers.dense import ACTIVATIONS
from ..network.table import ARCHS, MIN_SIZE, TITLES, TOP_SIZE, Row, conv_base, detect_arch, layers, shapes
from .keras_files import open_model_file, read_config, unique_paths
from .weights import load_params

KERAS_CLASSES = {  # row kind -> the Keras layer class it computes
    "conv": "Conv2D",
    "pool": "MaxPooling2D",
    "flatten": "Flatten",
    "global_avg_pool": "GlobalAveragePooling2D",
    "global_max_pool": "GlobalMaxPooling2D",
    "dense": "Dense",
    "dropout": "Dropout",
}
KINDS = {cls: kind for kind, cls in KERAS_CLASSES.items()}
FLATTENERS = ("flatten", "global_avg_pool", "global_max_pool")  # (N, H, W, C) -> (N, D): a dense layer may follow
DEFAULT_RATE = 0.5  # Keras' usual Dropout rate: for a dropout layer whose rate no config gives


def row_from_keras(layer, path):
    """One layer of a saved config (``keras_files.KerasLayer``) as a row of the table.

    Raises MinivggError naming the layer if minivgg cannot compute it exactly as Keras does.
    """
    c, name, cls = layer.config, layer.name, layer.cls

    def refuse(why):
        raise MinivggError(f"{path}: layer {name!r} ({cls}) {why}: minivgg cannot compute it")

    if cls not in KINDS:
        refuse("is not a layer minivgg knows")
    kind = KINDS[cls]
    if c.get("data_format") not in (None, "channels_last"):
        refuse(f"has data_format {c.get('data_format')!r}")
    if kind == "conv":
        settings = (c.get("kernel_size"), c.get("strides", [1, 1]), c.get("padding"), c.get("activation"),
                    c.get("dilation_rate", [1, 1]), c.get("groups", 1), c.get("use_bias", True))
        if settings != ([3, 3], [1, 1], "same", "relu", [1, 1], 1, True) or not isinstance(c.get("filters"), int):
            refuse("is not a 3x3, stride 1, 'same' convolution with a bias and a ReLU")
        return Row(name, "conv", c["filters"], "relu")
    if kind == "pool":
        if c.get("pool_size") != [2, 2] or c.get("strides") not in (None, [2, 2]) or c.get("padding") != "valid":
            refuse("is not a 2x2, stride 2, 'valid' max-pool")
    if kind in ("global_avg_pool", "global_max_pool") and c.get("keepdims"):
        refuse("keeps the H and W axes (keepdims=True)")
    if kind == "dense":
        act = c.get("activation") or "linear"
        if isinstance(act, dict) and act.get("class_name") == "function":  # {"config": "relu", ...} in some saves
            act = act.get("config")
        if act not in ACTIVATIONS:
            refuse(f"has activation {act!r}, not one of {', '.join(ACTIVATIONS)}")
        if not c.get("use_bias", True) or not isinstance(c.get("units"), int):
            refuse("has no bias")
        return Row(name, "dense", c["units"], act)
    if kind == "dropout":
        rate = c.get("rate", DEFAULT_RATE)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            refuse(f"has rate {rate!r}, not a number in [0, 1)")
    return Row(name, kind)


def dropout_rates(saved, rows):
    """{dropout layer name: rate} for the dropout rows of ``rows``, from the saved config (``DEFAULT_RATE``
    where a layer's config gives none; ``row_from_keras`` has checked the rest)."""
    kept = {row.name for row in rows if row.kind == "dropout"}
    return {layer.name: float(layer.config.get("rate", DEFAULT_RATE)) for layer in saved.layers if layer.name in kept}


def rows_from_config(saved, path):
    """A saved model (``keras_files.SavedModel``) as (arch, rows, input size or None).

    The conv base must be VGG16's or VGG19's, layer for layer; the head after it may be any chain of
    flatten or a global pool, dense layers and dropout.
    """
    rows = []
    for layer in saved.layers:  # refuses the first layer minivgg cannot compute, or that branches
        rows.append(row_from_keras(layer, path))
        if layer.inbound and layer.inbound != (layer.after,):
            raise MinivggError(f"{path}: layer {layer.name!r} ({layer.cls}) takes its input from "
                               f"{', '.join(layer.inbound)}, not from {layer.after!r} alone: minivgg runs a plain "
                               "chain of layers")
    for arch in sorted(ARCHS, key=lambda a: -len(conv_base(a))):  # VGG19 first: it starts as VGG16 does
        base = conv_base(arch)
        if tuple(rows[: len(base)]) == base:
            break
    else:
        base = conv_base("vgg16")
        i = next((i for i, (r, b) in enumerate(zip(rows, base)) if r != b), len(rows))
        what = f"layer {saved.layers[i].name!r} ({saved.layers[i].cls})" if i < len(rows) else "its last layer"
        raise MinivggError(f"{path}: its saved model is not a VGG16 or VGG19 (at {what}): minivgg computes those only")
    flat = False
    for row, layer in zip(rows[len(base):], saved.layers[len(base):]):
        if row.kind in ("conv", "pool") or (row.kind == "dense" and not flat) or (row.kind in FLATTENERS and flat):
            raise MinivggError(f"{path}: layer {row.name!r} ({layer.cls}) after the VGG base is not one minivgg can "
                               "place: a head is flatten or a global pool, then dense and dropout layers")
        flat = flat or row.kind in FLATTENERS
    size = None
    if any(row.kind == "flatten" for row in rows):  # flatten fixes the input size: the saved one
        shape = saved.input_shape or ()
        if len(shape) != 3 or not all(isinstance(s, int) and s >= MIN_SIZE for s in shape[:2]):
            raise MinivggError(f"{path}: its head flattens, but its saved input shape {shape} gives no image size")
        size = tuple(shape[:2])
    return arch, tuple(rows), size


def load(path, arch=None, include_top=None):
    """Read a Keras file (see ``keras_files.py``) into a table and its weights.

    - ``arch``: "vgg16" or "vgg19" to insist on one (a file of the other is refused, saying which
      it is), None to take it from the file
    - ``include_top``: True (the file must have a top or head), False (the conv base alone), None
      (whatever the file holds)
    Returns (arch, rows, input size (H, W) or None, params, dropout): ``dropout`` is {layer name:
    rate} for the dropout rows kept, as the config gives them ({} for a file of weights alone: it has
    no config, hence no dropout rows).
    """
    with open_model_file(path) as f:
        if f.config:  # a saved model: its own layers, head included
            saved = read_config(f.config, path)
            found, rows, size = rows_from_config(saved, path)
            if not f.named:  # a Keras 3 file from before layer names: its paths follow from the config
                f.rename({layer.path: layer.name for layer in saved.layers})
        else:  # weights alone: a VGG base, and maybe the ImageNet top
            if not f.named:  # paths of a keras.applications model: an input layer, then the table's
                big = "vgg19" if "layers/conv2d_15" in f.layers else "vgg16"
                table_rows = layers(big, include_top=True)
                paths = unique_paths(["InputLayer"] + [KERAS_CLASSES[r.kind] for r in table_rows])[1:]
                f.rename({p: r.name for p, r in zip(paths, table_rows)})
            found = detect_arch(f.layers) or arch or "vgg16"
            rows, size = layers(found, include_top=True), (TOP_SIZE, TOP_SIZE)
        if arch is not None and found != arch:
            raise MinivggError(f"{path} holds a {TITLES[found]}, not a {TITLES[arch]}: use minivgg.{TITLES[found]} "
                               "(or minivgg.VGG, which takes the architecture from the file)")
        base = conv_base(found)
        head = [row.name for row in rows[len(base):] if row.kind == "dense"]  # the head's weighted layers
        has_top = len(rows) > len(base) if f.config else any(name in f.layers for name in head)
        if include_top is None:
            include_top = has_top
        if include_top and not has_top:
            raise MinivggError(f"{path} holds no top ({', '.join(head)}): use include_top=False or the full file")
        rows = rows if include_top else base
        size = size if include_top else None
        expected = {row.name: p for row, _, p in shapes(rows, *(size or (TOP_SIZE, TOP_SIZE))) if p}
        hint = "" if f.config or not detect_arch(f.layers) else (
            f", or of a fine-tuned {TITLES[found]} saved without its config (model.save('x.keras') keeps it)")
        params = load_params(f, expected, TITLES[found], ignore=() if include_top else head, hint=hint)
        dropout = dropout_rates(saved, rows) if f.config else {}
    return found, rows, size, params, dropout
