"""The admin's forms. Each is a FlaskForm, so each carries and checks its own CSRF token.

Buttons that only act (merge, sync now) are forms too; ActionForm is
the form with nothing but the token. Labels and messages are translated
when shown (lazy_gettext), so each reader sees them in their own language;
WTForms' own messages ("Not a valid integer value") come from its Russian
catalog through Flask-WTF.
"""

from __future__ import annotations

from typing import Any, cast

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, IntegerField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from hub.i18n import lazy_gettext
from hub.users import MIN_PASSWORD, ROLES


def _l(message: str, **variables: Any) -> str:
    """A label or message translated when it is shown (a str to WTForms, which formats and prints it)."""
    return cast(str, lazy_gettext(message, **variables))


# SelectField choices are plain values: WTForms 3.3 deprecates (value, label) tuples, while the
# types-WTForms stubs still accept only tuples; hence the narrow type: ignore on each such field.


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class LoginForm(FlaskForm):
    email = StringField(_l("Email"), validators=[DataRequired(_l("Enter your email.")), Length(max=320)])
    password = PasswordField(_l("Password"), validators=[DataRequired(_l("Enter your password."))])
    next = HiddenField()


class UserAddForm(FlaskForm):
    email = StringField(_l("Email"), validators=[DataRequired(_l("Enter the person's email.")), Length(max=320)])
    role = SelectField(_l("Role"), choices=list(ROLES), default="viewer")  # type: ignore[arg-type]
    password = PasswordField(_l("Password"), validators=[
        DataRequired(_l("Enter a password.")),
        Length(min=MIN_PASSWORD, message=_l("The password is too short: use at least %(min)s characters.",
                                            min=MIN_PASSWORD))])


class UserRoleForm(FlaskForm):
    role = SelectField(_l("Role"), choices=list(ROLES))  # type: ignore[arg-type]


class MergeForm(FlaskForm):
    survivor = IntegerField(_l("Keep"), validators=[InputRequired(_l("Choose the contact to keep.")),
                                                    NumberRange(min=1, message=_l("Give a contact number."))])
    other = IntegerField(_l("Merge into it"), validators=[InputRequired(_l("Choose the contact to merge.")),
                                                          NumberRange(min=1, message=_l("Give a contact number."))])


class SegmentForm(FlaskForm):
    document = TextAreaField(_l("Segment (YAML)"), validators=[DataRequired(_l("The segment is empty."))])


class TemplateForm(FlaskForm):
    name = StringField(_l("Name"), validators=[DataRequired(_l("Give the template a name.")), Length(max=100)])
    channel = SelectField(_l("Channel"), choices=["email", "sms"])  # type: ignore[list-item]
    subject = StringField(_l("Subject"), validators=[Optional(), Length(max=500)])
    text = TextAreaField(_l("Text"), validators=[DataRequired(_l("The text part is empty."))])
    html = TextAreaField("HTML", validators=[Optional()])
    contact = IntegerField(_l("Preview for contact"), validators=[Optional(), NumberRange(min=1)])


class SyncForm(FlaskForm):
    full = BooleanField(_l("Read everything (full sync)"))

