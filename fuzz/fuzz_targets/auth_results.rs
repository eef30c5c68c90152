//! Authentication-Results of an upstream host, as any header value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sra_milter::auth::{authserv_id_of, parse_authentication_results, trusted_results};

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    let _ = authserv_id_of(&value);
    let _ = parse_authentication_results(&value, Some("example.com"));
    let _ = trusted_results([value.as_ref()], &["mx.example.com".to_string()], None);
});
