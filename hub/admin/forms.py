"""The admin's forms. Each is a FlaskForm, so each carries and checks its own CSRF token.

Buttons that only act (merge, sync now) are forms too; ActionForm is
the form with nothing but the token.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, IntegerField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from hub.users import MIN_PASSWORD, ROLES

# SelectField choices are plain values: WTForms 3.3 deprecates (value, label) tuples, while the
# types-WTForms stubs still accept only tuples; hence the narrow type: ignore on each such field.


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class LoginForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired("Enter your email."), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired("Enter your password.")])
    next = HiddenField()


class UserAddForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired("Enter the person's email."), Length(max=320)])
    role = SelectField("Role", choices=list(ROLES), default="viewer")  # type: ignore[arg-type]
    password = PasswordField("Password", validators=[
        DataRequired("Enter a password."),
        Length(min=MIN_PASSWORD, message=f"The password is too short: use at least {MIN_PASSWORD} characters.")])


class UserRoleForm(FlaskForm):
    role = SelectField("Role", choices=list(ROLES))  # type: ignore[arg-type]


class MergeForm(FlaskForm):
    survivor = IntegerField("Keep", validators=[InputRequired("Choose the contact to keep."), NumberRange(min=1)])
    other = IntegerField("Merge into it", validators=[InputRequired("Choose the contact to merge."),
                                                      NumberRange(min=1)])


class SegmentForm(FlaskForm):
    document = TextAreaField("Segment (YAML)", validators=[DataRequired("The segment is empty.")])


class TemplateForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired("Give the template a name."), Length(max=100)])
    channel = SelectField("Channel", choices=["email", "sms"])  # type: ignore[list-item]
    subject = StringField("Subject", validators=[Optional(), Length(max=500)])
    text = TextAreaField("Text", validators=[DataRequired("The text part is empty.")])
    html = TextAreaField("HTML", validators=[Optional()])
    contact = IntegerField("Preview for contact", validators=[Optional(), NumberRange(min=1)])


class SyncForm(FlaskForm):
    full = BooleanField("Read everything (full sync)")

