//! The durable inbox: the webhook ([`webhook`]) commits every inbound message to PostgreSQL
//! (unique by wamid, [`store`]) before Meta gets its 200; the [`relay`] hands committed rows to
//! JetStream; the [`consumer`] processes them in per-sender order — through the gate, then to
//! the brain, or to the alert acknowledgement for a tapped alert button — and records exactly
//! one reply per message.

pub mod consumer;
pub mod relay;
pub mod store;
pub mod webhook;

/// The JetStream subject of a sender's partition.
pub fn subject(prefix: &str, partition: u16) -> String {
    format!("{prefix}.{partition}")
}

/// Stable partition of a sender: FNV-1a, so every instance and every release agrees.
pub fn partition_of(sender_key: &str, partitions: u16) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sender_key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_in_range() {
        assert_eq!(
            partition_of("6281100000001", 16),
            partition_of("6281100000001", 16)
        );
        let spread: std::collections::HashSet<u16> = (0..200)
            .map(|i| partition_of(&format!("62811{i:08}"), 16))
            .collect();
        assert!(spread.iter().all(|p| *p < 16));
        assert!(
            spread.len() > 12,
            "senders spread over partitions: {spread:?}"
        );
    }
}
