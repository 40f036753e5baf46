"""auth nonce per user (remember-me and session revocation), channel confirmation

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auth_nonce', sa.String(length=64), nullable=False, server_default=''))
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True))
    # channels that existed before confirmation was required keep receiving: their owners chose
    # them under the old rules, and silently muting a live alert is the worse surprise
    op.execute(sa.text("UPDATE channels SET confirmed_at = created_at"))


def downgrade() -> None:
    with op.batch_alter_table('channels', schema=None) as batch_op:
        batch_op.drop_column('confirmed_at')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('auth_nonce')
