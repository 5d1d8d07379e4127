//! `Config::from_yaml_str_with_env` on arbitrary text: it returns `Ok` or `Err`, never panics.
//! Run twice: with no variables set, and with every `${VAR}` set to "x". On success the
//! parsed values are used the way the CLI uses them (provider lookup, sender check, the
//! notification of each workflow step), which must not panic either.
//!
//! The input is read as UTF-8, lossily, so no input is wasted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use smtpkit::provider::{Config, WorkflowStep};

fn none(_: &str) -> Option<String> {
    None
}

fn x(_: &str) -> Option<String> {
    Some("x".to_owned())
}

fn use_config(config: &Config) {
    let _ = format!("{config:?}");
    if let Err(e) = config.provider(None) {
        let _ = (e.to_string(), e.path(), e.message());
    }
    for provider in &config.providers {
        let found = config.provider(Some(&provider.id));
        if let Err(e) = &found {
            let _ = e.to_string();
        }
        let path = format!("providers.{}.config", provider.id);
        match provider.smtp.check_ready(&path) {
            Ok(sender) => {
                let _ = (sender.name(), sender.address().as_str());
                let _ = sender.address().domain();
                for workflow in &config.workflows {
                    for step in &workflow.steps {
                        if let WorkflowStep::Email(step) = step {
                            let notification = step.notification();
                            if let Err(e) = notification.build(&sender) {
                                let _ = e.to_string();
                            }
                        }
                    }
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    for env in [&none as &dyn Fn(&str) -> Option<String>, &x] {
        match Config::from_yaml_str_with_env(&text, env) {
            Ok(config) => use_config(&config),
            Err(e) => {
                let _ = (e.to_string(), e.path(), e.message());
            }
        }
    }
});
