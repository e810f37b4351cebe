"""one open review per practice session

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.add_column(sa.Column("open_session_id", sa.String(length=32), nullable=True))
    # A session graded twice by earlier versions keeps one open review (an approved one first, else the newest);
    # its other pending reviews stay in the queue for a facilitator to reject.
    conn = op.get_bind()
    rows = conn.execute(sa.text(
        "SELECT r.id, g.session_id, r.status FROM reviews r JOIN grades g ON g.id = r.grade_id "
        "WHERE r.status IN ('pending', 'approved') ORDER BY r.id")).all()
    keep: dict[str, tuple[bool, int]] = {}
    for review_id, session_id, status in rows:
        rank = (status == "approved", review_id)
        if session_id not in keep or rank > keep[session_id]:
            keep[session_id] = rank
    for session_id, (_approved, review_id) in keep.items():
        conn.execute(sa.text("UPDATE reviews SET open_session_id = :s WHERE id = :r"), {"s": session_id, "r": review_id})
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_foreign_key("fk_reviews_open_session_id", "practice_sessions", ["open_session_id"], ["id"])
        batch_op.create_unique_constraint("uq_reviews_open_session_id", ["open_session_id"])


def downgrade() -> None:
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_constraint("uq_reviews_open_session_id", type_="unique")
        batch_op.drop_constraint("fk_reviews_open_session_id", type_="foreignkey")
        batch_op.drop_column("open_session_id")
