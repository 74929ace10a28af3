//! The log lines' way to stdout: a request's thread appends its line to a
//! shared buffer, and a thread of their own writes whatever has gathered,
//! in one `write`, at most [`GATHER`] after the first of them.
//!
//! tracing-appender's non-blocking writer, used before, hands each line to
//! its thread through a channel: that thread wakes for almost every line,
//! spins and yields while it waits for the next, and writes each line with
//! a `write` of its own. On the 2 cores of `make bench` that cost about 8 µs
//! of CPU per signed-in `GET /auth/user`, a third of the request (24 µs with
//! the line, 16 µs at `RUST_LOG=warn`). Here a line costs a mutex and a
//! copy; the thread wakes about twice per [`GATHER`] under load and not at
//! all when idle.
//!
//! Nothing is dropped: past [`MAX_WAITING`] bytes a line waits for the
//! thread to catch up. A line is on stdout at most [`GATHER`] (plus the
//! write) after it was logged; [`Flushed`], dropped at the end of `main`,
//! waits until everything logged before has been written.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long lines gather after the first before they are written.
pub const GATHER: Duration = Duration::from_millis(50);
/// Written at once, without waiting out [`GATHER`], once this much gathers.
const HIGH_WATER: usize = 64 * 1024;
/// Past this much unwritten, a line waits (a stuck stdout slows logging
/// down; it never loses lines nor grows memory without bound).
const MAX_WAITING: usize = 4 * 1024 * 1024;
/// How long [`Flushed`] waits, at most, for a stdout that does not drain.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Lines appended and not yet taken by the writing thread.
#[derive(Default)]
struct Waiting {
    bytes: Vec<u8>,
    /// Bytes appended and bytes written, ever: a flush waits for the one
    /// to reach the other.
    appended: u64,
    written: u64,
    /// A flush is waiting: write without gathering.
    urgent: bool,
}

#[derive(Default)]
struct Shared {
    waiting: Mutex<Waiting>,
    /// Wakes the writing thread.
    appended: Condvar,
    /// Wakes lines waiting for room and flushes waiting for their lines.
    written: Condvar,
}

impl Shared {
    /// A panic while holding the lock leaves whole lines behind (bytes are
    /// only appended, whole, or taken): go on with them.
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, line: &[u8]) {
        let mut waiting = self
            .written
            .wait_while(self.lock(), |w| w.bytes.len() >= MAX_WAITING)
            .unwrap_or_else(PoisonError::into_inner);
        let before = waiting.bytes.len();
        waiting.bytes.extend_from_slice(line);
        waiting.appended += line.len() as u64;
        // The thread waits for a first line, then for GATHER or HIGH_WATER.
        let wake = before == 0 || (before < HIGH_WATER && waiting.bytes.len() >= HIGH_WATER);
        drop(waiting);
        if wake {
            self.appended.notify_one();
        }
    }

    /// Waits until every line appended so far is written (or `timeout`).
    fn flush(&self, timeout: Duration) {
        let mut waiting = self.lock();
        let target = waiting.appended;
        waiting.urgent = true;
        self.appended.notify_one();
        let _ = self
            .written
            .wait_timeout_while(waiting, timeout, |w| w.written < target)
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// The writing thread: forever, waits for a line, lets more gather,
    /// writes them all.
    fn run(&self, mut out: impl Write) {
        let mut batch = Vec::new();
        loop {
            let waiting = self
                .appended
                .wait_while(self.lock(), |w| w.bytes.is_empty())
                .unwrap_or_else(PoisonError::into_inner);
            let (mut waiting, _) = self
                .appended
                .wait_timeout_while(waiting, GATHER, |w| w.bytes.len() < HIGH_WATER && !w.urgent)
                .unwrap_or_else(PoisonError::into_inner);
            // The two buffers trade places: each keeps its capacity.
            std::mem::swap(&mut batch, &mut waiting.bytes);
            waiting.urgent = false;
            drop(waiting);
            // A stdout that fails (closed) loses these lines, not the process.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            self.lock().written += batch.len() as u64;
            self.written.notify_all();
            batch.clear();
        }
    }
}

/// The writer the log layers write through (`with_writer`).
#[derive(Clone)]
pub struct Lines(Arc<Shared>);

impl Lines {
    /// Appends one whole line (`access.rs`' request line).
    pub fn append(&self, line: &[u8]) {
        self.0.append(line);
    }
}

/// Dropped, waits until every line logged before has been written (at most
/// [`FLUSH_TIMEOUT`], for a stdout that does not drain). Hold it for the
/// life of the process.
#[must_use = "dropping it is the last flush"]
pub struct Flushed(Arc<Shared>);

impl Drop for Flushed {
    fn drop(&mut self) {
        self.0.flush(FLUSH_TIMEOUT);
    }
}

/// Lines to stdout, written by a thread named `gatehouse-log`.
pub fn to_stdout() -> (Lines, Flushed) {
    to(io::stdout())
}

fn to(out: impl Write + Send + 'static) -> (Lines, Flushed) {
    let shared = Arc::new(Shared::default());
    std::thread::Builder::new()
        .name("gatehouse-log".into())
        .spawn({
            let shared = shared.clone();
            move || shared.run(out)
        })
        .expect("the log writer's thread starts");
    (Lines(shared.clone()), Flushed(shared))
}

/// One event's line, appended whole (the fmt layers format an event, then
/// write it with one `write_all`).
pub struct Appender<'a>(&'a Shared);

impl Write for Appender<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.0.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Appender<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Appender(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    /// What the thread wrote, and how many writes it took.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>, Arc<AtomicBool>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            // Closed (`.1` false): a stdout that does not drain.
            while self.1.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut out = self.0.lock().unwrap();
            out.0.extend_from_slice(bytes);
            out.1 += 1;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
        }
        fn writes(&self) -> usize {
            self.0.lock().unwrap().1
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_in_order_in_few_writes_and_all_by_the_flush() {
        let sink = Sink::default();
        let (lines, flushed) = to(sink.clone());
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let lines = &lines;
                scope.spawn(move || {
                    for n in 0..2_000 {
                        let line = format!("thread {thread} line {n} {}\n", "x".repeat(n % 50));
                        lines.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(flushed);
        let text = sink.text();
        let mut next = [0; 4];
        for line in text.lines() {
            let words: Vec<&str> = line.split(' ').collect();
            let (thread, n): (usize, usize) =
                (words[1].parse().unwrap(), words[3].parse().unwrap());
            assert_eq!(n, next[thread], "in order, none lost, none cut: {line}");
            assert_eq!(words[4].len(), n % 50);
            next[thread] += 1;
        }
        assert_eq!(next, [2_000; 4]);
        assert!(
            sink.writes() < 100,
            "8,000 lines in {} writes: batched",
            sink.writes()
        );
    }

    #[test]
    fn a_line_is_written_without_a_flush_soon_after_it_is_logged() {
        let sink = Sink::default();
        let (lines, _flushed) = to(sink.clone());
        let logged = Instant::now();
        lines.make_writer().write_all(b"one line\n").unwrap();
        while sink.text().is_empty() {
            assert!(logged.elapsed() < Duration::from_secs(2), "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(logged.elapsed() >= GATHER / 2, "gathered before writing");
        assert_eq!(sink.text(), "one line\n");
    }

    #[test]
    fn a_stdout_that_does_not_drain_holds_lines_back_instead_of_losing_them() {
        let sink = Sink::default();
        sink.1.store(true, Ordering::SeqCst);
        let (lines, flushed) = to(sink.clone());
        let line = vec![b'x'; 1023]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<u8>>();
        let total = 3 * MAX_WAITING / line.len();
        let done = Arc::new(AtomicBool::new(false));
        let logger = std::thread::spawn({
            let done = done.clone();
            move || {
                for _ in 0..total {
                    lines.make_writer().write_all(&line).unwrap();
                }
                done.store(true, Ordering::SeqCst);
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(!done.load(Ordering::SeqCst), "logging waits for room");
        let waiting = flushed.0.lock().bytes.len();
        assert!(waiting <= MAX_WAITING + 1024, "bounded: {waiting} bytes");
        sink.1.store(false, Ordering::SeqCst);
        logger.join().unwrap();
        drop(flushed);
        assert_eq!(sink.text().len(), total * 1024, "nothing lost");
    }
}
