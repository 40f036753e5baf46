"""Longer indicators and session references on bars; notify-on-resolve and repeat on rules;
the message a delivery made (to update it in place)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 23:25:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

BAR_COLUMNS = ('sma_50', 'sma_200', 'ema_50', 'ema_200', 'prev_close', 'session_open', 'gap_pct', 'high_20d',
               'low_20d')


def upgrade() -> None:
    with op.batch_alter_table('bars') as batch:
        for name in BAR_COLUMNS:
            batch.add_column(sa.Column(name, sa.Float(), nullable=True))
    with op.batch_alter_table('rules') as batch:
        batch.add_column(sa.Column('notify_on_resolve', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column('repeat_interval_s', sa.Integer(), nullable=True))
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('external_ref', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_column('external_ref')
    with op.batch_alter_table('rules') as batch:
        batch.drop_column('repeat_interval_s')
        batch.drop_column('notify_on_resolve')
    with op.batch_alter_table('bars') as batch:
        for name in reversed(BAR_COLUMNS):
            batch.drop_column(name)
