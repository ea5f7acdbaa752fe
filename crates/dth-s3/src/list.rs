//! Listing: pages of ListObjectsV2 (or v1 where the profile says so) streamed as [`Entry`] values in key
//! byte order, keys byte-exact (URL-encoded on the wire where the server supports it, decoded here).
//!
//! A listing runs in its own task one page ahead of its reader, so the reader's work overlaps the next
//! request. With a delimiter, objects and common prefixes of one level arrive merged in key order, which
//! is what the partitioned diff walks.

use aws_sdk_s3::types::{EncodingType, RequestPayer};
use futures::Stream;
use tokio::sync::mpsc;

use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::list_page::{FastPage, Page};
use crate::meta::{Keyed, ObjectMeta};

/// Keys per page asked of the server (servers cap it at 1,000).
const PAGE: i32 = 1000;

/// One listing entry: an object, or a common prefix (a "folder") when listing with a delimiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// An object.
    Object(ObjectMeta),
    /// A common prefix, relative to the endpoint prefix, ending in `/`.
    Prefix(String),
}

impl Keyed for Entry {
    fn key(&self) -> &str {
        match self {
            Entry::Object(o) => &o.key,
            Entry::Prefix(p) => p,
        }
    }
}

/// Lists everything under the relative prefix `rel`: one level (objects and sub-prefixes) when
/// `delimited`, else every object below it.
pub fn list(
    ep: &Endpoint,
    rel: &str,
    delimited: bool,
) -> impl Stream<Item = Result<Entry>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<Result<Vec<Entry>>>(2);
    let ep = ep.clone();
    let rel = rel.to_string();
    tokio::spawn(async move {
        let encode = ep.profile().url_encoded_listing;
        let mut pager = Pager {
            ep,
            rel,
            delimited,
            token: None,
            done: false,
            encode,
        };
        while !pager.done {
            let page = pager.next_page().await;
            let failed = page.is_err();
            if tx.send(page).await.is_err() || failed {
                return;
            }
        }
    });
    futures::stream::unfold(
        (rx, Vec::new().into_iter()),
        |(mut rx, mut buf)| async move {
            loop {
                if let Some(e) = buf.next() {
                    return Some((Ok(e), (rx, buf)));
                }
                match rx.recv().await? {
                    Ok(page) => buf = page.into_iter(),
                    Err(e) => return Some((Err(e), (rx, Vec::new().into_iter()))),
                }
            }
        },
    )
}

struct Pager {
    ep: Endpoint,
    rel: String,
    delimited: bool,
    /// Continuation token (v2) or marker (v1).
    token: Option<String>,
    done: bool,
    /// Ask for URL-encoded keys.
    encode: bool,
}

/// Why a page failed: a successful answer that could not be parsed, or anything else.
enum PageError {
    Unparsable(Error),
    Other(Error),
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        PageError::Other(e)
    }
}

impl From<PageError> for Error {
    fn from(e: PageError) -> Self {
        match e {
            PageError::Unparsable(e) | PageError::Other(e) => e,
        }
    }
}

impl Pager {
    /// The next page. A page the SDK cannot parse (a 200 answer whose XML is invalid, e.g. a key with a
    /// control character listed raw) is asked for again with URL-encoded keys.
    async fn next_page(&mut self) -> Result<Vec<Entry>> {
        let token = self.token.clone();
        match self.try_page().await {
            Err(PageError::Unparsable(e)) if !self.encode => {
                tracing::debug!("{e}; listing again with encoding-type=url");
                self.encode = true;
                self.token = token;
                Ok(self.try_page().await?)
            }
            other => Ok(other?),
        }
    }

    /// Wraps a listing request error, telling unparsable answers apart.
    fn page_error<E, R>(
        &self,
        op: &'static str,
        err: aws_sdk_s3::error::SdkError<E, R>,
    ) -> PageError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + crate::error::HasStatus,
    {
        let ok_answer = err
            .raw_response()
            .is_some_and(|r| (200..300).contains(&r.status()));
        let e = self.ep.error(op, Some(&self.rel), err);
        if ok_answer {
            PageError::Unparsable(e)
        } else {
            PageError::Other(e)
        }
    }

    async fn try_page(&mut self) -> Result<Vec<Entry>, PageError> {
        let prefix = self.ep.full_key(&self.rel);
        let profile = self.ep.profile();
        let encoding = self.encode.then_some(EncodingType::Url);
        let payer = self
            .ep
            .spec()
            .requester_pays
            .then_some(RequestPayer::Requester);
        let delimiter = self.delimited.then(|| "/".to_string());
        let client = self.ep.client();
        let fast = FastPage::default();
        let page = if profile.list_v1 {
            let out = client
                .list_objects()
                .bucket(self.ep.bucket())
                .prefix(&prefix)
                .set_delimiter(delimiter)
                .set_marker(self.token.take())
                .set_encoding_type(encoding)
                .set_request_payer(payer)
                .max_keys(PAGE)
                .customize()
                .interceptor(fast.clone())
                .send()
                .await
                .map_err(|e| self.page_error("ListObjects", e))?;
            fast.take().unwrap_or_else(|| {
                Page::from_sdk(
                    out.contents,
                    out.common_prefixes,
                    out.is_truncated,
                    out.next_marker,
                    out.encoding_type,
                )
            })
        } else {
            let out = client
                .list_objects_v2()
                .bucket(self.ep.bucket())
                .prefix(&prefix)
                .set_delimiter(delimiter)
                .set_continuation_token(self.token.take())
                .set_encoding_type(encoding)
                .set_request_payer(payer)
                .max_keys(PAGE)
                .customize()
                .interceptor(fast.clone())
                .send()
                .await
                .map_err(|e| self.page_error("ListObjectsV2", e))?;
            fast.take().unwrap_or_else(|| {
                Page::from_sdk(
                    out.contents,
                    out.common_prefixes,
                    out.is_truncated,
                    out.next_continuation_token,
                    out.encoding_type,
                )
            })
        };
        let Page {
            objects,
            prefixes,
            truncated,
            next,
            encoded,
        } = page;
        let next = if !truncated {
            None
        } else if profile.list_v1 {
            // Without a NextMarker (sent only with a delimiter) the marker is the last key or prefix.
            let last = || objects.last().map(|o| &o.key).max(prefixes.last()).cloned();
            next.or_else(last)
        } else {
            next
        };
        self.done = next.is_none();
        if profile.list_v1 {
            // v1 markers must be decoded keys (we send no encoding for the marker itself).
            self.token = next
                .map(|m| if encoded { decode(m) } else { Ok(m) })
                .transpose()?;
        } else {
            self.token = next;
        }
        // The relative key is the full key without the endpoint's prefix, cut in place: most endpoints
        // have no prefix, and then the key is kept as it came.
        let ep_prefix = self.ep.spec().prefix.len();
        let strip = |full: String| -> Result<String> {
            let mut full = if encoded { decode(full)? } else { full };
            if !full.starts_with(&prefix) {
                return Err(Error::Body {
                    target: self.ep.target(Some(&self.rel)),
                    detail: format!("listing returned key {full:?} outside the prefix {prefix:?}"),
                });
            }
            full.drain(..ep_prefix);
            Ok(full)
        };
        let mut entries = Vec::with_capacity(objects.len() + prefixes.len());
        for mut o in objects {
            o.key = strip(o.key)?;
            entries.push(Entry::Object(o));
        }
        for p in prefixes {
            entries.push(Entry::Prefix(strip(p)?));
        }
        // Objects and prefixes come as two sorted lists; the level is their merge.
        entries.sort_by(|a, b| a.key().as_bytes().cmp(b.key().as_bytes()));
        Ok(entries)
    }
}

/// Decodes a key from a listing made with `encoding-type=url` (form encoding: `+` is a space).
fn decode(s: String) -> Result<String> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(s);
    }
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|e| Error::Body {
            target: s.to_string(),
            detail: format!("listing key is not valid UTF-8 after URL decoding: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_url_encoded_keys() {
        let d = |s: &str| decode(s.to_string()).unwrap();
        assert_eq!(d("a+b%2Bc%25d%2F%2Fe"), "a b+c%d//e");
        assert_eq!(d("%E2%9C%93"), "✓");
        assert_eq!(d("plain/key"), "plain/key");
    }
}
