"""The store keeps people, sessions, turns and grades on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from roleplay.errors import NotFoundError, RoleplayError, StoreError
from roleplay.models import Base
from roleplay.store import Store


@pytest.fixture()
def store(db_url: str):  # type: ignore[no-untyped-def]
    s = Store(db_url)
    yield s
    s.close()


def test_first_start_creates_every_table(store: Store) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert {"people", "practice_sessions", "turns", "grades", "reviews", "review_events",
            "certifications", "alembic_version"} <= tables


def test_migrations_match_the_models(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], "models changed without a migration: add one under roleplay/migrations/versions"


def test_reopening_an_existing_database_keeps_data(db_url: str) -> None:
    first = Store(db_url)
    first.add_person("ana", "learner", "Ana Lima")
    first.close()
    second = Store(db_url)
    assert second.person("ana").display_name == "Ana Lima"
    second.close()


def test_people_have_roles_and_unique_usernames(store: Store) -> None:
    store.add_person("fac", "facilitator")
    with pytest.raises(RoleplayError, match="taken"):
        store.add_person("fac", "learner")
    with pytest.raises(RoleplayError, match="use one of: learner, facilitator, designer"):
        store.add_person("bob", "admin")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="roleplay people add"):
        store.person("nobody")
    assert [p.role for p in store.people()] == ["facilitator"]


def test_session_turns_are_kept_in_order_with_state(store: Store) -> None:
    ana = store.add_person("ana", "learner")
    sess = store.start_session(ana.id, "missed-deadlines", "novice", "offline", {"trust": 1})
    store.add_turn(sess.id, "persona", "Hi. You wanted to talk about the reports?")
    store.add_turn(sess.id, "learner", "What's been going on?", tokens=6, state={"trust": 2})
    store.end_session(sess.id, "learner", state={"trust": 2, "revealed": []})
    loaded = store.get_session(sess.id)
    assert [(t.idx, t.speaker) for t in loaded.turns] == [(0, "persona"), (1, "learner")]
    assert loaded.turns[1].tokens == 6
    assert loaded.status == "ended" and loaded.end_reason == "learner"
    assert loaded.state == {"trust": 2, "revealed": []}
    with pytest.raises(RoleplayError, match="has ended"):
        store.add_turn(sess.id, "learner", "one more")
    assert [s.id for s in store.sessions_for(ana.id)] == [sess.id]


def test_grade_opens_a_pending_review(store: Store) -> None:
    from sqlalchemy import select

    from roleplay.models import ReviewRow

    ana = store.add_person("ana", "learner")
    sess = store.start_session(ana.id, "missed-deadlines", "novice", "offline")
    grade = store.add_grade(sess.id, "offline", "coaching-conversation", {"criteria": []}, 2.75, True,
                            prompt="p", raw_reply="r")
    with store.session() as db:
        review = db.scalar(select(ReviewRow).where(ReviewRow.grade_id == grade.id))
    assert review is not None and review.status == "pending"
    assert store.grades_for(sess.id)[0].prompt == "p"


def test_unknown_session_is_a_clear_error(store: Store) -> None:
    with pytest.raises(NotFoundError, match="no practice session 'nope'"):
        store.add_turn("nope", "learner", "hi")


def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="check ROLEPLAY_DATABASE_URL"):
        Store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_bad_url_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="is not a database URL"):
        Store("not a url at all")


@pytest.mark.slow
def test_passwords_are_hashed_and_checked(store: Store) -> None:
    store.add_person("dana", "facilitator")
    assert store.authenticate("dana", "anything") is None  # no password set yet
    store.set_password("dana", "s3cret-pass")
    assert store.authenticate("dana", "s3cret-pass").username == "dana"  # type: ignore[union-attr]
    assert store.authenticate("dana", "wrong") is None
    assert store.authenticate("nobody", "s3cret-pass") is None
    with store.session() as db:
        from sqlalchemy import select

        from roleplay.models import Person

        stored = db.scalar(select(Person.password_hash).where(Person.username == "dana"))
    assert "s3cret-pass" not in stored and stored.startswith("$argon2id$")
    with pytest.raises(RoleplayError, match="at least 10"):
        store.set_password("dana", "abc")


def _stored_hash(store: Store, username: str) -> str:
    from sqlalchemy import select

    from roleplay.models import Person

    with store.session() as db:
        return db.scalar(select(Person.password_hash).where(Person.username == username))


def test_an_older_pbkdf2_password_still_signs_in_and_is_rehashed(store: Store) -> None:
    import hashlib

    from sqlalchemy import update

    from roleplay.models import Person

    salt = "0123456789abcdef"
    legacy = f"pbkdf2_sha256$1000${salt}${hashlib.pbkdf2_hmac('sha256', b'old-pass', salt.encode(), 1000).hex()}"
    store.add_person("olga", "learner")
    with store.session() as db:
        db.execute(update(Person).where(Person.username == "olga").values(password_hash=legacy))
    assert store.authenticate("olga", "wrong") is None
    assert _stored_hash(store, "olga") == legacy  # a failed sign-in changes nothing
    assert store.authenticate("olga", "old-pass").username == "olga"  # type: ignore[union-attr]
    assert _stored_hash(store, "olga").startswith("$argon2id$")
    assert store.authenticate("olga", "old-pass") is not None  # and the new hash works


@pytest.mark.slow
def test_demo_people_are_seeded_idempotently_even_when_others_exist(store: Store) -> None:
    store.add_person("ana", "learner")
    store.ensure_person("learner", "learner")  # no password, as `roleplay practice --user learner` leaves it
    first = store.seed_demo_people()
    assert [(a.username, a.action) for a in first] == [("learner", "password set"), ("facilitator", "created"),
                                                       ("designer", "created")]
    assert store.authenticate("facilitator", "facilitator").role == "facilitator"  # type: ignore[union-attr]
    assert store.authenticate("learner", "learner") is not None
    assert {a.action for a in store.seed_demo_people()} == {"unchanged"}
    assert [p.username for p in store.people()] == ["ana", "designer", "facilitator", "learner"]
    assert store.sign_in_count() == 3


def test_removing_a_person_removes_everything_that_is_theirs(store: Store) -> None:
    from sqlalchemy import func, select

    from roleplay.models import GradeRow, PracticeSession, ReviewEvent, ReviewRow, TurnRow

    ana = store.add_person("ana", "learner")
    store.add_person("fay", "facilitator")
    store.add_person("gus", "facilitator")
    sess = store.start_session(ana.id, "missed-deadlines", "novice", "offline")
    store.add_turn(sess.id, "learner", "What has been going on?")
    grade = store.add_grade(sess.id, "offline", "coaching-conversation", {"criteria": []}, 2.5, True)
    with store.session() as db:
        review = db.scalar(select(ReviewRow).where(ReviewRow.grade_id == grade.id))
        db.add(ReviewEvent(review_id=review.id, actor_id=store.person("fay").id, action="approve"))
        review.decided_by = store.person("fay").id
    with pytest.raises(RoleplayError, match="reviewed or signed off other people's work"):
        store.remove_person("fay")  # her decision on ana's session is kept history
    assert store.remove_person("ana") == 1
    with store.session() as db:
        left = [db.scalar(select(func.count()).select_from(t)) for t in (PracticeSession, TurnRow, GradeRow,
                                                                          ReviewRow, ReviewEvent)]
    assert left == [0, 0, 0, 0, 0]
    assert store.remove_person("fay") == 0  # nothing of others' names her any more
    with pytest.raises(RoleplayError, match="only facilitator"):
        store.remove_person("gus")
    with pytest.raises(NotFoundError, match="roleplay people list"):
        store.remove_person("nobody")


def test_upgrading_an_old_database_keeps_its_data(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from roleplay.store import MIGRATIONS

    old = Store(db_url, migrate=False)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with old.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO people (username, display_name, role, created_at) "
                             "VALUES ('old', 'Old Timer', 'learner', CURRENT_TIMESTAMP)")
    old.close()
    new = Store(db_url)
    assert new.person("old").display_name == "Old Timer"
    new.set_password("old", "pass-word-2026")
    assert new.authenticate("old", "pass-word-2026") is not None
    new.close()
