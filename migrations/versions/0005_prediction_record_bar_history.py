"""predictions: what the model was trained and evaluated on; bars: the history flag

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 19:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

RECORD = (
    ('trained_bar_seconds', sa.Integer()), ('data_source', sa.String(length=64)),
    ('trained_from_ms', sa.BigInteger()), ('trained_to_ms', sa.BigInteger()),
    ('holdout_from_ms', sa.BigInteger()), ('holdout_to_ms', sa.BigInteger()),
    ('holdout_n', sa.Integer()), ('skill_p', sa.Float()),
)


def upgrade() -> None:
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        for name, type_ in RECORD:
            batch_op.add_column(sa.Column(name, type_, nullable=True))
    with op.batch_alter_table('bars', schema=None) as batch_op:
        batch_op.add_column(sa.Column('history', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('bars', schema=None) as batch_op:
        batch_op.drop_column('history')
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        for name, _type in reversed(RECORD):
            batch_op.drop_column(name)
