"""The bundled ImageNet class index is Keras' file, and decode_predictions is Keras' function."""
import hashlib
import importlib.resources

import numpy as np
import pytest

from minivgg.errors import MinivggError
from minivgg.files.imagenet import decode_predictions, load_class_index

KERAS_MD5 = "c2c37ea517e94d9795004a39431a14cb"  # the file_hash in keras/src/applications/imagenet_utils.py


def softmax_rows(n, seed):
    """(n, 1000) float32 rows that sum to 1, like VGG16's predictions."""
    logits = np.random.default_rng(seed).standard_normal((n, 1000)).astype(np.float32) * 3
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_class_index_is_keras_file():
    data = (importlib.resources.files("minivgg") / "data" / "imagenet_class_index.json").read_bytes()
    assert hashlib.md5(data).hexdigest() == KERAS_MD5


def test_class_index_content():
    index = load_class_index()
    assert list(index) == [str(i) for i in range(1000)]
    assert index["0"] == ["n01440764", "tench"]
    assert index["1"] == ["n01443537", "goldfish"]
    assert index["999"] == ["n15075141", "toilet_tissue"]
    wnids = [wnid for wnid, _ in index.values()]
    assert len(set(wnids)) == 1000
    assert all(len(w) == 9 and w[0] == "n" and w[1:].isdigit() for w in wnids)
    assert load_class_index() is index  # cached


def test_decode_predictions_order_and_types():
    preds = np.zeros((2, 1000), dtype=np.float32)
    preds[0, [999, 1, 0, 500]] = [0.4, 0.3, 0.2, 0.1]
    preds[1, 7] = 1.0
    out = decode_predictions(preds, top=3)
    assert out[0] == [
        ("n15075141", "toilet_tissue", np.float32(0.4)),
        ("n01443537", "goldfish", np.float32(0.3)),
        ("n01440764", "tench", np.float32(0.2)),
    ]
    assert out[1][0] == ("n01514668", "cock", np.float32(1.0))
    assert len(out[1]) == 3
    assert all(type(r[2]) is np.float32 for row in out for r in row)  # the array's own scalar type
    assert type(decode_predictions(preds.astype(np.float64))[0][0][2]) is np.float64


def test_decode_predictions_top():
    preds = softmax_rows(3, seed=1)
    assert [len(row) for row in decode_predictions(preds)] == [5, 5, 5]  # default top=5
    assert [len(row) for row in decode_predictions(preds, top=1)] == [1, 1, 1]
    everything = decode_predictions(preds, top=1000)
    index = load_class_index()
    for row, pred in zip(everything, preds):
        scores = [score for _, _, score in row]
        assert scores == sorted(scores, reverse=True)
        assert sorted(index[str(int(np.flatnonzero(pred == s)[0]))][0] for s in scores) == sorted(
            wnid for wnid, _ in index.values()
        )
        assert row[0][0] == index[str(int(pred.argmax()))][0]


@pytest.mark.tensorflow
@pytest.mark.parametrize("top", [5, 1, 17])
def test_decode_predictions_equals_keras(tf, monkeypatch, top):
    from keras.src.applications import imagenet_utils
    from keras.src.utils import file_utils

    import keras

    def no_download(*args, **kwargs):
        raise AssertionError("Keras tried to download the class index")

    # Keras downloads the class index on first use and caches it in a module global; we hand it
    # our file instead (that it is Keras' file is test_class_index_is_keras_file's job).
    monkeypatch.setattr(file_utils, "get_file", no_download)
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", load_class_index())
    preds = softmax_rows(3, seed=2)
    preds[1, [3, 4]] = preds[1].max() * 2  # a tie at the top: the order must match Keras' too
    ours = decode_predictions(preds, top=top)
    theirs = keras.applications.vgg16.decode_predictions(preds, top=top)
    assert ours == theirs
    assert [type(r[2]) for row in ours for r in row] == [type(r[2]) for row in theirs for r in row]


@pytest.mark.parametrize("shape", [(1000,), (3, 999), (3, 1000, 1), (), (1000, 3)])
def test_decode_predictions_refuses_bad_shapes(shape):
    with pytest.raises(MinivggError) as e:
        decode_predictions(np.zeros(shape, dtype=np.float32))
    message = str(e.value)
    assert "\n" not in message and str(shape) in message


@pytest.mark.parametrize("top", [0, 1001, 2.5, True, "5"])
def test_decode_predictions_refuses_bad_top(top):
    with pytest.raises(MinivggError) as e:
        decode_predictions(softmax_rows(1, seed=3), top=top)
    assert "\n" not in str(e.value)
