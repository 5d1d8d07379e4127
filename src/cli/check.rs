//! `smtpkit check`: walk (proxy →) connect → TLS → EHLO → AUTH → QUIT and explain what fails.
//!
//! The walk, each step with its verdict (the failing one with its hint), is the command's
//! result and goes to stdout; a configuration error, the transcript and warnings go to stderr.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use smtpkit::client::{AttemptOutcome, Connection, Greeted, Security, TlsInfo};
use smtpkit::provider::{Config, Mailer};
use smtpkit::Error;

use super::exit;
use super::output::Failure;

/// Check a provider step by step: connect, TLS, EHLO, AUTH, QUIT.
#[derive(Args, Debug)]
#[command(after_help = "Example:
  smtpkit check --config smtpkit.yaml --provider email-gmail")]
pub struct CheckArgs {
    /// Configuration file(s) in the provider YAML format.
    #[arg(long, required = true, value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Provider to check (default: the only enabled one).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Longest wait for any one step, e.g. 20s (the configured timeouts apply if shorter).
    #[arg(long, default_value = "20s", value_parser = smtpkit::provider::parse_duration)]
    pub step_timeout: Duration,
    /// Print the SMTP conversation to stderr (secrets redacted).
    #[arg(long)]
    pub transcript: bool,
}

fn ok(step: &str, detail: impl AsRef<str>) {
    out!("  ✓ {step:<12} {}", detail.as_ref());
}

fn fail(step: &str, err: &Error) -> u8 {
    out!("  ✗ {step:<12} {err}");
    if let Some(hint) = err.hint() {
        out!("    hint: {hint}");
    }
    exit::for_error(err)
}

/// `YYYY-MM-DD` of a Unix timestamp (proleptic Gregorian calendar).
fn date(timestamp: i64) -> String {
    let days = timestamp.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn print_tls(step: &str, info: &TlsInfo) {
    let mut detail = format!("{} {}", info.protocol, info.cipher_suite);
    if !info.verified {
        detail.push_str(" (certificate NOT verified: tls_skip_verify is set)");
    }
    ok(step, detail);
    if let Some(cert) = info.certificate_summary() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let days = (cert.not_after - now).div_euclid(86_400);
        let expiry = if days < 0 {
            format!("EXPIRED {} days ago", -days)
        } else {
            format!("in {days} days")
        };
        ok(
            "certificate",
            format!("{}; issued by {}", cert.subject, cert.issuer),
        );
        ok(
            "",
            format!(
                "valid {} to {} ({expiry}); names: {}",
                date(cert.not_before),
                date(cert.not_after),
                cert.names.join(", ")
            ),
        );
    }
}

fn capabilities_line(conn: &Connection) -> String {
    let caps: Vec<String> = conn
        .capabilities()
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.to_owned()
            } else {
                format!("{k} {}", v.join(" "))
            }
        })
        .collect();
    let name = conn.capabilities().server_name();
    if caps.is_empty() {
        format!("{name}: no extensions")
    } else {
        format!("{name}: {}", caps.join(", "))
    }
}

/// Gets an access token as the sessions will (the same shared source, so AUTH then uses it)
/// and shows where it came from and how long it lasts; never the token.
async fn token_step(
    settings: &smtpkit::provider::SmtpSettings,
    oauth2: &smtpkit::oauth::OAuth2Settings,
    step_timeout: Duration,
) -> Result<(), Error> {
    let user = settings.user.as_deref().unwrap_or_default();
    let timeout = settings.timeouts.command.min(step_timeout);
    let source = smtpkit::oauth::TokenSource::shared(
        oauth2.clone(),
        user,
        settings.ca_file.clone(),
        timeout,
    )?;
    source.access_token().await?;
    let status = source.status();
    let lifetime = match status.lifetime {
        Some(l) => format!("expires in {} s", l.as_secs()),
        None => "expiry not given by the endpoint".to_owned(),
    };
    ok(
        "token",
        format!(
            "{} grant at {} ({}): {lifetime}",
            status.grant.name(),
            status.token_url,
            oauth2.provider.name()
        ),
    );
    Ok(())
}

pub async fn run(args: CheckArgs) -> u8 {
    // A configuration error is a diagnostic like any other command's: stderr, stdout empty.
    let config = match Config::from_files(&args.config) {
        Ok(c) => c,
        Err(e) => return Failure::config_error(&e).report(false),
    };
    let mailer = match Mailer::new(&config, args.provider.as_deref()) {
        Ok(m) => m,
        Err(e) => return Failure::config_error(&e).report(false),
    };
    let settings = mailer.settings();
    let mut options = mailer.client_options().clone();
    for t in [
        &mut options.timeouts.connect,
        &mut options.timeouts.greeting,
        &mut options.timeouts.command,
    ] {
        *t = (*t).min(args.step_timeout);
    }
    if args.transcript {
        options.transcript = Some(super::output::stderr_transcript());
    }
    let security = settings.security.resolve(settings.port);
    let mode = match security {
        Security::Tls => "implicit TLS",
        Security::StartTls => "STARTTLS required",
        _ => "plain text, security: none",
    };
    out!(
        "Checking provider {} at {}:{} ({mode})",
        mailer.provider(),
        settings.host,
        settings.port
    );

    let started = Instant::now();
    let proxy = options.proxy.clone();
    let credentials = options.credentials.clone();
    let mechanism = options.auth_mechanism;
    let opened = match security {
        Security::Tls => Greeted::open_tls(&settings.host, settings.port, options).await,
        _ => Greeted::open(&settings.host, settings.port, options).await,
    };
    // Through a proxy, its own step: reached, and the tunnel to the server opened.
    let proxy_step = |proxy: &smtpkit::client::Proxy| {
        ok(
            "proxy",
            format!(
                "connected to {proxy}; tunnel to {}:{} open",
                settings.host, settings.port
            ),
        )
    };
    let greeted = match opened {
        Ok(g) => g,
        Err(err) => {
            let by_proxy = err.message().starts_with("cannot reach proxy ")
                || err.message().starts_with("proxy ");
            let step = match (err.stage(), err.kind()) {
                (_, smtpkit::ErrorKind::Tls) => "TLS",
                (smtpkit::Stage::Connect, _) if proxy.is_some() && by_proxy => "proxy",
                (smtpkit::Stage::Connect, _) => "connect",
                _ => "greeting",
            };
            if !matches!(step, "connect" | "proxy") {
                if let Some(proxy) = &proxy {
                    proxy_step(proxy);
                }
                ok("connect", format!("{}:{}", settings.host, settings.port));
            }
            return fail(step, &err);
        }
    };
    if let Some(proxy) = &proxy {
        proxy_step(proxy);
    }
    let attempts = greeted.connect_attempts();
    let peer = attempts
        .iter()
        .find(|a| a.outcome == AttemptOutcome::Connected)
        .map(|a| format!(" at {}", a.address))
        .unwrap_or_default();
    ok(
        "connect",
        format!(
            "{}:{}{peer} in {} ms{}",
            settings.host,
            settings.port,
            started.elapsed().as_millis(),
            if proxy.is_some() {
                " (through the proxy)"
            } else {
                ""
            }
        ),
    );
    // Several addresses raced (RFC 8305): how each one ended.
    if attempts.len() > 1 {
        for a in attempts {
            out!("    tried {a}");
        }
    }
    if let Some(info) = greeted.tls_info() {
        print_tls("TLS", info);
    }
    ok("greeting", greeted.greeting().to_string());
    let mut conn = match greeted.ehlo().await {
        Ok(c) => c,
        Err(err) => return fail("EHLO", &err),
    };
    ok("EHLO", capabilities_line(&conn));
    if security == Security::StartTls {
        conn = match conn.starttls().await {
            Ok(c) => c,
            Err(err) => return fail("STARTTLS", &err),
        };
        if let Some(info) = conn.tls_info() {
            print_tls("STARTTLS", info);
        }
        ok("EHLO", format!("(over TLS) {}", capabilities_line(&conn)));
    }
    if let Some(oauth2) = &settings.oauth2 {
        if let Err(err) = token_step(settings, oauth2, args.step_timeout).await {
            return fail("token", &err);
        }
    }
    match &credentials {
        Some(c) => match conn.authenticate(c, mechanism).await {
            Ok(reply) => ok("AUTH", format!("as {}: {reply}", c.username())),
            Err(err) => return fail("AUTH", &err),
        },
        None => ok("AUTH", "skipped (auth: none)"),
    }
    match conn.quit().await {
        Ok(reply) => ok("QUIT", reply.to_string()),
        Err(err) => return fail("QUIT", &err),
    }
    out!("✓ {} is ready to send", mailer.provider());
    exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_798_675_200), "2026-12-31");
    }
}
