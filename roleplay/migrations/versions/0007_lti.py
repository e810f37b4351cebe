"""LMS launches (LTI 1.3): who launched from which platform, the launches, approved scores owed to a grade book, and
short-lived nonces and deep-linking requests

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lti_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("sub", sa.String(length=255), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issuer", "sub"),
    )
    with op.batch_alter_table("lti_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lti_links_person_id"), ["person_id"], unique=False)

    op.create_table(
        "lti_launches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("deployment_id", sa.String(length=255), nullable=False),
        sa.Column("scenario_id", sa.String(length=64), nullable=True),
        sa.Column("resource_link_id", sa.String(length=255), nullable=True),
        sa.Column("lineitem", sa.Text(), nullable=True),
        sa.Column("lineitems", sa.Text(), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["link_id"], ["lti_links.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lti_launches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lti_launches_link_id"), ["link_id"], unique=False)
        batch_op.create_index("ix_lti_launches_person_scenario", ["person_id", "scenario_id", "created_at"],
                              unique=False)

    op.create_table(
        "lti_passbacks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=False),
        sa.Column("launch_id", sa.Integer(), nullable=False),
        sa.Column("score_given", sa.Float(), nullable=False),
        sa.Column("score_maximum", sa.Float(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["launch_id"], ["lti_launches.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["review_id"], ["reviews.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("review_id"),
    )
    with op.batch_alter_table("lti_passbacks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lti_passbacks_launch_id"), ["launch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_lti_passbacks_status"), ["status"], unique=False)

    op.create_table(
        "lti_states",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("lti_states", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lti_states_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lti_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lti_states_expires_at"))
    op.drop_table("lti_states")
    with op.batch_alter_table("lti_passbacks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lti_passbacks_status"))
        batch_op.drop_index(batch_op.f("ix_lti_passbacks_launch_id"))
    op.drop_table("lti_passbacks")
    with op.batch_alter_table("lti_launches", schema=None) as batch_op:
        batch_op.drop_index("ix_lti_launches_person_scenario")
        batch_op.drop_index(batch_op.f("ix_lti_launches_link_id"))
    op.drop_table("lti_launches")
    with op.batch_alter_table("lti_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lti_links_person_id"))
    op.drop_table("lti_links")
