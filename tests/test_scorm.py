"""SCORM 1.2 packages: a manifest that validates against the SCORM 1.2 schemas, a zip an LMS can import, a result
endpoint that tells a course only its own learner's approved result and refuses everything else alike, the
`roleplay export scorm` command, and the SCO in a browser reporting to a fake LMS."""

from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from browser import PASSWORD, TIMEOUT, App, app, browser, content_dirs, needs_chromium  # noqa: F401
from click.testing import CliRunner
from content import catalog
from scorm_lms import fake_lms

from roleplay import scorm, scorm_routes
from roleplay.scorm import (
    TOKEN_TTL,
    build_package,
    issue_token,
    mastery_score,
    new_package_id,
    package_scenario,
    percent,
    read_token,
    write_package,
)
from roleplay.scorm_routes import REFUSED

SCHEMAS = Path(scorm.__file__).parent / "data" / "scorm12"
NS = {"cp": scorm.NS_CP, "adlcp": scorm.NS_ADLCP, "md": scorm.NS_MD}
APP = "https://roleplay.example.com/"
LMS = "https://lms.example.org"
KEY = b"k" * 32


@pytest.fixture(scope="module")
def schema() -> Any:
    """The SCORM 1.2 content-packaging schemas as shipped in the package (imscp with adlcp and imsmd).

    Two quirks of these 2001 files need allowances in a strict modern validator, and neither loosens what is checked:
    `ims_xml.xsd` binds the default namespace to the XML namespace, which Namespaces in XML forbids (Expat refuses
    it), so its place is taken by the W3C `xml.xsd` that xmlschema ships (both declare `xml:lang` and `xml:base`);
    and `imsmd_rootv1p2p1.xsd` puts an element next to a wildcard that could match it, a Unique Particle Attribution
    clash under XSD 1.0 that XSD 1.1 resolves in the element's favour, so the schemas are read as XSD 1.1.
    """
    import xmlschema

    w3c_xml = (Path(xmlschema.__file__).parent / "schemas" / "XML" / "xml.xsd").as_uri()
    return xmlschema.XMLSchema11(str(SCHEMAS / "imscp_rootv1p1p2.xsd"),
                                 uri_mapper=lambda uri: w3c_xml if uri.endswith("/ims_xml.xsd") else uri,
                                 locations=[(scorm.NS_ADLCP, str(SCHEMAS / "adlcp_rootv1p2.xsd")),
                                            (scorm.NS_MD, str(SCHEMAS / "imsmd_rootv1p2p1.xsd"))])


def rubric_without_must_pass(threshold: float) -> Any:
    rubric = catalog().rubric("coaching-conversation")
    return rubric.model_copy(update={"pass_threshold": threshold,
                                     "criteria": [c.model_copy(update={"must_pass": False}) for c in rubric.criteria]})


def package_of(scenario_id: str = "missed-deadlines", rubric: Any = None) -> scorm.Package:
    scenario = catalog().scenario(scenario_id)
    return build_package(scenario, rubric or catalog().rubric_for(scenario), APP, KEY)


# --- the package ---------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_manifest_validates_against_the_scorm_12_schemas(schema: Any) -> None:
    for scenario_id in sorted(catalog().scenarios):
        schema.validate(package_of(scenario_id).files["imsmanifest.xml"].decode())
    with_mastery = package_of(rubric=rubric_without_must_pass(2.5)).files["imsmanifest.xml"].decode()
    schema.validate(with_mastery)
    assert "<adlcp:masteryscore>50</adlcp:masteryscore>" in with_mastery
    # the validation is real: what SCORM 1.2 does not allow is refused
    assert not schema.is_valid(with_mastery.replace('adlcp:scormtype="sco"', 'adlcp:scormtype="lesson"'))
    assert not schema.is_valid(with_mastery.replace("<imsmd:general>", "<imsmd:generic>")
                               .replace("</imsmd:general>", "</imsmd:generic>"))


def test_the_zip_has_the_manifest_at_its_root_and_every_file_it_names(tmp_path: Path) -> None:
    path = write_package(package_of(), tmp_path / "course.zip")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        manifest = ElementTree.fromstring(zf.read("imsmanifest.xml"))
        launch = zf.read("index.html").decode()
    resource = manifest.find("cp:resources/cp:resource", NS)
    assert resource is not None and resource.get(f"{{{scorm.NS_ADLCP}}}scormtype") == "sco"
    item = manifest.find("cp:organizations/cp:organization/cp:item", NS)
    assert item is not None and item.get("identifierref") == resource.get("identifier")
    named = {resource.get("href")} | {f.get("href") for f in resource.findall("cp:file", NS)}
    located = manifest.get("{http://www.w3.org/2001/XMLSchema-instance}schemaLocation", "").split()[1::2]
    assert set(located) == {"imscp_rootv1p1p2.xsd", "imsmd_rootv1p2p1.xsd", "adlcp_rootv1p2.xsd"}
    assert named | set(located) | {"ims_xml.xsd"} <= names  # ims_xml.xsd: imported by imscp and imsmd
    assert all("/" not in name for name in names)  # everything at the root, the manifest included
    assert re.search(r'<script src="roleplay-sco.js">', launch) and "Missed deadlines" in launch
    assert APP in launch


def test_a_masteryscore_only_when_the_score_alone_decides_a_pass() -> None:
    shipped = catalog().rubric("coaching-conversation")
    assert mastery_score(shipped) is None  # a must-pass criterion decides too: the LMS must not pass on score
    assert "masteryscore" not in package_of().files["imsmanifest.xml"].decode()
    assert mastery_score(rubric_without_must_pass(3.0)) == 66.67
    assert mastery_score(rubric_without_must_pass(1.0)) is None and not scorm.reports_pass_fail(
        rubric_without_must_pass(1.0))
    # a grade at the threshold scores at least the mastery score; one a step below scores less
    assert percent(2.5) >= 50 > percent(2.499)


def test_package_ids_and_link_tokens_are_signed_and_expire() -> None:
    package = new_package_id(KEY, "missed-deadlines")
    assert package_scenario(KEY, package) == "missed-deadlines"
    forged = package.replace("missed-deadlines", "meeting-conflict")
    assert package_scenario(KEY, forged) is None and package_scenario(b"x" * 32, package) is None
    token = issue_token(KEY, package, "lms-7", "ana", LMS)
    link = read_token(KEY, token, package, "lms-7")
    assert link is not None and (link.learner, link.origin) == ("ana", LMS)
    payload, _, mac = token.partition(".")
    other = issue_token(KEY, package, "lms-7", "bob", LMS).partition(".")[0]
    for bad in (f"{other}.{mac}", token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "", "x.y",
                issue_token(b"y" * 32, package, "lms-7", "ana", LMS)):
        assert read_token(KEY, bad, package, "lms-7") is None
    assert read_token(KEY, token, package, "lms-8") is None  # another LMS learner
    assert read_token(KEY, token, new_package_id(KEY, "missed-deadlines"), "lms-7") is None  # another package
    assert read_token(KEY, token, package, "lms-7", now=time.time() + TOKEN_TTL + 1) is None  # expired


# --- the command ---------------------------------------------------------------------------------------------------

def export(*args: str) -> tuple[int, str, str]:
    from roleplay.cli import main

    result = CliRunner().invoke(main, ["export", "scorm", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.slow
def test_export_scorm_writes_a_package_for_the_public_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROLEPLAY_PUBLIC_URL", "https://practice.example.com/roleplay")
    code, out, err = export("quiet-new-starter")
    assert code == 0, err
    assert "quiet-new-starter-scorm12.zip" in out and "upload it to your LMS" in out
    with zipfile.ZipFile(tmp_path / "quiet-new-starter-scorm12.zip") as zf:
        assert '"app": "https://practice.example.com/roleplay/"' in zf.read("index.html").decode()
    code, out, err = export("quiet-new-starter", "-o", str(tmp_path / "other.zip"), "--app-url", "http://127.0.0.1:7860")
    assert code == 0, err
    assert (tmp_path / "other.zip").exists()


@pytest.mark.parametrize(("args", "says"), [
    pytest.param(["no-such-scenario", "--app-url", APP], "no scenario 'no-such-scenario'", marks=pytest.mark.slow),
    (["missed-deadlines", "--app-url", "ftp://files.example.com/"], "--app-url 'ftp://files.example.com/'"),
    (["missed-deadlines", "--app-url", "roleplay.example.com"], "--app-url 'roleplay.example.com'"),
    (["missed-deadlines", "--app-url", "https://roleplay.example.com/?a=1"], "not the app's web address"),
    (["missed-deadlines"], "set ROLEPLAY_PUBLIC_URL"),
    (["missed-deadlines", "--app-url", APP, "-o", "{tmp}/missing/course.zip"], "missing does not exist"),
    (["missed-deadlines", "--app-url", APP, "-o", "{tmp}"], "is a directory"),
])
def test_export_scorm_bad_input_is_one_line_and_writes_nothing(args: list[str], says: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = export(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == 1 and not out
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and says in err, err
    assert not list(tmp_path.rglob("*.zip")) and not list(tmp_path.rglob("*.tmp"))


# --- the routes ----------------------------------------------------------------------------------------------------

def graded(context: Any, learner: str, level: int) -> tuple[Any, int]:
    """A graded session of missed-deadlines at `level` on every criterion, waiting for review: (grade, review id)."""
    from roleplay.grader import CriterionGrade, finish_grade
    from roleplay.review import ReviewService

    store, cat = context.store, context.catalog
    rubric = cat.rubric("coaching-conversation")
    sess = store.start_session(store.person(learner).id, "missed-deadlines", "novice", "offline")
    store.add_turn(sess.id, "learner", "What has been going on for you?")
    store.end_session(sess.id, "learner")
    grade = finish_grade(rubric, "offline", [
        CriterionGrade(criterion_id=c.id, level=level, checks=[], evidence=[], rationale="Fair.",
                       better_alternative="Ask first.") for c in rubric.criteria])
    store.add_grade(sess.id, grade.judge, rubric.id, grade.model_dump(), grade.overall, grade.passed)
    return grade, ReviewService(store, cat.rubric).for_session(sess.id).review_id


def approve(context: Any, learner: str, level: int) -> Any:
    """`graded`, and approved by the facilitator fay; returns the grade."""
    from roleplay.review import ReviewService

    grade, review_id = graded(context, learner, level)
    ReviewService(context.store, context.catalog.rubric).approve(review_id, "fay", "Fair.")
    return grade


class Running:
    """An app context with its SCORM routes behind a test client, and a way to sign people in to it."""

    def __init__(self, base_url: str = "https://roleplay.example.com") -> None:
        from starlette.applications import Starlette
        from starlette.testclient import TestClient

        from roleplay.context import AppContext

        self.context = AppContext()
        for name, role in (("ana", "learner"), ("bob", "learner"), ("fay", "facilitator")):
            self.context.store.add_person(name, role)
        self.app = Starlette(routes=scorm_routes.routes(self.context))
        self.app.tokens = {"cookie-ana": "ana", "cookie-fay": "fay"}  # what the Gradio app's sign-in keeps
        self.app.cookie_id = "test"
        self.client = TestClient(self.app, base_url=base_url)
        self.key = scorm.load_or_create_key(self.context.settings.data_dir)
        self.package = new_package_id(self.key, "missed-deadlines")

    def approve(self, learner: str, level: int) -> Any:
        return approve(self.context, learner, level)

    def result(self, token: str | None, student: str = "lms-7", package: str | None = None,
               origin: str | None = LMS) -> Any:
        headers: dict[str, Any] = {"Origin": origin} if origin else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}".encode()  # as bytes: a token may be anything a client sends
        return self.client.get("/scorm/result", params={"package": package or self.package, "student": student},
                               headers=headers)

    def close(self) -> None:
        self.client.close()
        self.context.close()


@pytest.fixture()
def running() -> Any:
    app = Running()
    yield app
    app.close()


@pytest.mark.slow
def test_a_course_reads_only_its_learners_approved_result_with_a_valid_token(running: Running) -> None:
    bob_grade = running.approve("bob", 4)
    token = issue_token(running.key, running.package, "lms-7", "ana", LMS)
    answer = running.result(token)
    assert answer.status_code == 200 and answer.json() == {"approved": False, "status": "incomplete", "score": None}
    assert answer.headers["cache-control"] == "no-store"
    grade = running.approve("ana", 3)
    assert grade.passed and bob_grade.overall > grade.overall
    assert running.result(token).json() == {"approved": True, "status": "passed", "score": percent(grade.overall)}
    running.approve("ana", 2)  # a later fail does not take back the approved pass
    assert running.result(token).json()["status"] == "passed"


@pytest.mark.slow
def test_a_wrong_or_expired_token_is_refused_and_tells_nothing(running: Running) -> None:
    running.approve("ana", 3)
    token = issue_token(running.key, running.package, "lms-7", "ana", LMS)
    payload, _, mac = token.partition(".")
    refusals = {
        "no token": running.result(None),
        "not a token": running.result("garbage"),
        "altered": running.result(issue_token(running.key, running.package, "lms-7", "bob", LMS).partition(".")[0]
                                  + "." + mac),
        "another key": running.result(issue_token(b"z" * 32, running.package, "lms-7", "ana", LMS)),
        "expired": running.result(issue_token(running.key, running.package, "lms-7", "ana", LMS,
                                              now=time.time() - TOKEN_TTL - 1)),
        "another LMS learner": running.result(token, student="lms-8"),
        "another package": running.result(token, package=new_package_id(running.key, "missed-deadlines")),
        "a forged package": running.result(token, package=running.package[:-3] + "abc"),
        "another origin": running.result(token, origin="https://elsewhere.example"),
    }
    for why, answer in refusals.items():
        assert answer.status_code == 401, why
        assert answer.json() == REFUSED, why  # the same words every time: no score, no status, no name
    assert running.result(token).json()["status"] == "passed"  # the right token still works


def test_non_ascii_ids_and_tokens_are_refused_not_crashed_on() -> None:
    package = new_package_id(KEY, "missed-deadlines")
    token = issue_token(KEY, package, "lms-7", "ana", LMS)
    payload = token.partition(".")[0]
    assert package_scenario(KEY, package.rpartition(".")[0] + ".é") is None
    assert package_scenario(KEY, "é") is None
    assert read_token(KEY, f"{payload}.é", package, "lms-7") is None
    assert read_token(KEY, "ü" * 10, package, "lms-7") is None


@pytest.mark.slow
def test_non_ascii_requests_get_the_same_clean_refusals(running: Running) -> None:
    token = issue_token(running.key, running.package, "lms-7", "ana", LMS)
    odd_package = running.package.rpartition(".")[0] + ".ünïcode"
    refusals = {
        "a non-ASCII package": running.result(token, package=odd_package),
        "a non-ASCII package only": running.result(None, package="é"),
        "a non-ASCII token": running.result("é.ü"),
        "a non-ASCII signature": running.result(token.partition(".")[0] + ".ÿÿÿ"),
    }
    for why, answer in refusals.items():
        assert answer.status_code == 401, why
        assert answer.json() == REFUSED, why
    query = {"package": odd_package, "student": "lms-7", "name": "Ana", "origin": LMS}
    page = running.client.get("/scorm/link", params=query)
    assert page.status_code == 404 and "Unknown course package" in page.text  # as for any package not its own
    running.client.cookies.set("access-token-unsecure-test", "cookie-ana")
    made = running.client.post("/scorm/link", json={"package": odd_package, "student": "lms-7", "origin": LMS},
                               headers={"Origin": "https://roleplay.example.com"})
    assert made.status_code == 400 and "token" not in made.json()
    assert running.result(token).status_code == 200  # the right token still works


@pytest.mark.slow
def test_links_are_made_behind_a_proxy_that_rewrites_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLEPLAY_PUBLIC_URL", "https://Practice.example.org/roleplay/")
    proxied = Running(base_url="http://127.0.0.1:7860")  # the proxy forwards to the app with its own Host
    try:
        proxied.client.cookies.set("access-token-unsecure-test", "cookie-ana")
        body = {"package": proxied.package, "student": "lms-7", "origin": LMS}

        def link(origin: str) -> Any:
            return proxied.client.post("/scorm/link", json=body, headers={"Origin": origin})

        issued = link("https://practice.example.org")  # the app's page, at its public address
        assert issued.status_code == 200 and "token" in issued.json()
        assert link("http://127.0.0.1:7860").status_code == 200  # the Host the app sees still counts
        for other in ("https://evil.example", "http://practice.example.org", "https://practice.example.org:8443",
                      LMS):
            refused = link(other)
            assert refused.status_code == 403 and "token" not in refused.json(), other
    finally:
        proxied.close()
    assert scorm_routes.origin_of("https://Practice.example.org/roleplay/") == "https://practice.example.org"
    assert scorm_routes.origin_of("roleplay.example.org") is None and scorm_routes.origin_of(None) is None


@pytest.mark.slow
def test_cross_origin_headers_in_the_real_app_are_gradios(running: Running) -> None:
    """Behind Gradio's CORS middleware (as in the app), a course's preflight and result request get Gradio's answers:
    the request's origin allowed, with credentials, which the result route does not need (it reads no cookie)."""
    import gradio as gr
    from gradio.routes import App
    from starlette.testclient import TestClient

    with gr.Blocks() as blocks:
        gr.Markdown("roleplay")
    app = App.create_app(blocks, app_kwargs={"routes": scorm_routes.routes(running.context)})
    token = issue_token(running.key, running.package, "lms-7", "ana", LMS)
    with TestClient(app, base_url="https://roleplay.example.com") as client:
        preflight = client.options("/scorm/result", headers={
            "Origin": LMS, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 200  # answered by Gradio's middleware: the route serves GET only
        assert preflight.headers["access-control-allow-origin"] == LMS
        assert preflight.headers["access-control-allow-headers"] == "authorization"
        assert preflight.headers["access-control-allow-credentials"] == "true"
        query = {"package": running.package, "student": "lms-7"}
        answer = client.get("/scorm/result", params=query, headers={"Origin": LMS, "Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and answer.json()["status"] == "incomplete"
        assert answer.headers["access-control-allow-origin"] == LMS
        assert answer.headers["access-control-allow-credentials"] == "true" and "Origin" in answer.headers["vary"]
        other = client.get("/scorm/result", params=query, headers={"Origin": "https://elsewhere.example",
                                                                   "Authorization": f"Bearer {token}"})
        assert other.status_code == 401 and other.json() == REFUSED  # allowed to read the answer, not the result


@pytest.mark.slow
def test_only_a_signed_in_learner_links_a_course_and_only_from_the_apps_page(running: Running) -> None:
    body = {"package": running.package, "student": "lms-7", "origin": LMS}
    own = {"Origin": "https://roleplay.example.com"}

    def link(cookie: str | None, headers: dict[str, str] = own, **kw: Any) -> Any:
        running.client.cookies.clear()
        if cookie:
            running.client.cookies.set("access-token-unsecure-test", cookie)
        return running.client.post("/scorm/link", json=body, headers=headers, **kw)

    assert link(None).status_code == 401
    assert link("cookie-fay").status_code == 403  # a facilitator's practice does not report to a course
    assert link("cookie-ana", {"Origin": "https://evil.example"}).status_code == 403  # a cross-site page asking
    assert all("token" not in r.json() for r in (link(None), link("cookie-fay"), link("cookie-ana", {"Origin": LMS})))
    issued = link("cookie-ana")
    assert issued.status_code == 200
    assert running.result(issued.json()["token"]).json()["status"] == "incomplete"

    running.client.cookies.clear()
    query = {"package": running.package, "student": "lms-7", "name": "Ana L.", "origin": LMS}
    page = running.client.get("/scorm/link", params=query)
    assert page.status_code == 200 and 'id="signin"' in page.text and 'id="link"' not in page.text
    assert page.headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in page.headers[
        "content-security-policy"]
    running.client.cookies.set("access-token-unsecure-test", "cookie-ana")
    page = running.client.get("/scorm/link", params=query)
    assert 'id="link"' in page.text and LMS in page.text and "Ana L." in page.text
    forged = running.client.get("/scorm/link", params={**query, "package": running.package[:-3] + "abc"})
    assert forged.status_code == 404 and 'id="link"' not in forged.text


# --- the SCO in a browser ------------------------------------------------------------------------------------------


def lms_calls(page: Any, name: str, element: str | None = None) -> list[list[str]]:
    """The fake LMS's recorded calls of one API function (and data model element)."""
    calls = page.evaluate("window.lmsCalls")
    return [c for c in calls if c[0] == name and (element is None or c[1] == element)]


def count_polls(page: Any, at_least: int) -> Any:
    """Count the SCO's result requests from now on; the returned function waits for `at_least` of them."""
    seen: list[str] = []
    page.on("requestfinished", lambda r: seen.append(r.url) if "/scorm/result" in r.url else None)

    def wait() -> int:
        deadline = time.monotonic() + TIMEOUT / 1000
        while len(seen) < at_least and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        return len(seen)

    return wait


@pytest.mark.browser
@pytest.mark.slow
@needs_chromium
def test_the_sco_reports_incomplete_then_the_approved_pass_with_its_score(browser: Any, app: App,  # noqa: F811
                                                                         tmp_path: Path) -> None:
    from playwright.sync_api import expect

    from roleplay.ui.common import ctx

    running = ctx()
    scenario = running.catalog.scenario("missed-deadlines")
    key = scorm.load_or_create_key(running.settings.data_dir)
    package = write_package(build_package(scenario, running.catalog.rubric_for(scenario), app.url, key,
                                          poll_seconds=1), tmp_path / "course.zip")
    with fake_lms(package, tmp_path / "lms") as lms:
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        context.set_default_timeout(TIMEOUT)
        expect.set_options(timeout=TIMEOUT)
        page = context.new_page()
        page.goto(lms.course("lms-ana-42", "Learner, Ana"))
        sco = page.frame_locator("#sco")
        expect(sco.locator("#open")).to_be_enabled()
        assert [c[2] for c in lms_calls(page, "LMSSetValue", "cmi.core.lesson_status")] == ["incomplete"]
        assert lms_calls(page, "LMSInitialize") == [["LMSInitialize", ""]] and lms_calls(page, "LMSCommit")

        with page.expect_popup() as opened:
            sco.locator("#open").click()
        practice = opened.value
        practice.locator("#username").fill("ana")
        practice.locator("#password").fill(PASSWORD)
        practice.get_by_role("button", name="Sign in").click()
        expect(practice.locator("#link-origin")).to_have_text(lms.url.rstrip("/"))
        practice.locator("#link").click()
        expect(practice.locator("#whoami-user")).to_have_text("ana")  # on to the app's Practice page, signed in
        assert practice.url.endswith("/?scenario=missed-deadlines&level=intermediate")
        expect(sco.locator("#status")).to_contain_text("No approved result yet")
        assert "roleplay" in page.evaluate("window.lmsData['cmi.suspend_data']")  # the link, kept for next time

        grade, review_id = graded(running, "ana", 3)  # graded, waiting for a facilitator: it does not count yet
        polls = count_polls(page, 2)
        expect(sco.locator("#status")).to_contain_text("No approved result yet")
        assert polls() >= 2 and [c[2] for c in lms_calls(page, "LMSSetValue", "cmi.core.lesson_status")] == [
            "incomplete"]
        from roleplay.review import ReviewService

        ReviewService(running.store, running.catalog.rubric).approve(review_id, "fay", "Fair.")
        page.wait_for_function("window.lmsCalls.some(c => c[0] === 'LMSFinish')", timeout=TIMEOUT)
        statuses = [c[2] for c in lms_calls(page, "LMSSetValue", "cmi.core.lesson_status")]
        assert statuses == ["incomplete", "passed"]
        assert lms_calls(page, "LMSSetValue", "cmi.core.score.raw")[-1][2] == f"{percent(grade.overall):g}"
        assert lms_calls(page, "LMSSetValue", "cmi.core.score.min")[-1][2] == "0"
        assert lms_calls(page, "LMSSetValue", "cmi.core.score.max")[-1][2] == "100"
        calls = page.evaluate("window.lmsCalls")
        last_status = max(i for i, c in enumerate(calls) if c[1:2] == ["cmi.core.lesson_status"])
        assert any(c[0] == "LMSCommit" for c in calls[last_status:]) and calls[-1][0] == "LMSFinish"
        assert page.evaluate("window.lmsErrors") == []  # nothing called before LMSInitialize or after LMSFinish
        expect(sco.locator("#status")).to_contain_text("passed")
        context.close()
