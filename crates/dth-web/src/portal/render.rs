//! Turning a page's values into HTML: the template environment (templates under `templates/`,
//! compiled in through rust-embed; read from the source tree in debug builds), the filters every
//! page uses (`bytes`, `num`, `when`, `duration`), the `t()` catalog lookup, and [`Page`], the
//! signed-in person a page is rendered for (their language, role and CSRF token).
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles and event streams from
//! the hub itself only, no inline script or style, no framing.

use std::sync::LazyLock;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dth_model::{Actor, Role};
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, State, context};
use rust_embed::RustEmbed;

use super::i18n::{CATALOG, Lang, fill};
use crate::auth::Authenticated;
use crate::{ApiError, AppState};

/// The templates, compiled in.
#[derive(RustEmbed)]
#[folder = "src/portal/templates/"]
struct Templates;

/// The Content-Security-Policy of every page.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The template environment, built once.
static ENV: LazyLock<Environment<'static>> = LazyLock::new(environment);

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_loader(|name| {
        Ok(Templates::get(name).map(|f| String::from_utf8_lossy(&f.data).into_owned()))
    });
    env.add_function("t", translate);
    env.add_filter("bytes", |n: f64| format_bytes(n));
    env.add_filter("num", |n: i64| format_number(n));
    env.add_filter("when", when);
    env.add_filter("duration", |ms: i64| format_duration(ms));
    env
}

/// `t("key", name=value…)`: the catalog's string for the page's language (`lang` in the context),
/// its `{name}` holes filled, as safe HTML: the catalog's text and plain values are escaped, values
/// that are already safe (a `when` time) are kept. An unknown key fails the render, so a test page
/// finds it.
fn translate(state: &State, key: &str, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let lang = state
        .lookup("lang")
        .and_then(|v| v.as_str().and_then(Lang::from_tag))
        .unwrap_or(Lang::En);
    let entry = CATALOG.get(key).ok_or_else(|| {
        minijinja::Error::new(
            minijinja::ErrorKind::UndefinedError,
            format!("no catalog entry {key:?}"),
        )
    })?;
    let escape = |s: &str| minijinja::HtmlEscape(s).to_string();
    let mut values = Vec::new();
    for name in kwargs.args() {
        let v: Value = kwargs.get(name)?;
        let text = if v.is_safe() {
            v.to_string()
        } else {
            escape(&v.to_string())
        };
        values.push((name, text));
    }
    Ok(Value::from_safe_string(fill(
        &escape(entry.get(lang)),
        &values,
    )))
}

/// `1536` → `1.5 KiB`.
pub fn format_bytes(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else if v < 10.0 {
        format!("{v:.2} {}", UNITS[unit])
    } else if v < 100.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// `1234567` → `1,234,567`.
pub fn format_number(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// `3_723_000` ms → `1 h 2 min`; under a minute with tenths of seconds.
pub fn format_duration(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    match s {
        0..60 => format!("{:.1} s", ms as f64 / 1000.0),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

/// `when(ms)`: a `<time>` in UTC that the page's script shows in the browser's time zone; empty
/// for none.
fn when(ms: Option<i64>) -> Value {
    let Some(t) = ms.and_then(chrono::DateTime::from_timestamp_millis) else {
        return Value::from_safe_string("–".into());
    };
    Value::from_safe_string(format!(
        "<time datetime=\"{}\">{}</time>",
        t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        t.format("%Y-%m-%d %H:%M:%S UTC")
    ))
}

/// Renders `template` with `ctx`; a template error is logged and becomes a 500 page.
pub fn render_html(template: &str, ctx: Value) -> Response {
    let html = ENV
        .get_template(template)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| {
            tracing::error!("portal: rendering {template} failed: {e:#}");
            "<!doctype html><title>Error</title><p>The page could not be rendered; the hub's log has the details.</p>".into()
        });
    html_response(StatusCode::OK, html)
}

/// An HTML answer with the portal's headers.
pub fn html_response(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
        ],
        html,
    )
        .into_response()
}

/// Whether a request came from htmx (boosted link or form, or an `hx-*` call).
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// Sends the browser to `to`: `HX-Redirect` for htmx (a full page load), else 303.
pub fn redirect(headers: &HeaderMap, to: &str) -> Response {
    let value = HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/"));
    if is_htmx(headers) {
        (StatusCode::OK, [("hx-redirect", value)]).into_response()
    } else {
        (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response()
    }
}

/// The language of a request without a signed-in user: `?lang=` when given, else the browser's.
pub fn visitor_lang(headers: &HeaderMap, query: Option<&str>) -> Lang {
    query
        .and_then(Lang::from_tag)
        .unwrap_or_else(|| browser_lang(headers))
}

/// The browser's language (`Accept-Language`).
pub fn browser_lang(headers: &HeaderMap) -> Lang {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map_or(Lang::En, Lang::negotiate)
}

/// The signed-in person a page is for. Extracting it sends anyone without a session to the
/// sign-in page (back here afterwards), and anyone with a temporary password to set a new one.
pub struct Page {
    /// Who, as every hub call takes it.
    pub actor: Actor,
    /// Their name for people.
    pub name: String,
    /// The page's language.
    pub lang: Lang,
    /// The session's CSRF token; the layout puts it in every htmx request's header.
    pub csrf: String,
    /// The path (and query) of the request.
    pub path: String,
    /// The request's headers (htmx or not, where to redirect).
    pub headers: HeaderMap,
    /// The hub and how it is reached.
    pub state: AppState,
}

impl FromRequestParts<AppState> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
        let session = parts
            .extensions
            .get::<Authenticated>()
            .and_then(|a| a.session.clone().map(|s| (a.actor.clone(), s)));
        let Some((actor, session)) = session else {
            let next = urlencode(&path);
            return Err(redirect(&parts.headers, &format!("/signin?next={next}")));
        };
        if actor.must_change_password && parts.uri.path() != "/password" {
            return Err(redirect(&parts.headers, "/password"));
        }
        let user = state
            .hub
            .me(&actor)
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
        let lang = user
            .as_ref()
            .and_then(|u| u.language.as_deref())
            .and_then(Lang::from_tag)
            .unwrap_or_else(|| browser_lang(&parts.headers));
        Ok(Page {
            name: user.map_or_else(|| actor.email.clone(), |u| u.name),
            actor,
            lang,
            csrf: session.csrf_token,
            path,
            headers: parts.headers.clone(),
            state: state.clone(),
        })
    }
}

impl Page {
    /// Whether the person may create, start, stop and delete (operator or admin).
    pub fn is_operator(&self) -> bool {
        self.actor.role >= Role::Operator
    }

    /// Whether the person is an admin.
    pub fn is_admin(&self) -> bool {
        self.actor.role >= Role::Admin
    }

    /// What the layout needs, merged under the page's own values.
    fn layout(&self, section: &str) -> Value {
        let oidc = self.state.web.oidc.as_ref().map(|o| o.name().to_string());
        context! {
            lang => self.lang.tag(),
            langs => Lang::ALL.iter().map(|l| context!{ tag => l.tag(), name => l.native_name() }).collect::<Vec<_>>(),
            me => context! {
                email => self.actor.email,
                name => self.name,
                role => self.actor.role.name(),
                operator => self.is_operator(),
                admin => self.is_admin(),
                oidc => matches!(self.actor.method, dth_model::AuthMethod::Oidc { .. }),
            },
            oidc_name => oidc,
            csrf => self.csrf,
            path => self.path,
            section => section,
            version => env!("CARGO_PKG_VERSION"),
        }
    }

    /// Renders a page of the layout's `section` (`overview`, `tasks`, `secrets`…).
    pub fn render(&self, template: &str, section: &str, ctx: Value) -> Response {
        render_html(template, context! { ..ctx, ..self.layout(section) })
    }

    /// Renders a fragment (an SSE event's data) to a string, with the layout's values (language,
    /// role) like [`Page::render`].
    pub fn render_fragment(&self, template: &str, ctx: Value) -> Result<String, minijinja::Error> {
        ENV.get_template(template)?
            .render(context! { ..ctx, ..self.layout("") })
    }

    /// The error page for a failed hub call: the status, and the hub's message (which names
    /// what is wrong and never holds a secret).
    pub fn fail(&self, e: impl Into<ApiError>) -> Response {
        let e: ApiError = e.into();
        let status = e.status();
        let ctx = context! { status => status.as_u16(), message => e.message() };
        let mut r = self.render("error.html", "", ctx);
        *r.status_mut() = status;
        r
    }

    /// Sends the browser to `to` ([`redirect`]).
    pub fn redirect(&self, to: &str) -> Response {
        redirect(&self.headers, to)
    }
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The keys `t()` is called with in the compiled-in templates, for the catalog's test.
#[cfg(test)]
pub fn template_keys() -> Vec<(String, String)> {
    let mut keys = Vec::new();
    for name in Templates::iter() {
        let text = String::from_utf8_lossy(&Templates::get(&name).unwrap().data).into_owned();
        for k in catalog_keys_in(&text) {
            keys.push((name.to_string(), k));
        }
    }
    keys
}

/// The keys of `t("key"` and `t('key'` in a template's text; a key built with `~` is given as
/// its literal prefix and `*`.
#[cfg(test)]
fn catalog_keys_in(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for quote in ['"', '\''] {
        let pat = format!("t({quote}");
        let mut rest = text;
        while let Some(i) = rest.find(&pat) {
            let before = rest[..i].chars().last();
            rest = &rest[i + pat.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(end) = rest.find(quote) {
                // `t("status." ~ s)`: a prefix, marked by the trailing `*`.
                let dynamic = rest[end + 1..].trim_start().starts_with('~');
                out.push(format!(
                    "{}{}",
                    &rest[..end],
                    if dynamic { "*" } else { "" }
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_numbers_and_durations() {
        assert_eq!(format_bytes(0.0), "0 B");
        assert_eq!(format_bytes(1536.0), "1.50 KiB");
        assert_eq!(format_bytes(5.0 * 1024.0 * 1024.0 * 1024.0), "5.00 GiB");
        assert_eq!(format_number(1234567), "1,234,567");
        assert_eq!(format_number(-1000), "-1,000");
        assert_eq!(format_number(999), "999");
        assert_eq!(format_duration(3_723_000), "1 h 2 min");
        assert_eq!(format_duration(1_500), "1.5 s");
    }

    #[test]
    fn translations_escape_plain_values_and_keep_safe_ones() {
        let html = ENV
            .render_str(
                r#"{{ t("tasks.start_named", name=n) }}|{{ t("tasks.start_named", name=1000|when) }}"#,
                context! { lang => "en", n => "<b>x</b>" },
            )
            .unwrap();
        let (plain, safe) = html.split_once('|').unwrap();
        assert_eq!(plain, "Start &lt;b&gt;x&lt;&#x2f;b&gt;");
        assert!(
            safe.starts_with("Start <time datetime=\"1970-01-01T00:00:01.000Z\">"),
            "{safe}"
        );
    }

    #[test]
    fn every_template_parses_and_every_key_is_in_the_catalog() {
        for name in Templates::iter() {
            ENV.get_template(&name)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
        for (file, key) in template_keys() {
            let known = match key.strip_suffix('*') {
                Some(prefix) => CATALOG.keys().any(|k| k.starts_with(prefix)),
                None => CATALOG.contains_key(&key),
            };
            assert!(known, "{file}: t({key:?}) is not in the catalog");
        }
    }
}
