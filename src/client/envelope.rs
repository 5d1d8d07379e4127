//! The envelope: who the message is from and to, as the server sees it (not the headers).

use crate::proto::{Address, InvalidInput, MailParams, RcptParams, ReversePath};

/// The SMTP envelope: the reverse-path for MAIL FROM and the recipients for RCPT TO.
///
/// Bcc recipients belong here and never in the message headers.
///
/// ```
/// use smtpkit::client::Envelope;
/// use smtpkit::proto::Address;
/// let envelope = Envelope::new(
///     Address::new("noreply@example.com")?,
///     vec![Address::new("approver@example.com")?, Address::new("approver@example.com")?],
/// )?;
/// assert_eq!(envelope.to().len(), 1); // duplicates removed
/// # Ok::<(), smtpkit::proto::InvalidInput>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    from: ReversePath,
    to: Vec<Address>,
    mail_params: MailParams,
    /// One per recipient, in the order of `to`.
    rcpt_params: Vec<RcptParams>,
}

impl Envelope {
    /// An envelope with at least one recipient; repeated recipients are sent once.
    pub fn new(from: impl Into<ReversePath>, to: Vec<Address>) -> Result<Envelope, InvalidInput> {
        let mut unique: Vec<Address> = Vec::with_capacity(to.len());
        for address in to {
            if !unique
                .iter()
                .any(|a| a.as_str().eq_ignore_ascii_case(address.as_str()))
            {
                unique.push(address);
            }
        }
        if unique.is_empty() {
            return Err(InvalidInput::Invalid {
                what: "envelope",
                value: String::new(),
                reason: "it has no recipients",
            });
        }
        Ok(Envelope {
            from: from.into(),
            rcpt_params: vec![RcptParams::default(); unique.len()],
            to: unique,
            mail_params: MailParams::default(),
        })
    }

    /// The same envelope with these MAIL FROM parameters (DSN's RET and ENVID, REQUIRETLS,
    /// MT-PRIORITY).
    ///
    /// ```
    /// use smtpkit::client::Envelope;
    /// use smtpkit::proto::{Address, MailParams, Notify, RcptParams, Ret};
    /// let approver = Address::new("approver@example.com")?;
    /// let envelope = Envelope::new(Address::new("noreply@example.com")?, vec![approver.clone()])?
    ///     .with_mail_params(MailParams { ret: Some(Ret::Headers), ..MailParams::default() })
    ///     .with_rcpt_params(
    ///         &approver,
    ///         RcptParams {
    ///             notify: Some(Notify::On { success: false, failure: true, delay: true }),
    ///             orcpt: None,
    ///         },
    ///     )?;
    /// assert_eq!(envelope.rcpt_params()[0].notify, Some(Notify::On { success: false, failure: true, delay: true }));
    /// # Ok::<(), smtpkit::proto::InvalidInput>(())
    /// ```
    pub fn with_mail_params(mut self, params: MailParams) -> Envelope {
        self.mail_params = params;
        self
    }

    /// The same envelope with these RCPT TO parameters for `recipient` (DSN's NOTIFY and
    /// ORCPT); an error when `recipient` is not one of the envelope's.
    pub fn with_rcpt_params(
        mut self,
        recipient: &Address,
        params: RcptParams,
    ) -> Result<Envelope, InvalidInput> {
        let Some(i) = self
            .to
            .iter()
            .position(|a| a.as_str().eq_ignore_ascii_case(recipient.as_str()))
        else {
            return Err(InvalidInput::Invalid {
                what: "recipient",
                value: recipient.to_string(),
                reason: "it is not a recipient of this envelope",
            });
        };
        self.rcpt_params[i] = params;
        Ok(self)
    }

    /// The same sender and parameters for some of the recipients (those of `to` that are in
    /// this envelope, each with its own parameters): what a retry sends.
    pub fn subset(&self, to: &[Address]) -> Result<Envelope, InvalidInput> {
        let mut envelope = Envelope::new(self.from.clone(), to.to_vec())?;
        envelope.mail_params = self.mail_params.clone();
        for (i, address) in envelope.to.iter().enumerate() {
            if let Some(j) = self
                .to
                .iter()
                .position(|a| a.as_str().eq_ignore_ascii_case(address.as_str()))
            {
                envelope.rcpt_params[i] = self.rcpt_params[j].clone();
            }
        }
        Ok(envelope)
    }

    /// The MAIL FROM parameters.
    pub fn mail_params(&self) -> &MailParams {
        &self.mail_params
    }

    /// The RCPT TO parameters, one per recipient in the order of [`Envelope::to`].
    pub fn rcpt_params(&self) -> &[RcptParams] {
        &self.rcpt_params
    }

    /// The reverse-path.
    pub fn from(&self) -> &ReversePath {
        &self.from
    }

    /// The recipients, without duplicates, in the order given.
    pub fn to(&self) -> &[Address] {
        &self.to
    }

    /// True when an address needs SMTPUTF8.
    pub fn needs_smtputf8(&self) -> bool {
        self.from.needs_smtputf8() || self.to.iter().any(Address::needs_smtputf8)
    }
}
