//! A stored reputation record, as the store reads it back: decoded, and
//! when it decodes, merged and encoded again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sra_milter::store::{Counter, Record, SetKind};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Record::decode(data) {
        let again =
            Record::decode(&r.encode()).expect("a decoded record encodes to bytes it decodes");
        assert_eq!(again, r);
        let mut merged = r.clone();
        merged.merge(&again);
        let _ = merged.distinct(SetKind::EnterpriseRecipients);
        let _ = merged.count(Counter::MessagesReceived);
    }
});
