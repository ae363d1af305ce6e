"""A real SMTP server for the failure-email tests (aiosmtpd, from PyPI via scripts/ensure-python.sh).

    python smtp_sink.py [--port P] [--login USER PASSWORD] [--starttls | --tls] [--cert CERT KEY]

Listens on 127.0.0.1:P (default: a free port), prints the port on the first line, then one JSON
object per message it accepts: the envelope, the headers a reader sees, the plain-text and HTML
parts (decoded by Python's email package) and the user it logged in as. With --login, AUTH is
required. --starttls requires STARTTLS before anything else; --tls speaks TLS from the first byte;
both present the certificate (PEM files) given by --cert.
"""

import argparse
import asyncio
import email
import email.policy
import json
import logging
import socket
import ssl
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        login = session.auth_data.login.decode() if session.auth_data else None
        # Lines end in CRLF on the wire (RFC 5322); a mail reader shows them as lines.
        def lines(part):
            return part.get_content().replace("\r\n", "\n") if part else None

        print(
            json.dumps(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "from": str(message["From"]),
                    "to": str(message["To"]),
                    "subject": str(message["Subject"]),
                    "message_id": str(message["Message-ID"]),
                    "date": str(message["Date"]),
                    "text": lines(text),
                    "html": lines(html),
                    "login": login,
                }
            ),
            flush=True,
        )
        return "250 Message accepted for delivery"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--login", nargs=2, metavar=("USER", "PASSWORD"))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--starttls", action="store_true")
    mode.add_argument("--tls", action="store_true")
    parser.add_argument("--cert", nargs=2, metavar=("CERT", "KEY"))
    args = parser.parse_args()
    port = args.port or free_port()
    credentials = tuple(args.login) if args.login else None
    # AUTH over plain SMTP is what some tests mean to exercise (on loopback): no warning about it.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    def authenticate(server, session, envelope, mechanism, auth_data):
        given = (auth_data.login.decode(), auth_data.password.decode())
        if given == credentials:
            return AuthResult(success=True, auth_data=auth_data)
        # Not handled here: aiosmtpd answers 535 itself (handled=True would leave the client waiting).
        return AuthResult(success=False, handled=False)

    options = {}
    if credentials:
        options.update(authenticator=authenticate, auth_required=True, auth_require_tls=False)
    if args.starttls or args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*args.cert)
        if args.starttls:
            options.update(tls_context=context, require_starttls=True)
        else:
            options.update(ssl_context=context)
    controller = Controller(Sink(), hostname="127.0.0.1", port=port, **options)
    controller.start()
    print(port, flush=True)
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
