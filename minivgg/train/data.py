"""A data set of your own: one folder per class, as Keras' ``image_dataset_from_directory`` reads it.

Legend: N images, S the training size (S x S), P the padded size (S * 9/8 with augmentation, else S).

    DATA_DIR/
      apple/   img001.jpg, img002.png, ...      label 0 (classes sorted by name, as Keras sorts them)
      banana/  ...                              label 1

Images are recognised by content, as everywhere in minivgg (``files/image_files.py``); a file that
looks like an image but cannot be decoded is skipped and named (``skipped``), the run goes on.
Decoded images are kept in memory as uint8 (P x P x 3, 190 KB each at P = 252).

Augmentation (Krizhevsky et al. 2012, section 4.1, as the descendant project did): each epoch, each
image is a random S x S crop of its P x P resize, flipped left-right with probability 1/2, drawn from
the epoch's seed, so a resumed run sees the crops an uninterrupted one would.
"""
from pathlib import Path

import numpy as np

from ..errors import MinivggError
from ..files.image_files import find_images
from ..files.preprocess import load_image, preprocess_input

PAD = 9 / 8  # the resize before a random crop: 252 for 224, 36 for 32


def class_folders(root, least=2):
    """The class names (sorted subfolders of ``root``, hidden ones left out) and each one's image files."""
    root = Path(root)
    if not root.is_dir():
        raise MinivggError(f"data folder {root} does not exist or is not a folder")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(names) < least:
        raise MinivggError(f"{root} holds {len(names)} class folder(s); a classifier needs at least two "
                           "(one folder of images per class)")
    files = {}
    for name in names:
        try:
            images, _ = find_images([root / name], recursive=True)
        except MinivggError:  # find_images' own "no image files in ..."
            images = []
        if not images:
            raise MinivggError(f"class folder {root / name} holds no images")
        files[name] = images
    return names, files


def read_folder(root, classes=None):
    """(paths, labels, class names) of a class-folder data set; ``classes``: the training set's names,
    which a validation folder must have, every one of them."""
    names, files = class_folders(root, 2 if classes is None else 1)
    if classes is not None:
        missing = [c for c in classes if c not in names]
        extra = [c for c in names if c not in classes]
        if missing or extra:
            what = f"has no folder for class {missing[0]!r}" if missing else f"has class {extra[0]!r} the training set has not"
            raise MinivggError(f"validation folder {root} {what}: it needs the training set's classes "
                               f"({', '.join(classes)})")
        names = list(classes)
    paths, labels = [], []
    for label, name in enumerate(names):
        paths += files[name]
        labels += [label] * len(files[name])
    return paths, np.array(labels, dtype=np.int64), names


def split(paths, labels, fraction, seed):
    """A seeded validation split, class by class (each class keeps at least one image on each side
    when it has two): returns (train paths, train labels, val paths, val labels)."""
    if not 0 < fraction < 1:
        raise MinivggError(f"--val-split must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    val = np.zeros(len(paths), bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = min(max(1, round(fraction * len(idx))), len(idx) - 1) if len(idx) > 1 else 0
        val[rng.permutation(idx)[:k]] = True
    if not val.any():
        raise MinivggError("the validation split is empty: every class has a single image (use --val DIR)")
    pick = lambda mask: ([p for p, m in zip(paths, mask) if m], labels[mask])
    return (*pick(~val), *pick(val))


def load_images(paths, labels, size):
    """Decode every image at ``size`` x ``size``: (uint8 (N, P, P, 3), labels (N,), kept paths, skipped).

    skipped: [(path, reason)], the files that could not be decoded (left out of the arrays)."""
    out, kept, keep_labels, skipped = [], [], [], []
    for path, label in zip(paths, labels):
        try:
            img = load_image(path, target_size=(size, size), interpolation="bilinear")  # (P, P, 3) RGB 0..255
        except MinivggError as e:
            skipped.append((str(path), str(e)))
            continue
        out.append(img.astype(np.uint8))
        kept.append(path)
        keep_labels.append(label)
    images = np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)
    return images, np.array(keep_labels, dtype=np.int64), kept, skipped


def preprocess(images):
    """uint8 RGB (N, H, W, 3) -> float32 BGR minus the ImageNet mean, C-contiguous (``preprocess_input``)."""
    return np.ascontiguousarray(preprocess_input(images.astype(np.float32)))


def augment(images, size, rng):
    """Random ``size`` x ``size`` crops and left-right flips of ``images`` (N, P, P, 3) uint8 -> same dtype."""
    n, p = images.shape[0], images.shape[1]
    out = np.empty((n, size, size, 3), images.dtype)
    tops, lefts = rng.integers(0, p - size + 1, n), rng.integers(0, images.shape[2] - size + 1, n)
    flips = rng.random(n) < 0.5
    for i in range(n):
        crop = images[i, tops[i]:tops[i] + size, lefts[i]:lefts[i] + size]  # (S, S, 3)
        out[i] = crop[:, ::-1] if flips[i] else crop
    return out


def center(images, size):
    """The central ``size`` x ``size`` crop of (N, P, P, 3) images."""
    top, left = (images.shape[1] - size) // 2, (images.shape[2] - size) // 2
    return images[:, top:top + size, left:left + size]
