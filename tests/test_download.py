"""download.py against a real HTTP server on 127.0.0.1: no internet, no TensorFlow.

The server serves small test bytes; each test passes their md5 (or patches the table of published
files), so every check of the real code path (stream, hash, rename, clean up) runs in milliseconds.
"""
import hashlib
import http.server
import io
import socket
from pathlib import Path
import threading
import time

import pytest

from minivgg.files import download as dl
from minivgg.errors import MinivggError

BODY = bytes(range(256)) * 3001  # 768,256 bytes: not a multiple of the read size
BODY_MD5 = hashlib.md5(BODY).hexdigest()
NOTOP = dl.FILES["vgg16"][False].name
FULL = dl.FILES["vgg16"][True].name
PUBLISHED = [f"/{f.name}" for files in dl.FILES.values() for f in files.values()]  # VGG16's and VGG19's


class Handler(http.server.BaseHTTPRequestHandler):
    """``/good`` and the published names: BODY; ``/truncated``: half of it under a full Content-Length;
    ``/stall``: headers and a little data, then a pause; anything else: HTTP 500.
    Each request is recorded in ``server.hits``."""

    timeout = 5  # never let a stuck client hold the server thread

    def do_GET(self):
        self.server.hits.append(self.path)
        if self.path in ("/good", "/truncated", *PUBLISHED):
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[: len(BODY) // 2] if self.path == "/truncated" else BODY)
        elif self.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[:1000])
            self.wfile.flush()
            time.sleep(1)  # longer than the client's timeout below, short enough to end soon
        else:
            self.send_error(500, "Internal Server Error")

    def log_message(self, *args):  # keep the test log clean
        pass


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.hits = []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def url(server):
    server.hits.clear()
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No proxies, an empty fake home and Keras cache, and no minivgg env overrides."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("MINIVGG_HOME", raising=False)
    monkeypatch.delenv("MINIVGG_WEIGHTS_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))


def refused_port():
    """A port on 127.0.0.1 that nothing listens on: bound, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_network(*args, **kwargs):
    raise AssertionError("find_weights tried to download a file that was already there")


def test_good_download(url, tmp_path, capsys):
    dest = tmp_path / "w" / NOTOP
    dl.download(f"{url}/good", dest, BODY_MD5)
    assert dest.read_bytes() == BODY
    assert sorted(p.name for p in dest.parent.iterdir()) == [NOTOP]  # no .part left
    err = capsys.readouterr().err  # stderr is not a terminal here: plain lines
    assert f"downloading {NOTOP} (0.8 MB) from {url}/good" in err
    assert "0.8/0.8 MB" in err and "done" in err


def test_quiet_prints_nothing(url, tmp_path, capsys):
    dl.download(f"{url}/good", tmp_path / NOTOP, BODY_MD5, quiet=True)
    assert capsys.readouterr().err == ""


def test_progress_on_a_terminal_is_one_updating_line(url, tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(dl.sys, "stderr", Terminal())
    dl.download(f"{url}/good", tmp_path / NOTOP, BODY_MD5)
    err = dl.sys.stderr.getvalue()
    assert err.count("\n") == 2  # the "downloading ..." line, then one line redrawn with \r
    assert "\r" in err and err.endswith("done\n")


def test_wrong_md5_discards_and_keeps_existing_file(url, tmp_path):
    dest = tmp_path / NOTOP
    dest.write_bytes(b"a good file from before")
    with pytest.raises(MinivggError, match=f"expected {'0' * 32}; the file was discarded") as e:
        dl.download(f"{url}/good", dest, "0" * 32, quiet=True)
    assert BODY_MD5 in str(e.value) and "\n" not in str(e.value)
    assert dest.read_bytes() == b"a good file from before"
    assert sorted(p.name for p in tmp_path.iterdir()) == [NOTOP]


def test_server_error(url, tmp_path):
    with pytest.raises(MinivggError, match="HTTP 500") as e:
        dl.download(f"{url}/broken", tmp_path / NOTOP, BODY_MD5, quiet=True)
    assert "\n" not in str(e.value) and f"by hand into {tmp_path}" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_truncated_response(url, tmp_path):
    with pytest.raises(MinivggError, match=f"truncated: got {len(BODY) // 2} of {len(BODY)} bytes"):
        dl.download(f"{url}/truncated", tmp_path / NOTOP, BODY_MD5, quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_stalled_download_times_out(url, tmp_path):
    start = time.monotonic()
    with pytest.raises(MinivggError, match="failed after 0.0 MB \\(no data for 0.3 s\\)"):
        dl.download(f"{url}/stall", tmp_path / NOTOP, BODY_MD5, quiet=True, timeout=0.3)
    assert time.monotonic() - start < 2  # the message shows the 0.3 s timeout fired; 2 s: a busy machine
    assert list(tmp_path.iterdir()) == []


def test_silent_server_times_out(tmp_path):
    with socket.socket() as silent:  # the kernel accepts the connection; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/{NOTOP}"
        with pytest.raises(MinivggError, match="no answer within 0.3 s"):
            dl.download(url, tmp_path / NOTOP, BODY_MD5, quiet=True, timeout=0.3)
    assert list(tmp_path.iterdir()) == []


def test_refused_connection_fails_fast(tmp_path):
    url = f"http://127.0.0.1:{refused_port()}/{NOTOP}"
    start = time.monotonic()
    with pytest.raises(MinivggError, match="connection refused") as e:
        dl.download(url, tmp_path / NOTOP, BODY_MD5, quiet=True)
    # a refused connection is answered at once; 3 s leaves room for a loaded machine
    assert time.monotonic() - start < 3
    msg = str(e.value)
    assert NOTOP in msg and url in msg and str(tmp_path) in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_fails_before_downloading(url, tmp_path):
    (tmp_path / "a_file").write_bytes(b"")  # tests run as root, so a chmod would not stop us
    with pytest.raises(MinivggError, match="cannot write .* into .*a_file/weights"):
        dl.download(f"{url}/good", tmp_path / "a_file" / "weights" / NOTOP, BODY_MD5, quiet=True)
    assert (tmp_path / "a_file").read_bytes() == b""


def test_unwritable_folder_makes_no_request(server, url, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_bytes(b"")
    monkeypatch.setenv("MINIVGG_WEIGHTS_URL", url)
    with pytest.raises(MinivggError, match="cannot write"):
        dl.find_weights(False, weights_dir=tmp_path / "a_file" / "weights", quiet=True)
    assert server.hits == []


def test_finds_file_in_weights_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "download", no_network)
    (tmp_path / NOTOP).write_bytes(b"x")
    assert dl.find_weights(False, weights_dir=tmp_path) == tmp_path / NOTOP
    assert dl.find_weights(None, weights_dir=tmp_path) == tmp_path / NOTOP  # the only one here
    (tmp_path / FULL).write_bytes(b"x")
    assert dl.find_weights(None, weights_dir=tmp_path) == tmp_path / FULL  # the full file first


def test_finds_file_in_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "download", no_network)
    keras_models = tmp_path / "keras" / "models"  # KERAS_HOME, set by the `isolated` fixture
    keras_models.mkdir(parents=True)
    (keras_models / FULL).write_bytes(b"x")
    assert dl.find_weights(True, weights_dir=tmp_path / "mine") == keras_models / FULL
    assert dl.find_weights(None, weights_dir=tmp_path / "mine") == keras_models / FULL

    monkeypatch.delenv("KERAS_HOME")  # then Keras uses ~/.keras, and so do we
    home_models = tmp_path / "home" / ".keras" / "models"
    home_models.mkdir(parents=True)
    (home_models / NOTOP).write_bytes(b"x")
    assert dl.find_weights(False, weights_dir=tmp_path / "mine") == home_models / NOTOP


def test_find_downloads_once_into_weights_dir(server, url, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVGG_WEIGHTS_URL", url + "/")
    monkeypatch.setitem(dl.FILES["vgg16"], False, dl.FILES["vgg16"][False]._replace(md5=BODY_MD5))
    path = dl.find_weights(False, weights_dir=tmp_path, quiet=True)
    assert path == tmp_path / NOTOP and path.read_bytes() == BODY
    assert dl.find_weights(False, weights_dir=tmp_path, quiet=True) == path
    assert server.hits == [f"/{NOTOP}"]  # the second call found the file


def test_find_uses_minivgg_home(server, url, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVGG_WEIGHTS_URL", url)
    monkeypatch.setenv("MINIVGG_HOME", str(tmp_path / "mh"))
    monkeypatch.setitem(dl.FILES["vgg16"], True, dl.FILES["vgg16"][True]._replace(md5=BODY_MD5))
    assert dl.find_weights(quiet=True) == tmp_path / "mh" / FULL  # None downloads the full file
    assert server.hits == [f"/{FULL}"]


def test_find_offline_names_file_url_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVGG_WEIGHTS_URL", f"http://127.0.0.1:{refused_port()}")
    with pytest.raises(MinivggError) as e:
        dl.find_weights(False, weights_dir=tmp_path / "w", quiet=True)
    msg = str(e.value)
    assert f"cannot download {NOTOP} from http://127.0.0.1:" in msg and f"into {tmp_path / 'w'}" in msg
    assert list((tmp_path / "w").iterdir()) == []


def test_vgg19_found_and_downloaded_like_vgg16(server, url, tmp_path, monkeypatch):
    name = dl.FILES["vgg19"][False].name
    (tmp_path / NOTOP).write_bytes(b"x")  # a VGG16 file here is not a VGG19 file
    monkeypatch.setenv("MINIVGG_WEIGHTS_URL", url)
    monkeypatch.setitem(dl.FILES["vgg19"], False, dl.FILES["vgg19"][False]._replace(md5=BODY_MD5))
    path = dl.find_weights(False, weights_dir=tmp_path, quiet=True, arch="vgg19")
    assert path == tmp_path / name and path.read_bytes() == BODY and server.hits == [f"/{name}"]
    assert dl.find_weights(None, weights_dir=tmp_path, quiet=True, arch="vgg19") == path  # found, not fetched
    assert dl.find_weights(None, weights_dir=tmp_path, arch="vgg16") == tmp_path / NOTOP
    assert len(server.hits) == 1
    with pytest.raises(MinivggError, match="no published weights for 'vgg11'"):
        dl.find_weights(arch="vgg11")


def test_default_urls_are_keras_own(tmp_path, monkeypatch):
    monkeypatch.delenv("MINIVGG_WEIGHTS_URL", raising=False)
    asked = []
    monkeypatch.setattr(dl, "download", lambda url, dest, md5, quiet=False: asked.append((url, md5)))
    for arch in ("vgg16", "vgg19"):
        for top in (True, False):
            dl.find_weights(top, weights_dir=tmp_path, arch=arch)
    base = "https://storage.googleapis.com/tensorflow/keras-applications/"
    assert asked == [(f"{base}{arch}/{dl.FILES[arch][top].name}", dl.FILES[arch][top].md5)
                     for arch in ("vgg16", "vgg19") for top in (True, False)]


def test_the_table_matches_keras_source(tf):
    # The URLs and md5 sums Keras itself uses, read from its source (keras/src/applications/vggNN.py).
    import importlib.util

    for arch, files in dl.FILES.items():
        source = open(importlib.util.find_spec(f"keras.src.applications.{arch}").origin).read()
        for f in files.values():
            assert f.md5 in source and f.name in source, (arch, f.name)
        assert dl.BASE_URL.format(arch=arch).split("//")[1].split("/")[0] in source


def test_a_source_checkout_keeps_weights_in_its_own_weights_folder():
    """In a checkout (these tests run in one), files go to the repository's weights/, as README says;
    elsewhere (a wheel in site-packages) to ~/.cache/minivgg."""
    repo = Path(__file__).resolve().parents[1]
    assert dl.weights_folder() == repo / "weights"
