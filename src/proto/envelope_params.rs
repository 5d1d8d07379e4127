//! Typed MAIL FROM and RCPT TO extension parameters: delivery status notifications (DSN,
//! RFC 3461), REQUIRETLS (RFC 8689) and MT-PRIORITY (RFC 6710), each paired with the EHLO
//! keyword a server must offer before it may be sent.

use super::address::{Address, InvalidInput};
use super::command::Parameter;

/// RFC 3461 §4: xtext, printable ASCII with `+`, `=` and anything outside `!`..`~` written
/// as `+XX` (upper-case hex).
///
/// ```
/// assert_eq!(smtpkit::proto::xtext("a+b=c d"), "a+2Bb+3Dc+20d");
/// ```
pub fn xtext(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// What a DSN returns of the message (RFC 3461 §4.3, `RET=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// The whole message.
    Full,
    /// The headers only.
    Headers,
}

/// When a recipient's DSN is wanted (RFC 3461 §4.1, `NOTIFY=`). `Never` excludes the others,
/// which the type makes impossible to combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notify {
    /// No DSN for this recipient, whatever happens.
    Never,
    /// A DSN on each of the chosen events (at least one).
    On {
        /// Delivered.
        success: bool,
        /// Failed.
        failure: bool,
        /// Delayed.
        delay: bool,
    },
}

/// Extension parameters of MAIL FROM. Empty by default.
///
/// ```
/// use smtpkit::proto::{MailParams, Ret};
/// let params = MailParams {
///     ret: Some(Ret::Headers),
///     envid: Some("order-1234".into()),
///     ..MailParams::default()
/// };
/// # let _ = params;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailParams {
    /// `RET=` (needs DSN).
    pub ret: Option<Ret>,
    /// `ENVID=`, an id of yours returned in DSNs, at most 100 characters (needs DSN).
    pub envid: Option<String>,
    /// `REQUIRETLS`: every hop must use verified TLS, or the message bounces (needs
    /// REQUIRETLS, and a session under TLS). Never dropped.
    pub requiretls: bool,
    /// `MT-PRIORITY=` from -9 to 9 (needs MT-PRIORITY).
    pub mt_priority: Option<i8>,
    /// When the server lacks DSN or MT-PRIORITY: drop those parameters (with a note in the
    /// transcript and a warning) instead of refusing to send.
    pub drop_unsupported: bool,
}

/// Extension parameters of one RCPT TO. Empty by default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RcptParams {
    /// `NOTIFY=` (needs DSN).
    pub notify: Option<Notify>,
    /// `ORCPT=rfc822;…`, the recipient as originally given (needs DSN).
    pub orcpt: Option<Address>,
}

/// A parameter with the EHLO keyword the server must offer for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    /// The parameter.
    pub parameter: Parameter,
    /// The EHLO keyword it needs.
    pub extension: &'static str,
}

fn offered(
    keyword: &str,
    value: Option<&str>,
    extension: &'static str,
) -> Result<Offered, InvalidInput> {
    Ok(Offered {
        parameter: Parameter::new(keyword, value)?,
        extension,
    })
}

impl MailParams {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.ret.is_none() && self.envid.is_none() && !self.requiretls && self.mt_priority.is_none()
    }

    /// The parameters, checked and encoded, each with the extension it needs.
    pub fn parameters(&self) -> Result<Vec<Offered>, InvalidInput> {
        let mut out = Vec::new();
        if let Some(ret) = self.ret {
            let value = match ret {
                Ret::Full => "FULL",
                Ret::Headers => "HDRS",
            };
            out.push(offered("RET", Some(value), "DSN")?);
        }
        if let Some(envid) = &self.envid {
            // RFC 3461 §4.4: at most 100 characters, printable ASCII before encoding.
            if envid.is_empty()
                || envid.len() > 100
                || !envid.bytes().all(|b| (32..=126).contains(&b))
            {
                return Err(InvalidInput::Invalid {
                    what: "ENVID",
                    value: envid.clone(),
                    reason: "an envelope id is 1 to 100 printable ASCII characters",
                });
            }
            out.push(offered("ENVID", Some(&xtext(envid)), "DSN")?);
        }
        if self.requiretls {
            out.push(offered("REQUIRETLS", None, "REQUIRETLS")?);
        }
        if let Some(priority) = self.mt_priority {
            // RFC 6710 §2: -9 to 9.
            if !(-9..=9).contains(&priority) {
                return Err(InvalidInput::Invalid {
                    what: "MT-PRIORITY",
                    value: priority.to_string(),
                    reason: "a priority is from -9 to 9",
                });
            }
            out.push(offered(
                "MT-PRIORITY",
                Some(&priority.to_string()),
                "MT-PRIORITY",
            )?);
        }
        Ok(out)
    }
}

impl RcptParams {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.notify.is_none() && self.orcpt.is_none()
    }

    /// The parameters, checked and encoded, each with the extension it needs.
    pub fn parameters(&self) -> Result<Vec<Offered>, InvalidInput> {
        let mut out = Vec::new();
        if let Some(notify) = self.notify {
            let value = match notify {
                Notify::Never => "NEVER".to_owned(),
                Notify::On {
                    success,
                    failure,
                    delay,
                } => {
                    let events: Vec<&str> =
                        [(success, "SUCCESS"), (failure, "FAILURE"), (delay, "DELAY")]
                            .into_iter()
                            .filter_map(|(on, name)| on.then_some(name))
                            .collect();
                    if events.is_empty() {
                        return Err(InvalidInput::Invalid {
                            what: "NOTIFY",
                            value: String::new(),
                            reason: "choose at least one of success, failure and delay, or Never",
                        });
                    }
                    events.join(",")
                }
            };
            out.push(offered("NOTIFY", Some(&value), "DSN")?);
        }
        if let Some(orcpt) = &self.orcpt {
            // RFC 3461 §4.2: addr-type ";" xtext; the utf-8 type (RFC 6533) is not offered.
            if orcpt.needs_smtputf8() {
                return Err(InvalidInput::Invalid {
                    what: "ORCPT",
                    value: orcpt.to_string(),
                    reason: "an rfc822 original recipient is ASCII",
                });
            }
            out.push(offered(
                "ORCPT",
                Some(&format!("rfc822;{}", xtext(orcpt.as_str()))),
                "DSN",
            )?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_encodes_plus_equals_and_non_printables() {
        assert_eq!(xtext("plain@example.com"), "plain@example.com");
        assert_eq!(xtext("a+b=c d\u{7f}"), "a+2Bb+3Dc+20d+7F");
        assert_eq!(xtext("é"), "+C3+A9");
    }

    #[test]
    fn dsn_parameters_encode_as_the_rfc_writes_them() {
        let mail = MailParams {
            ret: Some(Ret::Headers),
            envid: Some("QQ314159 x=1+2".into()),
            mt_priority: Some(-3),
            ..MailParams::default()
        };
        let text: Vec<String> = mail
            .parameters()
            .expect("valid")
            .iter()
            .map(|o| format!("{} ({})", o.parameter, o.extension))
            .collect();
        assert_eq!(
            text,
            [
                "RET=HDRS (DSN)",
                "ENVID=QQ314159+20x+3D1+2B2 (DSN)",
                "MT-PRIORITY=-3 (MT-PRIORITY)"
            ]
        );
        let rcpt = RcptParams {
            notify: Some(Notify::On {
                success: true,
                failure: true,
                delay: false,
            }),
            orcpt: Some(Address::new("a+tag@example.org").expect("valid")),
        };
        let text: Vec<String> = rcpt
            .parameters()
            .expect("valid")
            .iter()
            .map(|o| o.parameter.to_string())
            .collect();
        assert_eq!(
            text,
            ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;a+2Btag@example.org"]
        );
    }

    #[test]
    fn impossible_values_are_refused() {
        let long = MailParams {
            envid: Some("x".repeat(101)),
            ..MailParams::default()
        };
        assert!(long.parameters().is_err());
        let priority = MailParams {
            mt_priority: Some(10),
            ..MailParams::default()
        };
        assert!(priority.parameters().is_err());
        let none = RcptParams {
            notify: Some(Notify::On {
                success: false,
                failure: false,
                delay: false,
            }),
            orcpt: None,
        };
        assert!(none.parameters().is_err());
        let control = MailParams {
            envid: Some("a\r\nRCPT TO:<x@y>".into()),
            ..MailParams::default()
        };
        assert!(control.parameters().is_err());
    }
}
