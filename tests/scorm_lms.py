"""A tiny fake LMS for SCORM 1.2 tests: a static web server whose page offers a SCORM 1.2 `API` object in JavaScript,
records every call to it, and launches an unpacked package's SCO in a frame (on its own origin, not the app's)."""

from __future__ import annotations

import functools
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

LMS_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Fake LMS</title>
<script>
// A SCORM 1.2 run-time API as an LMS provides it to the SCO's frames: calls are recorded in window.lmsCalls; calls
// before LMSInitialize or after LMSFinish fail (returning "false") and are recorded in window.lmsErrors.
(function () {
  var query = new URLSearchParams(window.location.search);
  var data = {"cmi.core.student_id": query.get("student") || "", "cmi.core.student_name": query.get("name") || "",
              "cmi.core.lesson_status": "not attempted", "cmi.core.lesson_mode": "normal",
              "cmi.core.entry": "ab-initio", "cmi.suspend_data": query.get("suspend") || "",
              "cmi.core.credit": "credit"};
  var state = "new";
  window.lmsCalls = [];
  window.lmsErrors = [];
  window.lmsData = data;
  function call(name, args, ok, value) {
    window.lmsCalls.push([name].concat(args));
    if (!ok) { window.lmsErrors.push([name].concat(args)); return "false"; }
    return value;
  }
  window.API = {
    LMSInitialize: function (a) { var ok = state === "new" && a === ""; if (ok) { state = "running"; }
                                  return call("LMSInitialize", [a], ok, "true"); },
    LMSFinish: function (a) { var ok = state === "running"; if (ok) { state = "finished"; }
                              return call("LMSFinish", [a], ok, "true"); },
    LMSGetValue: function (k) { return call("LMSGetValue", [k], state === "running", data[k] === undefined ? "" : data[k]); },
    LMSSetValue: function (k, v) { var ok = state === "running"; if (ok) { data[k] = String(v); }
                                   return call("LMSSetValue", [k, String(v)], ok, "true"); },
    LMSCommit: function (a) { return call("LMSCommit", [a], state === "running", "true"); },
    LMSGetLastError: function () { return "0"; },
    LMSGetErrorString: function () { return ""; },
    LMSGetDiagnostic: function () { return ""; }
  };
}());
</script></head>
<body><h1>Fake LMS</h1><iframe id="sco" src="pkg/index.html" width="900" height="700"></iframe></body></html>
"""


@dataclass
class FakeLMS:
    """The running fake LMS: where its course page is."""

    url: str

    def course(self, student: str, name: str) -> str:
        """The course page's address for a learner of the LMS."""
        return f"{self.url}lms.html?{urlencode({'student': student, 'name': name})}"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@contextmanager
def fake_lms(package: Path, root: Path) -> Iterator[FakeLMS]:
    """Serve the fake LMS page and `package` unpacked under pkg/, from `root`, on a free port of 127.0.0.1."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "lms.html").write_text(LMS_PAGE, encoding="utf-8")
    with zipfile.ZipFile(package) as zf:
        zf.extractall(root / "pkg")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeLMS(url=f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
