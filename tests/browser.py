"""Open a page in Debian's headless Chromium and ask it what it drew.

Chromium speaks the DevTools protocol over a pipe (``--remote-debugging-pipe``): it
reads commands from file descriptor 3 and writes replies and events to descriptor 4,
each one JSON message ended by a NUL byte. That needs no port, no websocket and no
driver binary matching the browser's version; only the ``chromium`` package, which
``scripts/test.sh`` installs. Every read has a deadline, so a browser that stops
answering fails the test instead of hanging it.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
]
LOCAL_SCHEMES = ("file:", "data:", "about:")


def chromium_path() -> str | None:
    """Debian's chromium, if installed."""
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )


class Browser:
    """One headless Chromium; use as a context manager. Collects every page's console
    errors, uncaught exceptions and requests for anything but a local file."""

    def __init__(self, executable: str, timeout: float = 60.0) -> None:
        self.executable, self.timeout = executable, timeout
        self.problems: list[str] = []
        self._next_id = 0
        self._buffer = b""

    def __enter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        to_browser_read, to_browser_write = os.pipe()
        from_browser_read, from_browser_write = os.pipe()

        def on_fds_3_and_4() -> None:  # in the child, before exec
            commands = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)  # not 3 or 4 yet
            replies = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(commands, 3)
            os.dup2(replies, 4)

        self._process = subprocess.Popen(
            [self.executable, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            pass_fds=(3, 4),
            preexec_fn=on_fds_3_and_4,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._send_fd, self._receive_fd = to_browser_write, from_browser_read
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            self._send("Browser.close")
            self._process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired, TimeoutError):
            self._process.kill()
            self._process.wait()
        finally:
            os.close(self._send_fd)
            os.close(self._receive_fd)
            self._profile.cleanup()

    def open(self, url: str) -> str:
        """Load ``url`` in a new tab and wait for its load event; returns the tab's session."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", session=session)
        self.call("Page.navigate", {"url": url}, session=session)
        self._wait_for(lambda m: m.get("method") == "Page.loadEventFired")
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        """The value of a JavaScript expression in the page; a thrown error fails."""
        reply = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=session,
        )
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        number = self._send(method, params, session)
        reply = self._wait_for(lambda m: m.get("id") == number)
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply["result"]

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._send_fd, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _wait_for(self, wanted: Any) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._receive(deadline)
            self._note(message)
            if wanted(message):
                return message

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._receive_fd], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"chromium did not answer within {self.timeout:g} s")
            chunk = os.read(self._receive_fd, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed the pipe (it crashed or exited)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _note(self, message: dict) -> None:
        """Keep what a clean page never produces."""
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            texts = [str(arg.get("value", arg.get("description"))) for arg in params["args"]]
            self.problems.append("console error: " + " ".join(texts))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description", details.get("text"))
            self.problems.append(f"uncaught exception: {text}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.problems.append(f"browser error: {params['entry']['text']}")
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(LOCAL_SCHEMES):
                self.problems.append(f"network request: {url}")
