"""Send test mail to GreenMail over SMTP (standard library only), for the compose set-up.

    python docker/greenmail/send_test_mail.py                 # one message to demo@localhost
    python docker/greenmail/send_test_mail.py --count 5 --attachment

Each message gets a unique Message-ID and a numbered subject, so every one shows up as its
own event in `email-service events tail`.
"""

from __future__ import annotations

import argparse
import smtplib
import sys
import uuid
from email.message import EmailMessage
from email.utils import formatdate

#: The user GreenMail creates in docker-compose.yml (-Dgreenmail.users=demo:demo@localhost).
DEFAULT_RECIPIENT = "demo@localhost"
#: GreenMail's SMTP port in its test set-up.
DEFAULT_SMTP_PORT = 3025
#: Seconds to wait for GreenMail to answer before giving up.
SMTP_TIMEOUT_S = 10


def build_message(sender: str, recipient: str, number: int, *, attachment: bool) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = f"Test message {number}"
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = f"<{uuid.uuid4()}@send-test-mail.local>"
    message.set_content(f"Test message {number}, sent by docker/greenmail/send_test_mail.py.\n")
    message.add_alternative(f"<p>Test message <b>{number}</b>.</p>", subtype="html")
    if attachment:
        message.add_attachment(
            b"a small attachment\n", maintype="text", subtype="plain", filename="note.txt"
        )
    return message


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Send test mail to GreenMail over SMTP.")
    parser.add_argument("--host", default="localhost", help="SMTP host (localhost)")
    parser.add_argument("--port", type=int, default=DEFAULT_SMTP_PORT, help="SMTP port (3025)")
    parser.add_argument("--to", default=DEFAULT_RECIPIENT, help="recipient (demo@localhost)")
    parser.add_argument("--sender", default="sender@example.com", help="envelope and From")
    parser.add_argument("--count", type=int, default=1, help="how many messages (1)")
    parser.add_argument("--attachment", action="store_true", help="attach a small text file")
    args = parser.parse_args(argv)
    try:
        with smtplib.SMTP(args.host, args.port, timeout=SMTP_TIMEOUT_S) as smtp:
            for number in range(1, args.count + 1):
                smtp.send_message(
                    build_message(args.sender, args.to, number, attachment=args.attachment)
                )
    except (OSError, smtplib.SMTPException) as exc:
        print(
            f"send_test_mail: could not send to {args.host}:{args.port}: {exc}. "
            "Is GreenMail running (docker compose -f docker/greenmail/docker-compose.yml up -d)?",
            file=sys.stderr,
        )
        return 1
    print(f"sent {args.count} message(s) to {args.to} via {args.host}:{args.port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
