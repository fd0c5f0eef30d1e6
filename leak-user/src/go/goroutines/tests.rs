//! Real Go programs read from outside (root).
