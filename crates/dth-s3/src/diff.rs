//! The streaming merge-join of two sorted listings (cf. rclone's `fs/march`). Memory is constant: one
//! head per side. Each side's keys must strictly increase in byte order; a violation is an
//! [`Error::Unsorted`] naming both keys, never a silently wrong diff — the caller then falls back to a
//! sorted listing of that partition (see `sort`).

use std::cmp::Ordering;

use futures::{Stream, StreamExt};

use crate::error::{Error, Result, Side};
use crate::meta::Keyed;

/// One step of the merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Diff<T> {
    /// Only the source has this key.
    SrcOnly(T),
    /// Only the destination has this key.
    DstOnly(T),
    /// Both have it: (source, destination).
    Both(T, T),
}

/// One side of the merge: a stream plus its head and the last key taken, for the order check.
struct Cursor<S, T> {
    side: Side,
    stream: S,
    head: Option<T>,
    prev: Option<String>,
    done: bool,
}

impl<S, T> Cursor<S, T>
where
    S: Stream<Item = Result<T>> + Unpin,
    T: Keyed,
{
    fn new(side: Side, stream: S) -> Self {
        Cursor {
            side,
            stream,
            head: None,
            prev: None,
            done: false,
        }
    }

    async fn fill(&mut self) -> Result<()> {
        if self.head.is_some() || self.done {
            return Ok(());
        }
        match self.stream.next().await {
            None => self.done = true,
            Some(item) => {
                let item = item?;
                if let Some(prev) = &self.prev
                    && item.key().as_bytes() <= prev.as_bytes()
                {
                    return Err(Error::Unsorted {
                        side: self.side,
                        prev: prev.clone(),
                        key: item.key().to_string(),
                    });
                }
                self.prev = Some(item.key().to_string());
                self.head = Some(item);
            }
        }
        Ok(())
    }
}

/// Merge-joins two listings sorted by key bytes.
pub struct MergeJoin<S, D, T> {
    src: Cursor<S, T>,
    dst: Cursor<D, T>,
    /// Whether destination-only entries are wanted; if not, the destination is not read past the source.
    want_dst_only: bool,
}

impl<S, D, T> MergeJoin<S, D, T>
where
    S: Stream<Item = Result<T>> + Unpin,
    D: Stream<Item = Result<T>> + Unpin,
    T: Keyed,
{
    /// Joins `src` and `dst`. With `want_dst_only == false` the merge ends when the source does.
    pub fn new(src: S, dst: D, want_dst_only: bool) -> Self {
        MergeJoin {
            src: Cursor::new(Side::Source, src),
            dst: Cursor::new(Side::Destination, dst),
            want_dst_only,
        }
    }

    /// The next step, or `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Diff<T>>> {
        if let Err(e) = self.src.fill().await {
            return Some(Err(e));
        }
        if self.src.head.is_none() && !self.want_dst_only {
            return None;
        }
        if let Err(e) = self.dst.fill().await {
            return Some(Err(e));
        }
        let order = match (&self.src.head, &self.dst.head) {
            (None, None) => return None,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(s), Some(d)) => s.key().as_bytes().cmp(d.key().as_bytes()),
        };
        let step = match order {
            Ordering::Less => Diff::SrcOnly(self.src.head.take()?),
            Ordering::Greater => Diff::DstOnly(self.dst.head.take()?),
            Ordering::Equal => Diff::Both(self.src.head.take()?, self.dst.head.take()?),
        };
        Some(Ok(step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct K(&'static str);
    impl Keyed for K {
        fn key(&self) -> &str {
            self.0
        }
    }

    fn s(keys: &[&'static str]) -> impl Stream<Item = Result<K>> + Unpin {
        stream::iter(keys.iter().map(|k| Ok(K(k))).collect::<Vec<_>>())
    }

    async fn run(src: &[&'static str], dst: &[&'static str], all: bool) -> Result<Vec<Diff<K>>> {
        let mut m = MergeJoin::new(s(src), s(dst), all);
        let mut out = Vec::new();
        while let Some(d) = m.next().await {
            out.push(d?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn joins_in_byte_order() {
        // "é" (0xC3 0xA9) sorts after "z" in UTF-8 byte order.
        let out = run(&["a", "b", "z", "é"], &["b", "c", "é", "éé"], true)
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![
                Diff::SrcOnly(K("a")),
                Diff::Both(K("b"), K("b")),
                Diff::DstOnly(K("c")),
                Diff::SrcOnly(K("z")),
                Diff::Both(K("é"), K("é")),
                Diff::DstOnly(K("éé")),
            ]
        );
    }

    #[tokio::test]
    async fn stops_at_source_end_without_dst_only() {
        let out = run(&["a"], &["a", "b", "c"], false).await.unwrap();
        assert_eq!(out, vec![Diff::Both(K("a"), K("a"))]);
    }

    #[tokio::test]
    async fn rejects_unsorted_and_duplicate_keys() {
        let err = run(&["b", "a"], &[], true).await.unwrap_err();
        assert!(
            matches!(err, Error::Unsorted { side: Side::Source, ref prev, ref key } if prev == "b" && key == "a")
        );
        let err = run(&["a"], &["x", "x"], true).await.unwrap_err();
        assert!(matches!(
            err,
            Error::Unsorted {
                side: Side::Destination,
                ..
            }
        ));
    }
}
