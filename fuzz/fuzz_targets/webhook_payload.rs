//! Meta's webhook body: any bytes parse into a delivery or a reason, and a parsed delivery
//! splits into parts that hold the same messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentient_hub::whatsapp::payload;

fuzz_target!(|body: &[u8]| {
    if let Ok(delivery) = payload::parse(body) {
        let messages = delivery.messages.len();
        let statuses = delivery.statuses.len();
        let parts = delivery.split();
        assert_eq!(
            parts.iter().map(|p| p.messages.len()).sum::<usize>(),
            messages
        );
        assert_eq!(
            parts.iter().map(|p| p.statuses.len()).sum::<usize>(),
            statuses
        );
        for part in &parts {
            for message in &part.messages {
                assert!(!message.raw.to_string().contains("\\u0000"));
            }
        }
    }
});
