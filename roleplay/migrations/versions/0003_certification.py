"""certification programme: enrolments, reinforcement drills, learning buddies

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('enrolments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('programme_id', sa.String(length=64), nullable=False),
    sa.Column('level', sa.String(length=20), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('answers', sa.JSON(), nullable=False),
    sa.Column('assessed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sprints_chosen_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['people.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('person_id')
    )
    op.create_table('reinforcement_drills',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('certification_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('sprint', sa.String(length=40), nullable=False),
    sa.Column('scenario_id', sa.String(length=64), nullable=False),
    sa.Column('level', sa.String(length=20), nullable=False),
    sa.Column('after_days', sa.Integer(), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['certification_id'], ['certifications.id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['people.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('certification_id', 'after_days')
    )
    with op.batch_alter_table('reinforcement_drills', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reinforcement_drills_certification_id'), ['certification_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reinforcement_drills_person_id'), ['person_id'], unique=False)

    op.create_table('learning_buddies',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('learner_id', sa.Integer(), nullable=False),
    sa.Column('buddy_id', sa.Integer(), nullable=False),
    sa.Column('named_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['buddy_id'], ['people.id'], ),
    sa.ForeignKeyConstraint(['learner_id'], ['people.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('learner_id')
    )
    with op.batch_alter_table('learning_buddies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_learning_buddies_buddy_id'), ['buddy_id'], unique=False)

    op.create_table('shared_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.String(length=32), nullable=False),
    sa.Column('buddy_id', sa.Integer(), nullable=False),
    sa.Column('shared_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['buddy_id'], ['people.id'], ),
    sa.ForeignKeyConstraint(['session_id'], ['practice_sessions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('session_id', 'buddy_id')
    )
    with op.batch_alter_table('shared_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shared_sessions_buddy_id'), ['buddy_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_shared_sessions_session_id'), ['session_id'], unique=False)

    op.create_table('buddy_reflections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.String(length=32), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['people.id'], ),
    sa.ForeignKeyConstraint(['session_id'], ['practice_sessions.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('buddy_reflections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_buddy_reflections_session_id'), ['session_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('buddy_reflections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_buddy_reflections_session_id'))

    op.drop_table('buddy_reflections')
    with op.batch_alter_table('shared_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_shared_sessions_session_id'))
        batch_op.drop_index(batch_op.f('ix_shared_sessions_buddy_id'))

    op.drop_table('shared_sessions')
    with op.batch_alter_table('learning_buddies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_learning_buddies_buddy_id'))

    op.drop_table('learning_buddies')
    with op.batch_alter_table('reinforcement_drills', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reinforcement_drills_person_id'))
        batch_op.drop_index(batch_op.f('ix_reinforcement_drills_certification_id'))

    op.drop_table('reinforcement_drills')
    op.drop_table('enrolments')
