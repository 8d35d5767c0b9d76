"""Sample messages the demo, the tests and the benchmarks deliver (core: builds bytes)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

#: A tiny PNG (1x1 pixel), so the demo shows an inline image and an attachment.
PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def _base(
    subject: str,
    sender: str,
    to: str,
    *,
    message_id: str | None = None,
    domain: str = "demo.example",
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id or make_msgid(domain=domain)
    return message


def make_message(
    subject: str,
    *,
    body: str = "hello",
    sender: str = "alice@example.com",
    to: str = "support@example.com",
    message_id: str | None = None,
) -> bytes:
    """A plain-text message with a fresh Message-ID (unless given), as bytes."""
    message = _base(subject, sender, to, message_id=message_id, domain="example.com")
    message.set_content(body)
    return bytes(message)


def sample_messages(mailbox: str) -> list[bytes]:
    """Four messages: plain text, HTML with attachment, a reply, and non-Latin text."""
    plain = _base("Printer on floor 3 is jammed", "Alice Example <alice@example.com>", mailbox)
    plain.set_content("Hi support,\n\nthe printer on floor 3 is jammed again.\n\nAlice")

    html = _base("Invoice 2026-114", "Billing <billing@vendor.example>", mailbox)
    html["Cc"] = "Bob <bob@example.com>"
    html.set_content("Your invoice is attached.")
    html.add_alternative(
        "<p>Your <b>invoice</b> is attached.</p><img src='cid:logo'>", subtype="html"
    )
    html_part = html.get_body(preferencelist=("html",))
    assert isinstance(html_part, EmailMessage)
    html_part.add_related(PIXEL_PNG, "image", "png", cid="<logo>")
    html.add_attachment(
        b"%PDF-1.4 demo\n", maintype="application", subtype="pdf", filename="invoice-2026-114.pdf"
    )

    reply = _base("Re: Printer on floor 3 is jammed", "Alice Example <alice@example.com>", mailbox)
    reply["In-Reply-To"] = plain["Message-ID"]
    reply["References"] = plain["Message-ID"]
    reply.set_content("It works again, thanks!")

    # Cyrillic and Japanese on purpose: non-Latin scripts must survive end to end.
    intl = _base(
        "Заявка: не работает VPN / VPN が使えません", "Дмитрий <dmitry@example.ru>", mailbox
    )
    intl.set_content("VPN не подключается с утра.\nVPN に接続できません。")  # noqa: RUF001
    return [bytes(m) for m in (plain, html, reply, intl)]


def mail_with_attachments(
    attachments: list[tuple[str, str, bytes]],
    *,
    inline_image: bytes | None = None,
    message_id: str | None = None,
) -> bytes:
    """A support request with ``attachments`` (file name, content type, bytes), and an
    ``inline_image`` the HTML body shows (``cid:shot@example.com``)."""
    message = _base(
        "screenshots and a video",
        "Ann <ann@example.com>",
        "support@example.com",
        message_id=message_id,
    )
    message.set_content("see attached")
    message.add_alternative("<p>see <img src='cid:shot@example.com'></p>", subtype="html")
    if inline_image is not None:
        html = next(part for part in message.iter_parts() if part.get_content_type() == "text/html")
        assert isinstance(html, EmailMessage)
        html.add_related(inline_image, maintype="image", subtype="png", cid="<shot@example.com>")
    for name, content_type, content in attachments:
        maintype, subtype = content_type.split("/", 1)
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return bytes(message)
