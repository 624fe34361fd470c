//! Figures about the shop floor that more than one part of the hub judges by.

/// A machine's reject rate above this share of its output, in percent, is an anomaly: the
/// brain's answers flag it and the detector raises an alert.
pub const REJECT_THRESHOLD_PCT: f64 = 5.0;
