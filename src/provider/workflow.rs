//! The spec's `workflows:`: lists of steps, of which smtpkit runs `task: notify`, `type: email`.

use super::error::ConfigError;
use super::yaml_node::Node;
use crate::message::Mailbox;

/// A workflow: a name and its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workflow {
    /// `name`.
    pub name: String,
    /// `steps`, in order.
    pub steps: Vec<WorkflowStep>,
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkflowStep {
    /// `task: notify` with `type: email`.
    Email(EmailStep),
    /// Any other task or type: not run by smtpkit, reported as skipped.
    Skipped {
        /// `task`.
        task: String,
        /// `type`.
        kind: String,
    },
}

/// The `config:` of an email notify step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailStep {
    /// Where the step is in the file, for messages (`workflows[0].steps[1]`).
    pub path: String,
    /// `provider`: one name, or a list tried in order.
    pub providers: Vec<String>,
    /// `subject`.
    pub subject: String,
    /// `from`, overriding the provider's sender.
    pub from: Option<Mailbox>,
    /// `to`.
    pub to: Vec<Mailbox>,
    /// `cc`.
    pub cc: Vec<Mailbox>,
    /// `bcc`: in the envelope only.
    pub bcc: Vec<Mailbox>,
    /// `body.text`.
    pub text: Option<String>,
    /// `body.html`.
    pub html: Option<String>,
}

const WORKFLOW_KEYS: &[&str] = &["name", "description", "steps"];
const EMAIL_KEYS: &[&str] = &["provider", "subject", "from", "to", "cc", "bcc", "body"];
const BODY_KEYS: &[&str] = &["text", "html"];

pub(crate) fn parse_workflows(node: Node<'_, '_>) -> Result<Vec<Workflow>, ConfigError> {
    let env = node.env();
    let mut workflows = Vec::new();
    for item in node.items()? {
        let w = item.node(env);
        w.check_keys(WORKFLOW_KEYS)?;
        let name = w
            .require("name", "the workflow's name")?
            .node(env)
            .non_empty("name")?;
        let mut steps = Vec::new();
        if let Some(list) = w.get("steps") {
            for step in list.node(env).items()? {
                steps.push(parse_step(step.node(env))?);
            }
        }
        workflows.push(Workflow { name, steps });
    }
    Ok(workflows)
}

fn parse_step(node: Node<'_, '_>) -> Result<WorkflowStep, ConfigError> {
    let env = node.env();
    let task = node
        .require("task", "what the step does, e.g. notify")?
        .node(env)
        .string()?;
    let kind = node
        .get("type")
        .map(|t| t.node(env).string())
        .transpose()?
        .unwrap_or_default();
    if task != "notify" || kind != "email" {
        return Ok(WorkflowStep::Skipped { task, kind });
    }
    let config = node.require("config", "the email to send")?;
    let c = config.node(env);
    c.check_keys(EMAIL_KEYS)?;
    let providers = c
        .require("provider", "the provider to send through")?
        .node(env)
        .strings()?;
    let subject = c
        .require("subject", "the subject line")?
        .node(env)
        .string()?;
    let mailboxes = |key: &str| -> Result<Vec<Mailbox>, ConfigError> {
        let Some(list) = c.get(key) else {
            return Ok(Vec::new());
        };
        let list = list.node(env);
        let texts = list.strings()?;
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.parse::<Mailbox>()
                    .map_err(|e| ConfigError::new(format!("{}[{i}]", list.path()), e.to_string()))
            })
            .collect()
    };
    let to = mailboxes("to")?;
    let cc = mailboxes("cc")?;
    let bcc = mailboxes("bcc")?;
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(c.error("no recipients: set `to` (and optionally `cc`, `bcc`)"));
    }
    let from = match c.get("from") {
        None => None,
        Some(f) => Some(
            f.node(env)
                .string()?
                .parse()
                .map_err(|e: crate::proto::InvalidInput| f.node(env).error(e.to_string()))?,
        ),
    };
    let body = c.require("body", "`text` and/or `html`")?;
    let b = body.node(env);
    b.check_keys(BODY_KEYS)?;
    let text = b.get("text").map(|t| t.node(env).string()).transpose()?;
    let html = b.get("html").map(|t| t.node(env).string()).transpose()?;
    if text.is_none() && html.is_none() {
        return Err(b.error("empty body: set `text`, `html` or both"));
    }
    Ok(WorkflowStep::Email(EmailStep {
        path: node.path().to_owned(),
        providers,
        subject,
        from,
        to,
        cc,
        bcc,
        text,
        html,
    }))
}

impl EmailStep {
    /// The notification this step sends.
    pub fn notification(&self) -> crate::message::Notification {
        crate::message::Notification {
            from: self.from.clone(),
            to: self.to.clone(),
            cc: self.cc.clone(),
            bcc: self.bcc.clone(),
            reply_to: None,
            subject: self.subject.clone(),
            text: self.text.clone(),
            html: self.html.clone(),
            attachments: Vec::new(),
        }
    }
}
