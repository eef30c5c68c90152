//! `sra-milter whatif`: the daemon's recent verdicts (its journal) or a
//! replay's records, re-rated under a candidate configuration beside the
//! current one (`pipeline::whatif`). Nothing is changed.

use sra_milter::config::{Config, Overrides, EX_CONFIG};
use sra_milter::journal;
use sra_milter::pipeline::whatif::WhatIf;
use sra_milter::vocab::{now, Span};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub struct Options {
    pub candidate: PathBuf,
    pub current: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub since: Span,
    pub records: Vec<PathBuf>,
    pub json: bool,
}

fn config(path: Option<&Path>, state_dir: Option<PathBuf>) -> Result<Config, ExitCode> {
    let ov = Overrides {
        state_dir,
        ..Overrides::default()
    };
    Config::load(path, &ov).map_err(|e| {
        eprintln!("sra-milter: {e}");
        ExitCode::from(EX_CONFIG as u8)
    })
}

pub fn main(o: Options) -> ExitCode {
    let current = match config(o.current.as_deref(), o.state_dir.clone()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let candidate = match config(Some(&o.candidate), o.state_dir.clone()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let since = now().saturating_sub(o.since.0.as_secs());
    let mut w = WhatIf::new(&current, &candidate);
    let mut add = |v: serde_json::Value| w.add(&v);
    let unreadable = if o.records.is_empty() {
        let dir = journal::dir(&current.state_dir);
        match journal::each_since(&dir, since, &mut add) {
            Ok(n) => n,
            Err(e) => {
                eprintln!(
                    "sra-milter: the journal {}: {e} (admin.journal_keep; or give --records FILE from `sra-milter replay --jsonl`)",
                    dir.display()
                );
                return ExitCode::FAILURE;
            }
        }
    } else {
        let mut n = 0;
        for p in &o.records {
            let f = match std::fs::File::open(p) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("sra-milter: {}: {e}", p.display());
                    return ExitCode::FAILURE;
                }
            };
            // A replay's records carry the mail's own time: all of them count.
            match journal::each_line(std::io::BufReader::new(f), 0, &mut add) {
                Ok(u) => n += u,
                Err(e) => {
                    eprintln!("sra-milter: {}: {e}", p.display());
                    return ExitCode::FAILURE;
                }
            }
        }
        n
    };
    let mut report = w.finish();
    report.unreadable += unreadable;
    if o.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("sra-milter: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", report.text());
    }
    ExitCode::SUCCESS
}
