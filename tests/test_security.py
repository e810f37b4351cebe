"""Security: demo accounts only when asked for, sign-in throttling, private downloads, input and model-call limits,
races on one session, and one clear line for every start-up and input error."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from roleplay.context import AppContext
from roleplay.store import Store

ROOT = Path(__file__).resolve().parent.parent


def load_app_script() -> types.ModuleType:
    """The top-level `app.py`, imported as a module."""
    spec = importlib.util.spec_from_file_location("roleplay_app_script", ROOT / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeUI:
    """Stands in for `roleplay.ui.app`: records the launch instead of serving."""

    def __init__(self) -> None:
        self.launched: dict[str, Any] | None = None

    def module(self) -> types.ModuleType:
        mod = types.ModuleType("roleplay.ui.app")
        ui = self

        class Demo:
            def launch(self, **kwargs: Any) -> None:
                ui.launched = kwargs

        mod.build_app = lambda context=None: Demo()  # type: ignore[attr-defined]
        mod.launch_options = lambda: {}  # type: ignore[attr-defined]
        return mod


@pytest.fixture()
def start_app(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run `python app.py ARGS` in-process without serving; returns (exit code, stdout, stderr)."""
    import roleplay.ui

    def run(*args: str) -> tuple[int, str, str]:
        fake = FakeUI()
        module = fake.module()
        monkeypatch.setitem(sys.modules, "roleplay.ui.app", module)
        monkeypatch.setattr(roleplay.ui, "app", module, raising=False)
        code = load_app_script().main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def settings_store() -> Store:
    from roleplay.config import load_settings

    return Store(load_settings().database_url)


# --- 1. demo accounts only when asked for ------------------------------------------------------------------------

@pytest.mark.slow
def test_no_demo_accounts_without_demo_and_one_line_on_how_to_create_one(start_app: Any) -> None:
    code, out, err = start_app()
    assert code == 0, err
    store = settings_store()
    assert store.people() == []  # no account with password = username on a production database
    lines = [line for line in out.splitlines() if "nobody can sign in" in line]
    assert len(lines) == 1 and "roleplay people add NAME --role facilitator --password" in lines[0]
    assert "python app.py --demo" in lines[0]
    store.close()


@pytest.mark.slow
def test_demo_after_terminal_practice_gives_every_demo_account_its_password(start_app: Any) -> None:
    store = settings_store()
    store.ensure_person("learner", "learner")  # what `roleplay practice --user learner` leaves behind
    store.add_person("dana", "facilitator", password="a-long-pass-phrase")
    code, out, err = start_app("--demo")
    assert code == 0, err
    for name in ("learner", "facilitator", "designer"):
        assert store.authenticate(name, name) is not None, name
    line = next(line for line in out.splitlines() if line.startswith("demo accounts"))
    assert "learner, facilitator, designer" in line and "password = username" in line
    assert store.authenticate("dana", "a-long-pass-phrase") is not None
    code, out, _ = start_app("--demo")  # idempotent: nothing new, the same line
    assert code == 0 and [p.username for p in store.people()] == ["dana", "designer", "facilitator", "learner"]
    store.close()


@pytest.mark.slow
def test_demo_setting_seeds_like_the_flag(start_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLEPLAY_DEMO", "1")
    code, out, _ = start_app()
    assert code == 0 and "demo accounts" in out
    store = settings_store()
    assert store.authenticate("designer", "designer") is not None
    store.close()


@pytest.mark.slow
def test_a_demo_account_with_its_own_password_keeps_it(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    store.add_person("facilitator", "facilitator", password="chosen-by-the-admin")
    accounts = {a.username: a.action for a in store.seed_demo_people()}
    assert accounts == {"learner": "created", "facilitator": "unchanged", "designer": "created"}
    assert store.authenticate("facilitator", "facilitator") is None
    store.close()


@pytest.mark.slow
def test_account_notice_names_existing_roles(tmp_path: Path) -> None:
    app = AppContext()
    app.store.ensure_person("designer", "learner")
    notice = app.account_notice(demo=True) or ""
    assert "designer (a learner)" in notice
    assert app.account_notice(demo=False) is None  # people can sign in now
    app.close()


# --- 2. sign-in ---------------------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.slow
def test_failed_sign_ins_pause_the_username_then_longer(tmp_path: Path) -> None:
    from roleplay.signin import SignIn, SignInPaused, SignInThrottle

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.add_person("ana", "learner", password="correct horse battery")
    clock = Clock()
    signin = SignIn(store, SignInThrottle(max_failures=5, lockout=300, clock=clock))
    for _ in range(5):
        assert signin.check("ana", "guess", "10.0.0.1") is None
    with pytest.raises(SignInPaused) as paused:  # even the right password is not checked while paused
        signin.check("ana", "correct horse battery", "10.0.0.2")
    assert paused.value.retry_after == 300 and "paused for 5 minutes" in str(paused.value)
    with pytest.raises(SignInPaused):  # an unknown username is counted and paused just the same
        for _ in range(6):
            signin.check("nobody", "guess", "10.0.0.3")
    clock.now += 301
    assert signin.check("ana", "wrong again", "10.0.0.1") is None
    with pytest.raises(SignInPaused) as longer:  # the pause grows with every failure after one
        signin.check("ana", "correct horse battery")
    assert longer.value.retry_after == 600
    clock.now += 601
    assert signin.check("ana", "correct horse battery").username == "ana"  # type: ignore[union-attr]
    assert signin.throttle.wait("ana") == 0  # success forgets the username's failures
    store.close()


@pytest.mark.slow
def test_one_client_trying_many_usernames_is_paused(tmp_path: Path) -> None:
    from roleplay.signin import SignIn, SignInPaused, SignInThrottle

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    signin = SignIn(store, SignInThrottle(max_failures=5, lockout=60, clock=Clock()))
    for i in range(20):
        assert signin.check(f"user{i}", "guess", "10.9.9.9") is None
    with pytest.raises(SignInPaused):
        signin.check("fresh-name", "guess", "10.9.9.9")
    assert signin.check("fresh-name", "guess", "10.1.1.1") is None  # other clients are not affected
    assert max(len(key) for key, _ in signin.throttle.keys("x" * 1_000_000, "10.1.1.1")) < 100  # bounded memory
    store.close()


@pytest.mark.slow
def test_unknown_and_password_less_users_cost_a_full_hash_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from roleplay import passwords

    calls: list[str] = []
    real = passwords._HASHER

    class Counting(type(real)):  # type: ignore[misc]
        def verify(self, hash: str, password: str) -> bool:  # noqa: A002 - argon2's name
            calls.append(hash)
            return real.verify(hash, password)

    monkeypatch.setattr(passwords, "_HASHER", Counting())
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.add_person("ana", "learner", password="correct horse battery")
    store.add_person("ben", "learner")
    calls.clear()
    for name in ("ana", "ben", "nobody"):
        assert store.authenticate(name, "wrong password") is None
    assert len(calls) == 3 and all(h.startswith("$argon2id$") for h in calls)
    store.close()


def test_new_passwords_need_ten_characters(tmp_path: Path) -> None:
    from roleplay.errors import RoleplayError

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    with pytest.raises(RoleplayError) as short:
        store.add_person("ana", "learner", password="short-one")
    assert str(short.value).startswith("a password needs at least 10 characters") and "\n" not in str(short.value)
    assert store.people() == []  # nothing written
    store.add_person("ana", "learner")
    with pytest.raises(RoleplayError, match="at least 10"):
        store.set_password("ana", "123456789")
    store.set_password("ana", "1234567890")
    store.close()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_data_dir_database_and_signing_key_are_owner_only(isolated_settings: Path) -> None:
    import os
    import stat

    from roleplay.badges import load_or_create_signing_key, signing_key_path

    isolated_settings.mkdir(mode=0o755)
    os.chmod(isolated_settings, 0o755)  # as an earlier version left it
    app = AppContext()
    app.store.add_person("ana", "learner")
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(isolated_settings) == 0o700
    db = isolated_settings / "roleplay.db"
    assert mode(db) == 0o600
    for extra in ("roleplay.db-wal", "roleplay.db-shm"):
        if (isolated_settings / extra).exists():
            assert mode(isolated_settings / extra) == 0o600, extra
    load_or_create_signing_key(isolated_settings)
    assert mode(signing_key_path(isolated_settings)) == 0o600
    assert mode(signing_key_path(isolated_settings).parent) == 0o700
    app.close()


def test_an_existing_world_readable_database_is_made_private(tmp_path: Path) -> None:
    import os
    import stat

    path = tmp_path / "old.db"
    Store(f"sqlite:///{path}").close()
    os.chmod(path, 0o644)
    Store(f"sqlite:///{path}").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.slow
def test_sign_in_over_http_is_paused_after_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr
    import httpx
    from browser import free_port

    from roleplay.ui.app import launch_options
    from roleplay.ui.common import use_context

    monkeypatch.setenv("ROLEPLAY_LOGIN_MAX_FAILURES", "3")
    app = use_context(AppContext())
    app.store.add_person("ana", "learner", password="correct horse battery")
    with gr.Blocks() as demo:
        gr.Markdown("signed in")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        url = f"http://127.0.0.1:{port}/login"
        with httpx.Client(timeout=30) as client:
            for _ in range(3):
                assert client.post(url, data={"username": "ana", "password": "nope"}).status_code == 400
            paused = client.post(url, data={"username": "ana", "password": "correct horse battery"})
            assert paused.status_code == 429 and int(paused.headers["retry-after"]) > 0
            assert "sign-in is paused" in paused.text
            ok = client.post(url, data={"username": "ben", "password": "whatever it is"})
            assert ok.status_code == 400  # another username from the same client still gets an answer
    finally:
        demo.close()


# --- 3. downloads -------------------------------------------------------------------------------------------------

def test_download_folder_is_private_per_instance_and_never_follows_a_symlink(tmp_path: Path) -> None:
    import os
    import stat

    from roleplay.files import DownloadFolder

    first, second = DownloadFolder(), DownloadFolder()
    try:
        assert first.root != second.root  # not shared between instances
        assert stat.S_IMODE(first.root.stat().st_mode) == 0o700
        victim = tmp_path / "victim.txt"
        victim.write_text("precious")
        os.symlink(victim, first.files / "ana-underperformance-credential.json")  # planted
        path = first.write("ana-underperformance-credential.json", '{"credential": true}')
        assert victim.read_text() == "precious"
        assert not path.is_symlink() and path.read_text() == '{"credential": true}'
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert first.write("../../etc/passwd", "x").parent == first.files  # a name never leaves the folder
    finally:
        first.close()
        second.close()
    assert not first.root.exists()


def test_downloads_age_out_and_go_on_close() -> None:
    from roleplay.files import DownloadFolder

    now = [1_000_000.0]
    folder = DownloadFolder(max_age=60, clock=lambda: now[0])
    old = folder.write("transcript-1.txt", "old")
    import os

    os.utime(old, (now[0] - 61, now[0] - 61))
    fresh = folder.write("transcript-2.txt", "new")
    assert not old.exists() and fresh.exists()
    folder.close()
    assert not folder.root.exists()


@pytest.mark.slow
def test_the_app_serves_downloads_from_its_own_folder(isolated_settings: Path) -> None:
    import stat

    from roleplay.practice import start_practice
    from roleplay.ui import practice_page
    from roleplay.ui.common import use_context

    app = use_context(AppContext())
    run = start_practice(app.store, "ana", app.catalog.scenario("missed-deadlines"), "novice")
    run.open()
    list(run.respond("What has been going on for you lately?"))
    path = Path(practice_page._download_path(run.session_id))
    assert path.parent == app.downloads.files and not str(path).startswith("/tmp/roleplay-downloads")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "What has been going on" in path.read_text()
    root = app.downloads.root
    app.close()
    assert not root.exists()


# --- 4. input size ------------------------------------------------------------------------------------------------

def test_an_oversize_message_is_refused_before_any_work(isolated_settings: Path) -> None:
    import gradio as gr

    from roleplay.ui import practice_page
    from roleplay.ui.common import use_context

    use_context(AppContext())
    with pytest.raises(gr.Error) as exc:  # refused before the (unknown) session is even looked up
        list(practice_page.send("blah " * 4_000_000, "no-such-session", None))
    assert exc.value.message == ("that message is 20,000,000 characters; keep a turn under 4,000 characters, as you "
                                 "would in a real conversation")


def test_the_practice_box_and_the_launch_cap_sizes(isolated_settings: Path) -> None:
    from roleplay.ui import build_app
    from roleplay.ui.app import launch_options

    demo = build_app(AppContext())
    box = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "practice-input")
    assert box.max_length == 4000
    assert launch_options()["max_file_size"] == "1mb"


@pytest.mark.slow
def test_oversize_http_requests_are_refused_with_413(isolated_settings: Path) -> None:
    import gradio as gr
    import httpx
    from browser import free_port

    from roleplay.ui.app import launch_options
    from roleplay.ui.common import use_context

    app = use_context(AppContext())
    app.store.add_person("ana", "learner", password="correct horse battery")
    with gr.Blocks() as demo:
        box = gr.Textbox()
        box.submit(lambda text: text, box, box, api_name="echo")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options())
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=60) as client:
            big = {"data": ["x" * 3_000_000], "fn_index": 0, "session_hash": "abc"}
            refused = client.post(f"{base}/gradio_api/queue/join", json=big)
            assert refused.status_code == 413 and "nothing was done" in refused.json()["error"]

            def chunks():  # no Content-Length: counted as it arrives
                for _ in range(40):
                    yield b"x" * 100_000

            refused = client.post(f"{base}/gradio_api/queue/join", content=chunks())
            assert refused.status_code == 413
            assert client.post(f"{base}/login", data={"username": "ana", "password": "correct horse battery"}).status_code == 200
            upload = client.post(f"{base}/gradio_api/upload", files={"files": ("big.txt", b"x" * 1_500_000)})
            assert upload.status_code in (400, 413)
    finally:
        demo.close()


@pytest.mark.slow
def test_another_sites_page_cannot_act_as_a_signed_in_visitor(isolated_settings: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """On a deployed host Gradio answers any site's page with the visitor's sign-in cookie (it reflects the page's
    origin and allows credentials); the app refuses such requests, so another site cannot read the sign-in token or
    send events as the visitor."""
    import gradio as gr
    import httpx
    from browser import free_port

    from roleplay.ui.app import launch_options
    from roleplay.ui.common import use_context

    monkeypatch.setenv("ROLEPLAY_PUBLIC_URL", "https://roleplay.example.org/")
    app = use_context(AppContext())
    app.store.add_person("ana", "learner", password="correct horse battery")
    with gr.Blocks() as demo:
        box = gr.Textbox()
        box.submit(lambda text: text, box, box, api_name="echo")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_options(app))
    try:
        base = f"http://127.0.0.1:{port}"
        deployed = {"Host": "roleplay.example.org"}  # as a reverse proxy passes it
        with httpx.Client(timeout=60) as client:
            assert client.post(f"{base}/login", data={"username": "ana", "password": "correct horse battery"},
                               headers=deployed).status_code == 200
            evil = client.get(f"{base}/gradio_api/token", headers={**deployed, "Origin": "https://evil.example"})
            assert evil.status_code == 403 and "other web sites" in evil.json()["error"]
            assert "ana" not in evil.text
            join = client.post(f"{base}/gradio_api/queue/join", headers={**deployed, "Origin": "https://evil.example"},
                               json={"data": ["hi"], "fn_index": 0, "session_hash": "abc"})
            assert join.status_code == 403
            own = client.post(f"{base}/gradio_api/queue/join",
                              headers={**deployed, "Origin": "https://roleplay.example.org"},
                              json={"data": ["hi"], "fn_index": 0, "session_hash": "abc"})
            assert own.status_code == 200 and own.json()["event_id"]  # the app's own page: served
            # a proxy that passes its own Host: the public address is still the app's own
            proxied = client.get(f"{base}/gradio_api/token", headers={"Origin": "https://roleplay.example.org"})
            assert proxied.status_code == 200
            assert client.get(f"{base}/gradio_api/token").status_code == 200  # no Origin: a navigation, a script
    finally:
        demo.close()


# --- 5. model calls ----------------------------------------------------------------------------------------------

from fault_server import FaultServer, fault_server  # noqa: E402,F401  (fixture)


def test_the_store_refuses_an_oversize_turn_or_grade_whole(tmp_path: Path) -> None:
    from roleplay.errors import StoreError

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    ana = store.add_person("ana", "learner")
    sess = store.start_session(ana.id, "missed-deadlines", "novice", "llm")
    with pytest.raises(StoreError, match="nothing of it was stored"):
        store.add_turn(sess.id, "persona", "x" * 12_400_000)
    with pytest.raises(StoreError, match="nothing was stored"):
        store.add_grade(sess.id, "llm", "coaching-conversation", {"criteria": []}, 2.0, False, prompt="p",
                        raw_reply="{" + " " * 50_000_000 + "}")
    assert store.get_session(sess.id).turns == [] and store.grades_for(sess.id) == []
    from roleplay.review import ReviewService

    assert ReviewService(store, lambda _r: None).queue(None) == []  # type: ignore[arg-type,return-value]
    store.close()


@pytest.mark.slow
def test_a_huge_persona_reply_or_grade_from_the_endpoint_stores_nothing(fault_server: FaultServer,  # noqa: F811 - the fixture imported above
                                                                        tmp_path: Path) -> None:
    from content import catalog

    from roleplay.errors import ProviderError
    from roleplay.grader import LLMJudge, grade_session
    from roleplay.llm import OpenAIChatModel
    from roleplay.practice import start_practice
    from roleplay.voices import LLMVoice

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    model = OpenAIChatModel(model="fault-model", base_url=fault_server.base_url("huge"), timeout=5, max_retries=0,
                            deadline=60, reply_max_tokens=50, structured_max_tokens=300)
    run = start_practice(store, "ana", catalog().scenario("missed-deadlines"), "novice", LLMVoice(model))
    run.open()
    with pytest.raises(ProviderError, match="dropped unread"):
        list(run.respond("What has been going on for you lately?"))
    assert [t.speaker for t in store.get_session(run.session_id).turns] == ["persona"]  # the opening only
    spoken = start_practice(store, "ana", catalog().scenario("missed-deadlines"), "novice")  # the offline persona
    spoken.open()
    spoken.say("What has been going on for you lately?")
    spoken.end()
    with pytest.raises(ProviderError, match="dropped unread"):
        grade_session(store, spoken.session_id, LLMJudge(model), catalog())
    assert store.grades_for(spoken.session_id) == []
    model.close()
    store.close()


# --- 6. races on one session (SQLite and PostgreSQL) --------------------------------------------------------------

import threading  # noqa: E402

LINES = ["What has been going on for you lately?", "It sounds like the mornings have been really hard.",
         "That sounds exhausting. Thank you for telling me.", "What would help you most?"]
RAW_DB_WORDS = ("UNIQUE", "constraint", "IntegrityError", "duplicate key", "locked", "SQL")


class SlowJudge:
    """The offline judge, counting its calls and waiting at a barrier so that racing graders overlap."""

    name = "offline"

    def __init__(self, barrier: threading.Barrier | None = None, pause: float = 0.0) -> None:
        from roleplay.grader import OfflineJudge

        self.inner = OfflineJudge()
        self.barrier = barrier
        self.pause = pause
        self.calls = 0

    def grade(self, *args: Any, **kwargs: Any) -> Any:
        import time

        self.calls += 1
        grade = self.inner.grade(*args, **kwargs)
        if self.barrier is not None:
            self.barrier.wait(timeout=30)
        time.sleep(self.pause)
        return grade


class HeldVoice:
    """The scripted voice, holding its reply until `release` is set (so a second tab's send overlaps)."""

    name = "offline"

    def __init__(self) -> None:
        self.speaking = threading.Event()
        self.release = threading.Event()

    def speak(self, conv: Any, directive: Any) -> Any:
        self.speaking.set()
        self.release.wait(timeout=30)
        yield directive.line


def context_on(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AppContext:
    monkeypatch.setenv("ROLEPLAY_DATABASE_URL", db_url)
    return AppContext()


def practised_session(app: AppContext, voice: Any = None, lines: list[str] = LINES[:2]) -> str:
    from roleplay.practice import start_practice

    run = start_practice(app.store, "ana", app.catalog.scenario("missed-deadlines"), "novice", voice)
    run.open()
    for line in lines:
        list(run.respond(line))
    app.remember(run)
    return run.session_id


def assert_store_matches(app: AppContext, session_id: str) -> None:
    """Turns stored in order, speakers alternating after the opening, and the stored state counting them."""
    sess = app.store.get_session(session_id)
    assert [t.idx for t in sess.turns] == list(range(len(sess.turns)))
    assert [t.speaker for t in sess.turns] == ["persona", "learner"] * (len(sess.turns) // 2) + ["persona"]
    assert sess.state["learner_turns"] == len(sess.turns) // 2


@pytest.mark.slow
def test_two_tabs_pressing_end_grade_once(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = context_on(db_url, monkeypatch)
    session_id = practised_session(app)
    judge = SlowJudge(pause=0.5)
    results: list[Any] = []

    def press_end() -> None:
        try:
            results.append(app.run(session_id).end_and_grade(judge, app.catalog))
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            results.append(exc)

    tabs = [threading.Thread(target=press_end) for _ in range(2)]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join(60)
    assert sorted(results, key=str) == [False, True]  # the second tab finds the first one's grade
    assert judge.calls == 1 and len(app.store.grades_for(session_id)) == 1
    assert len(app.reviews.queue("pending")) == 1
    app.close()


@pytest.mark.slow
def test_two_processes_grading_one_session_store_one_grade(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from roleplay.grader import grade_session
    from roleplay.store import AlreadyGraded

    first, second = context_on(db_url, monkeypatch), AppContext()
    session_id = practised_session(first)
    first.run(session_id).end()
    barrier = threading.Barrier(2)
    judges = [SlowJudge(barrier), SlowJudge(barrier)]
    outcomes: list[Any] = []

    def grade(app: AppContext, judge: SlowJudge) -> None:
        try:
            outcomes.append(grade_session(app.store, session_id, judge, app.catalog))
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            outcomes.append(exc)

    workers = [threading.Thread(target=grade, args=(app, judge)) for app, judge in zip((first, second), judges)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert len(errors) == 1 and isinstance(errors[0], AlreadyGraded), outcomes
    assert "already graded" in str(errors[0]) and not any(w in str(errors[0]) for w in RAW_DB_WORDS)
    assert len(first.store.grades_for(session_id)) == 1 and len(first.reviews.queue("pending")) == 1
    first.close()
    second.close()


@pytest.mark.slow
def test_a_rejected_session_may_be_graded_again(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from roleplay.grader import grade_session
    from roleplay.store import AlreadyGraded

    app = context_on(db_url, monkeypatch)
    app.store.add_person("fay", "facilitator")
    session_id = practised_session(app)
    app.run(session_id).end()
    grade_session(app.store, session_id, SlowJudge(), app.catalog)
    with pytest.raises(AlreadyGraded):
        grade_session(app.store, session_id, SlowJudge(), app.catalog)
    review = app.reviews.for_session(session_id)
    app.reviews.reject(review.review_id, "fay", "Read from a script.")
    grade_session(app.store, session_id, SlowJudge(), app.catalog)
    assert len(app.reviews.queue("pending")) == 1 and len(app.store.grades_for(session_id)) == 2
    app.close()


@pytest.mark.slow
def test_two_tabs_sending_on_one_session_one_writer(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from roleplay.errors import RoleplayError
    from roleplay.practice import BUSY

    app = context_on(db_url, monkeypatch)
    voice = HeldVoice()
    voice.release.set()
    session_id = practised_session(app, voice, lines=LINES[:1])
    voice.release.clear()
    voice.speaking.clear()
    first: list[Any] = []
    tab = threading.Thread(target=lambda: first.append(list(app.run(session_id).respond(LINES[1]))))
    tab.start()
    assert voice.speaking.wait(30)
    with pytest.raises(RoleplayError) as busy:  # the second tab, while the first one's reply is being written
        list(app.run(session_id).respond(LINES[2]))
    assert str(busy.value) == BUSY
    voice.release.set()
    tab.join(30)
    assert first and first[0]
    run = app.run(session_id)
    stored = app.store.get_session(session_id).turns
    assert [t.text for t in stored] == [t.text for t in run.conversation.transcript.turns]
    assert_store_matches(app, session_id)
    app.close()


@pytest.mark.slow
def test_two_processes_sending_on_one_session_stay_in_step(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from roleplay.errors import RoleplayError
    from roleplay.store import SESSION_CHANGED

    first, second = context_on(db_url, monkeypatch), AppContext()
    session_id = practised_session(first, lines=LINES[:1])
    held = second.run(session_id)  # the second process holds the session as it was
    list(first.run(session_id).respond(LINES[1]))
    again = second.run(session_id)  # the store has a turn it lacks: rebuilt from the store, so it goes through
    assert again is not held
    list(again.respond(LINES[2]))
    assert_store_matches(first, session_id)
    with pytest.raises(RoleplayError) as changed:  # a run out of step cannot store (the store checks the turn count)
        list(held.respond(LINES[3]))
    assert str(changed.value) == SESSION_CHANGED
    assert_store_matches(first, session_id)

    outcomes: list[Any] = []
    barrier = threading.Barrier(2)

    def send(app: AppContext, line: str) -> None:
        barrier.wait(timeout=30)
        try:
            outcomes.append(list(app.run(session_id).respond(line))[-1])
        except RoleplayError as exc:
            outcomes.append(exc)

    for _ in range(4):
        outcomes.clear()
        pair = [threading.Thread(target=send, args=(app, line)) for app, line in ((first, LINES[3]), (second, LINES[0]))]
        for t in pair:
            t.start()
        for t in pair:
            t.join(60)
        errors = [o for o in outcomes if isinstance(o, Exception)]
        assert len(outcomes) == 2 and len(errors) <= 1
        for exc in errors:
            assert str(exc) == SESSION_CHANGED and not any(w in str(exc) for w in RAW_DB_WORDS)
        assert_store_matches(first, session_id)
    for app in (first, second):
        run = app.run(session_id)
        assert len(run.conversation.transcript.turns) == len(app.store.get_session(session_id).turns)
    first.close()
    second.close()


# --- 7. one clear line, never a traceback or SQL --------------------------------------------------------------------

def bad_sqlite_files(folder: Path) -> dict[str, Path]:
    """A garbage file, a truncated database and a database from a newer version (an unknown schema revision)."""
    import sqlite3

    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "good.db"
    store = Store(f"sqlite:///{good}")
    for i in range(40):
        store.add_person(f"person{i}", "learner", display_name="x" * 150)
    store.close()
    data = good.read_bytes()
    files = {"garbage": folder / "garbage.db", "truncated": folder / "truncated.db", "future": folder / "future.db"}
    files["garbage"].write_bytes(bytes(range(256)) * 20)
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["future"].write_bytes(data)
    conn = sqlite3.connect(files["future"])
    conn.execute("UPDATE alembic_version SET version_num = '0099'")
    conn.commit()
    conn.close()
    return files


@pytest.mark.slow
def test_a_bad_database_file_stops_the_app_with_one_line(tmp_path: Path, start_app: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    expected = {"garbage": "is not a roleplay database, or it is damaged",
                "truncated": "is not a roleplay database, or it is damaged",
                "future": "was made by a newer version of roleplay"}
    for kind, path in bad_sqlite_files(tmp_path / "bad").items():
        monkeypatch.setenv("ROLEPLAY_DATABASE_URL", f"sqlite:///{path}")
        code, _out, err = start_app()
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1, (kind, err)
        assert lines[0].startswith("error: ") and expected[kind] in lines[0] and str(path) in lines[0]


@pytest.mark.slow
def test_python_app_py_on_a_garbage_database_prints_one_line(tmp_path: Path) -> None:
    import os
    import subprocess

    path = bad_sqlite_files(tmp_path / "bad")["garbage"]
    env = {**os.environ, "ROLEPLAY_DATABASE_URL": f"sqlite:///{path}", "ROLEPLAY_DATA_DIR": str(tmp_path / "data")}
    out = subprocess.run([sys.executable, str(ROOT / "app.py")], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "not a roleplay database" in out.stderr


def test_a_nul_byte_is_one_clear_line_on_every_database(db_url: str) -> None:
    from roleplay.errors import StoreError

    store = Store(db_url)
    store.add_person("fay", "facilitator")
    try:
        store.add_person("ana\x00x", "learner", display_name="Ana\x00")
    except StoreError as exc:  # PostgreSQL text cannot hold NUL; SQLite stores it
        assert db_url.startswith("postgresql")
        message = str(exc)
        assert "\n" not in message and "NUL" in message
        assert not any(w in message for w in ("INSERT", "SQL", "DataError", "psycopg"))
    assert store.authenticate("ana\x00x", "a password") is None  # no raw error either when signing in
    store.close()


@pytest.mark.slow
def test_grade_refuses_devices_and_unreadable_files_in_one_line(tmp_path: Path) -> None:
    import os

    from click.testing import CliRunner

    from roleplay.cli import main

    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    for target, expected in (("/dev/zero", "not a regular file"), (str(fifo), "not a regular file"),
                             (str(tmp_path), "not a regular file")):
        result = CliRunner().invoke(main, ["grade", target, "--scenario", "missed-deadlines", "--offline"])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and expected in lines[0], (target, result.stderr)
    if Path("/proc/self/pagemap").exists():
        result = CliRunner().invoke(main, ["grade", "/proc/self/pagemap", "--scenario", "missed-deadlines",
                                           "--offline"])
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
        assert "unexpected" not in result.stderr and "Traceback" not in result.stderr


def test_an_error_nobody_foresaw_is_one_line_without_its_text(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from roleplay.cli import main

    def broken(_self: Any) -> list[Any]:
        raise ValueError("(psycopg.errors.Whatever) [SQL: SELECT password_hash FROM people]")

    monkeypatch.setattr(Store, "people", broken)
    result = CliRunner().invoke(main, ["people", "list"])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "ValueError" in result.stderr
    assert not any(w in result.stderr for w in ("unexpected", "SQL", "SELECT", "Traceback"))


# --- 8. static scan ------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_bandit_finds_nothing_of_medium_or_high_severity() -> None:
    import subprocess

    bandit = Path(sys.executable).with_name("bandit")
    assert bandit.exists(), "bandit is in the test extra: pip install -c constraints.txt -e '.[test]'"
    out = subprocess.run([str(bandit), "-q", "-r", "roleplay", "--severity-level", "medium"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "bandit -q -r roleplay" in (ROOT / ".ci" / "run").read_text()
