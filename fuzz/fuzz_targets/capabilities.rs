//! `Capabilities::from_ehlo` (and `helo_only`) on whatever a server could send, with every
//! accessor called and their answers checked against each other.
//!
//! The input is parsed as a stream of replies (each one becomes a `Capabilities`); the same
//! bytes are also split on LF into the lines of a hand-built `250` reply, which reaches line
//! contents the parser never produces (a CR inside a line, an empty first line...).

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpkit::proto::{Capabilities, Reply, ReplyCode, ReplyParser};

/// Keywords the client asks about, in several spellings.
const KEYWORDS: &[&str] = &[
    "PIPELINING",
    "pipelining",
    "STARTTLS",
    "8BITMIME",
    "SMTPUTF8",
    "ENHANCEDSTATUSCODES",
    "CHUNKING",
    "DSN",
    "SIZE",
    "size",
    "AUTH",
    "Auth",
    "",
    "AUTH=PLAIN",
];
const MECHANISMS: &[&str] = &["PLAIN", "plain", "LOGIN", "XOAUTH2", "CRAM-MD5", ""];

fn exercise(caps: &Capabilities) {
    let name = caps.server_name();
    assert!(
        !name.chars().any(char::is_whitespace),
        "server name {name:?}"
    );

    let mut keys = 0usize;
    for (keyword, params) in caps.iter() {
        keys += 1;
        assert!(caps.has(keyword), "listed keyword {keyword:?} is not `has`");
        assert_eq!(caps.params(keyword), Some(params), "params of {keyword:?}");
        assert!(!keyword.is_empty());
        assert!(!keyword.chars().any(char::is_whitespace));
        for p in params {
            // (`AUTH=` alone gives an empty first parameter; that is allowed here.)
            assert!(!p.chars().any(char::is_whitespace), "param {p:?}");
        }
        // Lookups ignore ASCII case.
        assert!(caps.has(&keyword.to_ascii_lowercase()));
    }
    for keyword in KEYWORDS {
        let has = caps.has(keyword);
        assert_eq!(has, caps.params(keyword).is_some());
        if has {
            assert!(keys > 0);
        }
    }

    assert_eq!(caps.pipelining(), caps.has("PIPELINING"));
    assert_eq!(caps.starttls(), caps.has("STARTTLS"));
    assert_eq!(caps.eight_bit_mime(), caps.has("8BITMIME"));
    assert_eq!(caps.smtputf8(), caps.has("SMTPUTF8"));
    assert_eq!(
        caps.enhanced_status_codes(),
        caps.has("ENHANCEDSTATUSCODES")
    );
    assert_eq!(caps.chunking(), caps.has("CHUNKING"));
    assert_eq!(caps.dsn(), caps.has("DSN"));
    assert_eq!(caps.size(), caps.has("SIZE"));
    if let Some(limit) = caps.size_limit() {
        assert!(limit > 0);
        assert!(caps.size());
    }

    let mechanisms = caps.auth_mechanisms();
    if !mechanisms.is_empty() {
        assert!(caps.has("AUTH"), "mechanisms {mechanisms:?} without AUTH");
    }
    for (i, m) in mechanisms.iter().enumerate() {
        assert!(!m.is_empty());
        assert_eq!(*m, m.to_ascii_uppercase(), "mechanism {m:?} is upper case");
        assert!(!mechanisms[..i].contains(m), "mechanism {m:?} listed twice");
        assert!(caps.supports_auth(m));
        assert!(caps.supports_auth(&m.to_ascii_lowercase()));
    }
    for m in MECHANISMS {
        let _ = caps.supports_auth(m);
    }

    let copy = caps.clone();
    assert_eq!(&copy, caps);
    let _ = format!("{caps:?}");
}

fn both(reply: &Reply) {
    let ehlo = Capabilities::from_ehlo(reply);
    exercise(&ehlo);
    let helo = Capabilities::helo_only(reply);
    exercise(&helo);
    assert_eq!(helo.server_name(), ehlo.server_name());
    assert_eq!(helo.iter().count(), 0);
    assert!(helo.auth_mechanisms().is_empty());
}

fuzz_target!(|input: &[u8]| {
    let mut parser = ReplyParser::new();
    parser.feed(input);
    while let Ok(Some(reply)) = parser.next_reply() {
        both(&reply);
    }

    let text = String::from_utf8_lossy(input);
    let lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    both(&Reply::new(ReplyCode::OK, lines));
});
