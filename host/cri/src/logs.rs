//! Reading a container's log file in the CRI's format, as the kubelet does for `kubectl logs`:
//! the runtime writes the file, the node agent reads it.
//!
//! Each line of the file is one entry: `<RFC 3339 time> <stdout|stderr> <P|F> <content>`.
//! `P` marks a partial entry (the runtime split a long line), `F` the entry that ends a line.

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use staticlet_runtime::{LogOptions, RuntimeError};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// How often a followed log is read again for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How often a followed log asks whether its container still runs.
const RUNNING_CHECK: Duration = Duration::from_secs(1);

/// One entry of the log file.
#[derive(Debug, PartialEq, Eq)]
struct Entry<'a> {
    timestamp: &'a str,
    time: OffsetDateTime,
    partial: bool,
    content: &'a [u8],
}

/// Parses one line of the file (without its newline); `None` for a line that is not an entry.
fn parse(line: &[u8]) -> Option<Entry<'_>> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let timestamp = std::str::from_utf8(fields.next()?).ok()?;
    let time = OffsetDateTime::parse(timestamp, &Rfc3339).ok()?;
    let _stream = fields.next().filter(|s| *s == b"stdout" || *s == b"stderr")?;
    let partial = match fields.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Entry { timestamp, time, partial, content: fields.next().unwrap_or_default() })
}

/// Turns entries into what `kubectl logs` prints: content, with the line's timestamp first
/// when asked, and a newline where an entry ends a line.
struct Printer {
    timestamps: bool,
    since: Option<OffsetDateTime>,
    /// The last entry was partial: the next one continues its line and gets no timestamp.
    in_line: bool,
}

impl Printer {
    fn print(&mut self, entry: &Entry<'_>) -> Option<Vec<u8>> {
        if self.since.is_some_and(|since| entry.time < since) {
            return None;
        }
        let mut out = Vec::with_capacity(entry.content.len() + 40);
        if self.timestamps && !self.in_line {
            out.extend_from_slice(entry.timestamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(entry.content);
        if !entry.partial {
            out.push(b'\n');
        }
        self.in_line = entry.partial;
        Some(out)
    }
}

/// Streams the log at `path` as `options` ask. With `follow`, lines are streamed as the
/// runtime writes them until `running` says the container has stopped and the file has no more.
///
/// # Errors
///
/// [`RuntimeError::NotFound`] when the file does not exist (the container never started, or
/// its logs were removed).
pub async fn read(
    path: PathBuf,
    options: &LogOptions,
    running: impl Fn() -> BoxFuture<'static, bool> + Send + 'static,
) -> Result<BoxStream<'static, Result<Vec<u8>, RuntimeError>>, RuntimeError> {
    let file = tokio::fs::File::open(&path).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => RuntimeError::NotFound(format!("log file {}", path.display())),
        _ => RuntimeError::Call { call: "logs", message: format!("reading {}: {e}", path.display()) },
    })?;
    let printer = Printer { timestamps: options.timestamps, since: options.since.map(OffsetDateTime::from), in_line: false };
    let (tx, mut rx) = mpsc::channel(16);
    let (tail, follow) = (options.tail_lines, options.follow);
    tokio::spawn(async move {
        let failed = |e: std::io::Error| RuntimeError::Call { call: "logs", message: format!("reading {}: {e}", path.display()) };
        if let Err(e) = stream(BufReader::new(file), printer, tail, follow, running, &tx).await {
            let _ = tx.send(Err(failed(e))).await;
        }
    });
    Ok(Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx))))
}

type Sender = mpsc::Sender<Result<Vec<u8>, RuntimeError>>;

async fn stream(
    mut file: BufReader<tokio::fs::File>,
    mut printer: Printer,
    tail: Option<u64>,
    follow: bool,
    running: impl Fn() -> BoxFuture<'static, bool>,
    tx: &Sender,
) -> std::io::Result<()> {
    let mut line = Vec::new();
    // With a tail: the last lines, each as its printed chunks, held until the end of what is written.
    let mut held: std::collections::VecDeque<Vec<Vec<u8>>> = Default::default();
    loop {
        let printed = match next(&mut file, &mut line, &mut printer).await? {
            Next::End => break,
            Next::Skipped => continue,
            Next::Chunk(printed) => printed,
        };
        match tail {
            Some(keep) => {
                match held.back_mut() {
                    Some(last) if continues(last) => last.push(printed),
                    _ => held.push_back(vec![printed]),
                }
                while held.len() as u64 > keep {
                    held.pop_front();
                }
            }
            None => {
                if tx.send(Ok(printed)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    for chunk in held.into_iter().flatten() {
        if tx.send(Ok(chunk)).await.is_err() {
            return Ok(());
        }
    }
    if !follow {
        return Ok(());
    }
    let mut checked = tokio::time::Instant::now();
    let mut stopped = false;
    loop {
        match next(&mut file, &mut line, &mut printer).await? {
            Next::Chunk(printed) => {
                if tx.send(Ok(printed)).await.is_err() {
                    return Ok(());
                }
                continue;
            }
            Next::Skipped => continue,
            Next::End => {}
        }
        // Read to the end once more after the container stopped, for what it wrote last.
        if stopped {
            return Ok(());
        }
        if checked.elapsed() >= RUNNING_CHECK {
            checked = tokio::time::Instant::now();
            stopped = !running().await;
            if stopped {
                continue;
            }
        }
        if tx.is_closed() {
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

/// What the next line of the file gives.
enum Next {
    /// A whole entry, printed.
    Chunk(Vec<u8>),
    /// A whole line that prints nothing: not an entry, or before `since`.
    Skipped,
    /// The end of what is written so far.
    End,
}

/// Reads on into `line` and prints the entry once the line is whole. At the end of what is
/// written so far, an unfinished line stays in `line` to be completed by the next read.
async fn next(file: &mut BufReader<tokio::fs::File>, line: &mut Vec<u8>, printer: &mut Printer) -> std::io::Result<Next> {
    file.read_until(b'\n', line).await?;
    let Some(whole) = line.strip_suffix(b"\n") else { return Ok(Next::End) };
    let printed = parse(whole).and_then(|entry| printer.print(&entry));
    line.clear();
    Ok(printed.map_or(Next::Skipped, Next::Chunk))
}

/// Whether a held line is still open: its last chunk has no newline yet.
fn continues(chunks: &[Vec<u8>]) -> bool {
    chunks.last().is_some_and(|chunk| chunk.last() != Some(&b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const FILE: &str = "\
2026-01-02T03:04:05.000000001Z stdout F first
2026-01-02T03:04:06.000000002Z stderr F second
not an entry
2026-01-02T03:04:07.000000003Z stdout P thi
2026-01-02T03:04:07.500000000Z stdout F rd
2026-01-02T03:04:08.000000004Z stdout F
";

    fn write(contents: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents.as_bytes()).unwrap();
        file
    }

    async fn collect(file: &tempfile::NamedTempFile, options: LogOptions) -> String {
        let stream = read(file.path().to_owned(), &options, || Box::pin(async { false })).await.unwrap();
        let chunks: Vec<_> = stream.collect().await;
        String::from_utf8(chunks.into_iter().flat_map(Result::unwrap).collect()).unwrap()
    }

    #[test]
    fn entries_are_parsed_and_others_skipped() {
        let entry = parse(b"2026-01-02T03:04:05.000000001Z stderr P a b").unwrap();
        assert!(entry.partial);
        assert_eq!(entry.content, b"a b");
        assert_eq!(entry.time, OffsetDateTime::parse("2026-01-02T03:04:05.000000001Z", &Rfc3339).unwrap());
        assert_eq!(parse(b"2026-01-02T03:04:05Z stdin F x"), None);
        assert_eq!(parse(b"yesterday stdout F x"), None);
        assert_eq!(parse(b"2026-01-02T03:04:08Z stdout F").unwrap().content, b"");
    }

    #[tokio::test]
    async fn lines_are_joined_tailed_timestamped_and_filtered_by_time() {
        let file = write(FILE);
        assert_eq!(collect(&file, LogOptions::default()).await, "first\nsecond\nthird\n\n");
        assert_eq!(collect(&file, LogOptions { tail_lines: Some(2), ..Default::default() }).await, "third\n\n");
        assert_eq!(collect(&file, LogOptions { tail_lines: Some(0), ..Default::default() }).await, "");
        let stamped = collect(&file, LogOptions { timestamps: true, tail_lines: Some(2), ..Default::default() }).await;
        assert_eq!(stamped, "2026-01-02T03:04:07.000000003Z third\n2026-01-02T03:04:08.000000004Z \n");
        let since = OffsetDateTime::parse("2026-01-02T03:04:06Z", &Rfc3339).unwrap().into();
        assert_eq!(collect(&file, LogOptions { since: Some(since), ..Default::default() }).await, "second\nthird\n\n");
    }

    #[tokio::test]
    async fn a_missing_file_is_not_found() {
        let missing = read("/nonexistent/0.log".into(), &LogOptions::default(), || Box::pin(async { false })).await;
        assert!(matches!(missing, Err(RuntimeError::NotFound(_))));
    }

    #[tokio::test]
    async fn following_streams_new_lines_whole_and_ends_once_the_container_stops() {
        let mut file = write("2026-01-02T03:04:05Z stdout F one\n");
        let running = Arc::new(AtomicBool::new(true));
        let still = running.clone();
        let options = LogOptions { follow: true, ..Default::default() };
        let mut stream = read(file.path().to_owned(), &options, move || {
            let running = still.load(Ordering::SeqCst);
            Box::pin(async move { running })
        })
        .await
        .unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), b"one\n");
        // Half a line is held back until the runtime finishes writing it.
        file.write_all(b"2026-01-02T03:04:06Z stdout F tw").unwrap();
        file.flush().unwrap();
        tokio::time::sleep(FOLLOW_POLL * 3).await;
        file.write_all(b"o\n").unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), b"two\n");
        file.write_all(b"2026-01-02T03:04:07Z stderr F three\n").unwrap();
        running.store(false, Ordering::SeqCst);
        assert_eq!(stream.next().await.unwrap().unwrap(), b"three\n");
        let end = tokio::time::timeout(RUNNING_CHECK * 3, stream.next()).await.expect("the stream ends after the container stops");
        assert!(end.is_none());
    }
}
