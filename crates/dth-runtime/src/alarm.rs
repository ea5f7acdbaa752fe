//! Alarms: a JSON POST to each webhook and an email to each address of a task when items are
//! dead-lettered or the task fails. Sending is bounded (timeouts, three tries with backoff) and never
//! blocks the work; the outcome goes to the event log. Dead-item alarms are throttled to one a minute
//! per run, each with the run's counters.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dth_model::AlarmTarget;
use dth_model::RunCounters;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;

/// Tries per target.
const TRIES: u32 = 3;
/// Minimum time between two dead-item alarms of one run.
const DEAD_ALARM_EVERY: Duration = Duration::from_secs(60);

/// The mail server email alarms go through.
#[derive(Clone)]
pub struct SmtpConfig {
    /// Host name or address.
    pub host: String,
    /// Port (25, 587…).
    pub port: u16,
    /// Upgrade with STARTTLS (required when set).
    pub starttls: bool,
    /// Login, when the server needs one.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
    /// Sender address.
    pub from: String,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("starttls", &self.starttls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("from", &self.from)
            .finish()
    }
}

/// What an alarm says; the webhook body.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Alarm {
    /// `items.dead` or `task.error`.
    pub kind: &'static str,
    /// The task.
    pub task_id: String,
    /// Its name.
    pub task_name: String,
    /// The run, when one is concerned.
    pub run_id: Option<i64>,
    /// What happened.
    pub message: String,
    /// The run's counters at the time.
    pub counters: Option<RunCounters>,
}

/// Sends alarms.
pub(crate) struct Alarms {
    http: reqwest::Client,
    smtp: Option<SmtpConfig>,
    last_dead: Mutex<HashMap<i64, Instant>>,
}

impl Alarms {
    pub fn new(smtp: Option<SmtpConfig>) -> Self {
        Alarms {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            smtp,
            last_dead: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a dead-item alarm for this run may go out now (and, if so, remembers it did).
    pub fn dead_alarm_due(&self, run_id: i64) -> bool {
        let mut last = self.last_dead.lock().unwrap_or_else(|p| p.into_inner());
        match last.get(&run_id) {
            Some(t) if t.elapsed() < DEAD_ALARM_EVERY => false,
            _ => {
                last.insert(run_id, Instant::now());
                true
            }
        }
    }

    /// Sends to every target; returns one line per target saying how it went.
    pub async fn send(
        &self,
        targets: &[AlarmTarget],
        alarm: &Alarm,
    ) -> Vec<Result<String, String>> {
        let mut out = Vec::new();
        for t in targets {
            let res = match t {
                AlarmTarget::Webhook { url } => self
                    .webhook(url, alarm)
                    .await
                    .map(|()| format!("webhook {url}")),
                AlarmTarget::Email { to } => {
                    self.email(to, alarm).await.map(|()| format!("email {to}"))
                }
            };
            out.push(res);
        }
        out
    }

    async fn webhook(&self, url: &str, alarm: &Alarm) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 1..=TRIES {
            match self.http.post(url).json(alarm).send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("webhook {url} answered {}", r.status()),
                Err(e) => last = format!("webhook {url}: {e}"),
            }
            if attempt < TRIES {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
        }
        Err(last)
    }

    async fn email(&self, to: &str, alarm: &Alarm) -> Result<(), String> {
        let body = format!(
            "{}\n\ntask: {} ({})\nrun: {}\ncounters: {}\n",
            alarm.message,
            alarm.task_name,
            alarm.task_id,
            alarm.run_id.map(|r| r.to_string()).unwrap_or_default(),
            serde_json::to_string(&alarm.counters).unwrap_or_default(),
        );
        let subject = format!("[dth] {}: {}", alarm.task_name, alarm.kind);
        self.mail(to, &subject, body).await
    }

    /// Sends a plain-text mail through the configured SMTP server, retried a few times.
    pub(crate) async fn mail(&self, to: &str, subject: &str, body: String) -> Result<(), String> {
        let Some(smtp) = &self.smtp else {
            return Err(format!(
                "email to {to}: no SMTP server configured (dth serve --smtp-host)"
            ));
        };
        let msg = Message::builder()
            .from(
                smtp.from
                    .parse()
                    .map_err(|e| format!("sender {}: {e}", smtp.from))?,
            )
            .to(to.parse().map_err(|e| format!("recipient {to}: {e}"))?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| format!("email to {to}: {e}"))?;
        let builder = if smtp.starttls {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                .map_err(|e| format!("SMTP server {}: {e}", smtp.host))?
        } else {
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        };
        let mut builder = builder
            .port(smtp.port)
            .timeout(Some(Duration::from_secs(10)));
        if let (Some(u), Some(p)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
        }
        let transport = builder.build();
        let mut last = String::new();
        for attempt in 1..=TRIES {
            match transport.send(msg.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) => last = format!("email to {to} via {}:{}: {e}", smtp.host, smtp.port),
            }
            if attempt < TRIES {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
        }
        Err(last)
    }
}
