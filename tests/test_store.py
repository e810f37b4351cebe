"""The store keeps people, sessions, turns and grades on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from roleplay.errors import NotFoundError, RoleplayError, StoreError
from roleplay.store import Base, Store


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

    from roleplay.store import ReviewRow

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
