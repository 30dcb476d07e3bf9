"""shop_coupons: one row per coupon the shop_coupon step made in the shop

Revision ID: 0001
Revises:

The first revision of the shop plugin's own chain (its position is kept in
alembic_version_shop). `hub init` runs it after the core's revisions, so the
foreign key may name the core's contacts table.
"""

from alembic import op
import sqlalchemy as sa

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('shop_coupons',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('step_key', sa.String(length=200), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('coupon_id', sa.Integer(), nullable=True),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('workflow', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_shop_coupons_contact_id_contacts'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shop_coupons')),
    sa.UniqueConstraint('code', name=op.f('uq_shop_coupons_code')),
    sa.UniqueConstraint('step_key', name=op.f('uq_shop_coupons_step_key'))
    )
    op.create_index(op.f('ix_shop_coupons_contact_id'), 'shop_coupons', ['contact_id'], unique=False)
    op.create_index(op.f('ix_shop_coupons_created_at'), 'shop_coupons', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_shop_coupons_created_at'), table_name='shop_coupons')
    op.drop_index(op.f('ix_shop_coupons_contact_id'), table_name='shop_coupons')
    op.drop_table('shop_coupons')
