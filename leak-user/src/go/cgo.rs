//! C code a goroutine called (cgo): where its Go callers are.
//!
//! `runtime.cgocall` switches to the thread's system stack (`g0`) to run C
//! code, so a C allocation's stack, unwound from where it was made, ends in
//! `runtime.asmcgocall`: the goroutine's frames are on the goroutine's own
//! stack. The kernel side finds them at a sampled allocation (see
//! `leak-ebpf/src/native.rs`): the thread's `g` from its TLS base, the
//! goroutine `g.m.curg`, its stack left at `curg.sched`, walked by Go's
//! frame pointers. This module gives it the offsets: `g`'s place from the
//! TLS base, read from the program's code, and the runtime's layouts, from
//! the version table. Then it joins the two halves of a stack.

use std::rc::Rc;

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};
use leak_common::NativeGoConfig;

use super::{records, table::probes_for, GoBinary, GoProcess};
use crate::{
    frame::Frame,
    report::{GoHeapPart, Heap, StackProfile},
    symbolize::{SymbolSource, Symbolizer},
};

/// `g`'s offset from the TLS base, from the first load through the FS
/// segment in the row's function (`get_tls`): its displacement (`mov
/// %fs:-8, %r14`, a program linked by Go), or the immediate moved into its
/// base register just before (`mov $-8, %rcx; mov %fs:(%rcx), %rax`, linked
/// by the system linker).
pub(crate) fn tls_g_offset(bin: &GoBinary, function: &str) -> Result<i32, String> {
    let (code, entry) = bin
        .code_of(&format!("{function}.abi0"))
        .or_else(|_| bin.code_of(function))?;
    tls_g_in(code, entry).ok_or_else(|| format!("{function} reads no thread-local g"))
}

/// The offset the first FS-relative load in `code` reads at.
pub(crate) fn tls_g_in(code: &[u8], ip: u64) -> Option<i32> {
    let mut decoder = Decoder::with_ip(64, code, ip, DecoderOptions::NONE);
    let mut previous: Option<Instruction> = None;
    while decoder.can_decode() {
        let i = decoder.decode();
        let loads_fs = i.segment_prefix() == Register::FS
            && i.mnemonic() == Mnemonic::Mov
            && i.op1_kind() == OpKind::Memory;
        if loads_fs {
            let base = i.memory_base();
            if base == Register::None && i.memory_index() == Register::None {
                return i32::try_from(i.memory_displacement64() as i64).ok();
            }
            let p = previous?;
            let moves_imm = p.mnemonic() == Mnemonic::Mov
                && p.op0_register() == base
                && matches!(
                    p.op1_kind(),
                    OpKind::Immediate32to64 | OpKind::Immediate64 | OpKind::Immediate32
                );
            return moves_imm
                .then(|| i32::try_from(p.immediate(1) as i64).ok())
                .flatten();
        }
        previous = Some(i);
    }
    None
}

/// The kernel side's cgo configuration for Go program `bin`, given
/// `task_fsbase`, where the running kernel keeps a thread's TLS base.
pub(crate) fn config(bin: &GoBinary, task_fsbase: u32) -> Result<NativeGoConfig, String> {
    let row = probes_for(&bin.go_version().0).map_err(|e| e.to_string())?;
    let (cgo, g) = (&row.cgo, &row.goroutines.g);
    Ok(NativeGoConfig {
        task_fsbase,
        tls_g: tls_g_offset(bin, cgo.tls_fn)?,
        g_m: cgo.g_m,
        g_stack_hi: g.stack_hi,
        g_sched_sp: g.sched + g.gobuf.sp,
        g_sched_bp: g.sched + g.gobuf.bp,
        m_g0: cgo.m_g0,
        m_curg: cgo.m_curg,
    })
}

/// A C stack (`native`, unwound on the system stack, leaf first) joined
/// with the Go frames of the goroutine that called into C (`go`): the C
/// frames up to the first in Go code (the runtime's switch to the system
/// stack, `is_go` tells), then the goroutine's.
pub(crate) fn join(native: &[u64], go: &[u64], is_go: impl Fn(u64) -> bool) -> Vec<u64> {
    let c_frames = native
        .iter()
        .position(|&pc| is_go(pc.wrapping_sub(1)))
        .unwrap_or(native.len());
    let mut out = native[..c_frames].to_vec();
    out.extend_from_slice(go);
    out
}

/// A Go program's code in one process: its functions by `.gopclntab`.
pub(crate) struct GoCode {
    /// The program.
    pub bin: Rc<GoBinary>,
    /// Its load bias in the process.
    pub bias: u64,
}

impl GoCode {
    /// Whether `pc` (a process address) is in Go code (C code linked in by
    /// cgo is not in `.gopclntab`).
    pub(crate) fn is_go(&self, pc: u64) -> bool {
        self.bin
            .pclntab()
            .find_func(pc.wrapping_sub(self.bias))
            .is_some()
    }
}

/// A process's symbols (`native`), with its Go code, if any, named as Go's
/// profiles name it (inlined calls expanded, file and line) rather than by
/// ELF symbols (which a stripped Go program lacks).
pub(crate) struct WithGo<S> {
    /// Every object's symbols.
    pub native: S,
    /// The Go program's code.
    pub go: Option<GoCode>,
}

impl<S: SymbolSource> SymbolSource for WithGo<S> {
    fn frames_at(&self, pc: u64) -> Option<Vec<Frame>> {
        if let Some(go) = &self.go {
            if let Some(frames) = go.bin.frames_at(pc.wrapping_sub(go.bias)) {
                return Some(frames);
            }
        }
        self.native.frames_at(pc)
    }
}

/// The Go heap of a Go program whose C heap is traced (`--native`): the
/// runtime's own heap profile records (what `leak heap` reads), read at
/// each report; the last good reading is kept, for a final report after
/// the process is gone.
pub(crate) struct GoHeapView {
    process: GoProcess,
    symbols: Symbolizer<Rc<GoBinary>>,
    last: Option<(GoHeapPart, Vec<StackProfile>)>,
    said_why_not: bool,
}

impl GoHeapView {
    /// The view of `process`'s Go heap.
    pub(crate) fn new(process: GoProcess) -> Self {
        let symbols = Symbolizer::new(Rc::clone(&process.program().bin));
        Self {
            process,
            symbols,
            last: None,
            said_why_not: false,
        }
    }

    /// Reads the records now; the reading (or the last good one), its
    /// stacks marked as the Go heap's.
    pub(crate) fn read(&mut self) -> Option<&(GoHeapPart, Vec<StackProfile>)> {
        match records::read_once(&self.process) {
            Ok(read) => {
                let stacks: Vec<StackProfile> =
                    records::stacks(&read, self.process.bias(), &mut self.symbols)
                        .into_iter()
                        .map(|(frames, totals)| StackProfile {
                            heap: Some(Heap::Go),
                            oldest_secs: None,
                            held_at_exit: 0.0,
                            frames: with_root(frames, Heap::Go).into(),
                            totals,
                            growth: None,
                        })
                        .collect();
                let part = GoHeapPart {
                    go_version: self.process.program().version.clone(),
                    rate: read.rate.max(0) as u64,
                    gc_cycles: u64::from(read.snapshot.gc_cycles),
                    in_use_bytes: stacks.iter().map(|s| s.totals.outstanding_bytes).sum(),
                };
                self.last = Some((part, stacks));
            }
            Err(e) if self.last.is_none() && !self.said_why_not => {
                self.said_why_not = true;
                eprintln!("leak: the Go heap is not shown beside the C heap: {e}");
            }
            Err(_) => {}
        }
        self.last.as_ref()
    }
}

/// `frames` with a root frame naming `heap` (flame graphs, folded stacks
/// and pprof split at it).
pub(crate) fn with_root(mut frames: Vec<Frame>, heap: Heap) -> Vec<Frame> {
    frames.push(Frame::named(heap.root()));
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_offset_from_a_displacement() {
        // nop; mov %fs:0xfffffffffffffff8,%r14
        let code = [0x90, 0x64, 0x4c, 0x8b, 0x34, 0x25, 0xf8, 0xff, 0xff, 0xff];
        assert_eq!(tls_g_in(&code, 0x1000), Some(-8));
    }

    #[test]
    fn tls_offset_from_an_immediate_base() {
        // mov $-8,%rcx; mov %fs:(%rcx),%rax
        let code = [
            0x48, 0xc7, 0xc1, 0xf8, 0xff, 0xff, 0xff, 0x64, 0x48, 0x8b, 0x01,
        ];
        assert_eq!(tls_g_in(&code, 0x1000), Some(-8));
        // The base loaded from memory (initial-exec TLS): not known.
        // mov 0x10(%rip),%rcx; mov %fs:(%rcx),%rax
        let code = [0x48, 0x8b, 0x0d, 0x10, 0, 0, 0, 0x64, 0x48, 0x8b, 0x01];
        assert_eq!(tls_g_in(&code, 0x1000), None);
        // No FS load at all.
        assert_eq!(tls_g_in(&[0x90, 0xc3], 0x1000), None);
    }

    #[test]
    fn join_cuts_the_c_stack_at_go_code() {
        // malloc, c_remember, cgo's C wrapper, then asmcgocall (Go) and
        // what framehop made of the system stack beyond it.
        let native = [0x7001, 0x4101, 0x4201, 0x9001, 0x9101];
        let go = [0x9201, 0x9301];
        let is_go = |pc: u64| pc >= 0x9000;
        assert_eq!(
            join(&native, &go, is_go),
            [0x7001, 0x4101, 0x4201, 0x9201, 0x9301]
        );
        // A C stack that never reached Go code: all of it, then Go's.
        assert_eq!(join(&native[..3], &go, is_go).len(), 5);
    }
}
