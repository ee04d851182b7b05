"""Accounts, their SCRAM and SIP digest secrets, and the directory generation counter.

Revision ID: 9c1f0a7d2b41
Revises: 
Create Date: 2026-11-21 17:44:35.128115
"""

from alembic import op
import sqlalchemy as sa


revision = '9c1f0a7d2b41'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('localpart', sa.String(length=1023), nullable=False),
    sa.Column('domain', sa.String(length=1023), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accounts')),
    sa.UniqueConstraint('localpart', 'domain', name=op.f('uq_accounts_localpart_domain'))
    )
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_accounts_domain'), ['domain'], unique=False)

    op.create_table('directory_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_directory_state'))
    )
    op.bulk_insert(
        sa.table("directory_state", sa.column("id", sa.Integer), sa.column("generation", sa.Integer)),
        [{"id": 1, "generation": 0}],
    )
    op.create_table('digest_credentials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=2047), nullable=False),
    sa.Column('realm', sa.String(length=1023), nullable=False),
    sa.Column('algorithm', sa.String(length=16), nullable=False),
    sa.Column('ha1', sa.String(length=128), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_digest_credentials_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_digest_credentials')),
    sa.UniqueConstraint('account_id', 'username', 'algorithm', name=op.f('uq_digest_credentials_account_id_username_algorithm'))
    )
    op.create_table('scram_credentials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('hash_name', sa.String(length=16), nullable=False),
    sa.Column('salt', sa.LargeBinary(length=64), nullable=False),
    sa.Column('iterations', sa.Integer(), nullable=False),
    sa.Column('stored_key', sa.LargeBinary(length=64), nullable=False),
    sa.Column('server_key', sa.LargeBinary(length=64), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_scram_credentials_account_id_accounts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scram_credentials')),
    sa.UniqueConstraint('account_id', 'hash_name', name=op.f('uq_scram_credentials_account_id_hash_name'))
    )


def downgrade() -> None:
    op.drop_table('scram_credentials')
    op.drop_table('digest_credentials')
    op.drop_table('directory_state')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_accounts_domain'))

    op.drop_table('accounts')
