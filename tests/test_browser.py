"""The report page in a real browser: headless Chromium, driven over the DevTools protocol.

Only the standard library: a minimal WebSocket client (RFC 6455: the HTTP upgrade, masked client
frames, unmasked server frames) carries the DevTools JSON messages. The test opens index.html from
disk, waits for the load event, then checks that every image loaded (naturalWidth > 0), that nothing
was fetched from outside the folder, and that the page logged no errors, threw no exceptions and had
no failed requests. It also saves a full-page screenshot (a person should look at it once in a while:
``MINIVGG_SCREENSHOT=path.png`` keeps a copy).
"""
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minivgg.visualize import cli as visualize_cli

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT = 60  # seconds for any one step; the machine is shared and Chromium is slow to start


class WebSocket:
    """Just enough of RFC 6455 for DevTools: text frames out, text frames in (possibly fragmented)."""

    def __init__(self, url):  # url: ws://host:port/path
        host, _, path = url[len("ws://"):].partition("/")
        name, _, port = host.partition(":")
        self.sock = socket.create_connection((name, int(port)), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            data += chunk
        return data

    def send(self, text):
        payload, mask = text.encode(), os.urandom(4)
        n = len(payload)
        head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else (
            struct.pack("!BBH", 0x81, 0x80 | 126, n) if n < 1 << 16 else struct.pack("!BBQ", 0x81, 0x80 | 127, n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self):
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n >= 126:  # 126: a 16-bit length follows, 127: a 64-bit one
                n = struct.unpack("!H", self._read(2))[0] if n == 126 else struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)  # servers do not mask
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if b0 & 0x80:  # FIN: the last fragment
                    return message.decode()


class DevTools:
    """Commands (``call``) and the events that arrive meanwhile (``events``), over one WebSocket."""

    def __init__(self, url):
        self.ws, self.next_id, self.events = WebSocket(url), 0, []

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                return msg["result"]
            self.events.append(msg)

    def wait_for(self, method):
        deadline = time.monotonic() + TIMEOUT
        while not any(e.get("method") == method for e in self.events):
            assert time.monotonic() < deadline, f"no {method} within {TIMEOUT} s"
            self.events.append(json.loads(self.ws.recv()))

    def open(self, page):
        """Load a page file, recording its requests, console messages and exceptions from the start."""
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.events.clear()
        self.call("Page.navigate", url=page.as_uri())
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression):
        """The value of a JavaScript expression that returns JSON.stringify(...), decoded."""
        return json.loads(self.call("Runtime.evaluate", returnByValue=True, expression=expression)["result"]["value"])

    def assert_local_and_clean(self, folder):
        """Everything the page fetched came from ``folder``, and it logged no error, threw no exception
        and had no failed request."""
        self.call("Runtime.evaluate", expression="0")  # flush events that arrived after the load
        requested = [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]
        assert requested and all(u.startswith(folder.as_uri() + "/") for u in requested), requested
        errors = [e for e in self.events if e["method"] in ("Runtime.exceptionThrown", "Network.loadingFailed")
                  or e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
                  or e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error"]
        assert errors == []


IMAGES = "[...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"  # JS: every <img>


@pytest.fixture
def chromium(tmp_path):
    if not CHROMIUM:
        pytest.skip("needs chromium (apt-get install chromium)")
    profile = tmp_path / "profile"
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--window-size=1400,1000", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + TIMEOUT
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            assert proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=TIMEOUT) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        yield DevTools(page["webSocketDebuggerUrl"])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def report(weights_top, photo, tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "out"
    assert visualize_cli.main([str(photo), "--weights", str(weights_top), "--out", str(out), "--quiet"]) == 0
    return out / "index.html"


def test_page_loads_every_image_without_errors(chromium, report, tmp_path):
    chromium.open(report)
    images = chromium.evaluate(f"JSON.stringify({IMAGES})")
    assert len(images) == 89 + 1  # every grid and the original
    assert [src for src, complete, width in images if not (complete and width > 0)] == []

    size = chromium.call("Page.getLayoutMetrics")["cssContentSize"]
    shot = chromium.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
    png = tmp_path / "page.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    if os.environ.get("MINIVGG_SCREENSHOT"):
        shutil.copy(png, os.environ["MINIVGG_SCREENSHOT"])
    with Image.open(png) as img:
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)  # (H*W, 3)
    assert img.width >= 1000 and img.height > 2000  # five blocks of grids, not an empty page
    assert len(np.unique(pixels, axis=0)) > 1000  # many colours: the grids were drawn

    chromium.assert_local_and_clean(report.parent)


@pytest.fixture(scope="session")
def features_report(weights_notop, photo, tmp_path_factory):
    """A features page (4 channels of block1_conv2, 32x32, 4 steps) beside a feature-map page."""
    from minivgg.features import cli as features_cli

    root = tmp_path_factory.mktemp("browser-features")
    assert visualize_cli.main([str(photo), "--size", "64", "--layers", "block1_*", "--weights", str(weights_notop),
                               "--out", str(root / "maps"), "--quiet"]) == 0
    assert features_cli.main(["--layer", "block1_conv2", "--channels", "0-3", "--size", "32", "--steps", "4",
                              "--weights", str(weights_notop), "--out", str(root / "feat"), "--quiet"]) == 0
    return root / "feat" / "index.html"


def test_features_page_loads_every_image_without_errors(chromium, features_report):
    chromium.open(features_report)
    found = chromium.evaluate(
        f"JSON.stringify({{images: {IMAGES},"
        " curves: document.querySelectorAll('svg.curve polyline').length,"
        " links: [...document.querySelectorAll('nav.related a')].map(a => a.getAttribute('href'))})"
    )
    assert len(found["images"]) == 4 + 1  # every channel's image and the grid
    assert [src for src, complete, width in found["images"] if not (complete and width > 0)] == []
    assert found["curves"] == 4
    assert found["links"] == ["../maps/index.html"]  # and the feature-map page links back:
    assert 'href="../feat/index.html"' in (features_report.parent.parent / "maps" / "index.html").read_text("utf-8")

    chromium.assert_local_and_clean(features_report.parent)


@pytest.fixture(scope="session")
def explain_report(weights_notop, photo, tmp_path_factory):
    """An explain page (every method, the sanity check; 48x48, a channel of block5_conv3) beside a
    feature-map page it links to and from."""
    from minivgg.explain import cli as explain_cli

    root = tmp_path_factory.mktemp("browser-explain")
    assert visualize_cli.main([str(photo), "--size", "48", "--layers", "block1_*", "--weights", str(weights_notop),
                               "--out", str(root / "maps"), "--quiet"]) == 0
    assert explain_cli.main([str(photo), "--channel", "block5_conv3:0", "--size", "48", "--samples", "2", "--steps", "2",
                             "--weights", str(weights_notop), "--out", str(root / "why"), "--quiet"]) == 0
    return root / "why" / "index.html"


def test_explain_page_loads_every_image_without_errors(chromium, explain_report):
    from minivgg.explain import METHODS

    chromium.open(explain_report)
    found = chromium.evaluate(
        f"JSON.stringify({{images: {IMAGES},"
        " sanity: document.querySelectorAll('svg.sanity polyline').length,"
        " links: [...document.querySelectorAll('nav.related a')].map(a => a.getAttribute('href'))})"
    )
    assert len(found["images"]) == len(METHODS) + 1  # every method's overlay and the photo
    assert [src for src, complete, width in found["images"] if not (complete and width > 0)] == []
    assert found["sanity"] == len(METHODS)
    assert found["links"] == ["../maps/index.html"]  # and the feature-map page links back:
    assert 'href="../why/index.html"' in (explain_report.parent.parent / "maps" / "index.html").read_text("utf-8")

    chromium.assert_local_and_clean(explain_report.parent)


@pytest.fixture(scope="session")
def many_report(weights_notop, photo, tmp_path_factory):
    """A many-image run: three images (one a folder away, one with a space and a '#' in its name) and
    one that cannot be read, at 64x64."""
    root = tmp_path_factory.mktemp("browser-many")
    rgb = Image.open(photo).convert("RGB").resize((80, 100))
    (root / "in" / "more").mkdir(parents=True)
    rgb.save(root / "in" / "hopper.jpg")
    rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "in" / "more" / "mirror #1.png")
    rgb.convert("L").save(root / "in" / "more" / "grey.png")
    (root / "in" / "broken.jpg").write_bytes((root / "in" / "hopper.jpg").read_bytes()[:300])
    code = visualize_cli.main([str(root / "in" / "hopper.jpg"), str(root / "in" / "broken.jpg"), str(root / "in" / "more"),
                               "--size", "64", "--weights", str(weights_notop), "--out", str(root / "out"), "--quiet"])
    assert code == 1  # one image could not be read
    return root / "out" / "index.html"


def test_summary_page_loads_every_image_without_errors(chromium, many_report):
    chromium.open(many_report)
    found = chromium.evaluate(
        f"JSON.stringify({{images: {IMAGES},"
        " links: [...document.querySelectorAll('.card h2 a')].map(a => a.href),"
        " failed: [...document.querySelectorAll('.card.failed h2')].map(h => h.textContent)})"
    )
    assert len(found["images"]) == 2 * 3  # a thumbnail and a side-by-side grid per image read
    assert [src for src, complete, width in found["images"] if not (complete and width > 0)] == []
    assert found["failed"] == ["broken.jpg"]
    folder = many_report.parent
    assert found["links"] == [(folder / name / "index.html").as_uri() for name in ("hopper", "grey", "mirror #1")]

    chromium.assert_local_and_clean(folder)
