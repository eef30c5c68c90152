//! `sra-milter override`: fix the class of a sender, domain, MTA or network
//! (or remove it), through the running daemon's control socket or, when it
//! is stopped, in the store directly.

use super::{load, Common, Who};
use sra_milter::config::{Config, Overrides};
use sra_milter::listeners::control::{execute, send_control, ControlRequest};
use sra_milter::pipeline::Engine;
use sra_milter::vocab::{Class, Target};
use std::process::ExitCode;
use std::sync::Arc;

pub fn main(
    common: &Common,
    who: Who,
    class: Option<Class>,
    reason: String,
    remove: bool,
) -> ExitCode {
    let cfg = match load(common, Overrides::default()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let target = match (who.sender, who.domain, who.mta) {
        (Some(s), _, _) => Target::sender(&s),
        (_, Some(d), _) => Target::domain(&d),
        (_, _, Some(m)) => Target::mta(&m),
        _ => Err("nothing to override".into()),
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sra-milter: {e}");
            return ExitCode::from(64);
        }
    };
    let req = match (remove, class) {
        (true, _) => ControlRequest::RemoveOverride { target },
        (false, Some(class)) => ControlRequest::SetOverride {
            target,
            class,
            reason,
        },
        (false, None) => return ExitCode::from(64),
    };
    control(&cfg, req)
}

/// A control request through the running daemon's control socket when it
/// answers, else applied to the store directly.
pub(super) fn control(cfg: &Config, req: ControlRequest) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sra-milter: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = cfg.control_socket();
    let resp = match rt.block_on(send_control(&path, &req)) {
        Ok(resp) => resp,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!(
                "sra-milter: permission denied on the daemon's control socket {} (run as root or as the sra-milter user)",
                path.display()
            );
            return ExitCode::FAILURE;
        }
        Err(_) => {
            let store = match sra_milter::store::open(cfg) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!(
                        "sra-milter: the daemon's control socket {} does not answer and the store cannot be opened: {e}",
                        path.display()
                    );
                    return ExitCode::FAILURE;
                }
            };
            let engine = match Engine::new(store.clone(), cfg) {
                Ok(e) => Arc::new(e),
                Err(e) => {
                    eprintln!("sra-milter: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let resp = execute(cfg, &engine, req);
            if let Err(e) = store.flush() {
                eprintln!("sra-milter: flushing the store: {e}");
                return ExitCode::FAILURE;
            }
            resp
        }
    };
    if resp.ok {
        println!("{}", resp.message);
        ExitCode::SUCCESS
    } else {
        eprintln!("sra-milter: {}", resp.message);
        ExitCode::FAILURE
    }
}
