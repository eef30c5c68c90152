//! `sra-milter replay`: archives through the live pipeline, in date order.

use super::{load, Common};
use sra_milter::config::Overrides;
use sra_milter::pipeline::engagement::{parse_batch, Event};
use sra_milter::replay::ReplayOptions;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn main(
    common: &Common,
    mut opts: ReplayOptions,
    jsonl: Option<PathBuf>,
    events: Option<PathBuf>,
) -> ExitCode {
    let cfg = match load(common, Overrides::default()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    opts.events = match events.as_deref().map(read_events).transpose() {
        Ok(e) => e.unwrap_or_default(),
        Err(e) => {
            eprintln!("sra-milter: {e}");
            return ExitCode::from(65);
        }
    };
    let mut out: Box<dyn std::io::Write> = match jsonl.as_deref() {
        None => Box::new(std::io::sink()),
        Some(p) if p.as_os_str() == "-" => {
            Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
        }
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("sra-milter: {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        },
    };
    match sra_milter::replay::replay(&cfg, &opts, &mut out) {
        Ok(summary) => {
            eprint!("{}", summary.to_text());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sra-milter: replay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Events for replay: each needs its time.
fn read_events(path: &Path) -> Result<Vec<Event>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let events = parse_batch(&text).map_err(|bad| format!("{}: {bad}", path.display()))?;
    if let Some(i) = events.iter().position(|e| e.time.is_none()) {
        return Err(format!(
            "{}: event {} has no time; replay needs one",
            path.display(),
            i + 1
        ));
    }
    Ok(events)
}
