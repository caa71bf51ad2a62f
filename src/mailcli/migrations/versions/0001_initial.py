"""users, mailings, messages and the shared state counters

Revision ID: 0001
Revises:
Create Date: 2026-12-04

Times are naive UTC timestamps (mailcli.models.UTCDateTime).
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("phone_number", sa.String(11), nullable=False),
        sa.Column("operator_code", sa.String(3), nullable=False),
        sa.Column("tag", sa.String(255), nullable=False),
        sa.Column("tag_key", sa.String(255), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("removed_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ux_users_phone", "users", ["phone_number"], unique=True)
    op.create_index("ix_users_audience", "users", ["operator_code", "tag_key"])

    op.create_table(
        "mailings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("tag", sa.String(255), nullable=False),
        sa.Column("tag_key", sa.String(255), nullable=False),
        sa.Column("operator_code", sa.String(3), nullable=False),
        sa.Column("start_at", sa.DateTime(), nullable=False),
        sa.Column("end_at", sa.DateTime(), nullable=False),
        sa.Column("window_start", sa.Integer, nullable=True),
        sa.Column("window_end", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("audience_rev", sa.Integer, nullable=False),
    )

    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("mailing_id", sa.Integer, sa.ForeignKey("mailings.id"), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.UniqueConstraint("user_id", "mailing_id", name="ux_messages_user_mailing"),
        sqlite_autoincrement=True,  # message ids are the gateway's msgId: never reuse one
    )
    op.create_index("ix_messages_queue", "messages", ["mailing_id", "status", "next_attempt_at"])

    state = op.create_table(
        "mailcli_state",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )
    op.bulk_insert(state, [{"key": "users_rev", "value": 0}])


def downgrade() -> None:
    op.drop_table("mailcli_state")
    op.drop_index("ix_messages_queue", table_name="messages")
    op.drop_table("messages")
    op.drop_table("mailings")
    op.drop_index("ix_users_audience", table_name="users")
    op.drop_index("ux_users_phone", table_name="users")
    op.drop_table("users")
