# -*- test-case-name: tests.unit.test_muc_forms -*-
"""XEP-0004 data forms, and the two MUC forms built on them: muc#roomconfig (the owner's
configuration form, XEP-0045 §10.2) and muc#roominfo (extended disco#info, XEP-0045 §6.4).

Forms arrive from any client, so parsing bounds the number of fields and values and checks
each value against its field before a room changes at all: a bad submission is a
``FormError`` naming the field, and the room keeps its previous configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from twisted.words.xish import domish

from unirtc.muc.model import NS_DATA, PM_CHOICES, RoomConfig

FORM_TYPES = ("form", "submit", "cancel", "result")
FIELD_TYPES = frozenset({"boolean", "fixed", "hidden", "jid-multi", "jid-single", "list-multi",
                         "list-single", "text-multi", "text-private", "text-single"})
NS_ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
NS_ROOMINFO = "http://jabber.org/protocol/muc#roominfo"
MAX_FIELDS = 100
MAX_VALUES = 256
MAX_TEXT = 1024


class FormError(ValueError):
    """A data form that is malformed, or a value its field cannot take."""


@dataclass
class Field:
    var: str
    type: str = "text-single"
    label: str | None = None
    values: list[str] = field(default_factory=list)
    options: list[tuple[str | None, str]] = field(default_factory=list)


@dataclass
class DataForm:
    type: str
    fields: list[Field] = field(default_factory=list)
    title: str | None = None

    def values(self, var: str) -> list[str] | None:
        """The values submitted for ``var``, or None if the form has no such field."""
        for f in self.fields:
            if f.var == var:
                return f.values
        return None

    @property
    def form_type(self) -> str | None:
        values = self.values("FORM_TYPE")
        return values[0] if values else None

    def to_element(self) -> domish.Element:
        x = domish.Element((NS_DATA, "x"))
        x["type"] = self.type
        if self.title:
            x.addElement("title", content=self.title)
        for f in self.fields:
            element = x.addElement("field")
            element["var"] = f.var
            if self.type != "submit":
                element["type"] = f.type
            if f.label and self.type == "form":
                element["label"] = f.label
            for label, value in f.options if self.type == "form" else ():
                option = element.addElement("option")
                if label:
                    option["label"] = label
                option.addElement("value", content=value)
            for value in f.values:
                element.addElement("value", content=value)
        return x

    @classmethod
    def parse(cls, x: domish.Element) -> DataForm:
        """Read a ``<x xmlns='jabber:x:data'/>``; FormError if it is not one we can trust."""
        if x.uri != NS_DATA or x.name != "x":
            raise FormError("not a jabber:x:data form")
        kind = x.getAttribute("type")
        if kind not in FORM_TYPES:
            raise FormError(f"form type must be one of {', '.join(FORM_TYPES)}")
        form = cls(kind)
        for element in x.elements(NS_DATA, "field"):
            if len(form.fields) == MAX_FIELDS:
                raise FormError(f"more than {MAX_FIELDS} fields")
            var = element.getAttribute("var")
            field_type = element.getAttribute("type", "text-single")
            if field_type not in FIELD_TYPES:
                raise FormError(f"unknown field type {field_type[:40]!r}")
            if var is None:
                if field_type == "fixed":
                    continue
                raise FormError("a field without var")
            values = [str(v) for v in element.elements(NS_DATA, "value")]
            if len(values) > MAX_VALUES:
                raise FormError(f"field {var[:40]!r} has more than {MAX_VALUES} values")
            form.fields.append(Field(var, field_type, element.getAttribute("label"), values))
        return form


def boolean(var: str, values: list[str]) -> bool:
    """XEP-0004 §3.3 boolean: 0/1/false/true."""
    if len(values) != 1 or values[0].strip() not in ("0", "1", "false", "true"):
        raise FormError(f"{var} takes one boolean value (0, 1, false or true)")
    return values[0].strip() in ("1", "true")


def single(var: str, values: list[str], choices: tuple[str, ...] | None = None) -> str:
    if len(values) > 1:
        raise FormError(f"{var} takes one value")
    value = values[0] if values else ""
    if len(value) > MAX_TEXT:
        raise FormError(f"{var} is longer than {MAX_TEXT} characters")
    if choices is not None and value not in choices:
        raise FormError(f"{var} must be one of {', '.join(choices)}")
    return value


def number(var: str, values: list[str], lowest: int, highest: int, none: int | None = None) -> int:
    text = single(var, values).strip()
    if none is not None and text in ("none", ""):
        return none
    if not (text.isascii() and text.isdigit()) or not lowest <= int(text) <= highest:
        raise FormError(f"{var} must be a number from {lowest} to {highest}")
    return int(text)


# var -> (RoomConfig attribute, field type, label)
_FIELDS: list[tuple[str, str, str, str]] = [
    ("muc#roomconfig_roomname", "name", "text-single", "Title"),
    ("muc#roomconfig_roomdesc", "description", "text-single", "Description"),
    ("muc#roomconfig_lang", "language", "text-single", "Language of discussion"),
    ("muc#roomconfig_persistentroom", "persistent", "boolean", "Keep the room when it is empty"),
    ("muc#roomconfig_publicroom", "public", "boolean", "List the room in the directory"),
    ("muc#roomconfig_membersonly", "members_only", "boolean", "Only members may enter"),
    ("muc#roomconfig_moderatedroom", "moderated", "boolean", "Only participants with voice may speak"),
    ("muc#roomconfig_passwordprotectedroom", "password_protected", "boolean", "Require a password"),
    ("muc#roomconfig_roomsecret", "password", "text-private", "Password"),
    ("muc#roomconfig_maxusers", "max_users", "list-single", "Maximum number of occupants"),
    ("muc#roomconfig_whois", "whois", "list-single", "Who may see occupants' real addresses"),
    ("muc#maxhistoryfetch", "max_history", "text-single", "Messages of history sent on entry"),
    ("muc#roomconfig_allowpm", "allow_pm", "list-single", "Who may send private messages"),
    ("muc#roomconfig_allowinvites", "allow_invites", "boolean", "Occupants may invite others"),
    ("muc#roomconfig_changesubject", "change_subject", "boolean", "Occupants may change the subject"),
    ("muc#roomconfig_enablelogging", "logging", "boolean", "Warn occupants that the room is logged"),
]
_WHOIS = ("moderators", "anyone")


def config_form(config: RoomConfig, max_users: int, max_history: int) -> DataForm:
    """The form an owner fills in (XEP-0045 §10.2), with the current values."""
    form = DataForm("form", title="Room configuration")
    form.fields.append(Field("FORM_TYPE", "hidden", values=[NS_ROOMCONFIG]))
    for var, attribute, kind, label in _FIELDS:
        value = getattr(config, attribute)
        f = Field(var, kind, label)
        if kind == "boolean":
            f.values = ["1" if value else "0"]
        elif attribute == "max_users":
            sizes = sorted({n for n in (5, 10, 20, 30, 50, 100, 200, 500) if n < max_users} | {max_users})
            f.options = [(None, str(n)) for n in sizes]
            f.values = [str(value or max_users)]
        else:
            f.values = [str(value)]
            choices = {"whois": _WHOIS, "allow_pm": PM_CHOICES}.get(attribute, ())
            f.options = [(None, choice) for choice in choices]
        if attribute == "max_history":
            f.label = f"{label} (at most {max_history})"
        form.fields.append(f)
    return form


def apply_config(config: RoomConfig, form: DataForm, max_users: int, max_history: int) -> RoomConfig:
    """The configuration after an owner's submission; fields left out keep their values."""
    if form.type != "submit":
        raise FormError("expected a form of type submit")
    if form.form_type not in (None, NS_ROOMCONFIG):
        raise FormError(f"FORM_TYPE must be {NS_ROOMCONFIG}")
    changes: dict[str, object] = {}
    for var, attribute, kind, _ in _FIELDS:
        values = form.values(var)
        if values is None:
            continue
        if kind == "boolean":
            changes[attribute] = boolean(var, values)
        elif attribute == "max_users":
            changes[attribute] = number(var, values, 1, max_users, none=0)
        elif attribute == "max_history":
            changes[attribute] = number(var, values, 0, max_history)
        elif attribute == "whois":
            changes[attribute] = single(var, values, _WHOIS)
        elif attribute == "allow_pm":
            changes[attribute] = single(var, values, PM_CHOICES)
        else:
            changes[attribute] = single(var, values)
    return replace(config, **changes)  # type: ignore[arg-type]


def roominfo_form(config: RoomConfig, occupants: int, subject: str) -> DataForm:
    """XEP-0045 §6.4 extended room information for disco#info."""
    form = DataForm("result")
    form.fields.append(Field("FORM_TYPE", "hidden", values=[NS_ROOMINFO]))
    rows = [
        ("muc#roominfo_description", "Description", config.description),
        ("muc#roominfo_occupants", "Number of occupants", str(occupants)),
        ("muc#roominfo_subject", "Subject", subject),
        ("muc#roominfo_changesubject", "Occupants may change the subject",
         "1" if config.change_subject else "0"),
        ("muc#roomconfig_roomname", "Title", config.name),
    ]
    if config.language:
        rows.append(("muc#roominfo_lang", "Language of discussion", config.language))
    for var, label, value in rows:
        form.fields.append(Field(var, "text-single", label, [value]))
    return form
