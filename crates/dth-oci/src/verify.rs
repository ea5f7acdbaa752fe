//! Verification of streamed blobs: every byte that passes through us is hashed, and the last
//! chunk is held back until the digest and size are known to match, so a corrupted or truncated
//! body never completes an upload.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use crate::error::{Error, Result};
use crate::reference::{Digest, Hasher};

/// A stream that yields the inner stream's bytes and fails at its end when they do not hash to
/// `expected` or do not add up to `size`. The outcome is also left in [`Verdict`] so the caller
/// can tell a verification failure from the upload error it causes.
pub struct Verifying<S> {
    inner: S,
    hasher: Option<Hasher>,
    held: Option<Bytes>,
    seen: u64,
    expected: Digest,
    size: Option<u64>,
    what: String,
    verdict: Verdict,
    done: bool,
}

/// The outcome of a [`Verifying`] stream, shared with whoever holds it.
#[derive(Clone, Default)]
pub struct Verdict(Arc<Mutex<Option<std::result::Result<u64, String>>>>);

impl Verdict {
    /// `Some(Ok(bytes))` once verified, `Some(Err(message))` on a mismatch or a broken body.
    pub fn get(&self) -> Option<std::result::Result<u64, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn set(&self, v: std::result::Result<u64, String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
    }
}

impl<S> Verifying<S> {
    /// Wraps `inner`, expecting `expected` and (when known) `size` bytes.
    pub fn new(
        inner: S,
        expected: Digest,
        size: Option<u64>,
        what: String,
    ) -> (Verifying<S>, Verdict) {
        let verdict = Verdict::default();
        let sha256 = expected.algorithm() == "sha256";
        (
            Verifying {
                inner,
                hasher: sha256.then(Hasher::default),
                held: None,
                seen: 0,
                expected,
                size,
                what,
                verdict: verdict.clone(),
                done: false,
            },
            verdict,
        )
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(size) = self.size
            && size != self.seen
        {
            return Err(Error::SizeMismatch {
                what: self.what.clone(),
                expected: size,
                actual: self.seen,
            });
        }
        if let Some(h) = self.hasher.take() {
            let actual = h.finish();
            if actual != self.expected {
                return Err(Error::DigestMismatch {
                    what: self.what.clone(),
                    expected: self.expected.clone(),
                    actual: actual.to_string(),
                });
            }
        }
        Ok(())
    }
}

impl<S> Stream for Verifying<S>
where
    S: Stream<Item = Result<Bytes>> + Unpin,
{
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    this.seen += chunk.len() as u64;
                    if let Some(h) = &mut this.hasher {
                        h.update(&chunk);
                    }
                    if let Some(size) = this.size
                        && this.seen > size
                    {
                        this.done = true;
                        let e = Error::SizeMismatch {
                            what: this.what.clone(),
                            expected: size,
                            actual: this.seen,
                        };
                        this.verdict.set(Err(e.to_string()));
                        return Poll::Ready(Some(Err(e)));
                    }
                    if let Some(prev) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(prev)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    this.verdict.set(Err(e.to_string()));
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    return match this.finish() {
                        Ok(()) => {
                            this.verdict.set(Ok(this.seen));
                            match this.held.take() {
                                Some(last) => Poll::Ready(Some(Ok(last))),
                                None => {
                                    this.done = true;
                                    Poll::Ready(None)
                                }
                            }
                        }
                        Err(e) => {
                            this.done = true;
                            this.held = None;
                            this.verdict.set(Err(e.to_string()));
                            Poll::Ready(Some(Err(e)))
                        }
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{StreamExt, stream};

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes>> + Unpin {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn good_bytes_pass() {
        let (s, v) = Verifying::new(
            chunks(&[b"hello ", b"world"]),
            Digest::of(b"hello world"),
            Some(11),
            "t".into(),
        );
        let out: Vec<_> = s.collect().await;
        assert!(out.iter().all(|r| r.is_ok()));
        assert_eq!(out.len(), 2);
        assert_eq!(v.get(), Some(Ok(11)));
    }

    #[tokio::test]
    async fn corrupted_bytes_never_release_the_last_chunk() {
        let (s, v) = Verifying::new(
            chunks(&[b"hello ", b"wOrld"]),
            Digest::of(b"hello world"),
            Some(11),
            "t".into(),
        );
        let out: Vec<_> = s.collect().await;
        assert_eq!(
            out.len(),
            2,
            "first chunk, then the error instead of the last chunk"
        );
        assert!(out[0].is_ok());
        assert!(matches!(out[1], Err(Error::DigestMismatch { .. })));
        assert!(v.get().unwrap().is_err());
    }

    #[tokio::test]
    async fn short_bodies_fail() {
        let (s, _) = Verifying::new(
            chunks(&[b"hello"]),
            Digest::of(b"hello world"),
            Some(11),
            "t".into(),
        );
        let out: Vec<_> = s.collect().await;
        assert!(matches!(out.last(), Some(Err(Error::SizeMismatch { .. }))));
    }
}
