"""The shop's page in Hub's admin: whether the shop is connected, its last orders and coupons, and disconnecting it.

Registered through register_admin_pages, so Hub wraps it in sign-in, role
checks and the CSRF check like its own pages: everyone signed in reads it,
only admins disconnect the shop (recorded in the audit log). ``source="shop"``
makes Hub's Connections page link here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, url_for
from sqlalchemy import select

from hub.api import (AdminPage, Order, actor, allow, current_settings, delete_credentials, engine, load_credentials,
                     record_audit)
from hub.api import gettext as _

from hub_shop.client import NAME
from hub_shop.models import IssuedCoupon

bp = Blueprint("shop_admin", __name__, url_prefix="/shop", template_folder="admin_templates")

PAGE = AdminPage(bp, "shop_admin.index", {"ru": "Магазин", "en": "Shop"}, order=65, read_role="viewer",
                 write_role="admin", icon="🛒", source=NAME)

LAST_ORDERS = 20
LAST_COUPONS = 20


def connection() -> dict[str, Any] | None:
    """Where the shop is, without its token; None when it is not connected."""
    with engine().connect() as conn:
        found = load_credentials(conn, NAME, current_settings().require_secret_key())
    if found is None:
        return None
    return {"host": urlsplit(found[0]["url"]).netloc}


@bp.get("/")
@allow(read="viewer")
def index() -> Any:
    with engine().connect() as conn:
        orders = conn.execute(select(Order.external_id, Order.amount, Order.currency, Order.status, Order.closed_at)
                              .where(Order.source == NAME).order_by(Order.id.desc()).limit(LAST_ORDERS)).all()
        coupons = conn.execute(select(IssuedCoupon.code, IssuedCoupon.contact_id, IssuedCoupon.coupon_id,
                                      IssuedCoupon.customer_id, IssuedCoupon.workflow, IssuedCoupon.created_at)
                               .order_by(IssuedCoupon.id.desc()).limit(LAST_COUPONS)).all()
    return render_template("shop_admin/index.html", connection=connection(), orders=orders, coupons=coupons)


@bp.post("/disconnect")
@allow(read=None, write="admin")
def disconnect() -> Any:
    with engine().begin() as conn:
        if delete_credentials(conn, NAME):
            record_audit(conn, actor(), "shop.disconnected")
            flash(_("The shop is disconnected: its token is forgotten. Connect it again with `hub connect shop`."),
                  "ok")
    return redirect(url_for("shop_admin.index"))
