//! The images wizard's form: its steps and fields, the spec JSON it makes ([`build`], the shape
//! of `POST /api/v1/tasks` for `"kind": "image"`), the image engine's offline check of it
//! ([`engine_check`]: locations, entries, tag patterns), and the fragment that shows a side's
//! location fields for its kind (`GET /tasks/new/images/location`).

use std::collections::BTreeMap;

use axum::extract::Query;
use axum::response::Response;
use dth_model::{Job, TaskSpec};
use minijinja::context;
use minijinja::value::Value as Ctx;
use serde_json::{Value, json};

use super::presets::aws_regions;
use super::{Errors, Fields, Kind, Login, SCHEDULE_FIELDS, Step, common_json, count, tr};
use crate::portal::i18n::Lang;
use crate::portal::render::Page;

/// The steps and their fields.
pub(super) const STEPS: &[Step] = &[
    Step {
        name: "source",
        fields: &[
            "name",
            "description",
            "src_kind",
            "src_address",
            "src_account",
            "src_region",
            "src_tls",
            "src_cred",
            "src_secret",
            "src_username",
            "src_password",
        ],
    },
    Step {
        name: "destination",
        fields: &[
            "dst_kind",
            "dst_address",
            "dst_account",
            "dst_region",
            "dst_tls",
            "dst_cred",
            "dst_secret",
            "dst_username",
            "dst_password",
        ],
    },
    Step {
        name: "images",
        fields: &[
            "images_mode",
            "images",
            "tag_filter",
            "exclude_tags",
            "keep_latest",
            "platform",
            "platforms_other",
            "concurrency",
            "max_attempts",
        ],
    },
    Step {
        name: "schedule",
        fields: SCHEDULE_FIELDS,
    },
    Step {
        name: "review",
        fields: &[],
    },
];

/// The checkboxes.
pub(super) const CHECKBOXES: &[&str] = &["src_tls", "dst_tls"];

/// Checkbox groups: one value per checked box.
pub(super) const MULTI: &[&str] = &["platform"];

/// Registry logins typed in once.
pub(super) const LOGINS: &[Login] = &[
    Login {
        side: "source",
        prefix: "src",
        mode: "login",
        parts: LOGIN_PARTS,
    },
    Login {
        side: "destination",
        prefix: "dst",
        mode: "login",
        parts: LOGIN_PARTS,
    },
];

const LOGIN_PARTS: &[(&str, &str, bool)] = &[
    ("username", "username", true),
    ("password", "password", true),
];

/// Where a source may be.
const SOURCE_KINDS: &[&str] = &["registry", "ecr", "artifactory", "oci", "archive"];
/// Where a destination may be (registries only).
const DESTINATION_KINDS: &[&str] = &["registry", "ecr", "artifactory"];

/// Platforms offered as checkboxes (any other may be typed).
const PLATFORMS: &[&str] = &[
    "linux/amd64",
    "linux/arm64",
    "linux/arm/v7",
    "linux/arm/v6",
    "linux/386",
    "linux/ppc64le",
    "linux/s390x",
    "windows/amd64",
];

/// The form's defaults: registry to registry, anonymous, TLS verified, the model's defaults.
pub(super) fn defaults(f: &mut Fields) {
    for p in ["src", "dst"] {
        for (k, v) in [
            ("kind", "registry"),
            ("address", ""),
            ("account", ""),
            ("region", "us-east-1"),
            ("tls", "1"),
            ("cred", "anonymous"),
            ("secret", ""),
            ("username", ""),
            ("password", ""),
        ] {
            f.set(&format!("{p}_{k}"), v);
        }
    }
    for (k, v) in [
        ("images_mode", "all"),
        ("images", ""),
        ("tag_filter", ""),
        ("exclude_tags", ""),
        ("keep_latest", ""),
        ("platform", ""),
        ("platforms_other", ""),
        (
            "concurrency",
            &dth_model::DEFAULT_IMAGE_CONCURRENCY.to_string(),
        ),
        (
            "max_attempts",
            &dth_model::DEFAULT_IMAGE_ATTEMPTS.to_string(),
        ),
    ] {
        f.set(k, v);
    }
}

/// The model or engine path a message names → the form field.
pub(super) fn field_of(path: &str, f: &Fields) -> Option<&'static str> {
    let location = |p: &str, ecr: &'static str, other: &'static str| {
        if f.get(&format!("{p}_kind")) == "ecr" {
            ecr
        } else {
            other
        }
    };
    Some(match path {
        "source.location" | "source" => location("src", "src_account", "src_address"),
        "source.credentials.username" => "src_username",
        "source.credentials" => "src_secret",
        "destination.location" | "destination" => location("dst", "dst_account", "dst_address"),
        "destination.credentials.username" => "dst_username",
        "destination.credentials" => "dst_secret",
        "images" => "images",
        "tag_filter" => "tag_filter",
        "exclude_tags" => "exclude_tags",
        "keep_latest" => "keep_latest",
        "platforms" => "platforms_other",
        "concurrency" => "concurrency",
        _ => return None,
    })
}

/// The image engine's check of a spec without a network (locations, entries, patterns), as the
/// hub makes it before creating a task; object specs pass.
pub(super) fn engine_check(spec: &TaskSpec) -> Result<(), String> {
    match &spec.job {
        Job::Image(job) => dth_oci::open::check(job).map_err(|e| e.to_string()),
        Job::S3(_) => Ok(()),
    }
}

/// The spec JSON of the form (`"kind": "image"`), and the messages of fields that could not be
/// read.
pub(super) fn build(f: &Fields, lang: Lang) -> (Value, Errors) {
    let mut errors = Errors::new();
    let mut spec = common_json(f, lang, &mut errors);
    spec.insert("kind".into(), json!("image"));
    spec.insert("source".into(), side(f, "src", lang, &mut errors));
    spec.insert("destination".into(), side(f, "dst", lang, &mut errors));
    // No list: what the source location names.
    let images = if f.get("images_mode") == "list" {
        let images = f.lines("images");
        if images.is_empty() {
            errors.insert("images".into(), tr(lang, "wizard.err.images", &[]));
        }
        images
    } else {
        Vec::new()
    };
    spec.insert("images".into(), json!(images));
    spec.insert("tag_filter".into(), json!(f.lines("tag_filter")));
    spec.insert("exclude_tags".into(), json!(f.lines("exclude_tags")));
    let keep_latest =
        (!f.trimmed("keep_latest").is_empty()).then(|| count(f, "keep_latest", lang, &mut errors));
    spec.insert("keep_latest".into(), json!(keep_latest));
    let mut platforms = f.lines("platform");
    for p in f.get("platforms_other").split([',', ' ', '\n']) {
        let p = p.trim();
        if !p.is_empty() && !platforms.iter().any(|q| q == p) {
            platforms.push(p.to_string());
        }
    }
    spec.insert("platforms".into(), json!(platforms));
    spec.insert(
        "concurrency".into(),
        json!(count(f, "concurrency", lang, &mut errors)),
    );
    (Value::Object(spec), errors)
}

/// One side: its location from the kind and the address, TLS, credentials.
fn side(f: &Fields, p: &str, lang: Lang, errors: &mut Errors) -> Value {
    let field = |s: &str| format!("{p}_{s}");
    let kind = f.get(&field("kind"));
    let kinds = if p == "src" {
        SOURCE_KINDS
    } else {
        DESTINATION_KINDS
    };
    if !kinds.contains(&kind) {
        errors.insert(field("kind"), tr(lang, "wizard.err.choice", &[]));
    }
    let address = f.trimmed(&field("address"));
    let location = if kind == "ecr" {
        let account = f.trimmed(&field("account"));
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            errors.insert(field("account"), tr(lang, "wizard.err.account", &[]));
        }
        let region = f.trimmed(&field("region"));
        if !aws_regions().contains(&region) {
            errors.insert(field("region"), tr(lang, "wizard.err.region", &[]));
        }
        let repo = address.trim_matches('/');
        if repo.is_empty() {
            format!("ecr://{account}.{region}")
        } else {
            format!("ecr://{account}.{region}/{repo}")
        }
    } else {
        let scheme = match kind {
            "artifactory" => "artifactory://",
            "oci" => "oci:",
            "archive" => "docker-archive:",
            _ => "docker://",
        };
        if address.is_empty() {
            errors.insert(field("address"), tr(lang, "wizard.err.address", &[]));
        }
        format!(
            "{scheme}{}",
            address.strip_prefix(scheme).unwrap_or(address)
        )
    };
    let credentials = match f.get(&field("cred")) {
        "anonymous" => json!({"kind": "anonymous"}),
        "login" => {
            errors.insert(field("username"), tr(lang, "wizard.err.login_missing", &[]));
            json!({"kind": "anonymous"})
        }
        _ => {
            let name = f.trimmed(&field("secret"));
            if name.is_empty() {
                errors.insert(field("secret"), tr(lang, "wizard.err.secret", &[]));
            }
            json!({"kind": "secret", "name": name})
        }
    };
    let tls = matches!(kind, "ecr" | "oci" | "archive") || f.checked(&field("tls"));
    json!({ "location": location, "credentials": credentials, "tls_verify": tls })
}

/// What the images templates need besides the form: the kinds per side, the ECR regions and
/// the platforms offered.
pub(super) fn context(f: &Fields) -> Ctx {
    let checked = f.lines("platform");
    context! {
        kinds => BTreeMap::from([("src", SOURCE_KINDS), ("dst", DESTINATION_KINDS)]),
        ecr_regions => aws_regions(),
        platforms => PLATFORMS.iter().map(|p| context! { name => p, checked => checked.iter().any(|c| c == p) }).collect::<Vec<_>>(),
    }
}

/// `GET /tasks/new/images/location?side=src&src_kind=…`: a side's location fields for its kind,
/// as a fragment.
pub(super) async fn location(page: Page, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let p = if q.get("side").map(String::as_str) == Some("dst") {
        "dst"
    } else {
        "src"
    };
    let mut f = Kind::Images.defaults();
    for k in ["kind", "address", "account", "region", "tls"] {
        let name = format!("{p}_{k}");
        if let Some(v) = q.get(&name) {
            f.set(&name, v);
        }
    }
    page.render(
        "wizard/location.html",
        "tasks",
        context! {
            p => p,
            v => f.shown(Kind::Images),
            errors => Errors::new(),
            ..context(&f)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_spec_the_api_takes() {
        let mut f = Kind::Images.defaults();
        for (k, v) in [
            ("name", "mirror"),
            ("src_address", "docker://quay.io"),
            ("dst_kind", "ecr"),
            ("dst_account", "123456789012"),
            ("dst_region", "cn-north-1"),
            ("dst_cred", "anonymous"),
            ("images_mode", "list"),
            ("images", "team/app:ALL_TAGS\n\nteam/db:1.2"),
            ("tag_filter", "semver:>=2"),
            ("platform", "linux/amd64\nlinux/arm64"),
            ("platforms_other", "linux/arm/v7, linux/amd64"),
        ] {
            f.set(k, v);
        }
        let (spec, errors) = build(&f, Lang::En);
        assert!(errors.is_empty(), "{errors:?}");
        let parsed = TaskSpec::from_json(&spec).unwrap();
        parsed.validate().unwrap();
        engine_check(&parsed).unwrap();
        assert_eq!(spec["source"]["location"], "docker://quay.io");
        assert_eq!(
            spec["destination"]["location"],
            "ecr://123456789012.cn-north-1"
        );
        assert_eq!(spec["destination"]["tls_verify"], true);
        assert_eq!(spec["images"], json!(["team/app:ALL_TAGS", "team/db:1.2"]));
        assert_eq!(
            spec["platforms"],
            json!(["linux/amd64", "linux/arm64", "linux/arm/v7"])
        );
        f.set("src_address", "quay.io/team/app");
        let parsed = TaskSpec::from_json(&build(&f, Lang::En).0).unwrap();
        let e = engine_check(&parsed).unwrap_err();
        assert_eq!(
            super::super::field_in_message(Kind::Images, &f, &e),
            Some("images")
        );
        f.set("dst_account", "12");
        assert!(build(&f, Lang::En).1.contains_key("dst_account"));
    }
}
