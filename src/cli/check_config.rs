//! `sra-milter check-config`: validate and print the effective config; exit
//! 78 on error.

use super::{load, Common};
use sra_milter::config::Overrides;
use std::process::ExitCode;

pub fn main(common: &Common) -> ExitCode {
    match load(common, Overrides::default()) {
        Ok(cfg) => match toml::to_string_pretty(&cfg) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sra-milter: cannot print config: {e}");
                ExitCode::FAILURE
            }
        },
        Err(code) => code,
    }
}
