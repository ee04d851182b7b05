"""Plugin storage: JSON values by (store, owner, key) and per-owner archives.

Revision ID: 5b7d3e9a1c20
Revises: e8cf2ec895e5
Create Date: 2026-11-21 22:30:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '5b7d3e9a1c20'
down_revision = 'e8cf2ec895e5'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('plugin_data',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('store', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=2047), nullable=False),
    sa.Column('key', sa.String(length=1023), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plugin_data')),
    sa.UniqueConstraint('store', 'owner', 'key', name=op.f('uq_plugin_data_store_owner_key'))
    )
    with op.batch_alter_table('plugin_data', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plugin_data_owner'), ['owner'], unique=False)

    op.create_table('plugin_archive',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('store', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=2047), nullable=False),
    sa.Column('with_jid', sa.String(length=3071), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plugin_archive'))
    )
    with op.batch_alter_table('plugin_archive', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_plugin_archive_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_plugin_archive_owner'), ['owner'], unique=False)
        batch_op.create_index('ix_plugin_archive_store_owner_id', ['store', 'owner', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('plugin_archive', schema=None) as batch_op:
        batch_op.drop_index('ix_plugin_archive_store_owner_id')
        batch_op.drop_index(batch_op.f('ix_plugin_archive_owner'))
        batch_op.drop_index(batch_op.f('ix_plugin_archive_created_at'))

    op.drop_table('plugin_archive')
    with op.batch_alter_table('plugin_data', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_plugin_data_owner'))

    op.drop_table('plugin_data')
