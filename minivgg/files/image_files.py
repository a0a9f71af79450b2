"""Which files of the command line are images, and the folder each one's feature maps go to.

    find_images(["a.jpg", "photos/"])      -> [a.jpg, photos/cat.png, photos/dog], skipped (not images)
    folder_names([a.jpg, b/a.png, c.jpg])  -> ["a", "a-2", "c"]

Files named on the command line are taken as they are (one that is missing or unreadable fails later,
on its own, with its reason). In a folder, a file is an image if Pillow recognises its header, whatever
its name ends with (a photo saved without an extension counts, ``notes.txt`` does not); hidden files
(``.name``) are left out, subfolders too unless ``recursive``. Each list is sorted by name, so a run
is the same whichever order the file system lists them in.
"""
import os
import warnings
from pathlib import Path

from PIL import Image

from ..errors import MinivggError


def is_image(path):
    """True if Pillow recognises the file's header as an image (only the header is read)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a huge image is still an image; it is refused when decoded
            with Image.open(path):
                return True
    except Image.DecompressionBombError:
        return True
    except Exception:  # noqa: BLE001 -- anything Pillow cannot open is not an image here
        return False


def find_images(paths, recursive=False, exclude=None):
    """The image files that ``paths`` (files and folders) name, in order, each file once.

    Returns (images, skipped): images, a list of Paths (files as given, then each folder's images
    sorted by name); skipped, the files inside folders that are not images. ``exclude``: a folder not
    to look into (the output folder, so a rerun does not take its own grids for input).
    """
    exclude = Path(exclude).resolve() if exclude is not None else None
    images, skipped, seen = [], [], set()

    def add(path):
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            images.append(path)

    for p in map(Path, paths):
        if not p.is_dir():
            add(p)  # a file, or a path that does not exist: it fails on its own later
            continue
        found = 0
        for folder, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if recursive and not d.startswith(".")
                             and (Path(folder) / d).resolve() != exclude)
            for name in sorted(files):
                f = Path(folder) / name
                if name.startswith("."):
                    continue
                if is_image(f):
                    add(f)
                    found += 1
                else:
                    skipped.append(f)
        if not found:
            raise MinivggError(f"no image files in {p}" + ("" if recursive else " (subfolders: --recursive)"))
    return images, skipped


def folder_names(images, taken=("index.html",)):
    """One folder name per image: its file name without the extension, made unique in order by
    ``-2``, ``-3``, ... (compared without case, for file systems that ignore it).

    ``taken``: names already used in the output folder (the summary page). An empty name
    becomes ``image``.
    """
    used, names = {t.casefold() for t in taken}, []
    for path in images:
        stem = Path(path).stem or "image"
        name, n = stem, 1
        while name.casefold() in used:
            n += 1
            name = f"{stem}-{n}"
        used.add(name.casefold())
        names.append(name)
    return names
