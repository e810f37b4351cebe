"""Fixtures and helpers for browser tests: the app in-process on a free port, headless Debian chromium."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DOC_SCREENSHOTS = ROOT / "docs" / "screenshots"
PEOPLE = {"ana": "learner", "fay": "facilitator", "dee": "designer"}
PASSWORD = "practise-2026"
TIMEOUT = 15_000  # ms, for any single wait in the browser

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class App:
    """The running app: its URL and where its scenario files live."""

    url: str
    scenarios_dir: Path


@pytest.fixture()
def content_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the scenarios (the Author page writes there) and two calibration anchors."""

    scenarios = tmp_path / "scenarios"
    shutil.copytree(ROOT / "scenarios", scenarios)
    anchors = tmp_path / "anchors"
    anchors.mkdir()
    for gold in sorted((ROOT / "evals" / "gold").glob("*.yaml"))[:2]:
        shutil.copy(gold, anchors / gold.name)
    monkeypatch.setenv("ROLEPLAY_SCENARIOS_DIR", str(scenarios))
    monkeypatch.setenv("ROLEPLAY_ANCHORS_DIR", str(anchors))
    yield scenarios


@pytest.fixture()
def app(content_dirs: Path) -> Iterator[App]:
    """The app, launched in-process with sign-in, with one learner, facilitator and designer."""
    from roleplay.context import AppContext
    from roleplay.ui import build_app
    from roleplay.ui.app import launch_options

    context = AppContext()
    store = context.store
    for name, role in PEOPLE.items():
        store.add_person(name, role, display_name=name.capitalize())
        store.set_password(name, PASSWORD)
    demo = build_app(context)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        yield App(url=f"http://127.0.0.1:{port}/", scenarios_dir=content_dirs)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless chromium for the module."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def login_page(browser: object, app: App) -> object:
    """A fresh browser context on the app's sign-in form; returns its page."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)  # type: ignore[attr-defined]
    context.set_default_timeout(TIMEOUT)
    expect.set_options(timeout=TIMEOUT)  # assertions keep their own 5 s default otherwise; a loaded 2-core machine needs more
    page = context.new_page()
    page.goto(app.url)
    expect(page.get_by_label("username")).to_be_visible()
    return page


def submit_login(page: object, username: str, password: str) -> int:
    """Fill and send the sign-in form; returns the HTTP status of the sign-in request."""
    page.get_by_label("username").fill(username)  # type: ignore[attr-defined]
    page.get_by_label("password").fill(password)  # type: ignore[attr-defined]
    with page.expect_response(lambda r: r.url.rstrip("/").endswith("/login")) as response:  # type: ignore[attr-defined]
        page.get_by_role("button", name="Login").click()  # type: ignore[attr-defined]
    return response.value.status


def sign_in(browser: object, app: App, username: str, password: str = PASSWORD) -> object:
    """A fresh browser context signed in as `username`; returns its page, showing the app."""
    from playwright.sync_api import expect

    page = login_page(browser, app)
    assert submit_login(page, username, password) == 200
    expect(page.locator("#whoami-user")).to_have_text(username)
    return page


def open_tab(page: object, tab: str) -> None:
    """Click a page's tab and wait for it to be selected."""
    from playwright.sync_api import expect

    button = page.locator(f"#tab-{tab}-button")  # type: ignore[attr-defined]
    button.click()
    expect(button).to_have_attribute("aria-selected", "true")


def choose(page: object, elem_id: str, option: str) -> None:
    """Pick `option` (its visible label, or part of it) in a Gradio dropdown."""
    page.locator(f"#{elem_id} input").click()  # type: ignore[attr-defined]
    page.get_by_role("option", name=option).first.click()  # type: ignore[attr-defined]


def settle(page: object) -> None:
    """Wait until no component is loading, and dismiss notification toasts."""
    from playwright.sync_api import expect

    expect(page.locator('[data-testid="status-tracker"]:not(.hide)')).to_have_count(0)  # type: ignore[attr-defined]
    from playwright.sync_api import Error as PlaywrightError

    for button in page.locator(".toast-close").all():  # type: ignore[attr-defined]
        try:
            if button.is_visible():
                button.click(timeout=3000)
        except PlaywrightError:  # the toast closed itself meanwhile
            pass
    expect(page.locator(".toast-body")).to_have_count(0)  # type: ignore[attr-defined]


def shot(page: object, name: str) -> Path:
    """A full-page screenshot in test-artifacts/screenshots/NAME.png, taken once the page has settled."""
    settle(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


def publish_screenshots(prefix: str) -> list[Path]:
    """Copy the screenshots named PREFIX-*.png to docs/screenshots/*.png (without the prefix) for the README."""
    DOC_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted(SCREENSHOTS.glob(f"{prefix}-*.png")):
        dest = DOC_SCREENSHOTS / src.name[len(prefix) + 1:]
        shutil.copy(src, dest)
        out.append(dest)
    return out
