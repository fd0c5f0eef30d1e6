//! The goroutines of a running Go program, read from outside.

pub mod walk;
