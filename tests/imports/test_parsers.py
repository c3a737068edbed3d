"""Each format's variety read into the same messages (no database: both passes only)."""

from __future__ import annotations

import io
import zipfile

import pytest

from chatsessions.errors import InvalidParameter
from chatsessions.imports.meta import repair_mojibake
from chatsessions.imports.model import ImportFileError, Source
from tests.imports.helpers import FIXTURES, read, simple, utc

IN, OUT = "inbound", "outbound"


def test_whatsapp_android_day_first_24h() -> None:
    plan, rows = read("whatsapp_android_dmy_24h.txt", format="whatsapp", me="Corner Shop")
    assert plan.date_order == "dmy" and plan.contact == "Layla Haddad" and plan.skipped == 1
    assert simple(rows) == [
        (IN, "text", "Hi! Is the blue jacket still available? 👋", utc(2023, 1, 15, 10, 0)),
        (OUT, "text", "Yes it is.\nSizes: S, M and L\n\nPrice: 49 €", utc(2023, 1, 15, 10, 2)),
        (IN, "media", "<Media omitted>", utc(2023, 1, 15, 10, 3)),
        (IN, "text", "مرحبا، هل يمكنني الدفع عند الاستلام؟", utc(2023, 1, 15, 10, 4)),
        (
            OUT,
            "media",
            "IMG-20230116-WA0003.jpg (file attached)\nHere is the photo",
            utc(2023, 1, 16, 18, 30),
        ),
        (IN, "text", "Thanks 🙏🏽 see you", utc(2023, 1, 31, 23, 59)),
    ]


def test_whatsapp_android_month_first_12h_with_narrow_space() -> None:
    plan, rows = read("whatsapp_android_mdy_12h.txt", format="whatsapp", me="corner shop")
    assert plan.date_order == "mdy" and plan.me == "Corner Shop"
    assert simple(rows) == [
        (IN, "text", "Hi! Is the blue jacket still available? 👋", utc(2023, 1, 15, 10, 0)),
        (OUT, "text", "Yes it is.\nSizes: S, M and L", utc(2023, 1, 15, 12, 2)),
        (IN, "text", "(a message just after midnight)", utc(2023, 1, 15, 0, 30)),
        (OUT, "media", "<Media omitted>", utc(2023, 1, 16, 18, 30)),
        (IN, "text", "Thanks 🙏🏽 see you", utc(2023, 1, 31, 23, 59)),
    ]


def test_whatsapp_year_first_with_seconds_and_no_comma() -> None:
    plan, rows = read("whatsapp_android_ymd_seconds.txt", format="whatsapp", me="Corner Shop")
    assert plan.date_order == "ymd"
    assert simple(rows) == [
        (IN, "text", "Hej! Finns jackan kvar?", utc(2023, 1, 15, 10, 0, 5)),
        (OUT, "text", "Ja", utc(2023, 1, 15, 10, 2, 59)),
        (OUT, "media", "DOC-20230116-WA0001.pdf (file attached)", utc(2023, 1, 16, 18, 30)),
    ]


def test_whatsapp_ios_brackets_marks_and_notices() -> None:
    plan, rows = read("whatsapp_ios_dmy_24h.txt", format="whatsapp", me="Corner Shop", tz="UTC")
    # The encryption notice and "This message was deleted." are iOS's own (marked U+200E).
    assert plan.skipped == 2 and plan.date_order == "dmy"
    assert simple(rows) == [
        (IN, "text", "Hi! Is the blue jacket still available? 👋", utc(2023, 1, 15, 10, 0, 0)),
        (OUT, "text", "Yes it is.\nSizes: S, M and L", utc(2023, 1, 15, 10, 2, 30)),
        (
            IN,
            "media",
            "<attached: 00000012-PHOTO-2023-01-15-10-03-00.jpg>",
            utc(2023, 1, 15, 10, 3, 0),
        ),
        (IN, "media", "image omitted", utc(2023, 1, 15, 10, 3, 10)),
        (OUT, "text", "שלום, ההזמנה שלך מוכנה", utc(2023, 1, 16, 18, 30, 45)),
    ]


def test_whatsapp_locale_12h_forms() -> None:
    # "a. m." / "p. m." with no-break spaces, "p. m." with ordinary ones, "p.m.", "AM".
    plan, rows = read("whatsapp_ios_dmy_12h_locale.txt", format="whatsapp", me="Corner Shop")
    assert plan.date_order == "dmy"
    assert [ts for *_, ts in simple(rows)] == [
        utc(2023, 1, 15, 10, 0),
        utc(2023, 1, 15, 12, 2, 30),
        utc(2023, 1, 15, 18, 15),
        utc(2023, 1, 16, 21, 5),
        utc(2023, 1, 16, 0, 0),
    ]
    assert rows[1][2] == "Sí, en talla M"


def test_whatsapp_zip_is_read_from_its_chat_member() -> None:
    text = (FIXTURES / "whatsapp_ios_dmy_24h.txt").read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("00000012-PHOTO-2023-01-15-10-03-00.jpg", b"\xff\xd8 not really a photo")
        archive.writestr("_chat.txt", text)
    zipped = Source.from_bytes("WhatsApp Chat - Layla.zip", buffer.getvalue())
    _, from_zip = read([zipped], format="whatsapp", me="Corner Shop")
    _, from_txt = read("whatsapp_ios_dmy_24h.txt", format="whatsapp", me="Corner Shop")
    assert from_zip == from_txt and len(from_zip) == 5


def test_ambiguous_date_order_is_refused_unless_given() -> None:
    with pytest.raises(InvalidParameter) as refused:
        read("whatsapp_ambiguous.txt", format="whatsapp", me="Corner Shop")
    assert refused.value.parameter == "dateOrder" and "ambiguous" in refused.value.message
    _, day_first = read(
        "whatsapp_ambiguous.txt", format="whatsapp", me="Corner Shop", date_order="dmy"
    )
    _, month_first = read(
        "whatsapp_ambiguous.txt", format="whatsapp", me="Corner Shop", date_order="mdy"
    )
    assert day_first[0][3] == utc(2023, 4, 3, 10, 0)
    assert month_first[0][3] == utc(2023, 3, 4, 10, 0)


def test_a_date_order_that_does_not_fit_names_the_line() -> None:
    with pytest.raises(ImportFileError) as bad:
        read("whatsapp_android_dmy_24h.txt", format="whatsapp", me="Corner Shop", date_order="mdy")
    # Line 1 is a notice (not stored); line 2 is the first message dated 15/01/2023.
    assert bad.value.where == "line 2" and "15/1/2023" in bad.value.problem


def test_group_chats_are_refused() -> None:
    with pytest.raises(ImportFileError) as refused:
        read("whatsapp_group.txt", format="whatsapp", me="Corner Shop")
    assert "group chat" in refused.value.problem and "'Omar'" in refused.value.problem


def test_me_must_be_given_and_be_an_author() -> None:
    with pytest.raises(InvalidParameter) as missing:
        read("whatsapp_android_dmy_24h.txt", format="whatsapp")
    assert missing.value.parameter == "me" and "'Corner Shop'" in missing.value.message
    with pytest.raises(InvalidParameter) as wrong:
        read("whatsapp_android_dmy_24h.txt", format="whatsapp", me="Someone")
    assert wrong.value.parameter == "me"


def test_telegram_single_chat() -> None:
    plan, rows = read("telegram_single.json", format="telegram", me="Corner Shop")
    assert plan.contact == "Layla Haddad" and plan.skipped == 1 and plan.date_order is None
    assert simple(rows) == [
        (IN, "text", "Hi! Is the blue jacket still available? 👋", 1673776800000),
        (OUT, "text", "Yes, see https://example.com/jacket — 49 €", 1673776920000),
        (IN, "media", "photos/photo_1@15-01-2023_11-03-00.jpg", 1673776980000),
        (IN, "media", "stickers/sticker.webp", 1673777000000),
        (OUT, "text", "Line one\nLine two", 1673863800000),
    ]


def test_telegram_whole_account_needs_the_chat() -> None:
    with pytest.raises(ImportFileError) as unnamed:
        read("telegram_account.json", format="telegram", me="Corner Shop")
    assert "--chat" in unnamed.value.problem and "'Omar'" in unnamed.value.problem
    _, rows = read(
        "telegram_account.json", format="telegram", me="Corner Shop", chat="layla haddad"
    )
    _, single = read("telegram_single.json", format="telegram", me="Corner Shop")
    assert rows == single
    _, omar = read("telegram_account.json", format="telegram", me="Corner Shop", chat="Omar")
    assert simple(omar) == [
        (IN, "text", "other chat", 1673776800000),
        (OUT, "text", "hi Omar", 1673776860000),
    ]


def test_signal_export() -> None:
    plan, rows = read("signal_chat.md", format="signal", me="Me", tz="Europe/Berlin")
    assert plan.date_order == "ymd" and plan.contact == "Layla Haddad"
    assert simple(rows) == [
        (IN, "text", "Hi! Is the blue jacket still available?", utc(2023, 1, 15, 9, 0)),
        (OUT, "text", "Yes it is.\n> quoted line\nSizes: S, M and L", utc(2023, 1, 15, 9, 2)),
        (IN, "media", "![photo](./media/2023-01-15-10-03-00.jpg)", utc(2023, 1, 15, 9, 3)),
        (OUT, "text", "Thanks 🙏", utc(2023, 1, 16, 17, 30)),
    ]


@pytest.mark.parametrize("fmt", ["instagram", "messenger"])
def test_meta_two_parts_with_mis_encoded_and_correct_text(fmt: str) -> None:
    plan, rows = read(["meta_message_1.json", "meta_message_2.json"], format=fmt, me="Corner Shop")
    assert plan.contact == "Zoë Müller" and plan.skipped == 1
    assert simple(rows) == [
        (IN, "text", "Hallo! Ist die Jacke noch verfügbar? 👋", 1673776800000),
        (IN, "text", "Déjà vu? Ã©", 1673776860000),  # correct text: left as it is
        (OUT, "text", "Yes, it's café-crème colour", 1673776920000),
        (IN, "media", "your_activity/messages/inbox/zoe_1/photos/1.jpg", 1673777000000),
        (IN, "text", "https://example.com/p/123", 1673777100000),
        (OUT, "text", "Merci, à bientôt 😊", 1673863800000),
    ]
    # The order the parts are given in does not matter.
    _, reversed_parts = read(
        ["meta_message_2.json", "meta_message_1.json"], format=fmt, me="Corner Shop"
    )
    assert reversed_parts == rows


def test_mojibake_repair_only_where_it_round_trips() -> None:
    assert repair_mojibake("cafÃ©") == "café"
    assert repair_mojibake("café") == "café"
    assert repair_mojibake("plain") == "plain"
    assert repair_mojibake("😊 Ã©") == "😊 Ã©"  # not Latin-1: not Meta's mis-encoding
    assert repair_mojibake("\xf0\x9f\x98\x8a") == "😊"


def test_derived_ids_are_stable_and_identical_messages_get_ranks() -> None:
    text = (
        b"15/01/2023, 10:00 - Layla Haddad: ok\n"
        b"15/01/2023, 10:00 - Layla Haddad: ok\n"
        b"15/01/2023, 10:01 - Corner Shop: ok\n"
        b"16/01/2023, 10:00 - Layla Haddad: ok\n"
    )
    _, rows = read([Source.from_bytes("a.txt", text)], format="whatsapp", me="Corner Shop")
    _, again = read([Source.from_bytes("b.txt", text)], format="whatsapp", me="Corner Shop")
    ids = [r[4] for r in rows]
    assert ids == [r[4] for r in again]
    assert len(set(ids)) == 4
    assert ids[1] == ids[0] + ":1"


def test_future_times_are_refused_naming_the_message() -> None:
    text = b"15/01/2023, 10:00 - Layla Haddad: hi\n15/01/2031, 10:00 - Corner Shop: later\n"
    with pytest.raises(ImportFileError) as wa:
        read([Source.from_bytes("chat.txt", text)], format="whatsapp", me="Corner Shop")
    assert (wa.value.where, wa.value.problem) == (
        "line 2",
        "the message is dated in the future (check --tz)",
    )
    meta = b'{"messages": [{"sender_name": "Zoe", "timestamp_ms": 99999999999999, "content": "x"}]}'
    with pytest.raises(ImportFileError) as fb:
        read([Source.from_bytes("message_1.json", meta)], format="messenger", me="Corner Shop")
    assert fb.value.where == "message 1"


def test_an_export_without_messages_is_an_error() -> None:
    # signal-export writing nothing recognisable must not look like an empty success.
    with pytest.raises(ImportFileError) as empty:
        read([Source.from_bytes("chat.md", b"# Layla Haddad\n\n")], format="signal", me="Me")
    assert "no messages found" in empty.value.problem


def test_signal_author_alone_on_its_line() -> None:
    # signal-export writes "Name:" with nothing after it when the message is only an
    # attachment, which then follows on its own line.
    text = (
        b"[2023-01-15, 10:00] Layla Haddad: hi\n"
        b"[2023-01-15, 10:01] Layla Haddad:\n"
        b"![voice-note.m4a](./media/voice-note.m4a)\n"
        b"[2023-01-15, 10:02:30] Me:\n"
        b"two\n"
        b"lines\n"
    )
    _, rows = read([Source.from_bytes("Layla Haddad.md", text)], format="signal", me="Me")
    assert simple(rows) == [
        (IN, "text", "hi", utc(2023, 1, 15, 10, 0)),
        (IN, "media", "![voice-note.m4a](./media/voice-note.m4a)", utc(2023, 1, 15, 10, 1)),
        (OUT, "text", "two\nlines", utc(2023, 1, 15, 10, 2, 30)),
    ]
