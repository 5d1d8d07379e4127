//! tls-resume-probe: smtpkit's first (full) vs resumed TLS handshake, measured by smtpkit
//! itself (`TlsInfo::handshake`, ClientHello to the handshake's end; `TlsInfo::resumed`).
//!
//! `smtpkit bench --security tls` opens its C sessions all at once, before any of them has a
//! session ticket, so its sessions never resume (its JSON shows 0 resumed handshakes). This
//! opens `--sessions` implicit-TLS sessions one after another (connect, EHLO, QUIT), twice:
//! * `shared`: one `TlsConnector` for all of them (as a pool's sessions share one): the first
//!   is a full handshake, the later ones can resume;
//! * `fresh`: a new `TlsConnector` per session: every handshake is full.
//!
//! usage: tls-resume-probe --host H --port P --ca-file PEM [--sessions N]
//! Prints one JSON line. Exit 75 when a session failed.

use std::process::ExitCode;
use std::time::Duration;

use smtpkit::client::{ClientOptions, Connection, Security, TlsConnector, TlsSettings};
use smtpkit::proto::ClientName;

fn median_ms(v: &mut [Duration]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[v.len() / 2].as_secs_f64() * 1e3)
}

fn js(v: Option<f64>) -> String {
    v.map_or_else(|| "null".to_owned(), |x| format!("{x:.3}"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut host = String::new();
    let mut port = 0u16;
    let mut ca_file = None;
    let mut sessions = 20usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--host" => host = v,
            "--port" => port = v.parse().unwrap_or(0),
            "--ca-file" => ca_file = Some(std::path::PathBuf::from(v)),
            "--sessions" => sessions = v.parse().unwrap_or(0),
            _ => {
                eprintln!("usage: tls-resume-probe --host H --port P --ca-file PEM [--sessions N]");
                return ExitCode::from(64);
            }
        }
    }
    if host.is_empty() || port == 0 || sessions == 0 {
        eprintln!("--host, --port and --sessions >= 1 are required");
        return ExitCode::from(64);
    }
    let settings = TlsSettings { skip_verify: false, ca_file };
    let mut failures = 0usize;
    let mut first_error: Option<String> = None;
    // (mode, first handshake, later full handshakes, later resumed handshakes)
    let mut out = Vec::new();
    for mode in ["shared", "fresh"] {
        let shared = match TlsConnector::new(&settings) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("tls: {}", e.message());
                return ExitCode::from(78);
            }
        };
        let mut first: Option<(bool, Duration)> = None;
        let (mut full, mut resumed) = (Vec::new(), Vec::new());
        // Bounded: `sessions` connections per mode, one after another.
        for _ in 0..sessions {
            let tls = if mode == "shared" {
                shared.clone()
            } else {
                match TlsConnector::new(&settings) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("tls: {}", e.message());
                        return ExitCode::from(78);
                    }
                }
            };
            let options = ClientOptions {
                security: Security::Tls,
                tls_server_name: Some(host.clone()),
                tls: Some(tls),
                client_name: ClientName::new("probe.smtpkit.test").ok(),
                ..ClientOptions::default()
            };
            match Connection::connect(&host, port, options).await {
                Ok(c) => {
                    if let Some(info) = c.tls_info() {
                        let h = (info.resumed, info.handshake);
                        if first.is_none() {
                            first = Some(h);
                        } else if h.0 {
                            resumed.push(h.1);
                        } else {
                            full.push(h.1);
                        }
                    }
                    let _ = c.quit().await;
                }
                Err(e) => {
                    failures += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        out.push((mode, first, full, resumed));
    }
    let parts: Vec<String> = out
        .into_iter()
        .map(|(mode, first, mut full, mut resumed)| {
            format!(
                "\"{mode}\":{{\"first_resumed\":{},\"first_ms\":{},\"later_full\":{},\"later_full_median_ms\":{},\
                 \"later_resumed\":{},\"later_resumed_median_ms\":{}}}",
                first.map_or("null".to_owned(), |f| f.0.to_string()),
                js(first.map(|f| f.1.as_secs_f64() * 1e3)),
                full.len(),
                js(median_ms(&mut full)),
                resumed.len(),
                js(median_ms(&mut resumed)),
            )
        })
        .collect();
    println!(
        "{{\"sessions\":{sessions},{},\"failures\":{failures},\"first_error\":{}}}",
        parts.join(","),
        first_error.map_or("null".to_owned(), |e| format!("{:?}", e)),
    );
    if failures > 0 {
        ExitCode::from(75)
    } else {
        ExitCode::SUCCESS
    }
}
