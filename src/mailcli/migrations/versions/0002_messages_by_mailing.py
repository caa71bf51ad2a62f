"""an index to read a mailing's messages in id order without sorting them

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

`mailings stats` streams a mailing's messages in id order; without this index
the database sorts all of them first (a million rows: seconds and memory).
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_mailing", "messages", ["mailing_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_messages_mailing", table_name="messages")
