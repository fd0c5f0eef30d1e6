//! Third-party code run over hostile input, its panic contained: the
//! unwinder's DWARF evaluation of a process's unwind tables (found by
//! fuzzing: values a damaged `.eh_frame` gives make it subtract past zero
//! in a build with overflow checks). A panic there ends that one piece of
//! work, quietly (no message from the panic hook: the caller says what it
//! lost), and leak goes on.

use std::{
    cell::Cell,
    panic::{self, AssertUnwindSafe},
    sync::Once,
};

thread_local! {
    /// Whether this thread runs code under [`contained`] now.
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

/// `work`'s result, or `None` if it panicked. `work` must leave nothing it
/// shares in a state a panic would make wrong (the caller resets what it
/// passed in).
pub(crate) fn contained<R>(work: impl FnOnce() -> R) -> Option<R> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CONTAINED.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let outer = CONTAINED.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(work));
    CONTAINED.with(|c| c.set(outer));
    result.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_is_contained_and_one_outside_is_not() {
        assert_eq!(contained(|| 7), Some(7));
        let v: Vec<u64> = Vec::new();
        assert_eq!(contained(|| v[3]), None);
        // Nested: the inner one contained, the outer goes on.
        assert_eq!(contained(|| contained(|| v[1]).is_none()), Some(true));
        assert!(!CONTAINED.with(Cell::get));
        assert!(panic::catch_unwind(|| v[2]).is_err());
    }
}
