"""Write a file so that nobody ever sees half of it: a temporary file beside it, then a rename.

    with replacing(path) as tmp:          # tmp: an empty file's path in path's folder, ".<name>-<random>.tmp"
        image.save(tmp, "PNG")            # write it whole, by any means that takes a path
    # left normally:       os.replace(tmp, path): path is the old file or the new one, never half of one
    # left by an exception (KeyboardInterrupt too): tmp is removed, path is as it was, the exception goes on

Why each piece:

- the same folder: ``os.replace`` is atomic only within one file system (a rename); across file systems
  it fails, and a copy would be visible half-written.
- a name starting with "." and made at random, created exclusively (``O_EXCL``, as ``tempfile.mkstemp``
  does): two runs writing the same file never share a temporary file, and the tools' listings of the
  files they own (``OURS`` in the command lines) never take it for one of theirs.
- the mode ``open()`` would give the file (0o666 less the umask): the kernel applies the umask when the
  file is created, so no ``os.umask`` call (which would change it for every thread for a moment).
  ``tempfile.mkstemp`` makes its files private (0o600), and the rename would keep that.
- an ``OSError`` that names the temporary file (a full disk while writing it) is made to name ``path``
  instead, the file the user asked for.

The temporary file is made when ``replacing(path)`` is called, so a caller can tell "cannot create a
file in that folder" from a failure while writing::

    try:
        target = replacing(path)
    except OSError as e:
        raise MinivggError(f"cannot write {path}: {e.strerror}") from None
    with target as tmp:
        ...
"""
import errno
import os
import secrets
import signal
import threading

import numpy as np


class replacing:
    """Context manager: yields a new empty file's path beside ``path``; on a normal exit renames it onto
    ``path``, on any exception removes it. ``prefix`` and ``suffix`` frame the temporary name (default
    ".<path's name>-" and ".tmp"); keep the prefix starting with "." so that it stays hidden."""

    def __init__(self, path, prefix=None, suffix=".tmp"):
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        prefix = f".{os.path.basename(self.path)}-" if prefix is None else prefix
        self.tmp = _create(folder, prefix, suffix)

    def __enter__(self):
        return self.tmp

    def __exit__(self, kind, error, traceback):
        if kind is None:
            try:
                os.replace(self.tmp, self.path)
            except BaseException as e:  # the rename failed (path is a folder, ...): as any other error
                self._discard(e)
                raise
        else:
            self._discard(error)
        return False  # an exception goes on

    def _discard(self, error):
        if os.path.exists(self.tmp):
            os.remove(self.tmp)
        if isinstance(error, OSError) and error.filename == self.tmp:
            error.filename = self.path  # name the file the user asked for, not the temporary one


def _create(folder, prefix, suffix, tries=100):
    """A new empty file ``folder/<prefix><16 random hex digits><suffix>``, created exclusively with the
    mode open() gives (0o666 less the umask); its path. OSError if the folder cannot take it."""
    for _ in range(tries):
        tmp = os.path.join(folder, f"{prefix}{secrets.token_hex(8)}{suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue  # 2**64 names: only a folder full of our temporaries gets here twice
    raise FileExistsError(errno.EEXIST, f"no free temporary name after {tries} tries", folder)


def save_npz(path, arrays):
    """``np.savez`` of ``arrays`` (name -> array) into ``path`` through ``replacing``: path is the old file
    or the new one. Ctrl-C while it writes takes effect once the file is whole (in the main thread; the
    handler that was in place then gets the signal, by default a KeyboardInterrupt): interrupted inside
    np.savez, its zip file's own cleanup raised a ValueError in the KeyboardInterrupt's place and printed
    a traceback as the file was dropped, so a command ended with that instead of its "interrupted" line."""
    caught = []
    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        with replacing(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez adds no ".npz" to it
            np.savez(f, **arrays)
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
            if caught and callable(old):
                old(signal.SIGINT, None)  # the usual handler raises KeyboardInterrupt here
            elif caught and old == signal.SIG_DFL:
                raise KeyboardInterrupt
