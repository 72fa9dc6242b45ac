"""A real SMTP server for coffer's email alert tests (aiosmtpd): every message received is
written to DIR as N.eml (the raw DATA, after a first line `MAIL FROM RCPT,RCPT`). Prints
`READY PORT` once it listens on 127.0.0.1.

usage: smtp_sink.py DIR
"""
import asyncio
import os
import socket
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, out):
        self.out = out
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        tmp = os.path.join(self.out, f".{self.n}.tmp")
        with open(tmp, "wb") as f:
            f.write(f"{envelope.mail_from} {','.join(envelope.rcpt_tos)}\n".encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(self.out, f"{self.n}.eml"))
        return "250 OK"


def main():
    out = sys.argv[1]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()

    def authenticator(server, session, envelope, mechanism, auth_data):
        # Any login is accepted; the login name is recorded (never the password).
        login = getattr(auth_data, "login", b"") or b""
        with open(os.path.join(out, "logins"), "ab") as f:
            f.write(bytes(login) + b"\n")
        return AuthResult(success=True)

    controller = Controller(
        Sink(out),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    print(f"READY {port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
