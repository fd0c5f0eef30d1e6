//! Library target of the eBPF crate: lets `leak-user` declare a build
//! dependency on it so cargo rebuilds the embedded object when it changes.
#![no_std]
