"""forecast_scores: every served prediction scored against the bar it forecast (the live scoreboard)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 20:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'forecast_scores',
        sa.Column('prediction_id', sa.String(length=200), nullable=False),
        sa.Column('symbol', sa.String(length=16), nullable=False),
        sa.Column('bar_seconds', sa.Integer(), nullable=False),
        sa.Column('model_version', sa.String(length=64), nullable=False),
        sa.Column('base_start_ms', sa.BigInteger(), nullable=False),
        sa.Column('target_start_ms', sa.BigInteger(), nullable=False),
        sa.Column('interval_level', sa.Float(), nullable=False),
        sa.Column('actual_close', sa.Float(), nullable=False),
        sa.Column('error', sa.Float(), nullable=False),
        sa.Column('error_return', sa.Float(), nullable=False),
        sa.Column('persistence_error_return', sa.Float(), nullable=False),
        sa.Column('covered', sa.Boolean(), nullable=False),
        sa.Column('direction_hit', sa.Boolean(), nullable=True),
        sa.Column('up_hit', sa.Boolean(), nullable=True),
        sa.Column('last_move_hit', sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint('prediction_id', name=op.f('pk_forecast_scores')),
    )
    op.create_index('ix_forecast_scores_symbol_model_target', 'forecast_scores',
                    ['symbol', 'model_version', 'target_start_ms'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_forecast_scores_symbol_model_target', table_name='forecast_scores')
    op.drop_table('forecast_scores')
