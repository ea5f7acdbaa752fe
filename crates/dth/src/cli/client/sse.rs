//! A small parser of server-sent events (the `text/event-stream` format of the HTML standard):
//! bytes in, in any chunking; `event:` and `data:` fields gathered until a blank line, then one
//! [`Event`] out. Comments (`:`), `id:` and `retry:` are ignored. A line is limited in length, so a
//! broken stream cannot grow the buffer without bound.

/// Longest line accepted.
const MAX_LINE: usize = 1 << 20;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its `event:` name (`message` when none).
    pub name: String,
    /// Its `data:` lines, joined by `\n`.
    pub data: String,
}

/// The parser's state between chunks.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` starting the next one belongs to it.
    after_cr: bool,
    name: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Feeds a chunk; returns the events it completes.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, String> {
        let mut out = Vec::new();
        for &b in chunk {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(e) = self.field(&String::from_utf8_lossy(&line)) {
                        out.push(e);
                    }
                }
                _ => {
                    if self.line.len() >= MAX_LINE {
                        return Err(format!(
                            "an event stream line is longer than {MAX_LINE} bytes"
                        ));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    /// Handles one line; a blank one dispatches the event gathered.
    fn field(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let data = self.data.take();
            let name = self.name.take();
            return data.map(|data| Event {
                name: name
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "message".into()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (key, value) = match line.split_once(':') {
            Some((k, v)) => (k, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match key {
            "event" => self.name = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_in_any_chunking() {
        let text = b": keep-alive\n\nevent: progress\ndata: {\"a\":1}\n\nevent:end\r\ndata:{}\r\n\r\ndata: x\ndata: y\n\n";
        let want = vec![
            Event {
                name: "progress".into(),
                data: "{\"a\":1}".into(),
            },
            Event {
                name: "end".into(),
                data: "{}".into(),
            },
            Event {
                name: "message".into(),
                data: "x\ny".into(),
            },
        ];
        for size in [1, 2, 3, 7, text.len()] {
            let mut p = Parser::default();
            let mut got = Vec::new();
            for chunk in text.chunks(size) {
                got.extend(p.push(chunk).unwrap());
            }
            assert_eq!(got, want, "chunks of {size}");
        }
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = Parser::default();
        let big = vec![b'a'; MAX_LINE + 1];
        assert!(p.push(&big).is_err());
    }
}
