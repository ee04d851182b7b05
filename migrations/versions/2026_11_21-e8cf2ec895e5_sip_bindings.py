"""SIP registrations (bindings), so that they survive a server restart.

Revision ID: e8cf2ec895e5
Revises: 9c1f0a7d2b41
Create Date: 2026-11-21 20:10:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = 'e8cf2ec895e5'
down_revision = '9c1f0a7d2b41'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sip_bindings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('contact', sa.String(length=2047), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('q', sa.Float(), nullable=False),
    sa.Column('call_id', sa.String(length=1023), nullable=False),
    sa.Column('cseq', sa.BigInteger(), nullable=False),
    sa.Column('instance', sa.String(length=1023), nullable=True),
    sa.Column('reg_id', sa.Integer(), nullable=True),
    sa.Column('flow', sa.String(length=255), nullable=True),
    sa.Column('source_host', sa.String(length=64), nullable=True),
    sa.Column('source_port', sa.Integer(), nullable=True),
    sa.Column('user_agent', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_sip_bindings_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sip_bindings'))
    )
    with op.batch_alter_table('sip_bindings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sip_bindings_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sip_bindings_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sip_bindings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sip_bindings_expires_at'))
        batch_op.drop_index(batch_op.f('ix_sip_bindings_account_id'))

    op.drop_table('sip_bindings')
