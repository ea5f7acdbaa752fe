//! External sort of a listing by key bytes, the fallback for a provider that lists out of UTF-8 byte order.
//!
//! The merge-join diff streams two sorted listings in constant memory. When a partition's listing is not sorted,
//! [`sort_by_key`] sorts it in bounded memory: runs of at most `run_len` items are sorted in memory and spilled to
//! anonymous temp files (one JSON line per item), then merged k-way with a heap, in the manner of rclone's
//! `fs/list/sorter.go`. File I/O runs on blocking threads, never on the async runtime.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, binary_heap::PeekMut};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, Write};
use std::pin::pin;

use futures::{Stream, StreamExt};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::meta::Keyed;

/// Items the merge thread may have sent ahead of the consumer.
const CHANNEL_CAPACITY: usize = 256;

/// One sorted run: the last one stays in memory, the others are read back from their spill files.
type Run<T> = Box<dyn Iterator<Item = Result<T>> + Send>;

/// Sorts a stream of keyed items by key bytes in bounded memory: runs of at most `run_len` items (at least 1) are
/// sorted in memory and spilled to anonymous temp files (one JSON line per item, buffered I/O), then merged k-way
/// with a heap. Equal keys: the first seen is kept and the duplicates are dropped with a warning (S3 keys are
/// unique; a duplicate is a provider bug). If everything fits in one run, no file is written.
///
/// An error from the input stream is returned right away. The output yields items in strictly increasing key byte
/// order, or an error reading a spill file back (after which it ends). Memory is O(`run_len` + runs × one buffered
/// line); each spilled run holds one open file until the output is drained or dropped.
pub async fn sort_by_key<T, S>(
    items: S,
    run_len: usize,
) -> Result<impl Stream<Item = Result<T>> + Send + 'static>
where
    T: Keyed + Serialize + DeserializeOwned + Send + 'static,
    S: Stream<Item = Result<T>> + Send,
{
    let run_len = run_len.max(1);
    let mut items = pin!(items);
    let mut files = Vec::new();
    let mut tail = Vec::new();
    while let Some(item) = items.next().await {
        let item = item?;
        if tail.len() == run_len {
            let run = std::mem::take(&mut tail);
            let file = tokio::task::spawn_blocking(move || spill(run))
                .await
                .map_err(io::Error::other)
                .flatten();
            files.push(file.map_err(io_error("spilling a sorted run to a temp file"))?);
        }
        tail.push(item);
    }
    let (tx, mut rx) = mpsc::channel(CHANNEL_CAPACITY);
    let merger = tokio::task::spawn_blocking(move || {
        sort_run(&mut tail);
        let mut runs: Vec<Run<T>> = files.into_iter().map(read_run).collect();
        runs.push(Box::new(tail.into_iter().map(Ok)));
        if let Err(e) = merge(runs, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    // A merge thread that panicked must not pass for the end of the listing.
    let panicked = futures::stream::once(merger).filter_map(|joined| async move {
        let e = joined.err()?;
        Some(Err(io_error("merging sorted runs")(io::Error::other(e))))
    });
    Ok(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).chain(panicked))
}

/// Stable sort by key bytes, so equal keys keep their input order.
fn sort_run<T: Keyed>(run: &mut [T]) {
    run.sort_by(|a, b| a.key().as_bytes().cmp(b.key().as_bytes()));
}

/// Sorts `run` and writes it to an anonymous temp file, rewound for reading.
fn spill<T: Keyed + Serialize>(mut run: Vec<T>) -> io::Result<File> {
    sort_run(&mut run);
    let mut out = BufWriter::new(tempfile::tempfile()?);
    for item in &run {
        serde_json::to_writer(&mut out, item)?;
        out.write_all(b"\n")?;
    }
    let mut file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.rewind()?;
    Ok(file)
}

/// Reads a spilled run back, one JSON line per item.
fn read_run<T: DeserializeOwned + 'static>(file: File) -> Run<T> {
    Box::new(BufReader::new(file).lines().map(|line| {
        let item: io::Result<T> = line.and_then(|line| Ok(serde_json::from_str(&line)?));
        item.map_err(io_error("reading a sorted run back from its temp file"))
    }))
}

/// Merges sorted runs (numbered in input order) into `tx`, keeping the first seen of equal keys.
/// Stops early, without error, when the receiver is dropped.
fn merge<T: Keyed>(mut runs: Vec<Run<T>>, tx: &mpsc::Sender<Result<T>>) -> Result<()> {
    let count = runs.len();
    let mut heap = BinaryHeap::with_capacity(count);
    let mut refill = |heap: &mut BinaryHeap<Head<T>>, run: usize| -> Result<()> {
        if let Some(item) = runs[run].next().transpose()? {
            heap.push(Head { item, run });
        }
        Ok(())
    };
    for run in 0..count {
        refill(&mut heap, run)?;
    }
    while let Some(Head { item, run }) = heap.pop() {
        refill(&mut heap, run)?;
        let same_key = |head: &PeekMut<Head<T>>| head.item.key() == item.key();
        while let Some(dup) = heap.peek_mut().filter(same_key).map(PeekMut::pop) {
            tracing::warn!(
                key = item.key(),
                "duplicate key in a listing, kept the first"
            );
            refill(&mut heap, dup.run)?;
        }
        if tx.blocking_send(Ok(item)).is_err() {
            break;
        }
    }
    Ok(())
}

/// The next item of one run, ordered so that the max-heap pops the smallest key, from the earliest run on a tie.
struct Head<T> {
    item: T,
    run: usize,
}

impl<T: Keyed> Ord for Head<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.item.key().as_bytes(), other.run).cmp(&(self.item.key().as_bytes(), self.run))
    }
}

impl<T: Keyed> PartialOrd for Head<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Keyed> PartialEq for Head<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T: Keyed> Eq for Head<T> {}

fn io_error(context: &'static str) -> impl Fn(io::Error) -> Error {
    move |source| Error::Io {
        context: context.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use rand::{Rng, SeedableRng, rngs::StdRng};
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Item {
        key: String,
        seq: usize,
    }

    impl Keyed for Item {
        fn key(&self) -> &str {
            &self.key
        }
    }

    /// Items numbered in input order, so a test can tell which of equal keys was kept.
    fn items(keys: impl IntoIterator<Item = impl Into<String>>) -> Vec<Item> {
        let keys = keys.into_iter().map(Into::into);
        keys.enumerate()
            .map(|(seq, key)| Item { key, seq })
            .collect()
    }

    async fn sorted(input: Vec<Item>, run_len: usize) -> Vec<Item> {
        let input = futures::stream::iter(input.into_iter().map(Ok));
        let output = sort_by_key(input, run_len).await.unwrap();
        output.try_collect().await.unwrap()
    }

    fn keys(items: &[Item]) -> Vec<&str> {
        items.iter().map(|i| i.key.as_str()).collect()
    }

    #[tokio::test]
    async fn sorts_random_keys_by_bytes_at_run_boundaries() {
        let alphabet: Vec<char> = "aB/ é\u{FFFD}\u{1F600}0~\n\"日".chars().collect();
        let mut rng = StdRng::seed_from_u64(7);
        let run_len = 8;
        for n in [0, 1, run_len - 1, run_len, run_len + 1, 10 * run_len] {
            let input = items((0..n).map(|_| {
                let len = rng.gen_range(1..5);
                (0..len)
                    .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                    .collect::<String>()
            }));
            // What the sort must produce: a stable sort by bytes, then the first of each key.
            let mut expected = input.clone();
            expected.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
            expected.dedup_by(|later, first| later.key == first.key);
            let output = sorted(input, run_len).await;
            let increasing = output
                .windows(2)
                .all(|w| w[0].key.as_bytes() < w[1].key.as_bytes());
            assert!(increasing, "n = {n}");
            assert_eq!(output, expected, "n = {n}");
        }
    }

    #[tokio::test]
    async fn utf8_order_is_not_utf16_order() {
        let output = sorted(items(["\u{1F600}", "\u{FFFD}"]), 1).await;
        assert_eq!(keys(&output), ["\u{FFFD}", "\u{1F600}"]);
    }

    #[tokio::test]
    async fn duplicates_keep_the_first_seen() {
        for run_len in [1, 2, 3, 100] {
            let output = sorted(items(["b", "a", "b", "c", "a", "c", "c"]), run_len).await;
            let seqs: Vec<_> = output.iter().map(|i| i.seq).collect();
            assert_eq!((keys(&output), seqs), (vec!["a", "b", "c"], vec![1, 0, 3]));
        }
    }

    #[tokio::test]
    async fn input_error_is_returned() {
        let boom = io_error("listing")(io::Error::other("boom"));
        let input = items(["b", "a"]).into_iter().map(Ok).chain([Err(boom)]);
        let result = sort_by_key(futures::stream::iter(input), 1).await;
        assert!(matches!(result.err(), Some(Error::Io { context, .. }) if context == "listing"));
    }

    #[tokio::test]
    async fn dropping_the_output_early_is_fine() {
        let input = items((0..1000).rev().map(|i| format!("k{i:04}")));
        let output = sort_by_key(futures::stream::iter(input.into_iter().map(Ok)), 10);
        let first: Vec<Item> = output.await.unwrap().take(2).try_collect().await.unwrap();
        assert_eq!(keys(&first), ["k0000", "k0001"]);
    }
}
