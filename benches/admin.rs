//! Admin API benchmark (filled in below).
fn main() {}
