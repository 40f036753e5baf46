"""The evidence of an alert in its history (the prices when it fired: where the charts mark it)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('alert_history') as batch:
        batch.add_column(sa.Column('evidence', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('alert_history') as batch:
        batch.drop_column('evidence')
