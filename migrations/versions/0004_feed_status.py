"""feed_status: projection of the feed topic (what ingest says about each symbol's data)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 19:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'feed_status',
        sa.Column('symbol', sa.String(length=16), nullable=False),
        sa.Column('source', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('detail', sa.String(length=300), nullable=False),
        sa.Column('last_tick_ms', sa.BigInteger(), nullable=True),
        sa.Column('ts_ms', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('symbol', name=op.f('pk_feed_status')),
    )


def downgrade() -> None:
    op.drop_table('feed_status')
