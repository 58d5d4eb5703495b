"""Detection and masking of personal data (bot.privacy) and its policy from config."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bot.config import parse_config
from bot.errors import ConfigError
from bot.privacy import Detector, Privacy, iban_valid, luhn, mask_value

D = Detector(patterns={"national_id": r"\b\d{3}-\d{2}-\d{4}\b"})

NEGATIVE = [
    "order AB123456 and order #100234",
    "on 2026-11-30 at 09:15:00, or 30/11/2026, or 2026-11-30T09:15:00Z",
    "it cost €1,234.56 (or 1.234,56 EUR, $ 12,345,678.00)",
    "my complaint C-1042 and C1043",
    "Slack ts 1700000000.000100, unix 1764493200, 127.0.0.1:8080",
    "conv_3f2a9b1c2d3e4f5a6b7c8d9e msg 1234567",
    "tracking 1Z999AA10123456784",
]


@pytest.mark.parametrize("text", NEGATIVE)
def test_negative_controls_are_untouched(text: str) -> None:
    assert D.find(text) == []
    assert D.mask(text)[0] == text


@pytest.mark.parametrize("text,masked", [
    ("my card is 4111 1111 1111 1111 thanks", "my card is **** **** **** 1111 thanks"),
    ("4111-1111-1111-1111", "**** **** **** 1111"),
    ("amex 378282246310005", "amex **** **** **** 0005"),
    ("order 1234 4111 1111 1111 1111", "order 1234 **** **** **** 1111"),
    ("5500 0000 0000 0004 12/27 123", "**** **** **** 0004 12/27 ***"),
    ("card 4111111111111111 cvv 123", "card **** **** **** 1111 cvv ***"),
    ("CVC: 1234", "CVC: ***"),
    ("the security code is 987", "the security code is ***"),
])
def test_cards_and_security_codes(text: str, masked: str) -> None:
    assert D.mask(text)[0] == masked


def test_a_number_failing_luhn_is_no_card() -> None:
    assert not luhn("4111111111111112")
    assert D.find("ref 4111 1111 1111 1112") == []


@pytest.mark.parametrize("text,masked", [
    ("IBAN DE89 3704 0044 0532 0130 00 please", "IBAN DE** **** **** 3000 please"),
    ("GB82WEST12345698765432", "GB** **** **** 5432"),
    ("fr14 2004 1010 0505 0001 3m02 606", "FR** **** **** 2606"),
])
def test_ibans(text: str, masked: str) -> None:
    assert D.mask(text)[0] == masked


def test_an_iban_with_a_bad_checksum_is_left() -> None:
    assert not iban_valid("DE89370400440532013001")
    assert [f.kind for f in D.find("IBAN DE89 3704 0044 0532 0130 01") if f.kind == "iban"] == []


def test_email_and_phones() -> None:
    text = "mail john.doe+x@example.co.uk or call +44 20 7946 0958, 030 12345678 or (415) 555-2671"
    found = D.find(text)
    assert [f.kind for f in found] == ["email", "phone", "phone", "phone"]
    assert [f.value for f in found][1:] == ["+44 20 7946 0958", "030 12345678", "(415) 555-2671"]
    assert D.mask(text)[0] == "mail j***@example.co.uk or call +*** *** 58, *** *** 78 or *** *** 71"


def test_admin_patterns() -> None:
    assert D.mask("my id is 123-45-6789")[0] == "my id is [national_id]"
    d = Detector(patterns={"nino": r"\b[A-Z]{2}\d{6}[A-D]\b"}, masks={"nino": "[NI number]"})
    assert d.mask("NI QQ123456C")[0] == "NI [NI number]"
    assert mask_value("nino", "x") == "[nino]"


def test_only_the_kinds_asked_for() -> None:
    text = "card 4111 1111 1111 1111, mail a@b.example"
    assert D.mask(text, ["card"])[0] == "card **** **** **** 1111, mail a@b.example"


def test_policy_defaults_and_places() -> None:
    p = Privacy()
    text = "card 4111 1111 1111 1111 cvv 123, mail ann@shop.example, call +44 20 7946 0958"
    stored, found = p.for_storage(text)
    assert stored == "card **** **** **** 1111 cvv ***, mail ann@shop.example, call +44 20 7946 0958"
    assert {f.kind for f in found} == {"card", "cvc"}
    assert p.slack(text) == "card **** **** **** 1111 cvv ***, mail a***@shop.example, call +*** *** 58"
    assert p.logs(text) == p.slack(text)
    assert p.desk(text, owner=True) == stored
    assert p.desk(text, owner=False) == p.slack(text)
    assert p.slots({"phone": "+44 20 7946 0958", "order": "AB123456"}, ["phone"], "slack") == {
        "phone": "[personal data]", "order": "AB123456"}
    assert p.slots({"phone": "+44 20 7946 0958"}, ["phone"], "desk", owner=True) == {"phone": "+44 20 7946 0958"}


def test_policy_from_config() -> None:
    cfg = parse_config("""
privacy:
  phone_regions: [de]
  patterns:
    - {name: national_id, pattern: '\\b\\d{3}-\\d{2}-\\d{4}\\b', mask: '[id]'}
  policy:
    email: {stored: mask}
    national_id: {desk: mask}
""")
    p = Privacy(cfg.privacy)
    assert cfg.privacy.phone_regions == ["DE"]
    assert p.for_storage("write to ann@shop.example")[0] == "write to a***@shop.example"
    assert p.desk("id 123-45-6789", owner=True) == "id [id]"
    assert p.desk("+49 30 12345678", owner=True) == "+49 30 12345678"


@pytest.mark.parametrize("yaml,key", [
    ("privacy: {policy: {passport: {logs: mask}}}", "privacy"),
    ("privacy: {policy: {email: {slack: owner}}}", "privacy"),
    ("privacy: {policy: {email: {fax: mask}}}", "privacy.policy.email.fax"),
    ("privacy: {patterns: [{name: card, pattern: x}]}", "privacy.patterns[0].name"),
    ("privacy: {patterns: [{name: x, pattern: '('}]}", "privacy.patterns[0].pattern"),
    ("privacy: {patterns: [{name: x, pattern: 'a*'}]}", "privacy.patterns[0].pattern"),
    ("privacy: {phone_regions: [XX]}", "privacy.phone_regions"),
    ("privacy: {retention: {audit: soon}}", "privacy.retention.audit"),
])
def test_bad_privacy_config_names_the_key(yaml: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(yaml)
    assert key in str(err.value)


def test_retention_durations() -> None:
    r = parse_config("privacy: {retention: {message_texts: 30d, attachments: never, audit: 0}}").privacy.retention
    assert (r.message_texts, r.attachments, r.audit) == (30 * 86400, None, None)


# -- the phone check runs the matcher only where a number can be (issue 20) ----------------

PHONE_TEXTS = [
    "mail john.doe+x@example.co.uk or call +44 20 7946 0958, 030 12345678 or (415) 555-2671",
    "order AB123456 (#100234) of 2026-11-30 09:15:00 cost €1,234.56, see C-1042",
    "A+44 20 7946 0958 and x+4915112345678 and tel:+33 1 42 68 53 00; id=123456789, date 1764500000",
    "Update(chat=Chat(id=123456789), date=datetime.datetime(2026, 11, 30, 19, 4, 5), message_id=4242, "
    "update_id=987654321, text='ring me on 07700 900123 or +1 (415) 555-2671/2')",
    "(0)30 1234 5678 — ０３０ １２３４５６７８ — 030/12345678 at 12:30, 1234567 or +49 30 1234567:12",
]


@pytest.mark.parametrize("text", PHONE_TEXTS)
def test_the_phone_check_per_stretch_finds_what_the_matcher_finds_in_the_whole_text(text: str) -> None:
    from bot.privacy import _phones, _phones_full

    regions = ("GB", "DE", "FR", "US")
    assert sorted(set(_phones(text, regions)), key=lambda f: (f.start, f.end)) == \
        sorted(set(_phones_full(text, regions)), key=lambda f: (f.start, f.end))


def test_stretches_too_short_for_a_number_never_reach_the_matcher(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot import privacy

    seen: list[str] = []
    real = privacy._phones_in

    def spy(window: str, regions: tuple[str, ...]) -> Any:
        seen.append(window)
        return real(window, regions)
    monkeypatch.setattr(privacy, "_phones_in", spy)
    need = privacy._min_phone_digits(("GB", "DE", "FR", "US"))
    assert 3 <= need <= 7      # from libphonenumber's metadata (+CC and the shortest national numbers)
    text = "datetime(2026, 1, 2, 3, 4, 5), at 0x7f1e, ids 12, 345 and a phone: +44 20 7946 0958"
    found = privacy._phones(text, ("GB", "DE", "FR", "US"))
    assert [f.value for f in found] == ["+44 20 7946 0958"] * len(found) and found
    assert any("7946 0958" in w for w in seen)                             # the number's stretch is checked
    assert all(sum(c.isdigit() for c in w) >= need for w in seen)          # "12", "345", "0x7": never
    assert not [w for w in seen if "12," in w or "345" in w or "0x7" in w]


def test_a_stretch_seen_before_is_not_parsed_again() -> None:
    from bot import privacy

    privacy._phones_in.cache_clear()
    for i in range(3):
        privacy._phones(f"chat 123456789: message {i} stored", ("GB", "DE", "FR", "US"))
    info = privacy._phones_in.cache_info()
    assert info.misses == 1 and info.hits == 2


def test_the_log_filter_still_masks_phones_in_every_shape() -> None:
    from bot.logs import RedactingFilter

    flt = RedactingFilter(customer_text=True)
    rec = logging.LogRecord("telegram.Bot", logging.DEBUG, __file__, 1, "Call `%s` returned `%s`",
                            ("getUpdates", "[Message(text='call +44 20 7946 0958 or (415) 555-2671', "
                                           "date=datetime.datetime(2026, 11, 30, 9, 15, 0))]"), None)
    flt.clean(rec)
    assert "7946 0958" not in rec.msg and "555-2671" not in rec.msg
    assert "+*** *** 58" in rec.msg and "*** *** 71" in rec.msg and "datetime(2026, 11, 30, 9, 15, 0)" in rec.msg
