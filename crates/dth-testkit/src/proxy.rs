//! A reverse proxy in front of an S3 peer that injects faults and adds latency to every request.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type BoxError = Box<dyn StdError + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// The body of an injected `503 SlowDown` answer.
const SLOW_DOWN_BODY: &str = "<Error><Code>SlowDown</Code><Message>injected</Message></Error>";

/// Which faults a [`FaultProxy`] injects. The default injects none.
///
/// An *object GET* is a `GET` of a path-style object (`/bucket/key`) whose query is absent or
/// holds only `x-id`, `partNumber`, `versionId` and `response-*` parameters (the AWS SDK adds
/// `?x-id=GetObject`); listings and sub-resources (`?list-type=2`, `?uploadId=`, `?tagging`...)
/// are never corrupted or truncated. Only successful (2xx) answers with at least one body byte count.
/// When both are set, corruptions are used up first, then truncations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Fraction of requests (0.0 to 1.0) answered `503 SlowDown` with an S3 XML error body,
    /// without forwarding them.
    pub fail_ratio: f64,
    /// The next N object GET answers get one byte flipped in the middle of the body.
    pub corrupt_get_bodies: usize,
    /// The next N object GET answers keep their Content-Length but send only the first half of
    /// the body, then the connection is closed.
    pub truncate_get_bodies: usize,
    /// Seed of the random choice of failed requests (the same seed fails the same request numbers).
    pub seed: u64,
    /// Object GETs and HEADs whose path contains this text are answered `403 AccessDenied`, every
    /// time (a permanent error, as for an object the credentials may not read).
    pub deny_path_containing: Option<String>,
    /// Every object GET is held this long before it is answered (a slow source); zero for none.
    pub delay_object_gets: Duration,
    /// Round-trip time added to every request (a far endpoint); zero for none. Half of it is
    /// waited before the request is forwarded, the other half before the answer's head is sent
    /// back; bodies then stream at full speed. Each request waits on its own, so requests on
    /// other connections (or later ones on a kept-alive connection) are not held behind it.
    pub latency: Duration,
}

/// What a [`FaultProxy`] has seen and done since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Requests received (including failed ones).
    pub requests: u64,
    /// Requests answered with an injected `503 SlowDown`.
    pub failed: u64,
    /// Object GET bodies corrupted.
    pub corrupted: u64,
    /// Object GET bodies truncated.
    pub truncated: u64,
    /// Requests answered with an injected `403 AccessDenied`.
    pub denied: u64,
    /// The most object GETs in flight at one time (from their arrival until their answer's body
    /// is sent or dropped).
    pub max_object_gets_in_flight: u64,
}

impl ProxyStats {
    /// All faults injected: failed + corrupted + truncated.
    pub fn faults(&self) -> u64 {
        self.failed + self.corrupted + self.truncated
    }
}

/// An HTTP/1.1 reverse proxy on a free `127.0.0.1` port in front of one upstream S3 endpoint.
///
/// It forwards the method, the path and query exactly as received (no re-encoding), all headers
/// including `Host` (so SigV4 signatures made for the proxy's address still validate upstream),
/// and streams bodies both ways, except where [`Faults`] say otherwise. Dropping it stops it,
/// including open connections. It runs on the Tokio runtime that started it.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    upstream: Authority,
    client: Client<HttpConnector, Incoming>,
    state: Mutex<FaultState>,
    requests: AtomicU64,
    failed: AtomicU64,
    corrupted: AtomicU64,
    truncated: AtomicU64,
    denied: AtomicU64,
    gets_in_flight: AtomicU64,
    max_gets_in_flight: AtomicU64,
}

struct FaultState {
    fail_ratio: f64,
    corrupt_left: usize,
    truncate_left: usize,
    deny: Option<String>,
    delay_gets: Duration,
    latency: Duration,
    rng: StdRng,
}

impl FaultState {
    fn new(faults: &Faults) -> FaultState {
        FaultState {
            fail_ratio: faults.fail_ratio.clamp(0.0, 1.0),
            corrupt_left: faults.corrupt_get_bodies,
            truncate_left: faults.truncate_get_bodies,
            deny: faults.deny_path_containing.clone(),
            delay_gets: faults.delay_object_gets,
            latency: faults.latency,
            rng: StdRng::seed_from_u64(faults.seed),
        }
    }
}

enum BodyFault {
    Corrupt,
    Truncate,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream_url` (e.g. [`S3Peer::endpoint_url`](crate::S3Peer::endpoint_url)).
    ///
    /// # Panics
    /// When `upstream_url` is not an `http://host:port` URL or no port can be bound.
    pub async fn start(upstream_url: &str, faults: Faults) -> FaultProxy {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        FaultProxy::start_on(any_port, upstream_url, faults)
            .await
            .unwrap_or_else(|e| panic!("FaultProxy in front of {upstream_url:?}: {e}"))
    }

    /// Starts a proxy listening on `listen` (port 0: a free one) in front of `upstream_url`.
    ///
    /// # Errors
    /// When `upstream_url` is not an `http://host:port` URL, or `listen` cannot be bound.
    pub async fn start_on(
        listen: SocketAddr,
        upstream_url: &str,
        faults: Faults,
    ) -> io::Result<FaultProxy> {
        let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
        let uri: Uri = upstream_url
            .parse()
            .map_err(|e| invalid(format!("upstream {upstream_url:?}: {e}")))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            return Err(invalid(format!(
                "upstream {upstream_url:?} must be http://"
            )));
        }
        let upstream = uri
            .authority()
            .cloned()
            .ok_or_else(|| invalid(format!("upstream {upstream_url:?} has no host")))?;

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);

        let shared = Arc::new(Shared {
            upstream,
            client,
            state: Mutex::new(FaultState::new(&faults)),
            requests: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            corrupted: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            gets_in_flight: AtomicU64::new(0),
            max_gets_in_flight: AtomicU64::new(0),
        });

        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(crate::peer::serve_http1(listener, shared.clone(), handle));
        Ok(FaultProxy { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT` of the proxy: point the client here.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Counters since the start (not reset by [`FaultProxy::set_faults`]).
    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            requests: s.requests.load(Ordering::SeqCst),
            failed: s.failed.load(Ordering::SeqCst),
            corrupted: s.corrupted.load(Ordering::SeqCst),
            truncated: s.truncated.load(Ordering::SeqCst),
            denied: s.denied.load(Ordering::SeqCst),
            max_object_gets_in_flight: s.max_gets_in_flight.load(Ordering::SeqCst),
        }
    }

    /// Replaces the faults for the following requests (remaining corruptions and truncations
    /// start again from the new numbers; the random sequence restarts from the new seed).
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.state.lock().unwrap_or_else(|e| e.into_inner()) = FaultState::new(&faults);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Answers one request, half the configured latency before it is forwarded and the other half
/// before the answer's head goes back (each request sleeps on its own).
async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let latency = shared
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .latency;
    let there = latency / 2;
    if !there.is_zero() {
        tokio::time::sleep(there).await;
    }
    let response = handle_faults(shared, req).await;
    let back = latency - there;
    if !back.is_zero() {
        tokio::time::sleep(back).await;
    }
    response
}

/// Answers one request with its faults; an object GET is counted in flight until its answer's
/// body is done, and held back by the configured delay first.
async fn handle_faults(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if !is_object_get(req.method(), req.uri()) {
        return answer(shared, req, false).await;
    }
    let in_flight = InFlight::enter(&shared);
    let delay = shared
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .delay_gets;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let response = answer(shared, req, true).await?;
    Ok(response.map(move |body| {
        body.map_frame(move |frame| {
            let _counted = &in_flight;
            frame
        })
        .boxed()
    }))
}

/// One object GET being answered: counted in flight until dropped.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> InFlight {
        let now = shared.gets_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_gets_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(Arc::clone(shared))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.gets_in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers one request with a fault or the upstream's answer.
async fn answer(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    object_get: bool,
) -> Result<Response<ProxyBody>, Infallible> {
    shared.requests.fetch_add(1, Ordering::SeqCst);

    let fail = {
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let ratio = state.fail_ratio;
        ratio > 0.0 && state.rng.gen_bool(ratio)
    };
    if fail {
        shared.failed.fetch_add(1, Ordering::SeqCst);
        // Read the request body first so the client is not cut off mid-upload.
        let _ = req.into_body().collect().await;
        return Ok(slow_down());
    }

    let denied = {
        let state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let path = req.uri().path();
        matches!(*req.method(), Method::GET | Method::HEAD)
            && state.deny.as_deref().is_some_and(|d| {
                path.contains(d)
                    || percent_encoding::percent_decode_str(path)
                        .decode_utf8_lossy()
                        .contains(d)
            })
    };
    if denied {
        shared.denied.fetch_add(1, Ordering::SeqCst);
        return Ok(access_denied());
    }

    let (mut parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = match Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(shared.upstream.clone())
        .path_and_query(path_and_query)
        .build()
    {
        Ok(uri) => uri,
        Err(e) => return Ok(bad_gateway(format!("bad upstream URI: {e}"))),
    };
    parts.version = Version::HTTP_11;
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }

    let response = match shared
        .client
        .request(Request::from_parts(parts, body))
        .await
    {
        Ok(response) => response,
        Err(e) => return Ok(bad_gateway(format!("upstream request failed: {e}"))),
    };

    let wants_body_fault = object_get && response.status().is_success() && {
        let state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.corrupt_left > 0 || state.truncate_left > 0
    };
    if !wants_body_fault {
        return Ok(response.map(|body| body.map_err(BoxError::from).boxed()));
    }

    let (parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(bad_gateway(format!("upstream body failed: {e}"))),
    };
    let fault = if bytes.is_empty() {
        None
    } else {
        let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.corrupt_left > 0 {
            state.corrupt_left -= 1;
            Some(BodyFault::Corrupt)
        } else if state.truncate_left > 0 {
            state.truncate_left -= 1;
            Some(BodyFault::Truncate)
        } else {
            None
        }
    };
    let body = match fault {
        None => full(bytes),
        Some(BodyFault::Corrupt) => {
            shared.corrupted.fetch_add(1, Ordering::SeqCst);
            let mut data = bytes.to_vec();
            let middle = data.len() / 2;
            data[middle] ^= 0xff;
            full(Bytes::from(data))
        }
        Some(BodyFault::Truncate) => {
            shared.truncated.fetch_add(1, Ordering::SeqCst);
            let half = bytes.slice(..bytes.len() / 2);
            TruncatedBody::new(half).boxed()
        }
    };
    Ok(Response::from_parts(parts, body))
}

/// Connection-level headers that a proxy must not pass on.
const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::UPGRADE,
];

fn is_object_get(method: &Method, uri: &Uri) -> bool {
    if method != Method::GET {
        return false;
    }
    // Path style: "/bucket/key..." with a non-empty key.
    let has_key = uri
        .path()
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(bucket, key)| !bucket.is_empty() && !key.is_empty());
    let plain_query = uri.query().is_none_or(|query| {
        query.split('&').filter(|p| !p.is_empty()).all(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            matches!(name, "x-id" | "partNumber" | "versionId") || name.starts_with("response-")
        })
    });
    has_key && plain_query
}

fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn slow_down() -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from_static(SLOW_DOWN_BODY.as_bytes())));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

fn access_denied() -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from_static(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Access Denied (injected)</Message></Error>",
    )));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

fn bad_gateway(message: String) -> Response<ProxyBody> {
    let mut response = Response::new(full(Bytes::from(message)));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// Sends its data, waits a moment so the server flushes it, then fails, which makes hyper close
/// the connection short of the Content-Length the response announced.
struct TruncatedBody {
    data: Option<Bytes>,
    pause: Pin<Box<tokio::time::Sleep>>,
}

impl TruncatedBody {
    fn new(data: Bytes) -> TruncatedBody {
        TruncatedBody {
            data: Some(data),
            pause: Box::pin(tokio::time::sleep(Duration::from_millis(50))),
        }
    }
}

impl Body for TruncatedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match self.pause.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Some(Err("injected truncation".into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use hyper_util::rt::TokioIo;

    use super::*;

    /// An upstream that answers `ok` at once and notes when each request reached it.
    async fn start_upstream() -> (String, Arc<Mutex<Vec<Instant>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn(crate::peer::serve_http1(
            listener,
            Arc::clone(&arrivals),
            |arrivals: Arc<Mutex<Vec<Instant>>>, _req: Request<Incoming>| async move {
                arrivals.lock().unwrap().push(Instant::now());
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            },
        ));
        (url, arrivals)
    }

    #[tokio::test]
    async fn latency_is_added_to_each_request_of_a_kept_alive_connection() {
        let (upstream, arrivals) = start_upstream().await;
        let latency = Duration::from_millis(200);
        let proxy = FaultProxy::start(
            &upstream,
            Faults {
                latency,
                ..Faults::default()
            },
        )
        .await;
        // One TCP connection, three requests one after another on it.
        let stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        for i in 0..3 {
            let request = Request::get("/bucket/key")
                .header(header::HOST, proxy.addr().to_string())
                .body(Full::new(Bytes::new()))
                .unwrap();
            let sent = Instant::now();
            let response = sender.send_request(request).await.unwrap();
            let head_after = sent.elapsed();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
            let reached_upstream = arrivals.lock().unwrap()[i].duration_since(sent);
            assert!(
                reached_upstream >= latency / 2,
                "request {i} reached the upstream after {reached_upstream:?}, want >= {:?}",
                latency / 2
            );
            assert!(
                head_after >= latency && head_after < latency * 4,
                "request {i} answered after {head_after:?}, want about {latency:?}"
            );
        }
        assert_eq!(proxy.stats().requests, 3);
    }

    #[tokio::test]
    async fn concurrent_requests_wait_together_not_in_turn() {
        let (upstream, arrivals) = start_upstream().await;
        let latency = Duration::from_millis(200);
        let proxy = FaultProxy::start(
            &upstream,
            Faults {
                latency,
                ..Faults::default()
            },
        )
        .await;
        let client = reqwest::Client::new();
        let url = format!("{}/bucket/key", proxy.endpoint_url());
        let started = Instant::now();
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (client, url) = (client.clone(), url.clone());
            requests.spawn(async move { client.get(url).send().await?.text().await });
        }
        while let Some(done) = requests.join_next().await {
            assert_eq!(done.unwrap().unwrap(), "ok");
        }
        let took = started.elapsed();
        // In turn they would take 20 x 200 ms = 4 s.
        assert!(
            took >= latency && took < latency * 5,
            "20 concurrent requests took {took:?}, want about {latency:?}"
        );
        assert_eq!(arrivals.lock().unwrap().len(), 20);
    }

    #[test]
    fn object_gets_are_recognised() {
        let get = |uri: &str| is_object_get(&Method::GET, &uri.parse().unwrap());
        assert!(get("/bucket/key"));
        assert!(get("/bucket/dir/a%20b?x-id=GetObject"));
        assert!(get("/bucket/key?partNumber=1&x-id=GetObject"));
        assert!(get("/bucket/key?response-content-type=text%2Fplain"));
        assert!(!get("/bucket"));
        assert!(!get("/bucket/"));
        assert!(!get("/bucket?list-type=2"));
        assert!(!get("/bucket/key?uploadId=abc"));
        assert!(!get("/bucket/key?tagging"));
        assert!(!is_object_get(
            &Method::HEAD,
            &"/bucket/key".parse().unwrap()
        ));
    }
}
