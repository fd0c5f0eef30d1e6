//! rleak: a Rust program built `--release`-like (`rustc -O`, no frame
//! pointers) that keeps 1,000 bytes per request in a `Vec<Box<[u8]>>`
//! through `Cache::remember` (the leak) and churns a 4 KiB `Vec` in
//! `churn`. It prints "ready pid N", waits until the file named by its
//! first argument exists (so a tracer can attach first), serves 20000
//! requests, prints "done kept BYTES bytes in N blocks", and waits to be
//! killed.
//!
//! Build: rustc -O -g -o rleak rleak.rs (the tests look for the line
//! marked LINE: in its frames).

use std::{hint::black_box, path::Path, thread, time::Duration};

struct Cache {
    kept: Vec<Box<[u8]>>,
}

impl Cache {
    /// The leak: every request's buffer is kept.
    #[inline(never)]
    fn remember(&mut self, n: usize) {
        let buf = vec![1u8; n].into_boxed_slice(); // LINE: remember's vec
        self.kept.push(black_box(buf));
    }
}

/// Churn: a buffer per request, dropped when it returns.
#[inline(never)]
fn churn(i: usize) {
    let v = vec![i as u8; 4096];
    black_box(&v);
}

#[inline(never)]
fn handle_request(cache: &mut Cache, i: usize) {
    cache.remember(1000);
    churn(i);
}

fn main() {
    let go = std::env::args().nth(1).expect("usage: rleak GO_FILE");
    println!("ready pid {}", std::process::id());
    while !Path::new(&go).exists() {
        thread::sleep(Duration::from_millis(10));
    }
    let mut cache = Cache {
        kept: Vec::with_capacity(20000),
    };
    for i in 0..20000 {
        handle_request(&mut cache, i);
    }
    println!("done kept {} bytes in {} blocks", cache.kept.len() * 1000, cache.kept.len());
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}
