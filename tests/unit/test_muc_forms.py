"""XEP-0004 data forms and the muc#roomconfig / muc#roominfo forms."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.xish import domish

from tests.unit.muc_helpers import xml
from unirtc.muc.forms import (
    NS_ROOMCONFIG, DataForm, FormError, apply_config, config_form, roominfo_form,
)
from unirtc.muc.model import NS_DATA, RoomConfig


def form(inner: str, type: str = "submit") -> domish.Element:
    message = xml(f"<message><x xmlns='{NS_DATA}' type='{type}'>{inner}</x></message>")
    return next(message.elements(NS_DATA, "x"))


class DataFormTests(SynchronousTestCase):
    def test_parseFields(self) -> None:
        """
        If a form is parsed, each field keeps its var, type and values; fixed fields without
        var are skipped.
        """
        parsed = DataForm.parse(form("<field type='fixed'><value>note</value></field>"
                                     "<field var='a' type='list-multi'><value>1</value><value>2</value></field>"
                                     "<field var='b'/>"))
        self.assertEqual([(f.var, f.type, f.values) for f in parsed.fields],
                         [("a", "list-multi", ["1", "2"]), ("b", "text-single", [])])
        self.assertEqual(parsed.values("a"), ["1", "2"])
        self.assertIsNone(parsed.values("c"))

    def test_renderRoundTrip(self) -> None:
        """
        If the config form is rendered and parsed back, the fields and values are the same.
        """
        rendered = config_form(RoomConfig(name="Ops"), 100, 20)
        parsed = DataForm.parse(xml("<message>" + rendered.to_element().toXml() + "</message>").firstChildElement())
        self.assertEqual([(f.var, f.values) for f in parsed.fields], [(f.var, f.values) for f in rendered.fields])
        self.assertEqual(parsed.form_type, NS_ROOMCONFIG)

    def test_malformedForms(self) -> None:
        """
        If a form has a bad type, a field without var, an unknown field type, too many fields
        or values, or is not a data form at all, parsing raises FormError.
        """
        cases = [form("", type="bogus"), form("<field/>"), form("<field var='a' type='weird'/>"),
                 form("<field var='a'/>" * 101), form("<field var='a'>" + "<value>v</value>" * 257 + "</field>"),
                 xml("<message><x xmlns='urn:other' type='submit'/></message>").firstChildElement()]
        for case in cases:
            self.assertRaises(FormError, DataForm.parse, case)


class RoomConfigFormTests(SynchronousTestCase):
    def apply(self, inner: str, config: RoomConfig | None = None) -> RoomConfig:
        return apply_config(config or RoomConfig(), DataForm.parse(form(inner)), 100, 20)

    def test_applySubmittedValues(self) -> None:
        """
        If an owner submits values, booleans, numbers and choices are applied; absent fields keep
        their values; an empty submission (instant room) changes nothing.
        """
        config = self.apply("<field var='muc#roomconfig_persistentroom'><value>true</value></field>"
                            "<field var='muc#roomconfig_maxusers'><value>30</value></field>"
                            "<field var='muc#roomconfig_allowpm'><value>none</value></field>"
                            "<field var='muc#maxhistoryfetch'><value>5</value></field>",
                            RoomConfig(name="Keep"))
        self.assertEqual((config.persistent, config.max_users, config.allow_pm, config.max_history, config.name),
                         (True, 30, "none", 5, "Keep"))
        self.assertEqual(self.apply(""), RoomConfig())
        self.assertEqual(self.apply("<field var='muc#roomconfig_maxusers'><value>none</value></field>").max_users, 0)

    def test_badValues(self) -> None:
        """
        If a submitted value does not fit its field, apply_config raises FormError naming it.
        """
        for inner in ("<field var='muc#roomconfig_publicroom'><value>yes</value></field>",
                      "<field var='muc#roomconfig_publicroom'><value>1</value><value>0</value></field>",
                      "<field var='muc#roomconfig_maxusers'><value>101</value></field>",
                      "<field var='muc#roomconfig_maxusers'><value>-3</value></field>",
                      "<field var='muc#roomconfig_maxusers'><value>\u00b2</value></field>",
                      "<field var='muc#maxhistoryfetch'><value>21</value></field>",
                      "<field var='muc#roomconfig_whois'><value>nobody</value></field>",
                      "<field var='muc#roomconfig_roomdesc'><value>" + "d" * 1025 + "</value></field>",
                      "<field var='FORM_TYPE'><value>urn:x</value></field>"):
            error = self.assertRaises(FormError, self.apply, inner)
            self.assertTrue("muc#" in str(error) or "FORM_TYPE" in str(error), str(error))
        self.assertRaises(FormError, apply_config, RoomConfig(), DataForm("form"), 100, 20)

    def test_roominfo(self) -> None:
        """
        If room info is rendered, it is a result form with the muc#roominfo FORM_TYPE and the
        occupant count.
        """
        info = roominfo_form(RoomConfig(description="d", language="fr"), 3, "s")
        self.assertEqual(info.form_type, "http://jabber.org/protocol/muc#roominfo")
        self.assertEqual((info.values("muc#roominfo_occupants"), info.values("muc#roominfo_lang")), (["3"], ["fr"]))


@given(st.lists(st.tuples(st.sampled_from(["muc#roomconfig_maxusers", "muc#roomconfig_persistentroom",
                                           "muc#roomconfig_whois", "muc#maxhistoryfetch", "muc#roomconfig_roomname",
                                           "FORM_TYPE", "other"]),
                          st.lists(st.text(max_size=8), max_size=2)), max_size=5))
def test_applyConfigOnlyRaisesFormError(fields: list[tuple[str, list[str]]]) -> None:
    """
    Whatever values a submission holds, apply_config returns a configuration or raises FormError.
    """
    from unirtc.muc.forms import Field
    submitted = DataForm("submit", [Field(var, values=values) for var, values in fields])
    try:
        config = apply_config(RoomConfig(), submitted, 100, 20)
    except FormError:
        return
    assert 0 <= config.max_users <= 100 and 0 <= config.max_history <= 20
