//! Transfer tasks as the hub keeps them: what to copy ([`TaskSpec`]), when ([`Schedule`]), whom to tell
//! when it goes wrong ([`AlarmTarget`]), and the states of tasks, runs and queue items.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{DEFAULT_IMAGE_ATTEMPTS, EndpointSpec, ImageSync, ParseError, SyncOptions};

/// Objects at least this large are split into one queue item per part (1 GiB).
pub const DEFAULT_GIANT_THRESHOLD: u64 = 1024 * 1024 * 1024;
/// Attempts of one object before it is dead-lettered, unless the task says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// A transfer task as created through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// A name for people.
    pub name: String,
    /// What the task is for, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What to copy.
    #[serde(flatten)]
    pub job: Job,
    /// When runs start. Absent: hourly.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// Who is told when items are dead-lettered or the task fails.
    #[serde(default)]
    pub alarms: Vec<AlarmTarget>,
    /// Attempts of one item before it is dead-lettered. Absent: 5 for objects, 3 for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

impl TaskSpec {
    /// The schedule in force: the one given, or the kind's default.
    pub fn effective_schedule(&self) -> Schedule {
        self.schedule
            .clone()
            .unwrap_or_else(|| Schedule::Cron("0 * * * *".into()))
    }

    /// The attempts in force: the ones given, or the kind's default.
    pub fn effective_max_attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(match &self.job {
            Job::S3(_) => DEFAULT_MAX_ATTEMPTS,
            Job::Image(_) => DEFAULT_IMAGE_ATTEMPTS,
        })
    }

    /// Checks what serde cannot: names, schedule, limits. The message names the field.
    pub fn validate(&self) -> Result<(), ParseError> {
        if self.name.trim().is_empty() {
            return Err(bad("name", &self.name, "a task needs a name"));
        }
        if self.name.chars().count() > 200 {
            return Err(bad("name", &self.name, "at most 200 characters"));
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 2000)
        {
            return Err(bad("description", "…", "at most 2000 characters"));
        }
        if self.max_attempts == Some(0) {
            return Err(bad("max_attempts", "0", "at least 1"));
        }
        if let Some(s) = &self.schedule {
            s.validate()?;
        }
        for a in &self.alarms {
            a.validate()?;
        }
        match &self.job {
            Job::S3(s) => s.validate(),
            Job::Image(i) => i.validate(),
        }
    }

    /// The kind name: `s3` or `image`.
    pub fn kind(&self) -> &'static str {
        match self.job {
            Job::S3(_) => "s3",
            Job::Image(_) => "image",
        }
    }
}

/// What a task copies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Job {
    /// Objects between two S3-compatible endpoints.
    S3(S3Job),
    /// Container images between two registries: one item per image tag.
    Image(ImageSync),
}

/// An object transfer between two endpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Job {
    /// Where objects are read.
    pub source: EndpointSpec,
    /// Where objects are written.
    pub destination: EndpointSpec,
    /// How they are compared and copied.
    #[serde(default)]
    pub options: SyncOptions,
    /// Objects at least this large become one queue item per part, shared by every worker.
    #[serde(default = "default_giant")]
    pub giant_threshold: u64,
}

fn default_giant() -> u64 {
    DEFAULT_GIANT_THRESHOLD
}

impl S3Job {
    fn validate(&self) -> Result<(), ParseError> {
        for (side, e) in [("source", &self.source), ("destination", &self.destination)] {
            crate::S3Url::parse(&format!("s3://{}/{}", e.bucket, e.prefix)).map_err(|_| {
                bad(
                    if side == "source" {
                        "source.bucket"
                    } else {
                        "destination.bucket"
                    },
                    &e.bucket,
                    "a bucket name has 3 to 255 letters, digits, '-', '.' or '_'",
                )
            })?;
        }
        if let Some(events) = &self.source.events {
            events.validate()?;
        }
        if self.destination.events.is_some() {
            return Err(bad(
                "destination.events",
                "…",
                "events come from the source bucket; set source.events",
            ));
        }
        if self.options.part_size < 5 * 1024 * 1024 {
            return Err(bad(
                "options.part_size",
                &self.options.part_size.to_string(),
                "at least 5 MiB",
            ));
        }
        if self.giant_threshold < self.options.part_size {
            return Err(bad(
                "giant_threshold",
                &self.giant_threshold.to_string(),
                "at least options.part_size",
            ));
        }
        Ok(())
    }
}

/// When a task's runs start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// A five-field cron expression in UTC (`0 * * * *`: hourly).
    Cron(String),
    /// Every this many seconds, the first run at once.
    EverySeconds(u64),
    /// One run, then the task is done.
    Once,
}

impl Schedule {
    /// Checks the cron expression or the interval.
    pub fn validate(&self) -> Result<(), ParseError> {
        match self {
            Schedule::Cron(expr) => croner::Cron::new(expr)
                .parse()
                .map(|_| ())
                .map_err(|e| bad("schedule.cron", expr, e.to_string())),
            Schedule::EverySeconds(0) => Err(bad("schedule.every-seconds", "0", "at least 1")),
            _ => Ok(()),
        }
    }

    /// When the run after one at `after` (Unix milliseconds) is due; `None` for a one-time task.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match self {
            Schedule::Once => None,
            Schedule::EverySeconds(s) => Some(after_ms + (*s as i64) * 1000),
            Schedule::Cron(expr) => {
                let cron = croner::Cron::new(expr).parse().ok()?;
                let after = chrono::DateTime::from_timestamp_millis(after_ms)?;
                cron.find_next_occurrence(&after, false)
                    .ok()
                    .map(|t| t.timestamp_millis())
            }
        }
    }

    /// Whether the task runs more than once.
    pub fn is_recurring(&self) -> bool {
        !matches!(self, Schedule::Once)
    }
}

/// Someone told about dead-lettered items and failed tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AlarmTarget {
    /// An HTTP POST of a JSON body.
    Webhook {
        /// `http://` or `https://` URL.
        url: String,
    },
    /// An email through the hub's SMTP server.
    Email {
        /// Recipient address.
        to: String,
    },
}

impl AlarmTarget {
    fn validate(&self) -> Result<(), ParseError> {
        match self {
            AlarmTarget::Webhook { url }
                if !(url.starts_with("http://") || url.starts_with("https://")) =>
            {
                Err(bad("alarms.url", url, "an http:// or https:// URL"))
            }
            AlarmTarget::Email { to } if !to.contains('@') => {
                Err(bad("alarms.to", to, "an email address"))
            }
            _ => Ok(()),
        }
    }
}

fn bad(what: &'static str, value: &str, reason: impl Into<String>) -> ParseError {
    ParseError::BadValue {
        what,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Generates a string enum with `name()`, `Display`, `FromStr` and serde in snake case names.
macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $v),+
        }
        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            /// The stored and displayed name.
            pub fn name(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                match s {
                    $($s => Ok($name::$v),)+
                    _ => Err(bad(stringify!($name), s, format!("expected one of {}",
                        [$($s),+].join(", ")))),
                }
            }
        }
    };
}

named_enum! {
    /// Where a task is in its life.
    TaskStatus {
        /// Created or started; the first run is being set up.
        Starting = "STARTING",
        /// Runs are going on or scheduled.
        InProgress = "IN_PROGRESS",
        /// A one-time task finished.
        Done = "DONE",
        /// The task cannot go on; see its error.
        Error = "ERROR",
        /// Asked to stop; in-flight work is being cancelled.
        Stopping = "STOPPING",
        /// Stopped; start it again to resume.
        Stopped = "STOPPED",
    }
}

named_enum! {
    /// Where a run is.
    RunStatus {
        /// Listing and diffing; items are still being added.
        Finding = "FINDING",
        /// Everything is found; workers drain the items.
        Transferring = "TRANSFERRING",
        /// Every item ended done or skipped.
        Done = "DONE",
        /// Every item ended, some dead-lettered, or the finder failed.
        Failed = "FAILED",
        /// Stopped by a user.
        Stopped = "STOPPED",
    }
}

impl RunStatus {
    /// Whether the run still has work to do.
    pub fn is_active(self) -> bool {
        matches!(self, RunStatus::Finding | RunStatus::Transferring)
    }
}

named_enum! {
    /// What a run was started by.
    Trigger {
        /// The task's schedule.
        Schedule = "schedule",
        /// A user, through the API.
        User = "user",
        /// An S3 event notification.
        Event = "event",
    }
}

named_enum! {
    /// What a queue item stands for.
    ItemKind {
        /// Copy one object.
        Object = "object",
        /// Copy one part of a giant object.
        Part = "part",
        /// Delete one destination object.
        Delete = "delete",
        /// Copy one image (a tag or a digest) with everything it references.
        Image = "image",
    }
}

named_enum! {
    /// Where a queue item is.
    ItemState {
        /// Waiting for a worker (possibly not before `not_before`).
        Queued = "queued",
        /// Held by a worker under a lease.
        Leased = "leased",
        /// A giant object waiting for its parts.
        Waiting = "waiting",
        /// Copied (or deleted) and verified.
        Done = "done",
        /// Left alone: archived, or gone from the source when read.
        Skipped = "skipped",
        /// Failed permanently or too often; needs a person (retry from the API).
        Dead = "dead",
        /// Its run was stopped first.
        Cancelled = "cancelled",
    }
}

impl ItemState {
    /// Whether the item has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ItemState::Done | ItemState::Skipped | ItemState::Dead | ItemState::Cancelled
        )
    }
}

/// Lease length workers use unless told otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// Reads a task spec, naming the field at fault. Serde loses the path inside the flattened job
/// (`unknown variant` without saying where), so on failure each part is read again on its own.
impl TaskSpec {
    /// Reads a task spec from JSON (the API's body). The error names the field at fault:
    /// `invalid task spec: source.url: …`.
    pub fn from_json(body: &Value) -> Result<TaskSpec, String> {
        parse_spec(body)
    }
}

fn parse_spec(body: &Value) -> Result<TaskSpec, String> {
    let whole = match located::<TaskSpec>("", body) {
        Ok(spec) => return Ok(spec),
        Err(message) => message,
    };
    let part = |field: &str| -> Option<String> {
        let v = body.get(field)?;
        let images = body.get("kind").and_then(Value::as_str) == Some("image");
        match field {
            "source" | "destination" if images => located::<crate::ImageEndpoint>(field, v).err(),
            "source" | "destination" => located::<crate::EndpointSpec>(field, v).err(),
            "options" => located::<crate::SyncOptions>(field, v).err(),
            "schedule" => located::<Schedule>(field, v).err(),
            _ => located::<Vec<AlarmTarget>>(field, v).err(),
        }
    };
    let message = ["source", "destination", "options", "schedule", "alarms"]
        .into_iter()
        .find_map(part)
        .unwrap_or_else(|| {
            // The job's tag is read through `flatten`, which drops the path.
            if whole.starts_with("unknown variant") && body.get("kind").is_some() {
                format!("kind: {whole}")
            } else {
                whole
            }
        });
    Err(format!("invalid task spec: {message}"))
}

/// Deserializes `v`; on failure the message starts with the path of the field at fault under
/// `field`.
fn located<T: serde::de::DeserializeOwned>(field: &str, v: &Value) -> Result<T, String> {
    serde_path_to_error::deserialize::<_, T>(v.clone()).map_err(|e| {
        let path = e.path().to_string();
        let path = match (field, path.as_str()) {
            ("", ".") => String::new(),
            ("", p) => format!("{p}: "),
            (f, ".") => format!("{f}: "),
            (f, p) => format!("{f}.{p}: "),
        };
        format!("{path}{}", e.inner())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for s in TaskStatus::ALL {
            assert_eq!(s.name().parse::<TaskStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
        for s in ItemState::ALL {
            assert_eq!(s.name().parse::<ItemState>().unwrap(), *s);
        }
        assert!("nope".parse::<RunStatus>().is_err());
    }

    #[test]
    fn schedules() {
        let hourly = Schedule::Cron("0 * * * *".into());
        hourly.validate().unwrap();
        // 2026-01-01T00:30:00Z → 01:00.
        let t = 1_767_227_400_000;
        assert_eq!(hourly.next_after(t), Some(t + 30 * 60 * 1000));
        assert!(Schedule::Cron("61 * * * *".into()).validate().is_err());
        assert!(Schedule::Cron("every day".into()).validate().is_err());
        assert_eq!(Schedule::EverySeconds(5).next_after(1000), Some(6000));
        assert_eq!(Schedule::Once.next_after(0), None);
    }

    #[test]
    fn parses_a_task() {
        let spec: TaskSpec = serde_json::from_value(serde_json::json!({
            "name": "photos",
            "kind": "s3",
            "source": {"provider": "aws", "region": null, "endpoint_url": null, "bucket": "src",
                       "prefix": "", "credentials": {"kind": "default-chain"}},
            "destination": {"provider": "minio", "region": null, "endpoint_url": "http://127.0.0.1:9000",
                            "bucket": "dst", "prefix": "", "credentials": {"kind": "secret", "name": "minio"}},
            "schedule": {"cron": "*/5 * * * *"},
            "alarms": [{"kind": "webhook", "url": "http://127.0.0.1:1/hook"}]
        }))
        .unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.effective_max_attempts(), DEFAULT_MAX_ATTEMPTS);
        let Job::S3(job) = &spec.job else {
            panic!("an object task")
        };
        assert_eq!(job.giant_threshold, DEFAULT_GIANT_THRESHOLD);
        assert!(
            serde_json::from_value::<TaskSpec>(serde_json::json!({"name": "x", "kind": "ftp"}))
                .is_err()
        );
    }
}
