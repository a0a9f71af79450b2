"""files/atomic.py: ``replacing(path)`` writes a temporary file beside ``path`` and renames it into place;
on any exception the old file stays as it was and no temporary file is left."""
import os
import stat

import pytest

from minivgg.files.atomic import replacing


def names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_normal_write_replaces_the_file(tmp_path):
    path = tmp_path / "page.html"
    path.write_text("old")
    with replacing(path) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)  # the same folder: os.replace is a rename
        assert os.path.basename(tmp).startswith(".") and os.path.getsize(tmp) == 0
        assert path.read_text() == "old"  # nothing visible yet
        with open(tmp, "w") as f:
            f.write("new")
    assert path.read_text() == "new" and names(tmp_path) == ["page.html"]


def test_a_new_file_gets_the_mode_open_gives_it(tmp_path):
    """Not mkstemp's private 0o600: the umask decides, as for open()."""
    (tmp_path / "by_open").write_bytes(b"")
    with replacing(tmp_path / "by_us"):
        pass
    mode = lambda name: stat.S_IMODE((tmp_path / name).stat().st_mode)
    assert mode("by_us") == mode("by_open")


@pytest.mark.parametrize("error", [ValueError("bad"), KeyboardInterrupt()])
def test_an_exception_leaves_the_old_file_and_no_temporary(tmp_path, error):
    path = tmp_path / "state.npz"
    path.write_bytes(b"old")
    with pytest.raises(type(error)):
        with replacing(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half of the new")
            raise error
    assert path.read_bytes() == b"old" and names(tmp_path) == ["state.npz"]


def test_an_exception_before_the_first_write_creates_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with replacing(tmp_path / "new.png"):
            raise KeyboardInterrupt
    assert names(tmp_path) == []


def test_an_os_error_names_the_users_file_not_the_temporary_one(tmp_path):
    path = tmp_path / "grid.jpg"
    with pytest.raises(OSError) as e:
        with replacing(path) as tmp:
            raise OSError(28, "No space left on device", tmp)
    assert e.value.filename == str(path) and names(tmp_path) == []


def test_a_failed_rename_removes_the_temporary_file(tmp_path):
    (tmp_path / "out").mkdir()  # a folder where the file should go: os.replace refuses
    with pytest.raises(OSError) as e:
        with replacing(tmp_path / "out") as tmp:
            with open(tmp, "w") as f:
                f.write("x")
    assert e.value.filename == str(tmp_path / "out") and names(tmp_path) == ["out"]


def test_a_missing_folder_fails_before_the_block(tmp_path):
    with pytest.raises(FileNotFoundError):
        replacing(tmp_path / "missing" / "f.json")
    assert names(tmp_path) == []


def test_names_are_framed_and_never_shared(tmp_path):
    """download.py's ``<name>.<random>.part``; two writers of one file get two temporary files."""
    path = tmp_path / "w.h5"
    a, b = replacing(path, prefix="w.h5.", suffix=".part"), replacing(path)
    with a as tmp_a, b as tmp_b:
        assert os.path.basename(tmp_a).startswith("w.h5.") and tmp_a.endswith(".part")
        assert os.path.basename(tmp_b).startswith(".w.h5-") and tmp_b.endswith(".tmp")
        assert tmp_a != tmp_b
    assert names(tmp_path) == ["w.h5"]


def test_save_npz_writes_the_arrays_and_a_ctrl_c_waits_until_the_file_is_whole(tmp_path, monkeypatch):
    """save_npz writes what np.load reads back. A Ctrl-C (SIGINT) that arrives while np.savez writes (here
    sent from inside it) is held until the file is whole, then raised as the usual KeyboardInterrupt:
    the new file is complete and no temporary is left. (Interrupted inside np.savez, as once happened
    in tests/test_train_cli.py, its zip file's cleanup raised a ValueError and printed a traceback.)
    With a handler of the caller's own (the catalogue's: the first Ctrl-C asks to stop), it gets the signal."""
    import signal

    import numpy as np

    import minivgg.files.atomic as atomic

    path = tmp_path / "state.npz"
    atomic.save_npz(path, {"a": np.arange(3), "b": np.ones((2, 2), np.float32)})
    with np.load(path) as f:
        assert f["a"].tolist() == [0, 1, 2] and f["b"].shape == (2, 2)

    real = np.savez

    def savez_hit_by_ctrl_c(f, **arrays):
        os.kill(os.getpid(), signal.SIGINT)  # delivered to Python's handler at the next bytecode
        real(f, **arrays)

    monkeypatch.setattr(atomic.np, "savez", savez_hit_by_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        atomic.save_npz(path, {"a": np.arange(5)})
    with np.load(path) as f:
        assert f["a"].tolist() == [0, 1, 2, 3, 4]  # written whole before the interrupt
    assert names(tmp_path) == ["state.npz"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler

    asked = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: asked.append(signum))
    try:
        atomic.save_npz(path, {"a": np.arange(7)})  # no exception: the caller's handler decides
    finally:
        signal.signal(signal.SIGINT, old)
    assert asked == [signal.SIGINT]
    with np.load(path) as f:
        assert f["a"].size == 7
