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

/// The files under `path`, in the order they are read: a file itself; a
/// Maildir's `cur/` then `new/`; a directory's entries by name (hidden ones
/// left out), recursively.
pub(super) fn files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReplayError> {
    let md = std::fs::metadata(path).map_err(io_err(path))?;
    walk(path, md.is_dir(), out)
}

/// As [`files`], for a path known to be a directory or not (a directory
/// entry's type comes with the listing: no `stat` per message file).
fn walk(path: &Path, is_dir: bool, out: &mut Vec<PathBuf>) -> Result<(), ReplayError> {
    if !is_dir {
        out.push(path.to_owned());
        return Ok(());
    }
    let maildir: Vec<PathBuf> = [path.join("cur"), path.join("new")]
        .into_iter()
        .filter(|d| d.is_dir())
        .collect();
    if !maildir.is_empty() {
        for d in maildir {
            let found = listing(&d)?;
            out.extend(found.into_iter().filter(|(_, dir)| !dir).map(|(p, _)| p));
        }
        return Ok(());
    }
    for (e, is_dir) in listing(path)? {
        let hidden = e
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden {
            walk(&e, is_dir, out)?;
        }
    }
    Ok(())
}

/// A directory's entries by name, each with whether it is a directory (a
/// symbolic link followed).
fn listing(dir: &Path) -> Result<Vec<(PathBuf, bool)>, ReplayError> {
    let mut found: Vec<(PathBuf, bool)> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| {
            let e = e.ok()?;
            let ft = e.file_type().ok()?;
            let is_dir = if ft.is_symlink() {
                e.path().is_dir()
            } else {
                ft.is_dir()
            };
            Some((e.path(), is_dir))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Calls `each` with the messages of a file read whole (`data`), one at a
/// time: an mbox file's (its first line a `From ` line), each with its
/// bytes (quoting undone), or the file as one message.
pub(super) fn for_each_message(path: &Path, data: Vec<u8>, mut each: impl FnMut(Loc, Vec<u8>)) {
    if !data.starts_with(b"From ") {
        each(Loc::File(path.to_owned()), data);
        return;
    }
    for (start, len) in mbox_ranges(&data) {
        let at = start as usize;
        let raw = unquote(data[at..at + len].to_vec());
        let loc = Loc::Mbox {
            path: path.to_owned(),
            start,
            len,
        };
        each(loc, raw);
    }
}

/// Reads a message's bytes again; mboxrd `>From ` quoting is undone.
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
            Ok(unquote(buf))
        }
    }
}

/// An mbox message's `>From ` lines with one `>` less (mboxrd).
fn unquote(text: Vec<u8>) -> Vec<u8> {
    if !text.windows(6).any(|w| w == b"\n>From") {
        return text;
    }
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
    out
}

/// The header block of a message (up to the first empty line, `\n\n` or
/// `\r\n\r\n`, whichever comes first), found in one scan.
pub(super) fn header_block(raw: &[u8]) -> &[u8] {
    let mut at = 0;
    while let Some(i) = raw[at..].iter().position(|b| *b == b'\n') {
        let nl = at + i;
        let next = &raw[nl + 1..];
        if next.starts_with(b"\n") {
            return &raw[..nl + 2];
        }
        if next.starts_with(b"\r\n") && raw[..nl].ends_with(b"\r") {
            return &raw[..nl + 3];
        }
        at = nl + 1;
    }
    raw
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

    #[test]
    fn the_header_block_ends_at_the_first_empty_line() {
        assert_eq!(
            header_block(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\n"),
            b"A: 1\r\nB: 2\r\n\r\n"
        );
        assert_eq!(header_block(b"A: 1\nB: 2\n\nbody\n\n"), b"A: 1\nB: 2\n\n");
        assert_eq!(header_block(b"A: 1\r\nB: 2\n\nbody"), b"A: 1\r\nB: 2\n\n");
        assert_eq!(
            header_block(b"A: 1\nB: 2\r\n\r\nbody\n\n"),
            b"A: 1\nB: 2\r\n\r\n"
        );
        assert_eq!(header_block(b"A: 1\nB: 2"), b"A: 1\nB: 2");
        assert_eq!(header_block(b"\n\nbody"), b"\n\n");
        assert_eq!(header_block(b""), b"");
    }

    #[test]
    fn a_message_read_again_is_the_message_read_in_the_first_pass() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("a.mbox");
        let text = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\n>From quoted\n>>From twice\n\nFrom c@d Mon Jan  1 00:00:00 2024\nSubject: two\n\nbody\n";
        std::fs::write(&mbox, text).unwrap();
        let eml = dir.path().join("b.eml");
        std::fs::write(&eml, b"Subject: three\r\n\r\nbody\r\n").unwrap();
        let mut handles = HashMap::new();
        let mut n = 0;
        let mut first = Vec::new();
        for path in [&mbox, &eml] {
            for_each_message(path, std::fs::read(path).unwrap(), |loc, raw| {
                assert_eq!(read(&loc, &mut handles).unwrap(), raw, "{}", loc.name());
                if n == 0 {
                    first = raw;
                }
                n += 1;
            });
        }
        assert_eq!(n, 3);
        assert!(
            first.ends_with(b"From quoted\n>From twice\n\n"),
            "{first:?}"
        );
    }
}
