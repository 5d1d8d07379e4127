"""aiosmtpd server with TLS and AUTH, started by `AioSmtpdTls` in tests/support/real_servers.rs.

Run it with Debian's python (package python3-aiosmtpd), e.g.::

    /usr/bin/python3 tests/support/aiosmtpd_server.py --host 127.0.0.1 --port 2525 \
        --cert cert.pem --key key.pem --mode starttls --user alice --password secret \
        --maildir /tmp/mail

Modes:

* ``starttls``: plain listener; EHLO offers STARTTLS, every command other than
  EHLO/HELO/NOOP/QUIT/STARTTLS is refused with 530 until STARTTLS was done
  (``require_starttls=True``), AUTH is only offered and accepted over TLS
  (``auth_require_tls=True``).
* ``implicit``: TLS from the first byte (the listening socket has the SSL context);
  STARTTLS is not offered, AUTH is offered right away.

In both modes AUTH offers PLAIN and LOGIN, accepts only --user/--password
(anything else gets ``535 5.7.8``), and ``auth_required=True`` makes MAIL before
AUTH fail with ``530 5.7.0 Authentication required``.

Each accepted message is written to --maildir as ``<n>.eml`` where ``<n>`` is a
6-digit zero-padded counter starting at 000001 (so names sort in arrival order).
The file is written under a temporary name and renamed into place, so a
``.eml`` file is always complete. Its content is::

    X-Mail-From: <reverse path as given, may be empty>\\r\\n
    X-Rcpt-To: <rcpt 1>, <rcpt 2>\\r\\n
    <the DATA content exactly as received, dot-unstuffed, CRLF line endings>

Once the listener is bound the script prints ``READY host:port`` on stdout
(flushed). It runs until killed. Errors at start-up (bad certificate, port in
use) make it exit with status 2 and a message on stderr.
"""

import argparse
import asyncio
import logging
import os
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True, help="certificate (chain) PEM file")
    p.add_argument("--key", required=True, help="private key PEM file (PKCS#8, PKCS#1 or SEC1)")
    p.add_argument("--mode", choices=["starttls", "implicit"], required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--maildir", default=None, help="directory for <n>.eml files")
    p.add_argument("--hostname", default="localhost",
                   help="name in the greeting and EHLO reply (default localhost; "
                        "avoids a DNS lookup of the machine's FQDN)")
    p.add_argument("--verbose", action="store_true", help="aiosmtpd debug logging to stderr")
    return p.parse_args(argv)


class Authenticator:
    """Accepts exactly one user name / password pair, for any mechanism."""

    def __init__(self, user, password):
        self.user = user.encode("utf-8")
        self.password = password.encode("utf-8")

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == self.user
            and auth_data.password == self.password
        )
        if ok:
            print(f"AUTH OK {mechanism} {self.user.decode('utf-8', 'replace')}", flush=True)
            return AuthResult(success=True, auth_data=auth_data.login)
        print(f"AUTH FAILED {mechanism}", flush=True)
        return AuthResult(success=False, handled=False)


class MaildirHandler:
    """Writes every message to <maildir>/<n>.eml (temp file + rename)."""

    def __init__(self, maildir):
        self.maildir = maildir
        self.counter = 0
        if maildir is not None:
            os.makedirs(maildir, exist_ok=True)
            for name in os.listdir(maildir):
                stem, ext = os.path.splitext(name)
                if ext == ".eml" and stem.isdigit():
                    self.counter = max(self.counter, int(stem))

    async def handle_DATA(self, server, session, envelope):
        content = envelope.original_content
        if content is None:
            content = envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        mail_from = envelope.mail_from if envelope.mail_from is not None else ""
        header = (
            f"X-Mail-From: {mail_from}\r\n"
            f"X-Rcpt-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode("utf-8", "surrogateescape")
        self.counter += 1
        n = self.counter
        if self.maildir is not None:
            final = os.path.join(self.maildir, f"{n:06d}.eml")
            tmp = os.path.join(self.maildir, f".{n:06d}.eml.tmp")
            with open(tmp, "wb") as f:
                f.write(header)
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        print(
            f"MESSAGE {n} from=<{mail_from}> rcpts={len(envelope.rcpt_tos)} bytes={len(content)}",
            flush=True,
        )
        return "250 OK message accepted"


def server_context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(certfile=cert, keyfile=key)
    return ctx


async def serve(args):
    loop = asyncio.get_running_loop()
    try:
        ctx = server_context(args.cert, args.key)
    except (OSError, ssl.SSLError) as e:
        print(f"cannot load certificate/key ({args.cert}, {args.key}): {e}", file=sys.stderr, flush=True)
        sys.exit(2)

    handler = MaildirHandler(args.maildir)
    authenticator = Authenticator(args.user, args.password)
    implicit = args.mode == "implicit"

    def factory():
        if implicit:
            # The transport is TLS already; aiosmtpd only knows about STARTTLS-TLS, so
            # auth_require_tls must be off (it would answer 538 otherwise) and no
            # tls_context is passed (that would offer STARTTLS inside TLS).
            return SMTP(
                handler,
                hostname=args.hostname,
                auth_required=True,
                auth_require_tls=False,
                authenticator=authenticator,
                loop=loop,
            )
        return SMTP(
            handler,
            hostname=args.hostname,
            tls_context=ctx,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=authenticator,
            loop=loop,
        )

    try:
        server = await loop.create_server(
            factory,
            host=args.host,
            port=args.port,
            ssl=ctx if implicit else None,
            reuse_address=True,
        )
    except OSError as e:
        print(f"cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr, flush=True)
        sys.exit(2)

    print(f"READY {args.host}:{args.port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # "Requiring AUTH while not requiring TLS" is emitted for implicit mode, where the
    # whole connection is TLS; it does not apply.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if not args.verbose:
        # aiosmtpd logs the auth_required/auth_require_tls combination as a warning too.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
