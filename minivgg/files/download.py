"""Find the published Keras VGG16 and VGG19 weight files, or download them once.

These are the files ``keras.applications.VGG16(weights="imagenet")`` (and ``VGG19``) load, from the
URLs and with the md5 sums in Keras' own source (``keras/src/applications/vgg16.py``, ``vgg19.py``):

    vgg16, include_top=True   vgg16_weights_tf_dim_ordering_tf_kernels.h5         553,467,096 bytes
    vgg16, include_top=False  vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5    58,889,256 bytes
    vgg19, include_top=True   vgg19_weights_tf_dim_ordering_tf_kernels.h5         574,710,816 bytes
    vgg19, include_top=False  vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5    80,134,624 bytes

``find_weights`` looks, in this order, in
  1. the minivgg weights folder: ``$MINIVGG_HOME`` if set, else ``weights/`` beside the package in a
     source checkout (if writable), else ``~/.cache/minivgg``;
  2. Keras' own cache, ``$KERAS_HOME/models`` or ``~/.keras/models``, where Keras keeps them;
and otherwise downloads the file into folder 1. ``MINIVGG_WEIGHTS_URL`` replaces the base URL
(a mirror, a ``file://`` folder, or a local test server).

``download`` streams into a temporary ``*.part`` file in the destination folder, checks the md5,
then renames it into place (``os.replace`` is atomic), so a failed or interrupted download leaves
nothing behind and never touches a good file already there. Every failure is one ``MinivggError``.
"""
import hashlib
import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from ..errors import MinivggError
from .atomic import replacing


class WeightFile(NamedTuple):
    name: str  # file name, as Keras names it in its cache
    md5: str  # as passed to keras.utils.get_file(file_hash=...)
    size: int  # bytes, for reference (a download checks the server's Content-Length, then the md5)


BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/{arch}/"  # {arch}: vgg16 or vgg19
FILES = {  # arch -> include_top -> the published file
    "vgg16": {
        True: WeightFile("vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                         "64373286793e3c8b2b4e3219cbf3544b", 553_467_096),
        False: WeightFile("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          "6d6bbae143d832006294945121d1f1fc", 58_889_256),
    },
    "vgg19": {
        True: WeightFile("vgg19_weights_tf_dim_ordering_tf_kernels.h5",
                         "cbe5617147190e668d6c5d5026f83318", 574_710_816),
        False: WeightFile("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          "253f8cb515780f3b799900260a226db6", 80_134_624),
    },
}
TIMEOUT = 10  # seconds to wait for a connection, and for each read once connected
CHUNK = 1 << 20  # bytes read, hashed and written at a time
MB = 1e6


def weights_folder():
    """Where minivgg keeps (and downloads) weight files."""
    if os.environ.get("MINIVGG_HOME"):
        return Path(os.environ["MINIVGG_HOME"]).expanduser()
    repo = Path(__file__).resolve().parents[2] / "weights"  # minivgg/files/download.py -> the checkout's weights/, if any
    if repo.is_dir() and os.access(repo, os.W_OK):
        return repo
    return Path.home() / ".cache" / "minivgg"


def keras_folder():
    """Where Keras caches the same files (``keras.utils.get_file(cache_subdir="models")``)."""
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home).expanduser() / "models"


def find_weights(include_top=None, weights_dir=None, quiet=False, arch="vgg16"):
    """The path of a published weight file of ``arch`` ("vgg16" or "vgg19"), found locally or downloaded.

    - ``include_top``: True for the full file, False for the notop file, None for whichever is
      already here (the full one first), else the full one (Keras' default).
    - ``weights_dir``: use this folder instead of ``weights_folder()`` (the Keras cache is still read).
    Raises MinivggError if the file is not here and cannot be downloaded.
    """
    if arch not in FILES:
        raise MinivggError(f"no published weights for {arch!r}; choose one of {', '.join(FILES)}")
    found = local_weights(include_top, weights_dir, arch)
    if found is not None:
        return found
    wanted = FILES[arch][True if include_top is None else bool(include_top)]
    folders = [Path(weights_dir) if weights_dir is not None else weights_folder(), keras_folder()]
    base = os.environ.get("MINIVGG_WEIGHTS_URL") or BASE_URL.format(arch=arch)
    dest = folders[0] / wanted.name
    download(base.rstrip("/") + "/" + wanted.name, dest, wanted.md5, quiet=quiet)
    return dest


def local_weights(include_top=None, weights_dir=None, arch="vgg16"):
    """A published file of ``arch`` already on this machine, or None. ``include_top`` None: either one,
    the full file first; else only that one. Looks where ``find_weights`` does, in its order."""
    folders = [Path(weights_dir) if weights_dir is not None else weights_folder(), keras_folder()]
    for top in ((True, False) if include_top is None else (bool(include_top),)):
        for folder in folders:
            if (folder / FILES[arch][top].name).is_file():
                return folder / FILES[arch][top].name
    return None


def download(url, dest, md5, quiet=False, timeout=TIMEOUT):
    """Download ``url`` to ``dest`` if its md5 is ``md5``; raise MinivggError otherwise.

    Progress goes to stderr unless ``quiet``. ``timeout`` bounds the wait for the connection and
    for each read. On any failure the temporary file is removed and ``dest`` is left as it was.
    """
    dest = Path(dest)
    by_hand = f"download it by hand into {dest.parent}"
    try:  # fail on an unwritable folder before fetching anything
        dest.parent.mkdir(parents=True, exist_ok=True)
        target = replacing(dest, prefix=dest.name + ".", suffix=".part")  # <name>.<random>.part, made now
    except OSError as e:
        raise MinivggError(f"cannot write {dest.name} into {dest.parent} ({e.strerror or e}); "
                           "set MINIVGG_HOME to a writable folder") from None
    done = 0
    try:
        with target as part:  # renamed onto dest at the end of the block, removed on any error
            with open(part, "wb") as out, _open(url, timeout, dest.name, by_hand) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                progress = _Progress(dest.name, url, total, quiet)
                digest = hashlib.md5()
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    done += len(chunk)
                    progress.update(done)
                progress.close(done)
            if total is not None and done != total:
                raise MinivggError(f"download of {dest.name} from {url} was truncated: "
                                   f"got {done} of {total} bytes; try again, or {by_hand}")
            if digest.hexdigest() != md5:
                raise MinivggError(f"downloaded {dest.name} has md5 {digest.hexdigest()}, expected {md5}; "
                                   f"the file was discarded; try again, or {by_hand}")
    except (OSError, http.client.HTTPException) as e:  # a dropped connection, a stalled read, a full disk
        why = f"no data for {timeout} s" if isinstance(e, TimeoutError) else _reason(e)
        raise MinivggError(f"download of {dest.name} from {url} failed after {done / MB:.1f} MB "
                           f"({why}); try again, or {by_hand}") from None


def _open(url, timeout, name, by_hand):
    """``urlopen``, with its failures turned into one-line MinivggErrors."""
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as e:
        why = f"the server answered HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        if isinstance(e.reason, socket.gaierror):
            why = "cannot resolve the host name (offline?)"
        elif isinstance(e.reason, ConnectionRefusedError):
            why = "connection refused"
        elif isinstance(e.reason, TimeoutError):
            why = f"no answer within {timeout} s (offline?)"
        else:
            why = _reason(e.reason)
    except (OSError, http.client.HTTPException) as e:
        why = f"no answer within {timeout} s (offline?)" if isinstance(e, TimeoutError) else _reason(e)
    except ValueError as e:  # not a URL at all, e.g. a bad MINIVGG_WEIGHTS_URL
        why = e
    raise MinivggError(f"cannot download {name} from {url}: {why}; {by_hand}")


def _reason(e):
    """An exception's reason in a few words: ``e.strerror`` for OS errors, else ``str(e)``."""
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


class _Progress:
    """Download progress on stderr: one updating line on a terminal, a few plain lines otherwise."""

    def __init__(self, name, url, total, quiet):
        self.total, self.quiet = total, quiet
        self.tty = sys.stderr.isatty()
        self.start = self.shown = time.monotonic()
        self.quarter = 1  # the next 25% step to report on plain stderr
        size = f" ({total / MB:.1f} MB)" if total else ""
        self._print(f"downloading {name}{size} from {url}\n")

    def _print(self, text):
        if not self.quiet:
            sys.stderr.write(text)
            sys.stderr.flush()

    def _line(self, done):
        rate = done / MB / max(time.monotonic() - self.start, 1e-6)
        of = f"/{self.total / MB:.1f}" if self.total else ""
        return f"  {done / MB:.1f}{of} MB  {rate:.1f} MB/s"

    def update(self, done):
        if self.tty:
            if time.monotonic() - self.shown >= 0.1:  # redraw at most 10 times a second
                self.shown = time.monotonic()
                self._print(f"\r{self._line(done)}   ")
        elif self.total and self.total * self.quarter / 4 <= done < self.total:  # at 25%, 50%, 75%
            self._print(f"{self._line(done)}  ({100 * done // self.total}%)\n")
            self.quarter = 4 * done // self.total + 1

    def close(self, done):
        back = "\r" if self.tty else ""  # over the updating line on a terminal
        self._print(f"{back}{self._line(done)}  done\n")
