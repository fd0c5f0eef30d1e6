//! The goroutines of a running Go program, read from outside.

pub mod locate;
pub mod walk;
