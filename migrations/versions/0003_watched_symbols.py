"""watched_symbols: the demand announced on the watched topic

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 20:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'watched_symbols',
        sa.Column('symbol', sa.String(length=16), nullable=False),
        sa.Column('watchers', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('symbol', name=op.f('pk_watched_symbols')),
    )
    # filled by the relay at its start (events.demand.heal_watched_topic), which announces it too


def downgrade() -> None:
    op.drop_table('watched_symbols')
