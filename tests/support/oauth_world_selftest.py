"""By-hand check of tests/support/oauth_world.py (not run by cargo test).

    /usr/bin/python3 tests/support/oauth_world_selftest.py

Starts the server several times with different options, drives every endpoint with
urllib and the SMTP side with smtplib and raw sockets, and at the end checks that no
token, secret or code seen during the run appears in any of the servers' stderr.
Needs the openssl command for the STARTTLS part (skipped without it). Prints one
line per check and exits non-zero on the first failure.
"""

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "oauth_world.py")
PYTHON = "/usr/bin/python3"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

SECRETS_SEEN = set()
STDERR_LOGS = []


def check(cond, what):
    if not cond:
        print(f"FAIL {what}", flush=True)
        sys.exit(1)
    print(f"ok   {what}", flush=True)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


class Server:
    def __init__(self, *extra, tmp):
        self.state = os.path.join(tmp, f"state-{secrets.token_hex(4)}")
        self.err_path = self.state + ".stderr"
        self.err = open(self.err_path, "wb")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [PYTHON, SCRIPT, "--host", "127.0.0.1", "--state-dir", self.state, *extra],
            stdout=subprocess.PIPE, stderr=self.err)
        line = self.proc.stdout.readline().decode()
        self.startup = time.monotonic() - started
        check(line.startswith("READY {") and line.endswith("}\n"), f"READY line: {line.strip()}")
        ports = json.loads(line[len("READY "):])
        self.http = ports["http"]
        self.smtp = ports["smtp"]
        STDERR_LOGS.append(self.err_path)

    def url(self, path):
        return f"http://127.0.0.1:{self.http}{path}"

    def request(self, method, path, body=None, ctype=None, headers=None):
        req = urllib.request.Request(self.url(path), data=body, method=method)
        if ctype:
            req.add_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with OPENER.open(req, timeout=60) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def form(self, path, fields, headers=None):
        for k, v in fields.items():
            if k in ("refresh_token", "client_secret", "device_code", "code", "code_verifier"):
                SECRETS_SEEN.add(v)
        status, hdrs, body = self.request(
            "POST", path, urllib.parse.urlencode(fields).encode(),
            "application/x-www-form-urlencoded", headers)
        if hdrs.get("Content-Type") != "application/json" or hdrs.get("Cache-Control") != "no-store":
            check(False, f"JSON+no-store on {path}")
        obj = json.loads(body)
        for k in ("access_token", "refresh_token", "device_code", "user_code"):
            if k in obj:
                SECRETS_SEEN.add(obj[k])
        return status, obj

    def token(self, **fields):
        fields.setdefault("client_id", "test-client")
        return self.form("/token", fields)

    def control(self, path, obj):
        status, _, body = self.request("POST", path, json.dumps(obj).encode(), "application/json")
        return status, json.loads(body)

    def stats(self):
        status, _, body = self.request("GET", "/stats")
        assert status == 200
        return json.loads(body)

    def stop(self):
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(5)
        check(rc == 0 and time.monotonic() - started < 1, f"SIGTERM exit {rc} promptly")
        self.err.close()


def xoauth2(user, token):
    SECRETS_SEEN.add(token)
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()


ERROR_JSON = b'{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}'


def raw_smtp(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")

    def reply():
        lines = []
        while True:
            line = f.readline().decode()
            lines.append(line.rstrip("\r\n"))
            if line[3:4] != "-":
                return lines

    def send(line):
        s.sendall(line.encode() + b"\r\n")
        return reply()

    reply()
    return s, send


def test_refresh_and_rotation(tmp):
    srv = Server("--rotate", tmp=tmp)
    check(srv.startup < 1.0, f"start-up in {srv.startup:.3f}s")
    st, obj = srv.token(grant_type="refresh_token", refresh_token="rt-initial")
    check(st == 200 and obj["token_type"] == "Bearer" and obj["expires_in"] == 3600
          and obj["scope"] == "https://mail.google.com/" and obj["refresh_token"] != "rt-initial",
          "refresh grant rotates")
    st, obj2 = srv.token(grant_type="refresh_token", refresh_token="rt-initial")
    check(st == 400 and obj2["error"] == "invalid_grant", "rotated-away token is invalid_grant")
    st, obj3 = srv.token(grant_type="refresh_token", refresh_token=obj["refresh_token"],
                         scope="x y")
    check(st == 200 and obj3["scope"] == "x y", "new refresh token works, scope echoed")
    check(srv.stats()["current_refresh_tokens"] == [obj3["refresh_token"]], "stats refresh tokens")
    st, _ = srv.control("/control", {"rotate": False})
    st, obj4 = srv.token(grant_type="refresh_token", refresh_token=obj3["refresh_token"])
    check(st == 200 and "refresh_token" not in obj4, "rotate off via /control")
    st, obj = srv.token(grant_type="refresh_token")
    check(st == 400 and obj["error"] == "invalid_request", "missing refresh_token")
    st, obj = srv.token(refresh_token="rt-dummy-q8v2k")
    check(st == 400 and obj["error"] == "unsupported_grant_type", "missing grant_type")
    st, obj = srv.token(grant_type="password")
    check(st == 400 and obj["error"] == "unsupported_grant_type", "unknown grant_type")
    st, obj = srv.form("/token", {"grant_type": "refresh_token", "refresh_token": "rt-initial"})
    check(st == 401 and obj["error"] == "invalid_client", "missing client_id")
    st, _, body = srv.request("POST", "/token", b'{"grant_type":"refresh_token"}', "application/json")
    check(st == 400 and json.loads(body)["error"] == "invalid_request", "JSON body refused")
    st, _, body = srv.request("POST", "/token", b"grant_type=refresh_token&grant_type=x",
                              "application/x-www-form-urlencoded")
    check(st == 400 and json.loads(body)["error"] == "invalid_request", "duplicate parameter")
    # modes
    srv.control("/control", {"mode": "invalid_grant"})
    st, obj = srv.token(grant_type="refresh_token", refresh_token=obj4.get("refresh_token", "rt-dummy-q8v2k"))
    check(st == 400 and obj["error"] == "invalid_grant", "mode invalid_grant")
    srv.control("/control", {"mode": "error_500"})
    st, obj = srv.token(grant_type="client_credentials")
    check(st == 500 and obj["error"] == "server_error", "mode error_500")
    st, obj = srv.form("/devicecode", {"client_id": "test-client", "scope": "s"})
    check(st == 500, "mode error_500 on /devicecode")
    st, answer = srv.control("/control", {"mode": "slow", "slow_seconds": 0.5})
    check(st == 200 and answer["mode"] == "slow", "control answer")
    t = time.monotonic()
    st, obj = srv.token(grant_type="refresh_token", refresh_token="rt-nope-7hw3z")
    check(st == 400 and time.monotonic() - t >= 0.5, "mode slow delays then answers")
    st, obj = srv.control("/control", {"mode": "fast"})
    check(st == 400, "bad mode refused")
    st, obj = srv.control("/control", {"expires": 3})
    check(st == 400, "unknown control key refused")
    srv.control("/control", {"mode": "normal"})
    s = srv.stats()
    check(s["token_requests"] == 13 and s["by_grant"]["refresh_token"] == 8
          and s["by_grant"]["unsupported"] == 4 and s["by_grant"]["client_credentials"] == 1,
          f"stats counts {s['by_grant']}")
    st, _, _ = srv.request("GET", "/nope")
    check(st == 404, "unknown path 404")
    srv.stop()


def test_confidential(tmp):
    srv = Server("--client-secret", "s3cret-value", "--client-id", "conf", tmp=tmp)
    SECRETS_SEEN.add("s3cret-value")
    st, obj = srv.token(grant_type="refresh_token", refresh_token="rt-initial", client_id="conf")
    check(st == 401 and obj["error"] == "invalid_client", "missing secret 401")
    st, obj = srv.token(grant_type="refresh_token", refresh_token="rt-initial", client_id="conf",
                        client_secret="wrong-secret-5tq")
    check(st == 401 and obj["error"] == "invalid_client", "wrong secret 401")
    basic = base64.b64encode(b"conf:s3cret-value").decode()
    st, obj = srv.form("/token", {"grant_type": "refresh_token", "refresh_token": "rt-initial"},
                       {"Authorization": "Basic " + basic})
    check(st == 200, "HTTP Basic client auth")
    st, obj = srv.form("/token", {"grant_type": "refresh_token", "refresh_token": "rt-initial",
                                  "client_secret": "s3cret-value"},
                       {"Authorization": "Basic " + basic})
    check(st == 400 and obj["error"] == "invalid_request", "Basic and form secret together")
    st, obj = srv.token(grant_type="client_credentials", client_id="conf",
                        client_secret="s3cret-value", scope="https://outlook.office365.com/.default")
    check(st == 200 and "refresh_token" not in obj, "client_credentials")
    st, obj = srv.token(grant_type="client_credentials", client_id="conf",
                        client_secret="s3cret-value", scope="https://outlook.office365.com/SMTP.Send")
    check(st == 400 and obj["error"] == "invalid_scope", "client_credentials scope")
    srv.stop()
    srv = Server(tmp=tmp)
    st, obj = srv.token(grant_type="client_credentials", scope="a/.default")
    check(st == 400 and obj["error"] == "unauthorized_client", "public client_credentials refused")
    srv.stop()


def test_device(tmp):
    srv = Server("--device-interval", "1", "--slow-down-step", "1", "--expires-in", "1", tmp=tmp)
    st, dc = srv.form("/devicecode", {"client_id": "test-client",
                                      "scope": "https://outlook.office.com/SMTP.Send offline_access"})
    check(st == 200 and dc["interval"] == 1 and dc["expires_in"] == 60
          and dc["verification_uri"] == f"http://127.0.0.1:{srv.http}/device"
          and dc["user_code"] in dc["message"] and len(dc["user_code"]) == 9, "devicecode")
    code = dc["device_code"]
    st, obj = srv.token(grant_type=DEVICE_GRANT, device_code=code)
    check(st == 400 and obj["error"] == "authorization_pending", "pending")
    st, obj = srv.token(grant_type=DEVICE_GRANT, device_code=code)
    check(st == 400 and obj["error"] == "slow_down", "slow_down")
    time.sleep(1.2)
    st, obj = srv.token(grant_type=DEVICE_GRANT, device_code=code)
    check(st == 400 and obj["error"] == "slow_down", "interval grew to 2 s (now 3 s)")
    time.sleep(3.05)
    st, obj = srv.token(grant_type=DEVICE_GRANT, device_code=code)
    check(st == 400 and obj["error"] == "authorization_pending", "pending after waiting")
    st, obj = srv.control("/device/approve", {"user_code": "nope"})
    check(st == 404, "approve unknown code")
    st, obj = srv.control("/device/approve", {"user_code": dc["user_code"].lower()})
    check(st == 200 and obj == {"approved": 1}, "approve")
    st, tok = srv.token(grant_type=DEVICE_GRANT, device_code=code)
    check(st == 200 and tok["refresh_token"] and tok["expires_in"] == 1, "device tokens")
    st, obj = srv.token(grant_type=DEVICE_GRANT, device_code=code)
    check(st == 400 and obj["error"] == "invalid_grant", "device code redeemed once")
    st, obj = srv.token(grant_type="refresh_token", refresh_token=tok["refresh_token"])
    check(st == 200, "device refresh token valid")
    st, dc2 = srv.form("/devicecode", {"client_id": "test-client", "scope": "s"})
    srv.control("/device/deny", {"user_code": dc2["user_code"]})
    st, obj = srv.token(grant_type=DEVICE_GRANT, device_code=dc2["device_code"])
    check(st == 400 and obj["error"] == "access_denied", "denied")
    st, obj = srv.form("/devicecode", {"client_id": "other", "scope": "s"})
    check(st == 401 and obj["error"] == "invalid_client", "devicecode unknown client")
    s = srv.stats()
    check(s["device_polls"] == 7 and s["slow_downs"] == 2, f"device stats {s}")
    st, hdrs, body = srv.request("GET", "/device")
    check(st == 200 and b"<html>" in body, "device page")
    srv.stop()
    srv = Server("--device-expires-in", "1", tmp=tmp)
    st, dc = srv.form("/devicecode", {"client_id": "test-client", "scope": "s"})
    time.sleep(1.1)
    st, obj = srv.token(grant_type=DEVICE_GRANT, device_code=dc["device_code"])
    check(st == 400 and obj["error"] == "expired_token", "expired device code")
    srv.stop()


def pkce():
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


def authorize(srv, **overrides):
    verifier, challenge = pkce()
    params = {"response_type": "code", "client_id": "test-client",
              "redirect_uri": "http://127.0.0.1:9/cb", "scope": "https://mail.google.com/",
              "state": "st4te x", "code_challenge": challenge, "code_challenge_method": "S256"}
    params.update(overrides)
    params = {k: v for k, v in params.items() if v is not None}
    st, hdrs, body = srv.request("GET", "/authorize?" + urllib.parse.urlencode(params))
    return st, hdrs, body, verifier


def test_pkce(tmp):
    srv = Server(tmp=tmp)
    st, hdrs, _, verifier = authorize(srv)
    loc = urllib.parse.urlsplit(hdrs.get("Location", ""))
    q = dict(urllib.parse.parse_qsl(loc.query))
    check(st == 302 and loc.netloc == "127.0.0.1:9" and loc.path == "/cb" and q["state"] == "st4te x",
          "authorize redirects")
    SECRETS_SEEN.add(q["code"])
    st, obj = srv.token(grant_type="authorization_code", code=q["code"],
                        redirect_uri="http://127.0.0.1:9/cb", code_verifier=verifier)
    check(st == 200 and obj["refresh_token"], "PKCE correct verifier")
    st, obj = srv.token(grant_type="authorization_code", code=q["code"],
                        redirect_uri="http://127.0.0.1:9/cb", code_verifier=verifier)
    check(st == 400 and obj["error"] == "invalid_grant", "code used once")
    st, hdrs, _, verifier = authorize(srv)
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(hdrs["Location"]).query))["code"]
    st, obj = srv.token(grant_type="authorization_code", code=code,
                        redirect_uri="http://127.0.0.1:9/cb", code_verifier=pkce()[0])
    check(st == 400 and obj["error"] == "invalid_grant", "PKCE wrong verifier")
    st, hdrs, _, verifier = authorize(srv, redirect_uri="http://localhost:8/x?a=1", state=None)
    check(st == 302 and hdrs["Location"].startswith("http://localhost:8/x?a=1&code=")
          and "state" not in hdrs["Location"], "redirect_uri with query, no state")
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(hdrs["Location"]).query))["code"]
    st, obj = srv.token(grant_type="authorization_code", code=code,
                        redirect_uri="http://localhost:8/y", code_verifier=verifier)
    check(st == 400 and obj["error"] == "invalid_grant", "redirect_uri mismatch")
    for bad, what in [({"code_challenge_method": "plain"}, "plain method"),
                      ({"code_challenge_method": None}, "no method"),
                      ({"code_challenge": None}, "no challenge"),
                      ({"client_id": "x"}, "unknown client"),
                      ({"redirect_uri": "https://127.0.0.1:9/cb"}, "https redirect"),
                      ({"redirect_uri": "http://example.com:9/cb"}, "remote redirect"),
                      ({"redirect_uri": "http://127.0.0.1/cb"}, "no port"),
                      ({"response_type": "token"}, "implicit")]:
        st, hdrs, body, _ = authorize(srv, **bad)
        check(st == 400 and "Location" not in hdrs and b"refused" in body, f"authorize refuses {what}")
    srv.stop()


def smtp_login(port, user, token, tls=False):
    c = smtplib.SMTP("127.0.0.1", port, timeout=10)
    c.ehlo("t")
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c.starttls(context=ctx)
        c.ehlo("t")
    code, msg = c.docmd("AUTH", "XOAUTH2 " + xoauth2(user, token))
    return c, code, msg


def test_smtp(tmp):
    srv = Server("--smtp", "--expires-in", "1", tmp=tmp)
    st, tok = srv.token(grant_type="refresh_token", refresh_token="rt-initial")
    short = tok["access_token"]
    srv.control("/control", {"expires_in": 3600})
    st, tok = srv.token(grant_type="refresh_token", refresh_token="rt-initial")
    good = tok["access_token"]

    c = smtplib.SMTP("127.0.0.1", srv.smtp, timeout=10)
    code, msg = c.ehlo("t")
    auth_line = [l for l in msg.decode().splitlines() if l.startswith("AUTH")]
    check(auth_line == ["AUTH XOAUTH2"], f"EHLO offers only XOAUTH2: {auth_line}")
    code, _ = c.docmd("MAIL", "FROM:<a@example.com>")
    check(code == 530, "MAIL before AUTH is 530")
    c.close()

    c, code, msg = smtp_login(srv.smtp, "agent@example.com", good)
    check(code == 235 and msg == b"2.7.0 Accepted", "XOAUTH2 good token")
    c.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\r\n\r\nbody\r\n")
    c.quit()
    eml = open(os.path.join(srv.state, "000001.eml"), "rb").read()
    check(eml.startswith(b"X-Mail-From: a@example.com\r\nX-Rcpt-To: b@example.com\r\n"
                         b"X-Auth-User: agent@example.com\r\nX-Auth-Token: " + good.encode()
                         + b"\r\nSubject: hi\r\n"), "eml headers")

    time.sleep(1.05)
    s, send = raw_smtp(srv.smtp)
    send("EHLO t")
    r1 = send("AUTH XOAUTH2 " + xoauth2("agent@example.com", short))
    check(r1 == ["334 " + base64.b64encode(ERROR_JSON).decode()], f"expired token: 334 json {r1}")
    r2 = send("")
    check(r2 == ["535 5.7.8 Username and Password not accepted"], f"then 535 {r2}")
    # no initial response
    r = send("AUTH XOAUTH2")
    check(r == ["334 "], "no initial response: 334 empty challenge")
    r = send(xoauth2("agent@example.com", good))
    check(r == ["235 2.7.0 Accepted"], "challenge-response path")
    s.close()

    s, send = raw_smtp(srv.smtp)
    send("EHLO t")
    r = send("AUTH XOAUTH2 " + xoauth2("other@example.com", good))
    check(r[0].startswith("334 ey"), "wrong user gets the error challenge")
    r = send("something")
    check(r == ["535 5.7.8 Username and Password not accepted"], "any line then 535")
    r = send("AUTH XOAUTH2 " + base64.b64encode(b"garbage").decode())
    send("")
    r = send("AUTH XOAUTH2 !!!")
    check(r[0].startswith("501"), "non-base64 initial response 501")
    s.close()

    st, obj = srv.control("/control", {"revoke_access_tokens": True})
    check(obj["revoked"] == 2, "revoke")
    c, code, msg = smtp_login(srv.smtp, "agent@example.com", good)
    check(code == 334, "revoked token refused")
    code, msg = c.docmd("")
    check(code == 535, "revoked: 535")
    c.close()
    s = srv.stats()
    check(s["smtp_auth_ok"] == 2 and s["smtp_auth_failed"] == 5 and s["messages"] == 1,
          f"smtp stats {s}")
    srv.stop()


def test_tls(tmp):
    if shutil.which("openssl") is None:
        print("skip STARTTLS (no openssl)")
        return
    cert = os.path.join(tmp, "cert.pem")
    key = os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    srv = Server("--smtp", "--cert", cert, "--key", key, tmp=tmp)
    st, tok = srv.token(grant_type="refresh_token", refresh_token="rt-initial")
    c = smtplib.SMTP("127.0.0.1", srv.smtp, timeout=10)
    c.ehlo("t")
    check(c.has_extn("starttls") and not c.has_extn("auth"), "STARTTLS offered, AUTH not yet")
    code, _ = c.docmd("AUTH", "XOAUTH2 " + xoauth2("agent@example.com", tok["access_token"]))
    check(code == 530, f"AUTH before TLS refused ({code})")
    c.close()
    c, code, msg = smtp_login(srv.smtp, "agent@example.com", tok["access_token"], tls=True)
    check(code == 235, "XOAUTH2 after STARTTLS")
    c.quit()
    srv.stop()
    bad = subprocess.run([PYTHON, SCRIPT, "--state-dir", os.path.join(tmp, "x"), "--smtp",
                          "--cert", key, "--key", key], capture_output=True, timeout=10)
    check(bad.returncode == 2 and bad.stdout == b"", "bad certificate: exit 2")


def main():
    tmp = tempfile.mkdtemp(prefix="oauth_world_selftest.")
    try:
        test_refresh_and_rotation(tmp)
        test_confidential(tmp)
        test_device(tmp)
        test_pkce(tmp)
        test_smtp(tmp)
        test_tls(tmp)
        logs = b"".join(open(p, "rb").read() for p in STDERR_LOGS)
        leaks = [s for s in SECRETS_SEEN if s and s.encode() in logs]
        if leaks:
            print("leaked:", leaks)
        check(not leaks and len(SECRETS_SEEN) > 20,
              f"no secret among {len(SECRETS_SEEN)} in {len(logs)} bytes of stderr")
        print("all checks passed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
