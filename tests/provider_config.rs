//! The spec's YAML examples load unchanged into the expected typed config, and every
//! configuration mistake gets an error that names the path and what is wrong.

use std::path::PathBuf;
use std::time::Duration;

use smtpkit::client::Security;
use smtpkit::proto::Mechanism;
use smtpkit::provider::{AuthSetting, Config, ConfigError, Mailer, ProviderKind, WorkflowStep};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/spec")
        .join(name)
}

fn load(name: &str) -> Config {
    Config::from_file(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// (fixture, provider id, kind, host, port, user, from, tls_skip_verify, name)
#[test]
fn every_spec_example_loads_unchanged() {
    let cases = [
        (
            "basic.yaml",
            "email",
            ProviderKind::Email,
            "smtp.example.com",
            "<your-smtp-username>",
            "noreply@example.com",
            false,
            "Email Notifications",
        ),
        (
            "alternative-email-smtp.yaml",
            "email",
            ProviderKind::EmailSmtp,
            "smtp.example.com",
            "<your-smtp-username>",
            "noreply@example.com",
            false,
            "Email Notifications",
        ),
        (
            "gmail.yaml",
            "email-gmail",
            ProviderKind::Email,
            "smtp.gmail.com",
            "<your-gmail-address>",
            "<your-gmail-address>",
            false,
            "Gmail SMTP",
        ),
        (
            "outlook.yaml",
            "email-outlook",
            ProviderKind::Email,
            "smtp-mail.outlook.com",
            "<your-outlook-email>",
            "<your-outlook-email>",
            false,
            "Outlook SMTP",
        ),
        (
            "sendgrid.yaml",
            "email-sendgrid",
            ProviderKind::Email,
            "smtp.sendgrid.net",
            "apikey",
            "noreply@example.com",
            false,
            "SendGrid SMTP",
        ),
        (
            "self-hosted-tls-skip.yaml",
            "email-internal",
            ProviderKind::Email,
            "mail.internal.company.com",
            "<smtp-user>",
            "agent@company.com",
            true,
            "Internal SMTP",
        ),
    ];
    for (file, id, kind, host, user, from, skip, name) in cases {
        let config = load(file);
        assert_eq!(config.version.as_deref(), Some("1.0"), "{file}");
        let p = config
            .provider(None)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(p.id, id, "{file}");
        assert_eq!(p.kind, kind, "{file}");
        assert!(p.enabled);
        assert_eq!(p.name.as_deref(), Some(name));
        assert_eq!(p.smtp.host, host, "{file}");
        assert_eq!(p.smtp.port, 587, "{file}");
        assert_eq!(p.smtp.user.as_deref(), Some(user), "{file}");
        assert_eq!(p.smtp.from, from, "{file}");
        assert_eq!(p.smtp.tls_skip_verify, skip, "{file}");
        // Safe defaults for the extensions.
        assert_eq!(p.smtp.security, Security::Auto);
        assert_eq!(p.smtp.auth, AuthSetting::Auto);
        assert!(!p.smtp.allow_insecure_auth);
        // Submission-oriented defaults, one deadline over the whole send.
        assert_eq!(p.smtp.timeouts.data_end, Duration::from_secs(120));
        assert_eq!(p.smtp.timeouts.command, Duration::from_secs(30));
        assert_eq!(p.smtp.total_timeout, Some(Duration::from_secs(180)));
        assert!(
            !format!("{p:?}").contains("your-smtp-password"),
            "password never in Debug"
        );
    }
}

#[test]
fn the_workflow_example_loads() {
    let config = load("workflow-usage.yaml");
    assert_eq!(config.workflows.len(), 1);
    let w = &config.workflows[0];
    assert_eq!(w.name, "access-approval");
    let WorkflowStep::Email(step) = &w.steps[0] else {
        panic!("an email step")
    };
    assert_eq!(step.providers, ["email"]);
    assert_eq!(step.subject, "Access Request Approval Required");
    assert_eq!(step.to.len(), 1);
    assert_eq!(step.to[0].address().as_str(), "approver@example.com");
    assert_eq!(
        step.text.as_deref(),
        Some("A new access request requires your approval.")
    );
    assert_eq!(
        step.html.as_deref(),
        Some("<h2>Access Request</h2><p>A new access request requires your approval.</p>")
    );
}

#[test]
fn providers_and_workflows_from_separate_files_merge() {
    let config = Config::from_files(&[fixture("basic.yaml"), fixture("workflow-usage.yaml")])
        .expect("merge");
    assert_eq!(config.providers.len(), 1);
    assert_eq!(config.workflows.len(), 1);
    let err = Config::from_files(&[
        fixture("basic.yaml"),
        fixture("alternative-email-smtp.yaml"),
    ])
    .expect_err("dup");
    assert!(
        err.to_string()
            .contains("providers.email: defined in more than one file"),
        "{err}"
    );
}

#[test]
fn placeholders_load_but_are_reported_before_sending() {
    let config = load("gmail.yaml");
    let err = Mailer::new(&config, None).expect_err("placeholders");
    assert_eq!(err.path(), "providers.email-gmail.config.user");
    assert!(
        err.message().contains("placeholder <your-gmail-address>"),
        "{err}"
    );
    // The password placeholder is not echoed.
    let yaml = std::fs::read_to_string(fixture("basic.yaml"))
        .expect("read")
        .replace("<your-smtp-username>", "bob");
    let err = Mailer::new(&Config::from_yaml_str(&yaml).expect("loads"), None)
        .expect_err("pass placeholder");
    assert_eq!(err.path(), "providers.email.config.pass");
    assert!(!err.to_string().contains("your-smtp-password"), "{err}");
}

fn parse(yaml: &str) -> Result<Config, ConfigError> {
    let env = |name: &str| match name {
        "SMTP_PASSWORD" => Some("from-env".to_owned()),
        "SMTP_PORT" => Some("2525".to_owned()),
        _ => None,
    };
    Config::from_yaml_str_with_env(yaml, &env)
}

fn provider_yaml(config_lines: &str) -> String {
    let mut yaml =
        String::from("version: \"1.0\"\nproviders:\n  email:\n    provider: email\n    config:\n");
    for line in config_lines.lines() {
        yaml.push_str("      ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    yaml
}

const BASE: &str = "host: smtp.example.com\nport: 587\nuser: u\npass: p\nfrom: noreply@example.com";

fn err(yaml: &str) -> String {
    parse(yaml).expect_err("should fail").to_string()
}

#[test]
fn environment_variables_expand_and_missing_ones_are_named() {
    let config = parse(&provider_yaml("host: smtp.example.com\nport: ${SMTP_PORT}\nuser: u\npass: ${SMTP_PASSWORD}\nfrom: a@b.test"))
        .expect("expands");
    let p = config.provider(None).expect("one");
    assert_eq!(p.smtp.port, 2525);
    assert_eq!(p.smtp.pass.as_ref().map(|s| s.expose()), Some("from-env"));
    let config = parse(&provider_yaml(
        "host: ${SMTP_HOST:-localhost}\nport: 25\nuser: u\npass: p\nfrom: a@b.test",
    ))
    .expect("default");
    assert_eq!(config.provider(None).expect("one").smtp.host, "localhost");
    let e = err(&provider_yaml(
        "host: h\nport: 587\nuser: u\npass: ${SMTP_PASS}\nfrom: a@b.test",
    ));
    assert!(
        e.starts_with("providers.email.config.pass: environment variable SMTP_PASS is not set"),
        "{e}"
    );
}

#[test]
fn error_messages_name_the_path_and_what_is_wrong() {
    let cases: Vec<(String, &str)> = vec![
        (provider_yaml(&BASE.replace("host:", "hots:")), "providers.email.config.hots: unknown key `hots`; did you mean `host`?"),
        (provider_yaml(&BASE.replace("port: 587", "port: abc")), "providers.email.config.port: expected a whole number from 1 to 65535, found \"abc\""),
        (provider_yaml(&BASE.replace("port: 587", "port: 70000")), "providers.email.config.port: 70000 is out of range"),
        (provider_yaml(&BASE.replace("port: 587\n", "")), "providers.email.config.port: missing required key"),
        (provider_yaml(&BASE.replace("user: u\n", "")), "providers.email.config.user: missing required key"),
        (provider_yaml(&BASE.replace("pass: p\n", "")), "providers.email.config.pass: missing required key"),
        (provider_yaml(&BASE.replace("from: noreply@example.com", "")), "providers.email.config.from: missing required key"),
        (provider_yaml(&format!("{BASE}\nplatform: ses")), "providers.email.config.platform: platform `ses` is not supported by this build"),
        (provider_yaml(&format!("{BASE}\nplatform: acs")), "providers.email.config.platform: platform `acs` is not supported by this build"),
        (provider_yaml(&format!("{BASE}\nplatform: smpt")), "providers.email.config.platform: unknown platform `smpt`; did you mean `smtp`?"),
        (provider_yaml(&format!("{BASE}\ntls_skip_verify: maybe")), "providers.email.config.tls_skip_verify: expected true or false"),
        (provider_yaml(&format!("{BASE}\nchunking: sometimes")), "providers.email.config.chunking: expected true or false"),
        (provider_yaml(&format!("{BASE}\nsecurity: startls")), "providers.email.config.security: unknown value \"startls\"; did you mean `starttls`?"),
        (provider_yaml(&format!("{BASE}\nauth: cram-md5")), "providers.email.config.auth: unknown value \"cram-md5\""),
        (provider_yaml(&format!("{BASE}\ntimeouts: {{command: 30}}")), "providers.email.config.timeouts.command: \"30\" needs a unit"),
        (provider_yaml(&format!("{BASE}\ntimeouts: {{comand: 30s}}")), "providers.email.config.timeouts.comand: unknown key `comand`; did you mean `command`?"),
        (provider_yaml(&format!("{BASE}\nallow_insecure_auth: true")), "providers.email.config.allow_insecure_auth: only allowed together with `security: none`"),
        (provider_yaml(&BASE.replace("host: smtp.example.com", "host: \"smtp example.com\"")), "providers.email.config.host: \"smtp example.com\" is not a host name or IP address: it contains a space"),
        (provider_yaml(&BASE.replace("host: smtp.example.com", "host: \"smtp.example.com\\n\"")), "providers.email.config.host: \"smtp.example.com\\n\" is not a host name or IP address: it contains white space"),
        (provider_yaml(&BASE.replace("host: smtp.example.com", "host: smtp.exa;mple.com")), "providers.email.config.host: \"smtp.exa;mple.com\" is not a host name or IP address: it contains ';'"),
        (provider_yaml(&BASE.replace("host: smtp.example.com", "host: smtp.bücher.de")), "providers.email.config.host: \"smtp.bücher.de\" is not a host name or IP address: it contains the non-ASCII character 'ü'"),
        (provider_yaml(&BASE.replace("host: smtp.example.com", "host: smtp..example.com")), "providers.email.config.host: \"smtp..example.com\" is not a host name or IP address: it has an empty label"),
        (provider_yaml(&BASE.replace("host: smtp.example.com", "host: smtp://smtp.example.com")), "providers.email.config.host: \"smtp://smtp.example.com\" is not a host name or IP address: write the host name alone, without `smtp://`"),
        (provider_yaml(&BASE.replace("host: smtp.example.com", "host: smtp.example.com:587")), "providers.email.config.host: \"smtp.example.com:587\" is not a host name or IP address: write the port under `port`"),
        (provider_yaml(&format!("{BASE}\nsource_address: 192.0.2")), "providers.email.config.source_address: \"192.0.2\" is not an IP address"),
        (provider_yaml(&format!("{BASE}\nconnect_attempt_delay: 5ms")), "providers.email.config.connect_attempt_delay: must be from 10ms to 2s"),
        (provider_yaml(&format!("{BASE}\nconnect_attempt_delay: 3s")), "providers.email.config.connect_attempt_delay: must be from 10ms to 2s"),
        (provider_yaml(&format!("{BASE}\nhelo_name: bad name")), "providers.email.config.helo_name: EHLO name \"bad name\" is not valid"),
        ("version: \"2.0\"\n".into(), "version: unsupported version \"2.0\""),
        ("versoin: \"1.0\"\n".into(), "versoin: unknown key `versoin`; did you mean `version`?"),
        ("providers:\n  email:\n    provider: email.ses\n    config: {}\n".into(), "providers.email.provider: `email.ses` is not supported by this build"),
        ("providers:\n  email:\n    provider: emial\n    config: {}\n".into(), "providers.email.provider: unknown provider `emial`; did you mean `email`?"),
        ("providers:\n  email:\n    provider: email\n    enabeld: true\n    config: {}\n".into(), "providers.email.enabeld: unknown key `enabeld`; did you mean `enabled`?"),
        ("providers:\n  email:\n    provider: email\n".into(), "providers.email.config: missing required key"),
        ("providers: [1, 2]\n".into(), "providers: expected a mapping of keys, found a list"),
        ("providers:\n  email: {provider: email\n".into(), "not valid YAML"),
        ("".into(), "the file is empty"),
    ];
    for (yaml, expected) in cases {
        let e = err(&yaml);
        assert!(
            e.starts_with(expected),
            "expected {expected:?}\n     got {e:?}\nfor:\n{yaml}"
        );
    }
}

/// IPv6 literals in `host`, in brackets or bare; `source_address` and `connect_attempt_delay`
/// reach the client options.
#[test]
fn network_keys_reach_the_client_options() {
    for host in ["\"[2001:db8::1]\"", "\"2001:db8::1\""] {
        let yaml = provider_yaml(&format!(
            "{}\nsource_address: \"[2001:db8::10]\"\nconnect_attempt_delay: 100ms",
            BASE.replace("smtp.example.com", host)
        ));
        let config = parse(&yaml).unwrap_or_else(|e| panic!("{host}: {e}"));
        let smtp = &config.provider(None).expect("one").smtp;
        assert_eq!(smtp.host, "2001:db8::1", "{host}");
        let options = smtp.client_options().expect("options");
        assert_eq!(
            options.source_address,
            Some("2001:db8::10".parse().expect("ip"))
        );
        assert_eq!(
            options.attempt_delay,
            Some(std::time::Duration::from_millis(100))
        );
    }
}

#[test]
fn workflow_errors_name_the_step() {
    let wf = |config: &str| {
        format!("workflows:\n  - name: w\n    steps:\n      - task: notify\n        type: email\n        config:\n{config}")
    };
    let cases = [
        (wf("          provider: email\n          subject: s\n          to: [not-an-address]\n          body: {text: t}\n"), "workflows[0].steps[0].config.to[0]: address \"not-an-address\" is not valid"),
        (wf("          provider: email\n          subject: s\n          to: a@b.test\n          body: {}\n"), "workflows[0].steps[0].config.body: empty body"),
        (wf("          provider: email\n          subject: s\n          body: {text: t}\n"), "workflows[0].steps[0].config: no recipients"),
        (wf("          provider: email\n          subjcet: s\n          to: a@b.test\n          body: {text: t}\n"), "workflows[0].steps[0].config.subjcet: unknown key `subjcet`; did you mean `subject`?"),
        (wf("          subject: s\n          to: a@b.test\n          body: {text: t}\n"), "workflows[0].steps[0].config.provider: missing required key"),
    ];
    for (yaml, expected) in cases {
        let e = err(&yaml);
        assert!(
            e.starts_with(expected),
            "expected {expected:?}\n     got {e:?}"
        );
    }
}

#[test]
fn other_tasks_and_providers_are_listed_as_skipped_not_lost() {
    let yaml = "providers:\n  chat:\n    provider: slack\n    config: {token: x}\nworkflows:\n  - name: w\n    steps:\n      - task: approve\n        type: manual\n      - task: notify\n        type: slack\n";
    let config = parse(yaml).expect("loads");
    assert_eq!(config.skipped_providers.len(), 1);
    assert_eq!(config.skipped_providers[0].provider, "slack");
    assert_eq!(
        config.workflows[0].steps,
        [
            WorkflowStep::Skipped {
                task: "approve".into(),
                kind: "manual".into()
            },
            WorkflowStep::Skipped {
                task: "notify".into(),
                kind: "slack".into()
            },
        ]
    );
}

#[test]
fn extensions_are_read() {
    let yaml = provider_yaml(&format!(
        "{BASE}\nsecurity: tls\nauth: login\nhelo_name: app.example.com\ntimeouts: {{connect: 5s, command: 1m, data_end: 500ms}}"
    ));
    let p = parse(&yaml).expect("loads").providers.remove(0);
    assert_eq!(p.smtp.security, Security::Tls);
    assert_eq!(p.smtp.auth, AuthSetting::Mechanism(Mechanism::Login));
    assert_eq!(
        p.smtp.helo_name.as_ref().map(|n| n.as_str()),
        Some("app.example.com")
    );
    assert_eq!(p.smtp.timeouts.connect, Duration::from_secs(5));
    assert_eq!(p.smtp.timeouts.command, Duration::from_secs(60));
    assert_eq!(p.smtp.timeouts.data_end, Duration::from_millis(500));
    assert_eq!(
        p.smtp.timeouts.greeting,
        Duration::from_secs(30),
        "others keep their defaults"
    );

    // auth: none lets user and pass be left out.
    let yaml =
        provider_yaml("host: localhost\nport: 25\nfrom: a@b.test\nsecurity: none\nauth: none");
    let p = parse(&yaml).expect("loads").providers.remove(0);
    assert_eq!(p.smtp.user, None);
    assert_eq!(p.smtp.auth, AuthSetting::None);
}

#[test]
fn host_names_and_ip_addresses_are_accepted_as_written() {
    for host in [
        "smtp.example.com",
        "smtp.example.com.",
        "localhost",
        "mail-1.internal_relay.example",
        "xn--bcher-kva.example",
        "127.0.0.1",
        "::1",
        "2001:db8::25",
    ] {
        let config = parse(&provider_yaml(
            &BASE.replace("host: smtp.example.com", &format!("host: \"{host}\"")),
        ))
        .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(config.provider(None).expect("one").smtp.host, host);
    }
}

#[test]
fn choosing_a_provider() {
    let yaml = "providers:\n  a:\n    provider: email\n    config: {host: h, port: 25, user: u, pass: p, from: a@b.test}\n  b:\n    provider: email.smtp\n    config: {host: h, port: 25, user: u, pass: p, from: a@b.test}\n  off:\n    provider: email\n    enabled: false\n    config: {host: h, port: 25, user: u, pass: p, from: a@b.test}\n";
    let config = parse(yaml).expect("loads");
    let e = config.provider(None).expect_err("two enabled").to_string();
    assert!(
        e.contains("2 enabled providers (a, b); choose one with --provider"),
        "{e}"
    );
    assert_eq!(config.provider(Some("b")).expect("b").id, "b");
    assert!(config
        .provider(Some("off"))
        .expect_err("disabled")
        .to_string()
        .contains("disabled"));
    assert!(config
        .provider(Some("bb"))
        .expect_err("typo")
        .to_string()
        .contains("did you mean `b`?"));
}

#[test]
fn a_missing_ca_file_is_reported_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.yaml");
    std::fs::write(
        &path,
        provider_yaml(&format!("{BASE}\nca_file: missing-ca.pem")),
    )
    .expect("write");
    let e = Config::from_file(&path).expect_err("missing").to_string();
    assert!(
        e.contains("providers.email.config.ca_file: file")
            && e.contains("missing-ca.pem")
            && e.contains("not found"),
        "{e}"
    );
}

#[test]
fn delivery_extensions_are_read_with_defaults() {
    let yaml = provider_yaml(&format!(
        "{BASE}\npool: {{max_connections: 8, max_messages_per_connection: 50, idle_timeout: 10s, max_lifetime: 2m}}\nretry: {{attempts: 5, initial_backoff: 2s, max_backoff: 30s, retry_unknown_outcome: true}}\nrate_limit: {{per_second: 10, per_day: 500}}\nfallback: [email-sendgrid]"
    ));
    let p = parse(&yaml).expect("loads").providers.remove(0);
    assert_eq!(p.smtp.pool.max_connections, 8);
    assert_eq!(p.smtp.pool.max_messages_per_connection, 50);
    assert_eq!(p.smtp.pool.idle_timeout, Duration::from_secs(10));
    assert_eq!(p.smtp.pool.max_lifetime, Duration::from_secs(120));
    assert_eq!(
        p.smtp.pool.health_check_after,
        Duration::from_secs(5),
        "default kept"
    );
    assert_eq!(p.smtp.retry.attempts, 5);
    assert_eq!(p.smtp.retry.initial_backoff, Duration::from_secs(2));
    assert!(p.smtp.retry.retry_unknown_outcome);
    assert_eq!(p.smtp.rate_limit.per_second, 10);
    assert_eq!(p.smtp.rate_limit.per_day, 500);
    assert_eq!(p.smtp.rate_limit.per_minute, 0);
    assert_eq!(p.smtp.fallback, ["email-sendgrid"]);

    let defaults = parse(&provider_yaml(BASE))
        .expect("loads")
        .providers
        .remove(0);
    assert_eq!(defaults.smtp.pool.max_connections, 4);
    assert_eq!(defaults.smtp.retry.attempts, 3);
    assert!(!defaults.smtp.retry.retry_unknown_outcome);
    assert!(defaults.smtp.rate_limit.is_unlimited());

    for (extra, expected) in [
        ("pool: {max_conections: 2}", "providers.email.config.pool.max_conections: unknown key `max_conections`; did you mean `max_connections`?"),
        ("pool: {max_connections: 0}", "providers.email.config.pool.max_connections: 0 is out of range"),
        ("retry: {attempts: 0}", "providers.email.config.retry.attempts: 0 is out of range"),
        ("retry: {initial_backoff: 0s}", "providers.email.config.retry.initial_backoff: must be more than 0"),
        ("rate_limit: {per_week: 3}", "providers.email.config.rate_limit.per_week: unknown key `per_week`"),
    ] {
        let e = err(&provider_yaml(&format!("{BASE}\n{extra}")));
        assert!(e.starts_with(expected), "expected {expected:?}\n     got {e:?}");
    }
}

#[test]
fn an_unknown_fallback_provider_is_named() {
    let yaml = "providers:\n  a:\n    provider: email\n    config: {host: h, port: 25, user: u, pass: p, from: a@b.test, fallback: [bakcup]}\n  backup:\n    provider: email\n    config: {host: h, port: 25, user: u, pass: p, from: a@b.test}\n";
    let config = parse(yaml).expect("loads");
    let e = Mailer::new(&config, Some("a"))
        .expect_err("unknown fallback")
        .to_string();
    assert!(
        e.starts_with("providers.a.config.fallback:") && e.contains("did you mean `backup`?"),
        "{e}"
    );
}

#[test]
fn client_option_errors_name_the_key_that_caused_them() {
    const PASSWORD: &str = "hunter2-Secret";
    let env = |name: &str| match name {
        // A password read from a file with its trailing newline.
        "SMTP_PASSWORD" => Some(format!("{PASSWORD}\n")),
        _ => None,
    };
    let mailer_error = |config_lines: &str| {
        let config =
            Config::from_yaml_str_with_env(&provider_yaml(config_lines), &env).expect("loads");
        Mailer::new(&config, None).expect_err("unusable settings")
    };

    for skip in ["false", "true"] {
        let e = mailer_error(&format!(
            "host: smtp.example.com\nport: 587\nuser: u\npass: ${{SMTP_PASSWORD}}\nfrom: a@b.test\ntls_skip_verify: {skip}"
        ));
        assert_eq!(e.path(), "providers.email.config.pass", "{e}");
        assert!(e.message().contains("control character"), "{e}");
        assert!(!e.to_string().contains(PASSWORD), "password shown: {e}");
        assert!(
            !format!("{e:?}").contains(PASSWORD),
            "password in Debug: {e:?}"
        );
    }

    let e = mailer_error(
        "host: smtp.example.com\nport: 587\nuser: \"bo\\tb\"\npass: p\nfrom: a@b.test\ntls_skip_verify: true",
    );
    assert_eq!(e.path(), "providers.email.config.user", "{e}");
    assert!(e.message().contains("control character"), "{e}");

    // A CA file that exists but holds no certificate is the CA file's fault.
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("empty-ca.pem");
    std::fs::write(&ca, "not a certificate\n").expect("write");
    let e = mailer_error(&format!(
        "host: smtp.example.com\nport: 587\nuser: u\npass: p\nfrom: a@b.test\nca_file: {}",
        ca.display()
    ));
    assert_eq!(e.path(), "providers.email.config.ca_file", "{e}");
    assert!(e.message().contains("holds no PEM certificate"), "{e}");
    assert!(!e.message().starts_with("connect:"), "no stage label: {e}");
}

/// Loads `config_lines` as the one provider's settings plus a workflow step, with `env`.
fn parse_with_env(yaml: &str) -> Result<Config, ConfigError> {
    let env = |name: &str| match name {
        "SMTP_PASSWORD" => Some("from-env".to_owned()),
        "RELAY_HOST" => Some("relay.example.com".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    Config::from_yaml_str_with_env(yaml, &env)
}

fn smtp_with(config_lines: &str) -> smtpkit::provider::SmtpSettings {
    parse_with_env(&provider_yaml(config_lines))
        .unwrap_or_else(|e| panic!("{config_lines}: {e}"))
        .providers
        .remove(0)
        .smtp
}

/// Plain scalars that YAML would type as numbers or booleans, kept as written for string keys.
const LITERALS: &[&str] = &[
    "1.10",
    "0x1F",
    "0o17",
    "1e3",
    "1.0e+3",
    "010",
    "00123",
    "+12",
    "-0",
    ".inf",
    "-.Inf",
    ".NaN",
    "True",
    "FALSE",
    "1_000",
    "12345678901234567890123",
    "0.1000000000000000055511151231257827",
];

#[test]
fn string_keys_keep_plain_numbers_and_booleans_exactly_as_written() {
    for literal in LITERALS {
        // A host is read as written too; one that cannot be a host name (`+12`, `.inf`) is
        // refused, named as written.
        let with_host = provider_yaml(&format!(
            "host: {literal}\nport: 587\nuser: u\npass: p\nfrom: a@b.test"
        ));
        match parse_with_env(&with_host) {
            Ok(mut config) => assert_eq!(config.providers.remove(0).smtp.host, *literal),
            Err(e) => assert!(
                e.to_string().starts_with(&format!(
                    "providers.email.config.host: {literal:?} is not a host name"
                )),
                "{e}"
            ),
        }
        let s = smtp_with(&format!(
            "host: h\nport: 587\nuser: {literal}\npass: {literal}\nfrom: {literal}\nfallback: [{literal}]"
        ));
        assert_eq!(s.user.as_deref(), Some(*literal), "user");
        assert_eq!(s.pass.as_ref().map(|p| p.expose()), Some(*literal), "pass");
        assert_eq!(s.from, *literal, "from");
        assert_eq!(s.fallback, [*literal], "fallback");

        let yaml = format!(
            "providers:\n  email:\n    name: {literal}\n    description: {literal}\n    provider: email\n    config: {{host: h, port: 25, user: u, pass: p, from: a@b.test}}\nworkflows:\n  - name: {literal}\n    steps:\n      - task: notify\n        type: email\n        config:\n          provider: [{literal}]\n          subject: {literal}\n          to: a@b.test\n          body: {{text: {literal}, html: {literal}}}\n"
        );
        let config = parse_with_env(&yaml).unwrap_or_else(|e| panic!("{literal}: {e}"));
        let p = &config.providers[0];
        assert_eq!(p.name.as_deref(), Some(*literal));
        assert_eq!(p.description.as_deref(), Some(*literal));
        let w = &config.workflows[0];
        assert_eq!(w.name, *literal);
        let WorkflowStep::Email(step) = &w.steps[0] else {
            panic!("an email step")
        };
        assert_eq!(step.providers, [*literal]);
        assert_eq!(step.subject, *literal);
        assert_eq!(step.text.as_deref(), Some(*literal));
        assert_eq!(step.html.as_deref(), Some(*literal));
    }
}

#[test]
fn a_recipient_written_as_a_number_is_reported_as_written() {
    let yaml = "workflows:\n  - name: w\n    steps:\n      - task: notify\n        type: email\n        config:\n          provider: email\n          subject: s\n          to: [1.10]\n          body: {text: t}\n";
    let e = err(yaml);
    assert!(
        e.starts_with("workflows[0].steps[0].config.to[0]: address \"1.10\""),
        "{e}"
    );
}

#[test]
fn chunking_is_on_unless_turned_off() {
    let on = smtp_with(BASE);
    assert!(on.chunking);
    assert!(on.client_options().expect("options").chunking.enabled);
    let off = smtp_with(&format!("{BASE}\nchunking: false"));
    assert!(!off.chunking);
    let options = off.client_options().expect("options");
    assert!(!options.chunking.enabled);
    assert_eq!(
        options.chunking.max_messages_in_flight,
        smtpkit::client::Chunking::default().max_messages_in_flight
    );
}

#[test]
fn numeric_and_boolean_keys_still_read_yaml_numbers_and_booleans() {
    let s = smtp_with("host: h\nport: 0x24B\nuser: u\npass: p\nfrom: a@b.test\ntls_skip_verify: True\nrate_limit: {per_second: 10}");
    assert_eq!(s.port, 587);
    assert!(s.tls_skip_verify);
    assert_eq!(s.rate_limit.per_second, 10);
}

#[test]
fn version_written_unquoted_is_read_as_written() {
    let config = parse_with_env("version: 1.0\n").expect("1.0 unquoted");
    assert_eq!(config.version.as_deref(), Some("1.0"));
    let e = err("version: 1.00\n");
    assert!(
        e.starts_with("version: unsupported version \"1.00\""),
        "{e}"
    );
}

#[test]
fn a_yaml_null_for_a_required_string_says_to_quote_it() {
    for null in ["~", "null", "Null", "NULL"] {
        let e = err(&provider_yaml(
            &BASE.replace("pass: p", &format!("pass: {null}")),
        ));
        assert!(
            e.starts_with("providers.email.config.pass: ")
                && e.contains("no value")
                && e.contains("quote"),
            "{null}: {e}"
        );
    }
    let e = err(&provider_yaml(&BASE.replace("user: u", "user:")));
    assert!(
        e.starts_with("providers.email.config.user: ") && e.contains("no value"),
        "{e}"
    );
}

#[test]
fn dollar_signs_are_kept_unless_they_escape_a_brace() {
    for (written, read) in [
        ("pa$$word", "pa$$word"),
        ("$$", "$$"),
        ("a$b$$c$$$d$", "a$b$$c$$$d$"),
        ("cost $5 and $$HOME", "cost $5 and $$HOME"),
        ("'{}$}{'", "{}$}{"),
        ("'$${NOT_A_VAR}'", "${NOT_A_VAR}"),
        ("'x$${'", "x${"),
        ("'$$$${TWO}'", "$${TWO}"),
        ("'$$${SMTP_PASSWORD}'", "$from-env"),
        ("'${MISSING:-$${LITERAL}}'", "${LITERAL}"),
        ("'${MISSING:-{a}}'", "{a}"),
    ] {
        let s = smtp_with(&BASE.replace("pass: p", &format!("pass: {written}")));
        assert_eq!(s.pass.as_ref().map(|p| p.expose()), Some(read), "{written}");
    }
}

#[test]
fn defaults_may_hold_variables_nested_to_a_bounded_depth() {
    for (written, read) in [
        ("${MISSING:-${RELAY_HOST}}", "relay.example.com"),
        ("${MISSING:-${ALSO_MISSING:-localhost}}", "localhost"),
        ("${RELAY_HOST:-${MISSING}}", "relay.example.com"),
        ("${EMPTY:-${RELAY_HOST}}", "relay.example.com"),
        ("${MISSING:-a-${RELAY_HOST}-b}", "a-relay.example.com-b"),
        ("x${MISSING:-${A:-${B:-${C:-deep}}}}y", "xdeepy"),
    ] {
        let s = smtp_with(&BASE.replace("host: smtp.example.com", &format!("host: {written}")));
        assert_eq!(s.host, read, "{written}");
    }
    let e = err(&provider_yaml(&BASE.replace(
        "host: smtp.example.com",
        "host: ${MISSING:-${ALSO_MISSING}}",
    )));
    assert!(
        e.starts_with("providers.email.config.host: environment variable ALSO_MISSING is not set"),
        "{e}"
    );
    let too_deep = format!("{}x{}", "${A:-".repeat(9), "}".repeat(9));
    let e = err(&provider_yaml(
        &BASE.replace("host: smtp.example.com", &format!("host: '{too_deep}'")),
    ));
    assert!(
        e.starts_with("providers.email.config.host: ") && e.contains("nested more than 8"),
        "{e}"
    );
    let eight = format!("{}x{}", "${A:-".repeat(8), "}".repeat(8));
    let s = smtp_with(&BASE.replace("host: smtp.example.com", &format!("host: '{eight}'")));
    assert_eq!(s.host, "x");
}

#[test]
fn config_errors_never_show_the_password() {
    const SECRET: &str = "Zq7s3cr3t";
    let values = [
        format!("'{SECRET}${{unclosed'"),
        format!("'{SECRET}${{bad name}}'"),
        format!("'${{x {SECRET}}}'"),
        format!("'${{x-{SECRET}}}'"),
        format!("'${{{SECRET}:?message}}'"),
        format!("'{SECRET}${{MISSING}}'"),
        format!("'${{MISSING:-{SECRET}${{ALSO_MISSING}}}}'"),
        format!("'${{MISSING:-{SECRET}'"),
        format!("'{}{SECRET}{}'", "${A:-".repeat(9), "}".repeat(9)),
        format!("[{SECRET}]"),
        format!("{{{SECRET}: 1}}"),
        format!("!tag {SECRET}"),
        format!("!!int {SECRET}"),
        format!("[!!float {SECRET}]"),
    ];
    for value in &values {
        let yaml = provider_yaml(&BASE.replace("pass: p", &format!("pass: {value}")));
        let e = parse_with_env(&yaml).expect_err(value);
        assert!(
            e.path() == "providers.email.config.pass" || e.to_string().contains("`pass`"),
            "{value}: {e}"
        );
        assert!(!e.to_string().contains("s3cr3t"), "{value}: {e}");
        assert!(!format!("{e:?}").contains("s3cr3t"), "{value}: {e:?}");
    }
    // A placeholder left in `pass` is reported without its text.
    let yaml = provider_yaml(&BASE.replace("pass: p", "pass: <zq7s3cr3t>"));
    let config = parse_with_env(&yaml).expect("loads");
    let e = Mailer::new(&config, None).expect_err("placeholder");
    assert_eq!(e.path(), "providers.email.config.pass");
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
    assert!(!format!("{e:?}").contains("s3cr3t"), "{e:?}");
}
