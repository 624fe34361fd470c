//! `X-Hub-Signature-256`: any header is judged without panicking, and only the body's own
//! signature is accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentient_hub::whatsapp::signature;

fuzz_target!(|input: (&str, &[u8])| {
    let (header, body) = input;
    let accepted = signature::verify(b"fuzz-secret", body, Some(header));
    if accepted {
        assert!(signature::well_formed(Some(header)));
        assert_eq!(header.trim(), signature::sign(b"fuzz-secret", body));
    }
});
