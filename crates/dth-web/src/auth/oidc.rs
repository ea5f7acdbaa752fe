//! Sign-in through an OpenID Connect provider (Keycloak, Entra ID, Google, Authentik, …): the
//! authorization code flow with PKCE (`S256`), for a confidential client.
//!
//! - [`OidcLogin::discover`] runs once at start-up: it reads the provider's discovery document
//!   (`<issuer>/.well-known/openid-configuration`) and its signing keys, and keeps the client
//!   (id, secret, redirect URI `<public-url>/auth/oidc/callback`), the button label, the scopes
//!   and the name of the roles claim. Its `Debug` never shows the secret.
//! - `GET /auth/oidc/login` ([`login`]) makes a fresh `state` (the CSRF token of the flow), `nonce`
//!   and PKCE verifier, remembers them in the store through [`dth_runtime::Hub::oidc_begin`]
//!   (10 minutes, single use), binds the `state` to the browser with a short-lived cookie
//!   ([`STATE_COOKIE`], so a callback URL made in another browser signs nobody in there), and
//!   answers 303 to the provider's authorization endpoint.
//! - `GET /auth/oidc/callback` ([`callback`]) takes the remembered sign-in of the returned `state`
//!   once ([`dth_runtime::Hub::oidc_take`]), exchanges the code with the PKCE verifier at the token
//!   endpoint, and verifies the ID token with the crate's verifier (signature against the
//!   provider's keys, issuer, audience, expiry, nonce). Its `sub`, `email`, `email_verified`, `name`
//!   and the roles claim (a string or an array of strings) go to
//!   [`dth_runtime::Hub::oidc_sign_in`], which holds every account policy (matching, creation,
//!   role map, disabled and locked accounts). On success the session cookie is set exactly as a
//!   password sign-in sets it, and the browser is sent to `/` (303).
//!
//! A browser lands on both routes, so their errors are small HTML pages (title and message,
//! HTML-escaped) with the fitting status: 400 for a malformed, unknown, used or expired callback
//! and for a code the provider refuses (e.g. a replayed one), 401 for an ID token that fails
//! verification, 403 for a user the hub refuses, 502 when the provider cannot be reached or answers
//! nonsense. Log lines name the problem, never a code, token, `state` or `nonce`.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{ClientAddr, cookies};

/// Path of the route that starts a sign-in.
pub const LOGIN_PATH: &str = "/auth/oidc/login";
/// Path of the route the provider sends the browser back to.
pub const CALLBACK_PATH: &str = "/auth/oidc/callback";
/// The cookie that binds a sign-in's `state` to the browser that started it.
pub const STATE_COOKIE: &str = "dth_oidc_state";
/// How long the browser has at the provider (as long as the hub remembers the sign-in).
const STATE_COOKIE_MAX_AGE: u64 = 600;
/// How long a request to the provider (discovery, keys, token) may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);

/// What `dth serve` knows about the provider before discovery.
#[derive(Clone)]
pub struct OidcSettings {
    /// The issuer URL, exactly as the provider names itself (`https://sso.example.com/realms/ops`).
    pub issuer: String,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// The label of the sign-in button (`SSO`, `Keycloak`, …).
    pub name: String,
    /// Scopes asked for (`openid` is always asked).
    pub scopes: Vec<String>,
    /// The ID token claim holding the user's groups or roles, for the role map.
    pub roles_claim: Option<String>,
}

impl fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("roles_claim", &self.roles_claim)
            .finish_non_exhaustive()
    }
}

/// Every claim of the ID token beyond the standard ones the crate reads (the roles claim is
/// looked up here by its configured name).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraClaims {
    /// Claim name → value.
    #[serde(flatten)]
    pub extra: HashMap<String, serde_json::Value>,
}

impl AdditionalClaims for ExtraClaims {}

type IdFields = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type TokenAnswer = StandardTokenResponse<IdFields, CoreTokenType>;
type TokenError = StandardErrorResponse<CoreErrorResponseType>;

/// The client as discovery makes it, with its redirect URI set.
type LoginClient = openidconnect::Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    TokenError,
    TokenAnswer,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why [`OidcLogin::discover`] failed; the message names the issuer or setting.
#[derive(Debug)]
pub struct OidcSetupError(String);

impl fmt::Display for OidcSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OidcSetupError {}

/// The hub's OpenID Connect client, made once at start-up by discovery.
pub struct OidcLogin {
    client: LoginClient,
    http: reqwest::Client,
    issuer: String,
    client_id: String,
    redirect_uri: String,
    name: String,
    scopes: Vec<String>,
    roles_claim: Option<String>,
}

impl fmt::Debug for OidcLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcLogin")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("roles_claim", &self.roles_claim)
            .finish_non_exhaustive()
    }
}

impl OidcLogin {
    /// Reads the provider's discovery document and keys at `settings.issuer` and makes the client,
    /// whose redirect URI is `<public_url>/auth/oidc/callback`.
    pub async fn discover(
        settings: OidcSettings,
        public_url: &url::Url,
    ) -> Result<OidcLogin, OidcSetupError> {
        let issuer = settings.issuer.trim().to_string();
        let fail = |why: String| OidcSetupError(format!("OpenID Connect issuer {issuer}: {why}"));
        let issuer_url = IssuerUrl::new(issuer.clone()).map_err(|e| fail(format!("{e}")))?;
        if settings.client_id.trim().is_empty() {
            return Err(fail("the client id is empty".into()));
        }
        if settings.client_secret.is_empty() {
            return Err(fail("the client secret is empty".into()));
        }
        let redirect_uri = format!(
            "{}{CALLBACK_PATH}",
            public_url.as_str().trim_end_matches('/')
        );
        let redirect = RedirectUrl::new(redirect_uri.clone()).map_err(|e| fail(format!("{e}")))?;
        // No redirects: a provider answers its endpoints directly, and following them would let
        // a discovery document steer the hub's requests elsewhere.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .map_err(|e| fail(format!("cannot build the HTTP client: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &http)
            .await
            .map_err(|e| fail(format!("discovery failed: {}", error_chain(&e))))?;
        if metadata.token_endpoint().is_none() {
            return Err(fail(
                "its discovery document names no token endpoint".into(),
            ));
        }
        let client = LoginClient::from_provider_metadata(
            metadata,
            ClientId::new(settings.client_id.clone()),
            Some(ClientSecret::new(settings.client_secret)),
        )
        .set_redirect_uri(redirect);
        Ok(OidcLogin {
            client,
            http,
            issuer,
            client_id: settings.client_id,
            redirect_uri,
            name: settings.name,
            scopes: settings.scopes,
            roles_claim: settings.roles_claim,
        })
    }

    /// The label of the sign-in button.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The redirect URI registered at the provider.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// A new sign-in: the authorization URL and the `state`, `nonce` and PKCE verifier to keep.
    fn begin(&self) -> (url::Url, CsrfToken, Nonce, PkceCodeVerifier) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &self.scopes {
            // The crate always asks for `openid`.
            if scope != "openid" {
                request = request.add_scope(Scope::new(scope.clone()));
            }
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        (url, state, nonce, verifier)
    }

    /// Exchanges the code and verifies the ID token; the identity it names.
    async fn finish(
        &self,
        code: String,
        verifier: String,
        nonce: String,
    ) -> Result<dth_runtime::access::OidcIdentity, Page> {
        let request = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| Page::internal(format!("token request: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier));
        let answer = request.request_async(&self.http).await.map_err(|e| match e {
            RequestTokenError::ServerResponse(r) => {
                let mut why = r.error().to_string();
                if let Some(d) = r.error_description() {
                    why = format!("{why}: {d}");
                }
                Page::new(
                    StatusCode::BAD_REQUEST,
                    "Sign-in refused by the provider",
                    format!(
                        "The provider refused the authorization code ({why}). A sign-in link can \
                         be used once only; start the sign-in again."
                    ),
                )
            }
            RequestTokenError::Request(e) => Page::provider(format!(
                "its token endpoint cannot be reached: {}",
                error_chain(&e)
            )),
            RequestTokenError::Parse(e, _) => {
                Page::provider(format!("its token answer is malformed: {e}"))
            }
            RequestTokenError::Other(e) => {
                Page::provider(format!("its token answer is unexpected: {e}"))
            }
        })?;
        let id_token = answer
            .id_token()
            .ok_or_else(|| Page::provider("its token answer has no ID token".into()))?;
        let verifier = self.client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(nonce))
            .map_err(|e| {
                Page::new(
                    StatusCode::UNAUTHORIZED,
                    "Sign-in failed",
                    format!("The provider's ID token failed verification: {e}."),
                )
            })?;
        let groups = self
            .roles_claim
            .as_deref()
            .and_then(|name| claims.additional_claims().extra.get(name))
            .map(claim_strings)
            .unwrap_or_default();
        Ok(dth_runtime::access::OidcIdentity {
            subject: claims.subject().as_str().to_string(),
            email: claims.email().map(|e| e.as_str().to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_string()),
            groups,
        })
    }
}

/// The strings of a roles claim: one string, or an array of them (other values are ignored).
fn claim_strings(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text = format!("{text}: {s_text}");
        }
        source = s.source();
    }
    text
}

/// `GET /auth/oidc/login`: starts a sign-in at the provider (303).
pub async fn login(State(state): State<AppState>) -> Response {
    let Some(oidc) = state.web.oidc.clone() else {
        return Page::not_configured().into_response();
    };
    let (url, csrf, nonce, verifier) = oidc.begin();
    if let Err(e) = state
        .hub
        .oidc_begin(csrf.secret(), nonce.secret(), verifier.secret())
        .await
    {
        return Page::internal(format!("cannot remember the sign-in: {e}")).into_response();
    }
    let cookie = state_cookie(csrf.secret(), state.web.secure_cookies);
    let location = match HeaderValue::from_str(url.as_str()) {
        Ok(v) => v,
        Err(e) => return Page::internal(format!("authorization URL: {e}")).into_response(),
    };
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response()
}

/// The query of `GET /auth/oidc/callback`: a code and state, or the provider's error.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/oidc/callback`: finishes a sign-in; sets the session cookie and answers 303 to `/`.
pub async fn callback(
    State(state): State<AppState>,
    Extension(client): Extension<ClientAddr>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let secure = state.web.secure_cookies;
    let answer = match finish_callback(&state, &client.0, &headers, query).await {
        Ok(signed_in) => {
            tracing::info!(user = %signed_in.user.email, "OpenID Connect sign-in");
            let session =
                cookies::session_cookie(&signed_in.session_id, signed_in.expires_at, secure);
            let mut r = (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, HeaderValue::from_static("/")),
                    (header::SET_COOKIE, session),
                ],
            )
                .into_response();
            r.headers_mut()
                .append(header::SET_COOKIE, cleared_state_cookie(secure));
            r
        }
        Err(page) => {
            tracing::warn!(status = %page.status, "OpenID Connect sign-in refused: {}", page.message);
            let mut r = page.into_response();
            r.headers_mut()
                .append(header::SET_COOKIE, cleared_state_cookie(secure));
            r
        }
    };
    let mut answer = answer;
    answer
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    answer
}

async fn finish_callback(
    state: &AppState,
    client: &str,
    headers: &HeaderMap,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<dth_runtime::access::SignedIn, Page> {
    let Some(oidc) = state.web.oidc.clone() else {
        return Err(Page::not_configured());
    };
    let Query(q) = query.map_err(|_| {
        Page::bad_request("The sign-in answer from the provider is malformed; start again.")
    })?;
    if let Some(error) = q.error {
        // The remembered sign-in is over either way.
        if let Some(s) = &q.state {
            let _ = state.hub.oidc_take(s).await;
        }
        let mut why = error.clone();
        if let Some(d) = q.error_description.filter(|d| !d.is_empty()) {
            why = format!("{why}: {d}");
        }
        let status = if error == "access_denied" {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        };
        return Err(Page::new(
            status,
            "Sign-in refused by the provider",
            format!("The provider did not sign you in ({why})."),
        ));
    }
    let (Some(code), Some(sent_state)) = (q.code, q.state) else {
        return Err(Page::bad_request(
            "The sign-in answer lacks its code or state; start the sign-in again.",
        ));
    };
    let pending = state
        .hub
        .oidc_take(&sent_state)
        .await
        .map_err(|e| Page::internal(format!("cannot read the remembered sign-in: {e}")))?;
    let Some(pending) = pending else {
        return Err(Page::bad_request(
            "This sign-in is unknown to the hub, was already used, or has expired (it lasts 10 \
             minutes); start the sign-in again.",
        ));
    };
    if state_cookie_value(headers).as_deref() != Some(sent_state.as_str()) {
        return Err(Page::bad_request(
            "This sign-in was not started in this browser; start the sign-in again.",
        ));
    }
    if let Some(iss) = &q.iss
        && iss != oidc.issuer()
    {
        return Err(Page::bad_request(format!(
            "The sign-in answer comes from issuer {iss}, not {}; start the sign-in again.",
            oidc.issuer()
        )));
    }
    let identity = oidc
        .finish(code, pending.pkce_verifier, pending.nonce)
        .await?;
    state
        .hub
        .oidc_sign_in(&identity, client)
        .await
        .map_err(|e| {
            let e = crate::ApiError::from(e);
            let title = match e.status() {
                StatusCode::FORBIDDEN => "Sign-in refused",
                _ => "Sign-in failed",
            };
            Page::new(e.status(), title, e.message().to_string())
        })
}

/// The `Set-Cookie` value binding a sign-in's `state` to this browser.
fn state_cookie(state: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{STATE_COOKIE}={state}; Path=/auth/oidc; HttpOnly; SameSite=Lax; \
         Max-Age={STATE_COOKIE_MAX_AGE}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("dth_oidc_state=; Path=/auth/oidc; Max-Age=0"))
}

/// The `Set-Cookie` value ending the state cookie.
fn cleared_state_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{STATE_COOKIE}=; Path=/auth/oidc; HttpOnly; SameSite=Lax; Max-Age=0{secure}"
    ))
    .expect("a constant header")
}

/// The state cookie of a request, if any.
fn state_cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == STATE_COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// An answer to a browser: a small HTML page with a title and a message.
#[derive(Debug)]
struct Page {
    status: StatusCode,
    title: &'static str,
    message: String,
}

impl Page {
    fn new(status: StatusCode, title: &'static str, message: String) -> Page {
        Page {
            status,
            title,
            message,
        }
    }

    fn bad_request(message: impl Into<String>) -> Page {
        Page::new(StatusCode::BAD_REQUEST, "Sign-in failed", message.into())
    }

    fn not_configured() -> Page {
        Page::new(
            StatusCode::NOT_FOUND,
            "Sign-in not available",
            "This hub has no OpenID Connect provider configured; sign in with your password."
                .into(),
        )
    }

    /// 502: the provider failed; the detail goes to the log, the page names the provider.
    fn provider(detail: String) -> Page {
        tracing::error!("OpenID Connect provider: {detail}");
        Page::new(
            StatusCode::BAD_GATEWAY,
            "Sign-in failed",
            "The sign-in provider did not answer as expected; try again later. The hub's log has \
             the details."
                .into(),
        )
    }

    /// 500: the detail goes to the log only.
    fn internal(detail: String) -> Page {
        tracing::error!("OpenID Connect sign-in: internal error: {detail}");
        Page::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in failed",
            "Internal error; the hub's log has the details.".into(),
        )
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let title = escape_html(self.title);
        let message = escape_html(&self.message);
        let body = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>{title} — Data Transfer Hub</title></head>\n<body><h1>{title}</h1>\n\
             <p>{message}</p>\n<p><a href=\"/\">Back to the sign-in page</a></p></body></html>\n"
        );
        (
            self.status,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            body,
        )
            .into_response()
    }
}

/// Escapes text for HTML element content and attribute values.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_claims_and_escaping() {
        assert_eq!(claim_strings(&serde_json::json!("ops")), vec!["ops"]);
        assert_eq!(
            claim_strings(&serde_json::json!(["a", 1, "b"])),
            vec!["a", "b"]
        );
        assert!(claim_strings(&serde_json::json!({"a": 1})).is_empty());
        assert_eq!(
            escape_html("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("dth_session=abc; dth_oidc_state=xyz"),
        );
        assert_eq!(state_cookie_value(&h).as_deref(), Some("xyz"));
    }
}
