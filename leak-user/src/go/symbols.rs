//! A Go binary's frames as Go's profiles name them, from `.gopclntab`:
//! inlined calls expanded, compiler wrappers left out.

use std::rc::Rc;

use super::{pclntab, GoBinary};
use crate::{frame::Frame, symbolize::SymbolSource};

impl SymbolSource for Rc<GoBinary> {
    fn frames_at(&self, pc: u64) -> Option<Vec<Frame>> {
        let frames = self.pclntab().frames(pc);
        if frames.is_empty() {
            return None;
        }
        Some(
            frames
                .into_iter()
                .filter(|f| !f.wrapper)
                .map(report_frame)
                .collect(),
        )
    }

    fn innermost_at(&self, pc: u64) -> Option<Option<Frame>> {
        let f = self.pclntab().frames(pc).into_iter().next()?;
        Some((!f.wrapper).then(|| report_frame(f)))
    }
}

fn report_frame(f: pclntab::Frame) -> Frame {
    Frame::new(f.function, f.file, f.line, f.inlined)
}
