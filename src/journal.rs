//! The verdict journal: every verdict record the daemon writes, as JSON
//! lines in `<state_dir>/journal/YYYY-MM-DD.jsonl` (UTC days), kept for
//! `admin.journal_keep`. `sra-milter whatif` and the console's what-if
//! re-rate it under a candidate configuration.
//!
//! The milter never waits for it: a verdict joins a bounded queue under a
//! short lock, and one writer thread wakes every 200 ms to serialise and
//! write the lines that wait (waking it per message cost 15 % of the
//! throughput).
//! When the queue is full (a disk far slower than the mail) records are
//! dropped, counted and logged, and the mail flows on. Dropped, the
//! journal writes what waits before it ends.
//! A line that cannot be read back (a torn last line after a crash) is
//! skipped and counted by the reader.

use crate::activity::Seen;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Records waiting for the writer at most.
const QUEUE: usize = 65536;
/// How often the writer wakes to write what waits: the milter never
/// wakes it (a wake-up per message costs more than the write).
const TICK: Duration = Duration::from_millis(200);

struct Queue {
    waiting: Mutex<Vec<Arc<Seen>>>,
    closed: AtomicBool,
    dropped: AtomicU64,
}

/// The daemon's side of the journal.
pub struct Journal {
    queue: Arc<Queue>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// `YYYY-MM-DD` of unix seconds (UTC).
fn day_name(t: u64) -> String {
    crate::vocab::rfc3339(t)[..10].to_string()
}

/// The journal's folder under a state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("journal")
}

impl Journal {
    /// Starts the writer thread over `dir`, keeping `keep` seconds of days.
    pub fn start(dir: PathBuf, keep: u64) -> io::Result<Journal> {
        std::fs::create_dir_all(&dir)?;
        // Verdicts name people: readable by the daemon's user and group only.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750))?;
        let queue = Arc::new(Queue {
            waiting: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        let q = queue.clone();
        let writer = std::thread::Builder::new()
            .name("sra-journal".into())
            .spawn(move || write_loop(&dir, keep, &q))?;
        Ok(Journal {
            queue,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Queues one verdict; never blocks on the disk. The writer serialises
    /// it, off the mail path.
    pub fn append(&self, seen: Arc<Seen>) {
        if self.queue.closed.load(Ordering::Relaxed) {
            return;
        }
        let mut g = self.queue.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() < QUEUE {
            g.push(seen);
            return;
        }
        drop(g);
        let n = self.queue.dropped.fetch_add(1, Ordering::Relaxed);
        if n.is_power_of_two() {
            tracing::warn!(
                "journal: the writer falls behind; {} verdict records not journaled so far",
                n + 1
            );
        }
    }
}

impl Journal {
    /// Writes what waits, then ends the writer; later verdicts are not
    /// journaled.
    pub fn close(&self) {
        self.queue.closed.store(true, Ordering::SeqCst);
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = w {
            w.thread().unpark();
            let _ = w.join();
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(dir: &Path, keep: u64, q: &Queue) {
    let mut open: Option<(String, BufWriter<File>)> = None;
    let mut failing = false;
    // One line at a time, whole: the record is written out only once it
    // is serialised.
    let mut line: Vec<u8> = Vec::new();
    loop {
        let closed = q.closed.load(Ordering::SeqCst);
        let batch = std::mem::take(&mut *q.waiting.lock().unwrap_or_else(|p| p.into_inner()));
        for seen in batch {
            let day = day_name(seen.time);
            if open.as_ref().is_none_or(|(d, _)| *d != day) {
                if let Some((_, mut w)) = open.take() {
                    let _ = w.flush();
                }
                prune(dir, keep, seen.time);
                let path = dir.join(format!("{day}.jsonl"));
                use std::os::unix::fs::OpenOptionsExt;
                match OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o640)
                    .open(&path)
                {
                    Ok(f) => {
                        open = Some((day, BufWriter::new(f)));
                        failing = false;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::error!(
                                "journal {}: {e}; verdicts are not journaled",
                                path.display()
                            );
                            failing = true;
                        }
                        continue;
                    }
                }
            }
            if let Some((_, w)) = open.as_mut() {
                line.clear();
                seen.write_json(&mut line);
                line.push(b'\n');
                if let Err(e) = w.write_all(&line) {
                    if !failing {
                        tracing::error!("journal: {e}; verdicts are not journaled");
                        failing = true;
                    }
                    open = None;
                }
            }
        }
        if let Some((_, w)) = open.as_mut() {
            let _ = w.flush();
        }
        if closed {
            return;
        }
        std::thread::park_timeout(TICK);
    }
}

/// Removes the day files older than `keep` before `now`.
fn prune(dir: &Path, keep: u64, now: u64) {
    let oldest = day_name(now.saturating_sub(keep));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(day) = name.strip_suffix(".jsonl") {
            if day.len() == 10 && day < oldest.as_str() {
                if let Err(err) = std::fs::remove_file(e.path()) {
                    tracing::warn!("journal: cannot remove {name}: {err}");
                }
            }
        }
    }
}

/// What a read of the journal found.
#[derive(Debug, Default)]
pub struct Read {
    pub records: Vec<serde_json::Value>,
    /// Lines that were not JSON objects.
    pub unreadable: u64,
}

/// The records of `dir` made at or after `since` (unix seconds), oldest
/// day first.
pub fn read_since(dir: &Path, since: u64) -> io::Result<Read> {
    let mut out = Read::default();
    out.unreadable = each_since(dir, since, &mut |v| out.records.push(v))?;
    Ok(out)
}

/// Calls `f` with each record of `dir` made at or after `since`, oldest day
/// first, one at a time (a week of journal need not fit in memory); the
/// count of unreadable lines.
pub fn each_since(dir: &Path, since: u64, f: &mut dyn FnMut(serde_json::Value)) -> io::Result<u64> {
    let first = day_name(since);
    let mut days: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jsonl"))
                .is_some_and(|d| d.len() == 10 && d >= first.as_str())
        })
        .collect();
    days.sort();
    let mut unreadable = 0;
    for p in days {
        unreadable += each_line(BufReader::new(File::open(&p)?), since, f)?;
    }
    Ok(unreadable)
}

/// Verdict records as JSON lines (the journal, or `sra-milter replay`'s
/// output) made at or after `since`, into `out`.
pub fn read_lines(r: impl BufRead, since: u64, out: &mut Read) -> io::Result<()> {
    let records = &mut out.records;
    out.unreadable += each_line(r, since, &mut |v| records.push(v))?;
    Ok(())
}

/// Calls `f` with each record of `r` made at or after `since`; the count
/// of unreadable lines.
pub fn each_line(
    r: impl BufRead,
    since: u64,
    f: &mut dyn FnMut(serde_json::Value),
) -> io::Result<u64> {
    let mut unreadable = 0;
    for line in r.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(v) if v.is_object() => {
                let t = v["time"]
                    .as_str()
                    .and_then(crate::vocab::parse_rfc3339)
                    .unwrap_or(0);
                if t >= since {
                    f(v);
                }
            }
            _ => unreadable += 1,
        }
    }
    Ok(unreadable)
}

#[cfg(test)]
mod tests {
    use super::*;
    const DAY: u64 = 86400;

    #[test]
    fn writes_days_reads_them_back_and_prunes_old_ones() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::start(d.path().to_owned(), 2 * DAY).unwrap();
        let t0 = 1_800_000_000 - 1_800_000_000 % DAY;
        let a = crate::activity::Activity::new(10, 0);
        for (i, t) in [t0, t0 + 10, t0 + DAY, t0 + 3 * DAY].iter().enumerate() {
            let mut rec = crate::activity::tests::record("a@x.example", "neutral", "accept");
            rec.time = crate::vocab::rfc3339(*t);
            rec.queue_id = format!("Q{i}");
            j.append(a.push(rec, *t));
        }
        // Dropped, the journal writes what waits before it ends.
        drop(j);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(d.path()), 0o750);
        assert_eq!(
            mode(&d.path().join(format!("{}.jsonl", day_name(t0 + 3 * DAY)))),
            0o640,
            "verdicts name people"
        );
        assert!(
            !d.path().join(format!("{}.jsonl", day_name(t0))).exists(),
            "older than two days: pruned"
        );
        std::fs::write(
            d.path().join(format!("{}.jsonl", day_name(t0 + DAY))),
            "{\"time\":\"bad\"}\n{torn",
        )
        .unwrap();
        let r = read_since(d.path(), t0).unwrap();
        assert_eq!(r.unreadable, 1);
        let ids: Vec<&str> = r
            .records
            .iter()
            .map(|v| v["queue_id"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(
            ids,
            ["Q3"],
            "a record without a readable time counts as old"
        );
    }
}
