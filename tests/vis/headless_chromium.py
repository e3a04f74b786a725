"""A minimal Chrome DevTools Protocol driver for the real-browser tests: open a file, record what happened.

Chromium runs headless with a fresh profile, no background services, every host name
unresolvable and a dead proxy, so nothing could leave the machine even if a page tried; the
test still fails on the attempt, which the driver records from ``Network.requestWillBeSent``
and CSP violation events.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Generous caps, not expected durations: on a loaded CI machine parsing a page's 6 MB of inlined
# JavaScript, or starting the browser, can take minutes. Waits end as soon as their signal arrives,
# so a quiet machine pays nothing for them. ITV_BROWSER_TIMEOUT_S raises them further.
TIMEOUT_S = float(os.environ.get("ITV_BROWSER_TIMEOUT_S", "300"))
# How long one socket read blocks before the driver checks its deadline again (not a limit).
SOCKET_POLL_S = 30.0

# Wraps a test's ready condition: a view that failed to draw ends the wait at once with its message,
# and a condition that throws because the page is still loading counts as "not yet".
_READY_OR_FAILED = """(() => {{
  const failed = document.querySelector('.itv-error');
  if (failed) return 'failed: ' + failed.textContent;
  try {{ return Boolean({ready}); }} catch (error) {{ return false; }}
}})()"""

# Runs before any page script: collects script errors and CSP-blocked loads the DevTools events might miss.
_RECORDER = """
window.__itvErrors = [];
window.__itvBlocked = [];
window.addEventListener("error", function (e) { window.__itvErrors.push(String(e.message || e)); }, true);
window.addEventListener("unhandledrejection", function (e) { window.__itvErrors.push("unhandled rejection: " + e.reason); });
document.addEventListener("securitypolicyviolation", function (e) { window.__itvBlocked.push(e.blockedURI + " (" + e.violatedDirective + ")"); });
"""


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageRecord:
    """Everything the page did that a test asserts on."""

    url: str
    requests: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def network_requests(self) -> list[str]:
        """Requests other than the page itself and in-memory data:/blob: URLs."""
        return [url for url in self.requests if url != self.url and not url.startswith(("data:", "blob:"))]


class HeadlessChromium:
    def __init__(
        self, executable: str, profile_dir: Path, width: int = 1280, height: int = 1600, socket_poll_s: float = SOCKET_POLL_S
    ) -> None:
        import websocket  # websocket-client, from the test extra

        profile_dir.mkdir(parents=True, exist_ok=True)
        port_file = profile_dir / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)  # a stale one from an earlier run would name a dead port
        args = [
            executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-default-apps", "--mute-audio", f"--user-data-dir={profile_dir}",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
            f"--window-size={width},{height}", "--remote-debugging-port=0", "about:blank",
        ]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT_S
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"chromium did not start (exit code {self._process.returncode}); is {executable} a working browser?")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        try:
            self._socket = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=socket_poll_s, suppress_origin=True)
        except Exception:
            self.close()
            raise
        self._timeout_error = websocket.WebSocketTimeoutException
        self._socket_poll_s = socket_poll_s
        self._next_id = 0
        self._events: list[dict] = []
        self._session: str | None = None
        self.width, self.height = width, height

    # --------------------------------------------------------------- protocol
    def send(self, method: str, params: dict | None = None, session: bool = True, timeout: float = TIMEOUT_S) -> dict:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self._session:
            message["sessionId"] = self._session
        self._socket.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                reply = self._receive()
            except self._timeout_error:  # a busy page answers late; keep waiting until the deadline
                continue
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(f"no reply to {method} within {timeout} s")

    def _receive(self) -> dict:
        message = json.loads(self._socket.recv())
        if "method" in message:
            self._events.append(message)
            if message["method"] == "Page.javascriptDialogOpening":  # an alert() blocks the page until answered
                self._socket.send(json.dumps({"id": -1, "method": "Page.handleJavaScriptDialog",
                                              "params": {"accept": False}, "sessionId": self._session}))
        return message

    def _pump(self, seconds: float) -> None:
        self._socket.settimeout(seconds)
        try:
            while True:
                self._receive()
        except self._timeout_error:  # nothing more arrived
            return
        finally:
            self._socket.settimeout(self._socket_poll_s)

    # ------------------------------------------------------------------ pages
    def open(self, path: Path, ready_js: str, timeout: float = TIMEOUT_S) -> PageRecord:
        """Load ``path`` in a fresh tab and wait until ``ready_js`` evaluates truthy (the page's ready
        signal), failing at once if a view reports that it could not draw, and at ``timeout`` at the latest."""
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self._session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.addScriptToEvaluateOnNewDocument", {"source": _RECORDER})
        self._events.clear()
        url = path.resolve().as_uri()
        self.send("Page.navigate", {"url": url})
        deadline = time.monotonic() + timeout
        condition = _READY_OR_FAILED.format(ready=ready_js)
        while (state := self.evaluate(condition)) is not True:
            if isinstance(state, str):
                raise RuntimeError(f"{path.name}: a view could not draw ({state})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path.name} did not render within {timeout} s (waiting for {ready_js})")
            self._pump(0.1)
        self._pump(0.3)  # let late errors and requests arrive
        return self._record(url)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluating {expression!r} failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, max_height: int = 6000) -> Path:
        """A PNG of the whole page. The viewport is grown to the content first (capturing beyond the
        viewport instead makes responsive charts re-layout mid-capture and come out blank)."""
        size = self.send("Page.getLayoutMetrics")["cssContentSize"]
        height = int(min(max(size["height"], self.height), max_height))
        self.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self._pump(0.5)  # let charts redraw at the new size
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def _record(self, url: str) -> PageRecord:
        record = PageRecord(url)
        for event in self._events:
            method, params = event["method"], event.get("params", {})
            if method == "Network.requestWillBeSent":
                record.requests.append(params["request"]["url"])
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                record.exceptions.append(details.get("exception", {}).get("description") or details.get("text", ""))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                record.console_errors.append(" ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                record.console_errors.append(f"{params['entry'].get('source')}: {params['entry']['text']} {params['entry'].get('url', '')}")
            elif method == "Page.javascriptDialogOpening":
                record.dialogs.append(f"{params['type']}: {params['message']}")
        record.exceptions += self.evaluate("window.__itvErrors") or []
        record.requests += [f"blocked by CSP: {blocked}" for blocked in self.evaluate("window.__itvBlocked") or []]
        return record

    def close(self) -> None:
        socket = getattr(self, "_socket", None)
        if socket is not None:
            try:
                self.send("Browser.close", session=False, timeout=5)
            except (OSError, RuntimeError, TimeoutError, self._timeout_error):
                self._process.kill()  # it did not answer; stop it the hard way
            socket.close()
        else:
            self._process.kill()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium per test module; a missing browser fails under CI and skips elsewhere."""
    executable = find_chromium()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run should have installed it (apt-get install chromium)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    chromium = HeadlessChromium(executable, tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()
