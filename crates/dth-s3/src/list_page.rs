//! One page of a listing, read fast: the `ListBucketResult` answer of ListObjectsV2 and ListObjects is
//! parsed with `quick-xml` as it arrives instead of by the SDK's generic XML decoder, which spent about
//! two thirds of a diff's CPU on it (and on this machine our CPU is the servers' CPU).
//!
//! The SDK still sends the request (signing, retries, errors); [`FastPage`] is an interceptor that takes
//! a successful answer's body, parses it into a [`Page`] and hands the SDK an empty
//! `<ListBucketResult/>` to decode. An answer this parser refuses is passed on untouched, so the SDK's
//! own decoding (and its error) decides, and [`Page::from_sdk`] reads its output.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use aws_sdk_s3::types::{CommonPrefix, EncodingType, Object};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::DateTime;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::date_time::Format;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};
use quick_xml::events::Event;

use crate::meta::{ObjectMeta, unquote};

/// What one listing page says, keys as sent (still URL-encoded when `encoded`, with the full prefix).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Page {
    /// The objects, in the server's order.
    pub objects: Vec<ObjectMeta>,
    /// The common prefixes, in the server's order.
    pub prefixes: Vec<String>,
    /// Whether more pages follow.
    pub truncated: bool,
    /// Where the next page starts: ListObjectsV2's continuation token, or ListObjects' (v1) next
    /// marker when the server sends one.
    pub next: Option<String>,
    /// Whether keys are URL-encoded (`EncodingType` is `url`).
    pub encoded: bool,
}

impl Page {
    /// Parses a `ListBucketResult` document (v1 or v2); `None` when it is not one this parser reads.
    pub fn parse(xml: &[u8]) -> Option<Page> {
        let mut reader = quick_xml::Reader::from_reader(xml);
        let mut page = Page::default();
        let mut depth = 0usize;
        // The element whose text is being read, and where (2: a result field, 3: inside an entry).
        let mut field: Option<(Field, usize)> = None;
        let mut text = String::new();
        let mut object: Option<ObjectMeta> = None;
        let mut in_prefixes = false;
        loop {
            match reader.read_event().ok()? {
                Event::Start(e) => {
                    depth += 1;
                    let name = e.local_name();
                    let name = name.as_ref();
                    match depth {
                        1 if name != b"ListBucketResult" => return None,
                        2 if name == b"Contents" => {
                            object = Some(ObjectMeta {
                                key: String::new(),
                                size: 0,
                                etag: None,
                                last_modified: None,
                                storage_class: None,
                            })
                        }
                        2 if name == b"CommonPrefixes" => in_prefixes = true,
                        2 => field = Field::result(name).map(|f| (f, depth)),
                        3 if object.is_some() => field = Field::object(name).map(|f| (f, depth)),
                        3 if in_prefixes && name == b"Prefix" => {
                            field = Some((Field::Prefix, depth))
                        }
                        _ => {}
                    }
                    text.clear();
                }
                Event::Empty(e) if depth == 0 => {
                    return (e.local_name().as_ref() == b"ListBucketResult").then_some(page);
                }
                Event::Text(t) if field.is_some() => text.push_str(&t.decode().ok()?),
                Event::CData(t) if field.is_some() => text.push_str(&t.decode().ok()?),
                Event::GeneralRef(r) if field.is_some() => match r.resolve_char_ref().ok()? {
                    Some(c) => text.push(c),
                    None => text.push_str(quick_xml::escape::resolve_predefined_entity(
                        &r.decode().ok()?,
                    )?),
                },
                Event::End(_) => {
                    if let Some((f, at)) = field
                        && at == depth
                    {
                        f.store(std::mem::take(&mut text), &mut page, object.as_mut())?;
                        field = None;
                    }
                    if depth == 2 {
                        in_prefixes = false;
                        if let Some(o) = object.take() {
                            page.objects.push(o);
                        }
                    }
                    depth = depth.checked_sub(1)?;
                }
                Event::Eof => return (depth == 0).then_some(page),
                _ => {}
            }
        }
    }

    /// The same from the SDK's own decoding of a v1 or v2 answer.
    pub fn from_sdk(
        objects: Option<Vec<Object>>,
        prefixes: Option<Vec<CommonPrefix>>,
        truncated: Option<bool>,
        next: Option<String>,
        encoding: Option<EncodingType>,
    ) -> Page {
        Page {
            objects: objects
                .unwrap_or_default()
                .into_iter()
                .map(|o| ObjectMeta {
                    key: o.key.unwrap_or_default(),
                    size: o.size.unwrap_or(0).max(0) as u64,
                    etag: o.e_tag.as_deref().map(unquote),
                    last_modified: o.last_modified.and_then(|d| SystemTime::try_from(d).ok()),
                    storage_class: o.storage_class.map(|c| c.as_str().to_string()),
                })
                .collect(),
            prefixes: prefixes
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| p.prefix)
                .collect(),
            truncated: truncated.unwrap_or(false),
            next,
            encoded: encoding == Some(EncodingType::Url),
        }
    }
}

/// The fields of a `ListBucketResult` this parser keeps (`Prefix`: a common prefix's).
#[derive(Debug, Clone, Copy)]
enum Field {
    IsTruncated,
    /// `NextContinuationToken` (v2) or `NextMarker` (v1).
    Next,
    EncodingType,
    Key,
    Size,
    ETag,
    LastModified,
    StorageClass,
    Prefix,
}

impl Field {
    /// The result's own field an element opens, if kept (the result's `Prefix` is not).
    fn result(name: &[u8]) -> Option<Field> {
        Some(match name {
            b"IsTruncated" => Field::IsTruncated,
            b"NextContinuationToken" | b"NextMarker" => Field::Next,
            b"EncodingType" => Field::EncodingType,
            _ => return None,
        })
    }

    /// The field of a `Contents` entry an element opens, if kept.
    fn object(name: &[u8]) -> Option<Field> {
        Some(match name {
            b"Key" => Field::Key,
            b"Size" => Field::Size,
            b"ETag" => Field::ETag,
            b"LastModified" => Field::LastModified,
            b"StorageClass" => Field::StorageClass,
            _ => return None,
        })
    }

    /// Stores a field's text; `None` when the value is malformed.
    fn store(self, text: String, page: &mut Page, object: Option<&mut ObjectMeta>) -> Option<()> {
        match (self, object) {
            (Field::IsTruncated, _) => page.truncated = text.trim().parse().ok()?,
            (Field::Next, _) => page.next = Some(text),
            (Field::EncodingType, _) => page.encoded = text.trim() == "url",
            (Field::Prefix, _) => page.prefixes.push(text),
            (Field::Key, Some(o)) => o.key = text,
            (Field::Size, Some(o)) => o.size = text.trim().parse::<i64>().ok()?.max(0) as u64,
            (Field::ETag, Some(o)) => o.etag = Some(unquote(&text)),
            (Field::LastModified, Some(o)) => {
                let d = DateTime::from_str(text.trim(), Format::DateTime).ok()?;
                o.last_modified = SystemTime::try_from(d).ok();
            }
            (Field::StorageClass, Some(o)) => o.storage_class = Some(text),
            _ => return None,
        }
        Some(())
    }
}

/// The interceptor that reads a listing answer into a [`Page`] (see the module doc); one per request.
#[derive(Clone, Default)]
pub struct FastPage {
    slot: Arc<Mutex<Option<Page>>>,
}

impl fmt::Debug for FastPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FastPage")
    }
}

impl FastPage {
    /// The page this request's answer was read into, if the fast parser read it.
    pub fn take(&self) -> Option<Page> {
        self.slot.lock().ok()?.take()
    }
}

impl Intercept for FastPage {
    fn name(&self) -> &'static str {
        "dth fast listing page"
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = ctx.response_mut();
        if response.status().is_success() {
            let inner = std::mem::replace(response.body_mut(), SdkBody::taken());
            // The answer's Content-Length, so the buffer is allocated once (a page is ~300 KB).
            let size = inner
                .content_length()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0);
            *response.body_mut() = SdkBody::from_body_1_x(Parsing {
                inner,
                buf: BytesMut::with_capacity(size.min(MAX_RESERVE)),
                slot: Arc::clone(&self.slot),
                done: false,
            });
        }
        Ok(())
    }
}

/// A response body that collects the answer, parses it at its end, and yields what the SDK decodes.
struct Parsing {
    inner: SdkBody,
    buf: BytesMut,
    slot: Arc<Mutex<Option<Page>>>,
    done: bool,
}

/// The most reserved up front for an answer, whatever its Content-Length says.
const MAX_RESERVE: usize = 4 << 20;

/// What the SDK decodes once the page was read here: a result with nothing in it.
const EMPTY_RESULT: &[u8] = b"<ListBucketResult/>";

impl Body for Parsing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        while let Some(frame) = ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            if let Ok(data) = frame?.into_data() {
                this.buf.extend_from_slice(&data);
            }
        }
        this.done = true;
        let answer = std::mem::take(&mut this.buf).freeze();
        let out = match Page::parse(&answer) {
            Some(page) => {
                if let Ok(mut slot) = this.slot.lock() {
                    *slot = Some(page);
                }
                Bytes::from_static(EMPTY_RESULT)
            }
            None => {
                tracing::debug!(
                    "a listing answer the fast parser does not read; the SDK decodes it"
                );
                answer
            }
        };
        Poll::Ready(Some(Ok(Frame::data(out))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V2: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>
<KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>
<Contents><Key>p/a&amp;b &lt;&#x263A;&#49;&gt;</Key><LastModified>2024-05-06T07:08:09.123Z</LastModified>
<ETag>&quot;9E107D9D372BB6826BD81D3542A419D6&quot;</ETag><Size>42</Size>
<Owner><ID>x</ID><DisplayName>Key</DisplayName></Owner><StorageClass>GLACIER</StorageClass></Contents>
<Contents><Key><![CDATA[p/c]]></Key><Size>0</Size></Contents>
<CommonPrefixes><Prefix>p/d/</Prefix></CommonPrefixes>
<EncodingType>url</EncodingType><NextContinuationToken>tok==</NextContinuationToken></ListBucketResult>"#;

    #[test]
    fn reads_a_v2_page() {
        let p = Page::parse(V2.as_bytes()).unwrap();
        assert!(p.truncated && p.encoded);
        assert_eq!(p.next.as_deref(), Some("tok=="));
        assert_eq!(p.prefixes, ["p/d/"]);
        let a = &p.objects[0];
        assert_eq!(a.key, "p/a&b <\u{263A}1>");
        assert_eq!(
            (a.size, a.etag.as_deref()),
            (42, Some("9e107d9d372bb6826bd81d3542a419d6"))
        );
        assert_eq!(a.storage_class.as_deref(), Some("GLACIER"));
        let t = a
            .last_modified
            .unwrap()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(t.as_millis(), 1_714_979_289_123);
        assert_eq!(
            (p.objects[1].key.as_str(), p.objects[1].etag.as_ref()),
            ("p/c", None)
        );
        assert_eq!(p.objects.len(), 2);
    }

    #[test]
    fn reads_v1_and_empty_pages() {
        let v1 = "<ListBucketResult><IsTruncated>false</IsTruncated><NextMarker>m</NextMarker>\
                  <Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>";
        let p = Page::parse(v1.as_bytes()).unwrap();
        assert_eq!((p.truncated, p.next.as_deref()), (false, Some("m")));
        assert_eq!(p.objects[0].key, "k");
        assert_eq!(Page::parse(EMPTY_RESULT), Some(Page::default()));
        let none = Page::parse(b"<ListBucketResult><Name>b</Name></ListBucketResult>").unwrap();
        assert_eq!(none, Page::default());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            "<Error><Code>x</Code></Error>",
            "<ListBucketResult><Contents><Key>a</Key><Size>x</Size></Contents></ListBucketResult>",
            "<ListBucketResult><Contents><Key>a&bogus;</Key></Contents></ListBucketResult>",
            "<ListBucketResult><Contents><Key>a</Key></ListBucketResult>",
            "<ListBucketResult><Contents><Key>a</Key></Contents>",
            "<ListBucketResult><Contents><LastModified>yesterday</LastModified></Contents></ListBucketResult>",
        ] {
            assert_eq!(Page::parse(bad.as_bytes()), None, "{bad}");
        }
    }
}
