//! The frames of a symbolized stack, as every report shows them: made by
//! the symbolizers, merged by the aggregates, rendered by the reports.

use std::sync::{Arc, LazyLock};

/// What one frame of a symbolized stack says.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct FrameInfo {
    /// Function name as Go spells it (`main.(*RequestTracker).Track`).
    pub function: Arc<str>,
    /// Source file, if known.
    pub file: Arc<str>,
    /// Source line, 0 if unknown.
    pub line: u32,
    /// True when the compiler inlined this function into the next frame.
    pub inlined: bool,
    /// The object (executable or library) whose code this is, for native
    /// frames; empty for Go's.
    pub object: Arc<str>,
}

/// The empty name every Go frame's `object` shares.
static NO_OBJECT: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));

/// One frame of a symbolized stack: a shared handle (one pointer) to its
/// [`FrameInfo`]. The symbolizer makes one per code address, so 100,000
/// stacks of a dozen frames cost a dozen pointers each, not a dozen copies
/// of names and lines; names are shared too (`Arc<str>`). Compares and
/// hashes by what it says.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Frame(Arc<FrameInfo>);

impl std::ops::Deref for Frame {
    type Target = FrameInfo;
    fn deref(&self) -> &FrameInfo {
        &self.0
    }
}

impl Frame {
    /// A frame of `function` at `file`:`line`.
    pub(crate) fn new(
        function: impl Into<Arc<str>>,
        file: impl Into<Arc<str>>,
        line: u32,
        inlined: bool,
    ) -> Self {
        Self::in_object(function, file, line, inlined, NO_OBJECT.clone())
    }

    /// A frame of `function` at `file`:`line` in the code of `object`.
    pub(crate) fn in_object(
        function: impl Into<Arc<str>>,
        file: impl Into<Arc<str>>,
        line: u32,
        inlined: bool,
        object: Arc<str>,
    ) -> Self {
        Self(Arc::new(FrameInfo {
            function: function.into(),
            file: file.into(),
            line,
            inlined,
            object,
        }))
    }

    /// A frame known only by its function name.
    pub(crate) fn named(function: &str) -> Self {
        Self::new(function, "", 0, false)
    }
}
