//! An alert published on NATS: any bytes become an alert or a reason, and a stored alert's
//! message is readable text within its limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentient_hub::alerts::intake;

fuzz_target!(|body: &[u8]| {
    match intake::parse(body) {
        Ok(alert) => {
            assert!(!alert.message.is_empty());
            assert!(alert.message.chars().count() <= 3000);
            assert!(!alert.message.contains('\0'));
        }
        Err(reason) => assert!(!reason.is_empty()),
    }
});
