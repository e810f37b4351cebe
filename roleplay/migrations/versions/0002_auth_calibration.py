"""sign-in passwords and calibration ratings

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_hash", sa.String(length=200), nullable=True))
    op.create_table(
        "calibration_ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("anchor_id", sa.String(length=100), nullable=False),
        sa.Column("criterion_id", sa.String(length=64), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("person_id", "anchor_id", "criterion_id"),
    )
    with op.batch_alter_table("calibration_ratings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_calibration_ratings_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_calibration_ratings_anchor_id"), ["anchor_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("calibration_ratings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calibration_ratings_anchor_id"))
        batch_op.drop_index(batch_op.f("ix_calibration_ratings_person_id"))
    op.drop_table("calibration_ratings")
    with op.batch_alter_table("people", schema=None) as batch_op:
        batch_op.drop_column("password_hash")
