//! `sra-milter import-events`: engagement events (JSON lines) from another
//! system's log, validated whole, then applied like `POST /v1/events`.

use super::override_::control;
use super::{load, Common};
use sra_milter::config::Overrides;
use sra_milter::listeners::control::ControlRequest;
use sra_milter::pipeline::engagement::parse_batch;
use std::path::Path;
use std::process::ExitCode;

pub fn main(common: &Common, file: &Path) -> ExitCode {
    let cfg = match load(common, Overrides::default()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sra-milter: {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    // Validate everything first: a bad line imports nothing.
    if let Err(bad) = parse_batch(&text) {
        eprintln!("sra-milter: {}: {bad}; nothing imported", file.display());
        return ExitCode::from(65);
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut code = ExitCode::SUCCESS;
    for chunk in lines.chunks(1000) {
        let req = ControlRequest::Events {
            body: chunk.join("\n"),
        };
        if control(&cfg, req) != ExitCode::SUCCESS {
            code = ExitCode::FAILURE;
        }
    }
    code
}
