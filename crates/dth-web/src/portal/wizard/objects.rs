//! The objects wizard's form: its steps and fields, the spec JSON it makes ([`build`], the shape
//! of `POST /api/v1/tasks` for `"kind": "s3"`), and the fragment that shows a side's regions and
//! derived endpoint when its provider or region changes (`GET /tasks/new/objects/endpoint`).
//!
//! The model has no prefix list for hub tasks (the one-shot `dth s3 sync` reads one from a file),
//! so the wizard's prefix list becomes include patterns: `photos/2024/` → `photos/2024/*` (`*`
//! crosses `/` in the engine's globs), which select the same keys.

use std::collections::BTreeMap;

use axum::extract::Query;
use axum::response::Response;
use dth_model::CompareMode;
use minijinja::context;
use minijinja::value::Value as Ctx;
use serde_json::{Value, json};

use super::presets::{self, PRESETS, Preset};
use super::{Errors, Fields, Kind, Login, SCHEDULE_FIELDS, Step, common_json, count, size, tr};
use crate::portal::i18n::Lang;
use crate::portal::render::Page;

/// The steps and their fields.
pub(super) const STEPS: &[Step] = &[
    Step {
        name: "source",
        fields: &[
            "name",
            "description",
            "src_provider",
            "src_region",
            "src_endpoint",
            "src_bucket",
            "src_prefix",
            "src_requester_pays",
            "src_cred",
            "src_secret",
            "src_key_id",
            "src_key_secret",
            "src_key_token",
        ],
    },
    Step {
        name: "destination",
        fields: &[
            "dst_provider",
            "dst_region",
            "dst_endpoint",
            "dst_bucket",
            "dst_prefix",
            "dst_cred",
            "dst_secret",
            "dst_key_id",
            "dst_key_secret",
            "dst_key_token",
        ],
    },
    Step {
        name: "options",
        fields: &[
            "compare",
            "include",
            "exclude",
            "prefixes",
            "delete",
            "metadata",
            "tags",
            "storage_class",
            "acl",
            "sse",
            "kms_key",
            "multipart_threshold",
            "part_size",
            "giant_threshold",
            "transfers",
            "bwlimit",
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
pub(super) const CHECKBOXES: &[&str] = &["src_requester_pays", "delete", "metadata", "tags"];

/// Access keys typed in once.
pub(super) const LOGINS: &[Login] = &[
    Login {
        side: "source",
        prefix: "src",
        mode: "key",
        parts: KEY_PARTS,
    },
    Login {
        side: "destination",
        prefix: "dst",
        mode: "key",
        parts: KEY_PARTS,
    },
];

const KEY_PARTS: &[(&str, &str, bool)] = &[
    ("key_id", "access_key_id", true),
    ("key_secret", "secret_access_key", true),
    ("key_token", "session_token", false),
];

/// Canned ACLs of S3.
const ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
];

/// Storage classes offered (any other may be typed).
const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
    "IA",
    "ARCHIVE",
];

/// The form's defaults: AWS to AWS, the model's option defaults.
pub(super) fn defaults(f: &mut Fields) {
    for p in ["src", "dst"] {
        let preset = presets::preset("aws");
        for (k, v) in [
            ("provider", preset.id),
            ("region", preset.default_region()),
            ("endpoint", ""),
            ("bucket", ""),
            ("prefix", ""),
            ("cred", "secret"),
            ("secret", ""),
            ("key_id", ""),
            ("key_secret", ""),
            ("key_token", ""),
        ] {
            f.set(&format!("{p}_{k}"), v);
        }
    }
    for (k, v) in [
        ("src_requester_pays", ""),
        ("compare", "size"),
        ("include", ""),
        ("exclude", ""),
        ("prefixes", ""),
        ("delete", ""),
        ("metadata", "1"),
        ("tags", ""),
        ("storage_class", ""),
        ("acl", ""),
        ("sse", "none"),
        ("kms_key", ""),
        ("bwlimit", ""),
    ] {
        f.set(k, v);
    }
    // The model's own defaults, as the fields write them.
    let o = dth_model::SyncOptions::default();
    for (k, v) in [
        ("multipart_threshold", size_text(o.multipart_threshold)),
        ("part_size", size_text(o.part_size)),
        (
            "giant_threshold",
            size_text(dth_model::DEFAULT_GIANT_THRESHOLD),
        ),
        ("transfers", o.transfers.to_string()),
        ("max_attempts", dth_model::DEFAULT_MAX_ATTEMPTS.to_string()),
    ] {
        f.set(k, &v);
    }
}

/// A byte count as a size field writes it: `16MiB`, `1GiB`, or bytes when no unit divides it.
fn size_text(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    UNITS
        .iter()
        .find(|(_, u)| n >= *u && n.is_multiple_of(*u))
        .map_or_else(|| n.to_string(), |(unit, u)| format!("{}{unit}", n / u))
}

/// The model path a message names → the form field.
pub(super) fn field_of(path: &str) -> Option<&'static str> {
    Some(match path {
        "source.bucket" | "source" => "src_bucket",
        "source.prefix" => "src_prefix",
        "source.endpoint_url" => "src_endpoint",
        "source.region" => "src_region",
        "source.provider" => "src_provider",
        "source.credentials" => "src_secret",
        "destination.bucket" | "destination" => "dst_bucket",
        "destination.prefix" => "dst_prefix",
        "destination.endpoint_url" => "dst_endpoint",
        "destination.region" => "dst_region",
        "destination.provider" => "dst_provider",
        "destination.credentials" => "dst_secret",
        "options.part_size" => "part_size",
        "options.multipart_threshold" => "multipart_threshold",
        "options.include" | "--include" => "include",
        "options.exclude" | "--exclude" => "exclude",
        "options" => "compare",
        "giant_threshold" => "giant_threshold",
        _ => return None,
    })
}

/// The spec JSON of the form (`"kind": "s3"`), and the messages of fields that could not be read.
pub(super) fn build(f: &Fields, lang: Lang) -> (Value, Errors) {
    let mut errors = Errors::new();
    let mut spec = common_json(f, lang, &mut errors);
    spec.insert("kind".into(), json!("s3"));
    spec.insert("source".into(), side(f, "src", lang, &mut errors));
    spec.insert("destination".into(), side(f, "dst", lang, &mut errors));
    let (options, giant) = options(f, lang, &mut errors);
    spec.insert("options".into(), options);
    spec.insert("giant_threshold".into(), json!(giant));
    (Value::Object(spec), errors)
}

/// One side's endpoint: provider, region, endpoint URL (derived when empty), bucket, prefix and
/// credentials.
fn side(f: &Fields, p: &str, lang: Lang, errors: &mut Errors) -> Value {
    let field = |s: &str| format!("{p}_{s}");
    let preset = presets::preset(f.get(&field("provider")));
    let region = f.trimmed(&field("region"));
    let region = if preset.regions.is_empty() {
        (!region.is_empty()).then(|| region.to_string())
    } else if preset.regions.contains(&region) {
        Some(region.to_string())
    } else {
        errors.insert(field("region"), tr(lang, "wizard.err.region", &[]));
        None
    };
    let endpoint = f.trimmed(&field("endpoint"));
    if endpoint.is_empty() && preset.needs_endpoint() {
        errors.insert(
            field("endpoint"),
            tr(lang, "wizard.err.endpoint_needed", &[]),
        );
    } else if !(endpoint.is_empty()
        || endpoint.starts_with("http://")
        || endpoint.starts_with("https://"))
    {
        errors.insert(field("endpoint"), tr(lang, "wizard.err.url", &[]));
    }
    let bucket = f.trimmed(&field("bucket"));
    if bucket.is_empty() {
        errors.insert(field("bucket"), tr(lang, "wizard.err.bucket", &[]));
    }
    let mut prefix = f
        .trimmed(&field("prefix"))
        .trim_start_matches('/')
        .to_string();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    let credentials = match f.get(&field("cred")) {
        "default" => json!({"kind": "default-chain"}),
        "anonymous" => json!({"kind": "anonymous"}),
        "key" => {
            errors.insert(field("key_id"), tr(lang, "wizard.err.key_missing", &[]));
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
    json!({
        "provider": preset.provider,
        "region": region,
        "endpoint_url": (!endpoint.is_empty()).then_some(endpoint),
        "bucket": bucket,
        "prefix": prefix,
        "credentials": credentials,
        "requester_pays": p == "src" && f.checked("src_requester_pays"),
    })
}

/// A prefix as an include pattern selecting every key below it: glob characters escaped, `*`
/// appended.
fn prefix_pattern(prefix: &str) -> String {
    let mut out = String::new();
    for c in prefix.trim_start_matches('/').chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('*');
    out
}

/// The options and the giant threshold.
fn options(f: &Fields, lang: Lang, errors: &mut Errors) -> (Value, u64) {
    let compare = f.get("compare");
    if compare.parse::<CompareMode>().is_err() {
        errors.insert("compare".into(), tr(lang, "wizard.err.choice", &[]));
    }
    let mut include = f.lines("include");
    let exclude = f.lines("exclude");
    let prefixes = f.lines("prefixes");
    if !prefixes.is_empty() && !include.is_empty() {
        errors.insert(
            "prefixes".into(),
            tr(lang, "wizard.err.prefixes_and_include", &[]),
        );
    }
    let from_prefixes = include.is_empty() && !prefixes.is_empty();
    if from_prefixes {
        include = prefixes.iter().map(|p| prefix_pattern(p)).collect();
    }
    if let Err(e) = dth_s3::filter::Filter::new(&include, &exclude) {
        let message = e.to_string();
        let field = if message.contains("--exclude") {
            "exclude"
        } else if from_prefixes {
            "prefixes"
        } else {
            "include"
        };
        errors.insert(field.into(), message);
    }
    let optional = |name: &str| {
        let v = f.trimmed(name);
        (!v.is_empty()).then(|| v.to_string())
    };
    let sse = match f.get("sse") {
        "AES256" => Some("AES256"),
        "aws:kms" => Some("aws:kms"),
        _ => None,
    };
    let kms_key = optional("kms_key");
    if kms_key.is_some() && sse != Some("aws:kms") {
        errors.insert(
            "kms_key".into(),
            tr(lang, "wizard.err.kms_without_kms", &[]),
        );
    }
    let acl = optional("acl");
    if acl.as_deref().is_some_and(|a| !ACLS.contains(&a)) {
        errors.insert("acl".into(), tr(lang, "wizard.err.choice", &[]));
    }
    let bwlimit = optional("bwlimit").map(|_| size(f, "bwlimit", lang, errors));
    let options = json!({
        "compare": compare,
        "include": include,
        "exclude": exclude,
        "delete": f.checked("delete"),
        "metadata": f.checked("metadata"),
        "tags": f.checked("tags"),
        "storage_class": optional("storage_class"),
        "acl": acl,
        "sse": sse,
        "sse_kms_key_id": kms_key,
        "multipart_threshold": size(f, "multipart_threshold", lang, errors),
        "part_size": size(f, "part_size", lang, errors),
        "transfers": count(f, "transfers", lang, errors),
        "bwlimit": bwlimit,
    });
    (options, size(f, "giant_threshold", lang, errors))
}

/// What the objects templates need besides the form: the presets, each side's regions and
/// derived endpoint, and the choices of the option selects.
pub(super) fn context(f: &Fields) -> Ctx {
    context! {
        presets => PRESETS.iter().map(|p| p.id).collect::<Vec<_>>(),
        sides => BTreeMap::from([("src", side_context(f, "src")), ("dst", side_context(f, "dst"))]),
        acls => ACLS,
        storage_classes => STORAGE_CLASSES,
    }
}

/// A side's preset: its regions, whether it needs an endpoint, the endpoint a run would derive.
fn side_context(f: &Fields, p: &str) -> Ctx {
    let preset: &Preset = presets::preset(f.get(&format!("{p}_provider")));
    let region = f.trimmed(&format!("{p}_region"));
    let region = if region.is_empty() {
        preset.default_region()
    } else {
        region
    };
    context! {
        regions => preset.regions,
        needs_endpoint => preset.needs_endpoint(),
        derived => preset.derived_endpoint(region),
    }
}

/// `GET /tasks/new/objects/endpoint?side=src&src_provider=…&src_region=…&src_endpoint=…`: a side's
/// region and endpoint fields for its provider, as a fragment (a changed provider starts at its
/// default region).
pub(super) async fn endpoint(page: Page, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let p = if q.get("side").map(String::as_str) == Some("dst") {
        "dst"
    } else {
        "src"
    };
    let mut f = Kind::Objects.defaults();
    for k in ["provider", "region", "endpoint"] {
        let name = format!("{p}_{k}");
        if let Some(v) = q.get(&name) {
            f.set(&name, v);
        }
    }
    let preset = presets::preset(f.get(&format!("{p}_provider")));
    let region = f.get(&format!("{p}_region")).to_string();
    // A new provider starts at its default region (htmx names the element that asked).
    let provider_changed = page
        .headers
        .get("hx-trigger")
        .is_some_and(|t| t.as_bytes().ends_with(b"_provider"));
    if provider_changed && preset.regions.is_empty() {
        f.set(&format!("{p}_region"), "");
    } else if !preset.regions.is_empty() && !preset.regions.contains(&region.as_str()) {
        f.set(&format!("{p}_region"), preset.default_region());
    }
    page.render(
        "wizard/endpoint.html",
        "tasks",
        context! {
            p => p,
            v => f.shown(Kind::Objects),
            errors => Errors::new(),
            ..context(&f)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_written_in_the_largest_unit_that_divides_them() {
        assert_eq!(size_text(16 << 20), "16MiB");
        assert_eq!(size_text(1 << 30), "1GiB");
        assert_eq!(size_text(1536 << 10), "1536KiB");
        assert_eq!(size_text(1000), "1000");
        assert_eq!(dth_model::parse_size(&size_text(5 << 40)).unwrap(), 5 << 40);
    }

    fn filled() -> Fields {
        let mut f = Kind::Objects.defaults();
        for (k, v) in [
            ("name", "photos"),
            ("src_bucket", "src-bkt"),
            ("src_prefix", "/2024"),
            ("src_secret", "aws-key"),
            ("dst_provider", "minio"),
            ("dst_region", ""),
            ("dst_endpoint", "http://127.0.0.1:9000"),
            ("dst_bucket", "dst-bkt"),
            ("dst_cred", "anonymous"),
            ("prefixes", "a/\nb[1]/"),
            ("bwlimit", "10MiB"),
        ] {
            f.set(k, v);
        }
        f
    }

    #[test]
    fn builds_the_spec_the_api_takes() {
        let (spec, errors) = build(&filled(), Lang::En);
        assert!(errors.is_empty(), "{errors:?}");
        let parsed = dth_model::TaskSpec::from_json(&spec).unwrap();
        parsed.validate().unwrap();
        assert_eq!(spec["source"]["prefix"], "2024/");
        assert_eq!(spec["source"]["region"], "us-east-1");
        assert_eq!(spec["destination"]["provider"], "minio");
        assert_eq!(spec["destination"]["region"], Value::Null);
        assert_eq!(spec["options"]["include"], json!(["a/*", "b\\[1\\]/*"]));
        assert_eq!(spec["options"]["bwlimit"], 10 << 20);
        assert_eq!(spec["giant_threshold"], 1u64 << 30);
        assert_eq!(spec["schedule"], json!({"cron": "0 * * * *"}));
        let filter =
            dth_s3::filter::Filter::new(&[prefix_pattern("a/"), prefix_pattern("b[1]/")], &[])
                .unwrap();
        assert!(filter.allows("a/x/y.jpg") && filter.allows("b[1]/z") && !filter.allows("b1/z"));
    }

    #[test]
    fn names_the_fields_at_fault() {
        let mut f = filled();
        f.set("src_bucket", "");
        f.set("dst_endpoint", "");
        f.set("part_size", "big");
        f.set("include", "*.jpg");
        f.set("src_region", "mars-1");
        let (_, errors) = build(&f, Lang::En);
        for field in [
            "src_bucket",
            "dst_endpoint",
            "part_size",
            "prefixes",
            "src_region",
        ] {
            assert!(errors.contains_key(field), "{field}: {errors:?}");
        }
    }
}
