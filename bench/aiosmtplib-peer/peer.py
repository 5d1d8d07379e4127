"""aiosmtplib-peer: the aiosmtplib side of smtpkit's throughput comparison (bench/compare.sh).

usage: peer.py --host H --port P [--count N] [--concurrency C] [--size BYTES] [--tls --ca-file PEM]

C connections (aiosmtplib.SMTP, one per asyncio task, opened once and reused), each taking
messages from a shared counter until --count are gone (so each sends its share), then QUIT.
The message is a prebuilt raw message of exactly --size bytes (the same generator as
lettre-peer and nodemailer-peer), sent with SMTP.sendmail(sender, [rcpt], bytes).
--tls: implicit TLS (use_tls=True) with an ssl context trusting --ca-file.

Prints one JSON line: sent, failed, seconds, msgs_per_sec, cpu_us_per_msg (process CPU),
mode, concurrency, size, first_error. Exit 75 when a message failed, 64 on bad arguments.
Runs in the venv made from requirements.txt (bench/compare.sh makes it); not a dependency of
smtpkit.
"""

import argparse
import asyncio
import json
import ssl
import sys
import time

import aiosmtplib

SENDER = "peer@aiosmtplib-peer.test"
RCPT = "sink@aiosmtplib-peer.test"


def make_message(size: int) -> bytes:
    m = bytearray(
        b"From: <peer@aiosmtplib-peer.test>\r\nTo: <sink@aiosmtplib-peer.test>\r\n"
        b"Subject: aiosmtplib-peer bench\r\nMessage-ID: <1@aiosmtplib-peer.test>\r\n\r\n"
    )
    fill = ord("a")
    while len(m) + 78 <= size:
        m += bytes([fill]) * 76 + b"\r\n"
        fill = ord("a") if fill == ord("z") else fill + 1
    rest = size - len(m)
    if rest >= 2:
        m += b"q" * (rest - 2) + b"\r\n"
    assert len(m) == size, (len(m), size)
    return bytes(m)


async def run(o) -> dict:
    message = make_message(o.size)
    tls_context = None
    if o.tls:
        tls_context = ssl.create_default_context(cafile=o.ca_file)
    remaining = [o.count]
    out = {"sent": 0, "failed": 0, "first_error": None}

    def note(e):
        out["failed"] += 1
        if out["first_error"] is None:
            out["first_error"] = f"{type(e).__name__}: {e}"

    async def worker():
        smtp = None
        # Bounded: one ticket per turn, --count tickets in all.
        while remaining[0] > 0:
            remaining[0] -= 1
            try:
                if smtp is None or not smtp.is_connected:
                    smtp = aiosmtplib.SMTP(
                        hostname=o.host,
                        port=o.port,
                        use_tls=o.tls,
                        start_tls=False,
                        tls_context=tls_context,
                        local_hostname="aiosmtplib-peer.test",
                        timeout=30,
                    )
                    await smtp.connect()
                await smtp.sendmail(SENDER, [RCPT], message)
                out["sent"] += 1
            except Exception as e:  # every failure counts, the run goes on
                note(e)
        if smtp is not None and smtp.is_connected:
            try:
                await smtp.quit()
            except Exception:
                pass

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(o.concurrency)))
    secs = max(time.perf_counter() - t0, 1e-9)
    cpu = time.process_time() - cpu0
    return {
        "sent": out["sent"],
        "failed": out["failed"],
        "seconds": secs,
        "msgs_per_sec": out["sent"] / secs,
        "cpu_us_per_msg": cpu * 1e6 / out["sent"] if out["sent"] else None,
        "mode": "conn-tls" if o.tls else "conn",
        "concurrency": o.concurrency,
        "size": len(message),
        "aiosmtplib": aiosmtplib.__version__,
        "python": sys.version.split()[0],
        "first_error": out["first_error"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca-file")
    try:
        o = p.parse_args()
    except SystemExit as e:
        return 64 if e.code else 0
    if o.count < 1 or o.concurrency < 1 or o.size < 200:
        print("--count and --concurrency must be >= 1, --size >= 200", file=sys.stderr)
        return 64
    r = asyncio.run(run(o))
    print(json.dumps(r), flush=True)
    return 75 if r["failed"] or not r["sent"] else 0


if __name__ == "__main__":
    sys.exit(main())
