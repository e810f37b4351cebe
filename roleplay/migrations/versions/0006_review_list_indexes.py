"""indexes for the review lists and the drift signal: reviews by status and time, newest first

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-21
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index("ix_reviews_status_created_at", ["status", "created_at", "id"], unique=False)
        batch_op.create_index("ix_reviews_created_at", ["created_at", "id"], unique=False)
        batch_op.create_index("ix_reviews_status_decided_at", ["status", "decided_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_reviews_status_decided_at")
        batch_op.drop_index("ix_reviews_created_at")
        batch_op.drop_index("ix_reviews_status_created_at")
