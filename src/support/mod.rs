//! Shared mechanisms, one of each for the whole program: files written
//! whole, logging, retries, settings parsed once, TLS clients, redaction and
//! sizes in text; and the helpers of the inline tests.

pub mod fsutil;
pub mod logging;
#[cfg(test)]
pub(crate) mod proptest_support;
pub mod retry;
pub mod setting;
#[cfg(test)]
pub(crate) mod test_support;
pub mod text;
pub mod tls;
