#!/usr/bin/env python3
"""Writes the committed seed inputs, fuzz/corpus/<target>/seed-*. Run from anywhere."""
import os
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
def w(target, name, data):
    if isinstance(data, str): data = data.encode()
    p = os.path.join(root, target, 'seed-' + name)
    with open(p, 'wb') as f: f.write(data)

GMAIL_EHLO = (b"250-smtp.gmail.com at your service, [203.0.113.9]\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n"
              b"250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n")
POSTFIX_EHLO = (b"250-mail.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n"
                b"250-AUTH PLAIN LOGIN\r\n250-AUTH=PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n")
R354 = b"354 End data with <CR><LF>.<CR><LF>\r\n"
R550 = (b"550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
        b"550-5.1.1 double-checking the recipient's email address for typos or\r\n"
        b"550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser x1-20020a.1 - gsmtp\r\n")
PIPELINED = (b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <two@other.example>: Recipient address rejected: User unknown\r\n"
             + R354)

# reply_parser: header byte (low nibble = number of chunk-size bytes, bit 7 = repeat), sizes, data
w('reply_parser', 'gmail-ehlo', bytes([0x02, 7, 1]) + GMAIL_EHLO)
w('reply_parser', 'postfix-ehlo', bytes([0x00]) + POSTFIX_EHLO)
w('reply_parser', '354', bytes([0x01, 3]) + R354)
w('reply_parser', '550-multiline', bytes([0x03, 1, 40, 0]) + R550)
w('reply_parser', 'pipelined', bytes([0x01, 20]) + PIPELINED + b"250 2.0.0 Ok: queued as 4Xk2Lz0bJHz\r\n221 2.0.0 Bye\n")
w('reply_parser', 'big-multiline', bytes([0xF1, 0xC4]) + b"250-" + b"y" * 600 + b"\r\n")
w('reply_parser', 'bad-and-partial', bytes([0x02, 2, 5]) + b"220 mx ESMTP\n421 4.7.0 Try again later\r\n250-PIPE")

# capabilities: raw reply bytes
w('capabilities', 'gmail-ehlo', GMAIL_EHLO)
w('capabilities', 'postfix-ehlo', POSTFIX_EHLO)
w('capabilities', 'exchange-ehlo',
  b"250-outlook.office365.com Hello [198.51.100.7]\r\n250-SIZE 157286400\r\n250-PIPELINING\r\n250-DSN\r\n"
  b"250-ENHANCEDSTATUSCODES\r\n250-AUTH LOGIN XOAUTH2\r\n250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n250 SMTPUTF8\r\n")
w('capabilities', 'odd-ehlo', b"250-mx\r\n250-auth=login plain\r\n250-SIZE 0\r\n250-x-foo bar  baz\r\n250 AUTH=\r\n")

# dot_stuffer: header byte (low nibble = number of chunk-size bytes), sizes, body
w('dot_stuffer', 'message', bytes([0x00]) + b"Subject: hi\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend")
w('dot_stuffer', 'bare-line-ends', bytes([0x02, 1, 3]) + b"a\nb\r\n.\n.\r.\r\nlast\r")
w('dot_stuffer', 'terminator-split', bytes([0x03, 0, 1, 2]) + b"\r\n.\r\n\r\r\n\n.")
w('dot_stuffer', 'empty', bytes([0x00]))

# config: YAML
SPEC = '''version: "1.0"
providers:
  email:
    name: Email Notifications
    description: SMTP email provider
    provider: email
    enabled: true
    config:
      platform: smtp
      host: smtp.example.com
      port: 587
      user: ${SMTP_USER}
      pass: ${SMTP_PASSWORD:-secret}
      from: Notifier <noreply@example.com>
      security: starttls
      timeouts: {connect: 30s, command: 5m, data_end: 500ms}
      pool: {max_connections: 4, idle_timeout: 30s}
      retry: {attempts: 3, initial_backoff: 1s, max_backoff: 60s}
      rate_limit: {per_day: 500}
      fallback: [backup]
  backup:
    provider: email.smtp
    enabled: false
    config:
      host: 127.0.0.1
      port: 2525
      auth: none
      from: noreply@example.com
  chat:
    provider: slack
workflows:
  - name: access-approval
    steps:
      - task: notify
        type: email
        config:
          provider: [email, backup]
          subject: "Access Request Approval Required"
          to:
            - approver@example.com
          cc: [Boss <boss@example.com>]
          body:
            text: "A new access request requires your approval."
            html: "<h2>Access Request</h2><p>Approve it.</p>"
      - task: log
        type: stdout
'''
w('config', 'spec', SPEC)
w('config', 'placeholders', '''providers:
  email-gmail:
    provider: email
    config:
      host: smtp.gmail.com
      port: 465
      user: <your-gmail-address>
      pass: <your-app-password>
      from: <your-gmail-address>
      tls_skip_verify: true
''')
w('config', 'anchors', '''version: 1
providers:
  a: &p
    provider: email.smtp
    config: {host: h, port: "${PORT:-25}", user: u, pass: $$p, from: a@b.c, helo_name: client.example}
  b: *p
''')

# client_session: flags, second byte, chunk sizes, server bytes
GREET = b"220 mx.fuzz.example ESMTP Postfix\r\n"
OK_TAIL = b"250 2.0.0 Ok: queued as 4Xk2Lz0bJHz\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n"
EHLO_P = (b"250-mx.fuzz.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
          b"250-AUTH PLAIN LOGIN XOAUTH2\r\n250-ENHANCEDSTATUSCODES\r\n250 SMTPUTF8\r\n")
w('client_session', 'postfix-pipelined', bytes([0x08, 0x00]) + GREET + EHLO_P +
  b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n" + R354 + OK_TAIL)
w('client_session', 'auth-login', bytes([0x81, 0x02, 0x10]) + GREET + EHLO_P +
  b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n"
  b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n" + R354 + OK_TAIL)
w('client_session', 'gmail-lockstep-rejected', bytes([0x72, 0x00, 1, 7]) +
  b"220 smtp.gmail.com ESMTP x1-20020a.1 - gsmtp\r\n"
  b"250-smtp.gmail.com at your service\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
  b"250 2.1.0 OK x1-20020a.1 - gsmtp\r\n250 2.1.5 OK x1-20020a.1 - gsmtp\r\n" + R550 +
  b"354  Go ahead x1-20020a.1 - gsmtp\r\n250 2.0.0 OK  1700000000 x1-20020a.1 - gsmtp\r\n"
  b"250 2.0.0 OK\r\n221 2.0.0 closing connection x1-20020a.1 - gsmtp\r\n")
w('client_session', 'helo-fallback', bytes([0x08, 0x00]) + GREET +
  b"502 5.5.2 Error: command not recognized\r\n250 mx.fuzz.example\r\n"
  b"250 ok\r\n550 no\r\n550 no\r\n250 reset\r\n250 ok\r\n221 bye\r\n")
w('client_session', 'greeting-554', bytes([0x08, 0x00]) + b"554 5.7.1 No SMTP service here\r\n221 2.0.0 Bye\r\n")
w('client_session', 'batch-pipelined', bytes([0x0a, 0x04, 30, 0xC0]) + GREET + EHLO_P +
  b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n" + R354 +
  b"250 2.0.0 Ok: queued as AAA111\r\n250 2.1.0 Ok\r\n550 5.1.1 no such user\r\n554 5.5.1 No valid recipients\r\n"
  b"250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n" + R354 +
  b"250 2.0.0 Ok: queued as CCC333\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n")
w('client_session', 'pipelined-421', bytes([0x09, 0x08, 0x20]) + GREET + EHLO_P +
  b"250 2.1.0 Ok\r\n421 4.7.0 Too many errors, closing\r\n")

# client_bdat: flags, second byte, chunk sizes, server bytes (flag 0x80: built-in greeting + EHLO
# with PIPELINING and CHUNKING). Second byte 0xC1: 4 messages, 2 in flight, chunks of 1 octet.
BDAT_OK = b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
w('client_bdat', 'window-all-accepted', bytes([0x88, 0xFD]) +
  BDAT_OK + b"250 2.0.0 Ok: queued as A1\r\n" +
  b"250 2.0.0 Ok\r\n" + BDAT_OK + b"250 2.0.0 Ok: queued as B2\r\n" +
  b"250 2.0.0 Ok\r\n" + BDAT_OK + b"250 2.0.0 Ok: queued as C3\r\n" +
  b"250 2.0.0 Ok\r\n" + BDAT_OK + b"250 2.0.0 Ok: queued as D4\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n")
w('client_bdat', 'rcpt-refused-then-421', bytes([0x89, 0x43, 7]) +
  b"250 2.1.0 Ok\r\n550 5.1.1 unknown\r\n550 5.1.1 unknown\r\n554 5.5.1 Error: no valid recipients\r\n"
  b"250 2.0.0 Ok\r\n250 2.1.0 Ok\r\n421 4.3.2 shutting down\r\n")
w('client_bdat', 'gate-refuses-second', bytes([0xB8, 0x7F]) +
  BDAT_OK + b"250 2.0.0 Ok: queued as A1\r\n")
w('client_bdat', 'multi-chunk-refused', bytes([0x88, 0x04]) +
  b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 5 octets\r\n552 5.3.4 too big\r\n"
  b"554 5.5.0 earlier chunk failed\r\n")
