"""Class names: the 1000 ImageNet classes that VGG16's `predictions` layer scores
(`decode_predictions`), or a fine-tuned head's own, one per line of a labels file (`top_classes`).

Shapes: N batch, 1000 classes.

The class index is Keras' own `imagenet_class_index.json`, byte for byte (md5
c2c37ea517e94d9795004a39431a14cb), shipped in minivgg/data/ so that nothing is downloaded:
``{"0": ["n01440764", "tench"], ..., "999": ["n15075141", "toilet_tissue"]}``, i.e. class number
(as a string) -> [WordNet id, class name]. minivgg/data/README.md says where it comes from.
"""
import functools
import importlib.resources
import json

import numpy as np

from ..errors import MinivggError

NUM_CLASSES = 1000


@functools.cache
def load_class_index():
    """The class index as Keras loads it: {"0": ["n01440764", "tench"], ...}. Cached, shared: don't modify."""
    try:
        text = (importlib.resources.files("minivgg") / "data" / "imagenet_class_index.json").read_text("utf-8")
    except OSError:
        raise MinivggError(
            "minivgg/data/imagenet_class_index.json is missing from the installed package; reinstall minivgg"
        ) from None
    return json.loads(text)


def decode_predictions(preds, top=5):
    """The `top` most likely classes of each image; == keras.applications.vgg16.decode_predictions.

    Inputs:
    - preds: (N, 1000) class scores, e.g. the output of VGG16 with its top (softmax probabilities).
    - top: how many classes to return per image, 1..1000.

    Returns:
    - a list of N lists, each of `top` tuples ``(wnid, class_name, score)`` sorted by score, highest
      first; wnid and class_name are str, score is the element of preds itself (a NumPy scalar,
      np.float32 for float32 preds), exactly as Keras returns them.

    Raises MinivggError if preds is not (N, 1000) or top is not in 1..1000 (Keras raises ValueError
    for the shape, and quietly returns all 1000 classes for top=0).
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != NUM_CLASSES:
        raise MinivggError(
            f"decode_predictions expects scores of shape (N, {NUM_CLASSES}), one row per image; "
            f"got shape {preds.shape}"
        )
    if not (isinstance(top, (int, np.integer)) and not isinstance(top, bool) and 1 <= top <= NUM_CLASSES):
        raise MinivggError(f"top must be an integer from 1 to {NUM_CLASSES}; got {top!r}")
    index = load_class_index()
    results = []
    for pred in preds:  # pred: (1000,)
        # Keras' exact steps, so that ties come out in the same order.
        top_indices = pred.argsort()[-top:][::-1]  # (top,) indices of the largest scores
        result = [tuple(index[str(i)]) + (pred[i],) for i in top_indices]
        result.sort(key=lambda r: r[2], reverse=True)
        results.append(result)
    return results


MAX_LABELS_BYTES = 16 << 20  # a labels file is names, one a line; refuse to read a file claiming more


def read_labels(path):
    """The class names in a text file, one per line (UTF-8; blank lines at the end ignored).

    Raises MinivggError if it cannot be read, is not text or holds no name.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_LABELS_BYTES + 1)
    except OSError as e:
        raise MinivggError(f"labels file {path} cannot be read ({e.strerror or e})") from None
    if len(data) > MAX_LABELS_BYTES:
        raise MinivggError(f"labels file {path} is larger than {MAX_LABELS_BYTES >> 20} MB: not a list of class names")
    try:
        names = [line.strip() for line in data.decode("utf-8-sig").splitlines()]
    except UnicodeDecodeError:
        raise MinivggError(f"labels file {path} is not UTF-8 text: one class name per line") from None
    while names and not names[-1]:
        names.pop()
    if not names:
        raise MinivggError(f"labels file {path} holds no class names: one per line")
    return names


def top_classes(scores, top=5, labels=None):
    """The ``top`` best classes of each image, for any head: [[(id, name, score), ...]] per image.

    - scores: (N, U), the last layer's output
    - labels: U class names (``read_labels``); without them a 1000-class head is named by ImageNet's
      index (``decode_predictions``: id = WordNet id), any other by number ("class 3", id = "3")
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise MinivggError(f"class scores are (N, U), got shape {scores.shape}")
    units = scores.shape[1]
    if labels is not None and len(labels) != units:
        raise MinivggError(f"the labels file has {len(labels)} names but the network scores {units} classes")
    top = min(top, units)
    if labels is None and units == NUM_CLASSES:
        return decode_predictions(scores, top=top)
    names = labels if labels is not None else [f"class {i}" for i in range(units)]
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top]  # (N, top): best first, ties by index
    return [[(str(i), names[i], row[i]) for i in idx] for row, idx in zip(scores, order)]
