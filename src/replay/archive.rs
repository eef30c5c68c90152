//! Reading archives: .eml files, directories of them, Maildir folders
//! (`cur/`, `new/`) and mbox files (recognised by their first `From `
//! line; mboxo/mboxrd quoting undone).

use super::ReplayError;
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where one message is.
#[derive(Clone, Debug)]
pub(super) enum Loc {
    File(PathBuf),
    Mbox {
        path: PathBuf,
        start: u64,
        len: usize,
    },
}

impl Loc {
    pub(super) fn name(&self) -> String {
        match self {
            Loc::File(p) => p.display().to_string(),
            Loc::Mbox { path, start, .. } => format!("{}@{start}", path.display()),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ReplayError + '_ {
    move |source| ReplayError::Io {
        path: path.to_owned(),
        source,
    }
}

fn starts_like_mbox(path: &Path) -> bool {
    let mut head = [0u8; 5];
    File::open(path)
        .and_then(|f| f.read_at(&mut head, 0))
        .map(|n| n == 5 && &head == b"From ")
        .unwrap_or(false)
}

/// Byte ranges of the messages of an mbox file (mboxo/mboxrd: a message
/// starts at a `From ` line after a blank line or at the start).
fn mbox_ranges(data: &[u8]) -> Vec<(u64, usize)> {
    let mut starts = Vec::new();
    let mut pos = 0usize;
    let mut prev_blank = true;
    while pos < data.len() {
        let end = data[pos..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(data.len(), |i| pos + i + 1);
        let line = &data[pos..end];
        if prev_blank && line.starts_with(b"From ") {
            starts.push(pos);
        }
        prev_blank = line == b"\n" || line == b"\r\n";
        pos = end;
    }
    let mut out = Vec::new();
    for (i, &s) in starts.iter().enumerate() {
        let e = starts.get(i + 1).copied().unwrap_or(data.len());
        // Skip the "From " separator line itself.
        let body = data[s..e]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(e, |i| s + i + 1);
        if body < e {
            out.push((body as u64, e - body));
        }
    }
    out
}

pub(super) fn collect(path: &Path, out: &mut Vec<Loc>) -> Result<(), ReplayError> {
    let md = std::fs::metadata(path).map_err(io_err(path))?;
    if md.is_dir() {
        let cur = path.join("cur");
        let new = path.join("new");
        if cur.is_dir() || new.is_dir() {
            for d in [cur, new] {
                if d.is_dir() {
                    let mut files: Vec<PathBuf> = std::fs::read_dir(&d)
                        .map_err(io_err(&d))?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.is_file())
                        .collect();
                    files.sort();
                    out.extend(files.into_iter().map(Loc::File));
                }
            }
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io_err(path))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        entries.sort();
        for e in entries {
            collect(&e, out)?;
        }
        return Ok(());
    }
    if starts_like_mbox(path) {
        let data = std::fs::read(path).map_err(io_err(path))?;
        for (start, len) in mbox_ranges(&data) {
            out.push(Loc::Mbox {
                path: path.to_owned(),
                start,
                len,
            });
        }
    } else {
        out.push(Loc::File(path.to_owned()));
    }
    Ok(())
}

/// Reads a message's bytes; mboxrd `>From ` quoting is undone.
pub(super) fn read(loc: &Loc, files: &mut HashMap<PathBuf, File>) -> io::Result<Vec<u8>> {
    match loc {
        Loc::File(p) => std::fs::read(p),
        Loc::Mbox { path, start, len } => {
            if !files.contains_key(path) {
                if files.len() > 64 {
                    files.clear();
                }
                files.insert(path.clone(), File::open(path)?);
            }
            let f = &files[path];
            let mut buf = vec![0u8; *len];
            f.read_exact_at(&mut buf, *start)?;
            if buf.windows(6).any(|w| w == b"\n>From") {
                let text = buf;
                let mut out = Vec::with_capacity(text.len());
                let mut at_line_start = true;
                let mut i = 0;
                while i < text.len() {
                    if at_line_start && text[i] == b'>' {
                        let q = text[i..].iter().take_while(|b| **b == b'>').count();
                        if text[i + q..].starts_with(b"From ") {
                            i += 1;
                        }
                    }
                    at_line_start = text[i] == b'\n';
                    out.push(text[i]);
                    i += 1;
                }
                buf = out;
            }
            Ok(buf)
        }
    }
}

/// The header block of a message (up to the first empty line).
pub(super) fn header_block(raw: &[u8]) -> &[u8] {
    let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => &raw[..a.min(b)],
        (Some(a), None) | (None, Some(a)) => &raw[..a],
        (None, None) => raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_is_split_at_from_lines_after_blank_lines() {
        let mbox = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\nFrom inside the body\n\nFrom c@d Mon Jan  1 00:00:00 2024\nSubject: two\n\n>From quoted\n";
        let r = mbox_ranges(mbox);
        assert_eq!(r.len(), 2);
        let first = &mbox[r[0].0 as usize..r[0].0 as usize + r[0].1];
        assert!(first.starts_with(b"Subject: one"));
        assert!(first.ends_with(b"From inside the body\n\n"));
    }
}
