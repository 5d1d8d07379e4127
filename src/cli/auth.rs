//! `smtpkit auth login`: the first sign-in of an OAuth 2.0 provider, which produces the refresh
//! token that `send`, `check` and `notify` then use.
//!
//! Instructions and progress go to stderr; the result (where the token went) to stdout. The
//! refresh token itself reaches stdout only with `--print`, and then alone; the device code,
//! the authorization code, the client secret and the access token are never shown.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use smtpkit::oauth::{
    DeviceFlow, Grant, LoginFlow, LoopbackFlow, OAuth2Settings, TokenCache, TokenEndpoint,
    TokenResponse,
};
use smtpkit::provider::{Config, ProviderConfig};
use smtpkit::{Error, ErrorKind};

use super::exit;
use super::output::{self, Failure};

/// Sign in to an OAuth 2.0 identity provider.
#[derive(Args, Debug)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub command: AuthCommand,
}

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Sign in once and keep the refresh token for unattended sending.
    Login(LoginArgs),
}

/// `--flow`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowArg {
    /// Device authorization (RFC 8628): enter a code at the provider's page, on any device.
    Device,
    /// Browser on this machine, redirected back to 127.0.0.1 (RFC 8252, with PKCE).
    Browser,
}

/// Sign in to a provider's identity provider and keep the refresh token.
#[derive(Args, Debug)]
#[command(
    after_help = "Microsoft uses the device flow (open the page shown, enter the code); Google the
browser flow (open the URL shown on this machine); custom providers the device flow when
`device_authorization_url` is set, else the browser flow with `authorization_url`.

The refresh token goes to the provider's `token_cache` file (mode 0600), where send, check and
notify find it. With --print it goes to stdout instead (alone, for a secrets manager; use it as
`refresh_token: ${VAR}`), and nothing is written.

Exit codes: 0 signed in, 64 usage (also: the provider uses `grant: client_credentials`, which
needs no sign-in), 75 identity provider unreachable or no answer from the browser in time,
77 sign-in declined, expired or refused, 78 configuration error, 130 cancelled (Ctrl-C).

Examples:
  smtpkit auth login --config smtpkit.yaml --provider email-outlook
  smtpkit auth login --config smtpkit.yaml --provider email-gmail --print"
)]
pub struct LoginArgs {
    /// Configuration file(s) in the provider YAML format.
    #[arg(long, required = true, value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Provider to sign in for (default: the only enabled one).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// Write the refresh token (only it) to stdout instead of the token cache.
    #[arg(long, conflicts_with = "json")]
    pub print: bool,
    /// Sign-in flow (default: device for Microsoft, browser for Google; see below).
    #[arg(long, value_enum, value_name = "FLOW")]
    pub flow: Option<FlowArg>,
    /// Longest wait for the browser to come back (browser flow), e.g. 10m. The device flow
    /// waits as long as its code is valid.
    #[arg(long, default_value = "5m", value_parser = smtpkit::provider::parse_duration)]
    pub timeout: Duration,
    /// Print exactly one JSON object on stdout (never the token); instructions stay on stderr.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: AuthArgs) -> u8 {
    match args.command {
        AuthCommand::Login(login) => login_command(login).await,
    }
}

/// What the sign-in is for, from the configuration.
struct Account {
    provider: String,
    user: String,
    settings: OAuth2Settings,
    ca_file: Option<PathBuf>,
    request_timeout: Duration,
    flow: LoginFlow,
}

fn account(args: &LoginArgs) -> Result<Account, Failure> {
    let config = Config::from_files(&args.config).map_err(|e| Failure::config_error(&e))?;
    let p: &ProviderConfig = config
        .provider(args.provider.as_deref())
        .map_err(|e| Failure::config_error(&e))?;
    let path = format!("providers.{}.config", p.id);
    let Some(settings) = p.smtp.oauth2.clone() else {
        let mut f = Failure::config(format!(
            "{path}: provider {} has no `oauth2` block; `smtpkit auth login` signs in to an \
             OAuth 2.0 identity provider",
            p.id
        ))
        .with_hint(
            "Add an `oauth2:` block (README: \"Gmail, Outlook.com and Microsoft 365 with OAuth 2.0\").",
        );
        f.path = Some(format!("{path}.oauth2"));
        return Err(f);
    };
    if settings.grant == Grant::ClientCredentials {
        return Err(Failure::new(
            "usage",
            "arguments",
            format!(
                "provider {} uses `grant: client_credentials`: the application gets its tokens \
                 with its own secret, there is no user sign-in and no refresh token",
                p.id
            ),
            exit::USAGE,
        )
        .with_hint(format!(
            "Nothing to do: `smtpkit check --config FILE --provider {}` tests the app's token.",
            p.id
        )));
    }
    let Some(user) = p.smtp.user.clone().filter(|u| !u.is_empty()) else {
        let mut f = Failure::config(format!(
            "{path}.user: the mailbox is required with `oauth2` (the XOAUTH2 user and the \
             token cache entry)"
        ));
        f.path = Some(format!("{path}.user"));
        return Err(f);
    };
    let requested = args.flow.map(|f| match f {
        FlowArg::Device => LoginFlow::Device,
        FlowArg::Browser => LoginFlow::Browser,
    });
    let flow = LoginFlow::choose(&settings, requested).map_err(|e| {
        let key = format!("{path}.oauth2.{}", e.key);
        let mut f = Failure::config(format!("{key}: {}", e.message));
        f.path = Some(key);
        f
    })?;
    Ok(Account {
        provider: p.id.clone(),
        user,
        settings,
        ca_file: p.smtp.ca_file.clone(),
        request_timeout: p.smtp.timeouts.command,
        flow,
    })
}

async fn login_command(args: LoginArgs) -> u8 {
    // Listening for Ctrl-C starts before anything is shown, so that it is never missed.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let account = match account(&args) {
        Ok(a) => a,
        Err(f) => return f.report(args.json),
    };
    let cache = TokenCache::for_account(&account.settings, &account.user);
    // A cache that cannot be read now would lose the token after the sign-in.
    if !args.print {
        if let Err(message) = cache.initial_refresh_token(None) {
            let key = format!("providers.{}.config.oauth2.token_cache", account.provider);
            let mut f = Failure::config(format!("{key}: {message}"));
            f.path = Some(key);
            return f.report(args.json);
        }
    }
    let signed_in = tokio::select! {
        biased;
        _ = &mut ctrl_c => return cancelled(args.json),
        r = sign_in(&account, args.timeout) => r,
    };
    let token = match signed_in {
        Ok(t) => t,
        Err(e) => return failed(&account, &e, args.json),
    };
    let Some(refresh) = token.refresh_token else {
        // The flows refuse a token without one; kept as a guard.
        return failed(
            &account,
            &Error::new(
                ErrorKind::Auth,
                smtpkit::Stage::Token,
                "the identity provider issued no refresh token",
            ),
            args.json,
        );
    };
    if args.print {
        out!("{}", refresh.expose());
        eprintln!(
            "✓ signed in as {}; the refresh token is on stdout (nothing was stored)",
            account.user
        );
        return exit::OK;
    }
    let configured = account.settings.refresh_token.clone();
    let store = cache.clone();
    let stored = tokio::task::spawn_blocking(move || store.store(&refresh, configured.as_ref()))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
    if let Err(message) = stored {
        let key = format!("providers.{}.config.oauth2.token_cache", account.provider);
        let mut f = Failure::config(format!("{key}: {message}")).with_hint(
            "The sign-in worked but its token could not be kept: fix `token_cache` (or its \
             directory's permissions) and sign in again, or use --print.",
        );
        f.path = Some(key);
        return f.report(args.json);
    }
    let path = cache.path().display().to_string();
    if args.json {
        output::print_json(&json!({
            "ok": true,
            "exit_code": exit::OK,
            "provider": account.provider,
            "user": account.user,
            "flow": account.flow.name(),
            "token_url": account.settings.token_url,
            "token_cache": path,
        }));
    } else {
        out!(
            "✓ signed in as {} ({}); refresh token stored in {path}",
            account.user,
            account.provider
        );
    }
    exit::OK
}

/// Shows the instructions (stderr) and waits for the sign-in.
async fn sign_in(account: &Account, browser_timeout: Duration) -> smtpkit::Result<TokenResponse> {
    let endpoint = TokenEndpoint::new(
        account.settings.clone(),
        account.ca_file.clone(),
        account.request_timeout,
    )?;
    eprintln!(
        "Signing in {} for provider {} ({} flow)",
        account.user,
        account.provider,
        account.flow.name()
    );
    match account.flow {
        LoginFlow::Device => {
            let flow = DeviceFlow::new(endpoint)?;
            let authorization = flow.start().await?;
            eprintln!("{}", authorization.instructions());
            if let Some(complete) = &authorization.verification_uri_complete {
                eprintln!("(or open {complete}, which has the code filled in)");
            }
            eprintln!(
                "Waiting for the sign-in (the code is valid for {}; Ctrl-C cancels)…",
                duration_words(authorization.expires_in)
            );
            flow.wait(&authorization).await
        }
        _ => {
            let flow = LoopbackFlow::start(endpoint).await?;
            eprintln!("Open this URL in your browser:");
            eprintln!("  {}", flow.authorization_url());
            eprintln!(
                "Waiting for the browser to come back to {} (up to {}; Ctrl-C cancels)…",
                flow.redirect_uri(),
                duration_words(browser_timeout)
            );
            flow.wait(browser_timeout).await
        }
    }
}

fn duration_words(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

fn failed(account: &Account, err: &Error, json: bool) -> u8 {
    let code = exit::for_error(err);
    eprintln!("✗ {}: sign-in failed: {err}", account.provider);
    let hint = login_hint(err);
    if let Some(hint) = hint {
        eprintln!("  hint: {hint}");
    }
    if json {
        output::print_json(&json!({
            "ok": false,
            "exit_code": code,
            "provider": account.provider,
            "flow": account.flow.name(),
            "error": {
                "kind": err.kind().as_str(),
                "stage": err.stage().as_str(),
                "message": err.to_string(),
                "transient": err.is_transient(),
                "hint": hint,
            },
        }));
    }
    code
}

/// The library's hints are written for sending (retries, `smtpkit auth login`); during a
/// sign-in only some apply.
fn login_hint(err: &Error) -> Option<&'static str> {
    match err.kind() {
        ErrorKind::Timeout if err.message().contains("browser") => None,
        ErrorKind::Connect | ErrorKind::Timeout => Some(
            "The identity provider could not be reached: check the network and the endpoint URLs \
             (`token_url`, `device_authorization_url`, or the preset's), then sign in again.",
        ),
        ErrorKind::Auth if err.message().contains("invalid_client") => err.hint(),
        ErrorKind::Auth if err.message().contains("declined") => Some(
            "Run `smtpkit auth login` again and accept the requested permissions (an \
             administrator may have to grant consent for the organization).",
        ),
        _ => None,
    }
}

fn cancelled(json: bool) -> u8 {
    eprintln!("✗ login cancelled (Ctrl-C): nothing was stored");
    if json {
        output::print_json(&json!({
            "ok": false,
            "exit_code": exit::INTERRUPTED,
            "error": {"kind": "interrupted", "message": "login cancelled"},
        }));
    }
    exit::INTERRUPTED
}
