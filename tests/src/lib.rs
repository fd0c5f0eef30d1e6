//! Helpers for leak integration tests.
