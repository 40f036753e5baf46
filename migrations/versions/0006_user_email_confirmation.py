"""users: email_confirmed_at (a sign-up confirms its address before the account can log in)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 20:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_confirmed_at', sa.DateTime(timezone=True), nullable=True))
    # accounts made before sign-ups were confirmed keep logging in: locking out every existing
    # user to prove addresses they have used for alerts all along helps nobody
    op.execute(sa.text("UPDATE users SET email_confirmed_at = created_at"))


def downgrade() -> None:
    # without the column an unconfirmed account would log in: whoever signed up with an address
    # they do not read must not get the account it names, so those accounts are switched off
    op.execute(sa.text("UPDATE users SET is_active = false WHERE email_confirmed_at IS NULL"))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('email_confirmed_at')
