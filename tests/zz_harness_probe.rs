//! TEMPORARY harness probe (to be deleted).
mod support;

use std::time::{Duration, Instant};

use smtpkit::client::{
    ClientOptions, Connection, Credentials, Envelope, Security, TlsConnector, TlsSettings,
};
use smtpkit::proto::{Address, ClientName, Secret};
use support::certs::{Leaf, TestPki};
use support::postfix_smtpd::{instance_processes, PostfixSmtpd};
use support::real_servers::{AioSmtpdTls, AioTlsMode};

fn opts(pki: &TestPki, security: Security, user: &str, pw: &str) -> ClientOptions {
    ClientOptions {
        client_name: Some(ClientName::new("client.test").unwrap()),
        security,
        tls: Some(
            TlsConnector::new(&TlsSettings {
                skip_verify: false,
                ca_file: Some(pki.ca_file.clone()),
            })
            .unwrap(),
        ),
        tls_server_name: Some("localhost".into()),
        credentials: Some(Credentials::new(user, Secret::new(pw)).unwrap()),
        ..ClientOptions::default()
    }
}

async fn send(port: u16, o: ClientOptions) -> Result<(), String> {
    let mut c = Connection::connect("127.0.0.1", port, o)
        .await
        .map_err(|e| e.to_string())?;
    let env = Envelope::new(
        Address::new("s@example.com").unwrap(),
        vec![
            Address::new("r1@example.org").unwrap(),
            Address::new("r2@example.net").unwrap(),
        ],
    )
    .unwrap();
    c.send_mail(&env, b"Subject: smtpkit probe\r\n\r\nhello\r\n.dot\r\n")
        .await
        .map_err(|e| e.to_string())?;
    c.quit().await.map_err(|e| e.to_string())?;
    Ok(())
}

#[tokio::test]
async fn probe_aiosmtpd() {
    let pki = TestPki::new();
    let (cert, key) = pki.write_leaf_pem(Leaf::Valid);
    for (mode, sec) in [
        (AioTlsMode::StartTls, Security::StartTls),
        (AioTlsMode::Implicit, Security::Tls),
    ] {
        let Some(s) = AioSmtpdTls::start(
            "probe_aiosmtpd",
            mode,
            &cert,
            &key,
            "alice@example.com",
            "pw 1",
        ) else {
            return;
        };
        send(s.port, opts(&pki, sec, "alice@example.com", "pw 1"))
            .await
            .unwrap();
        let err = send(s.port, opts(&pki, sec, "alice@example.com", "bad"))
            .await
            .unwrap_err();
        eprintln!("aiosmtpd {mode:?} wrong pw: {err}");
        let m = s.wait_for_messages(1, Duration::from_secs(5));
        assert_eq!(m.len(), 1);
        eprintln!("{:?}", m[0]);
    }
}

#[tokio::test]
async fn probe_postfix() {
    let pki = TestPki::new();
    let (cert, key) = pki.write_leaf_pem(Leaf::Valid);
    let t = Instant::now();
    let Some(p) = PostfixSmtpd::start("probe_postfix", &cert, &key, "alice@example.com", "pw 1")
    else {
        return;
    };
    eprintln!("postfix start {:?}", t.elapsed());
    send(
        p.smtp_port,
        opts(&pki, Security::StartTls, "alice@example.com", "pw 1"),
    )
    .await
    .unwrap();
    send(
        p.smtps_port,
        opts(&pki, Security::Tls, "alice@example.com", "pw 1"),
    )
    .await
    .unwrap();
    let err = send(
        p.smtp_port,
        opts(&pki, Security::StartTls, "alice@example.com", "bad"),
    )
    .await
    .unwrap_err();
    eprintln!("postfix wrong pw: {err}");
    let m = p.wait_for_messages(2, Duration::from_secs(5));
    assert_eq!(m.len(), 2, "{}", p.maillog());
    eprintln!("{:?}", m[0]);
    let dir = p.config_dir().to_path_buf();
    drop(p);
    assert!(instance_processes(&dir).is_empty());
}
