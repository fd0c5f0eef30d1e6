//! `leak heap`: one read of a running Go program's own heap profile, with
//! no eBPF: the text report and every requested file, from the records the
//! runtime has kept since start-up ([`super::go::history`]).

use std::{rc::Rc, time::Duration};

use anyhow::{bail, Result};

use super::go::{
    history::{self, Records},
    target::Target,
};
use crate::{
    outputs::Outputs,
    report::{self, Losses, Profile, Source, StackProfile, Unit},
    symbolize::Symbolizer,
};

/// What `leak heap` was asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The process.
    pub pid: u32,
    /// Stacks in the text report.
    pub top: usize,
    /// Order by bytes allocated since start-up instead of bytes in use.
    pub by_allocated: bool,
    /// Files to write.
    pub outputs: Outputs,
}

/// Reads the heap profile of `options.pid` and reports it.
pub fn run(target: Target, options: Options) -> Result<()> {
    let pid = options.pid;
    let records = Records::open(&target, pid)?;
    let read = records.read(&target)?;
    if let Some(why) = history::why_empty(&read) {
        bail!("pid {pid}: no heap profile to read: {why}");
    }
    let bin = target.bin.clone();
    let mut symbols = Symbolizer::new(Rc::clone(&bin));
    let stacks: Vec<StackProfile> = history::stacks(&read, records.bias(), &mut symbols)
        .into_iter()
        .map(|(frames, totals)| StackProfile {
            held_at_exit: 0.0,
            frames: frames.into(),
            totals,
            growth: None,
        })
        .collect();
    let mut profile = Profile {
        binary: target.path.clone(),
        source: Source::GoRecords {
            go_version: target.version.clone(),
            rate: read.rate.max(0) as u64,
            gc_cycles: u64::from(read.snapshot.gc_cycles),
            buckets: read.snapshot.buckets.len(),
        },
        unit: Unit::Bytes,
        pids: vec![pid],
        elapsed: Duration::ZERO,
        samples: read.snapshot.buckets.iter().map(|b| b.counts.allocs).sum(),
        frees: read.snapshot.buckets.iter().map(|b| b.counts.frees).sum(),
        total: stacks.iter().map(|s| s.totals).sum(),
        previous_outstanding: None,
        stacks,
        losses: Losses::default(),
        work: None,
    };
    if options.by_allocated {
        profile.stacks.sort_by(|a, b| {
            b.totals
                .allocated_bytes
                .total_cmp(&a.totals.allocated_bytes)
        });
    }
    print!(
        "{}",
        report::text::render(&profile, options.top, options.by_allocated)
    );
    if read.snapshot.before_first_gc {
        eprintln!("leak: pid {pid}: no GC has run yet, so \"in use\" counts every allocation (as Go's own profile does then)");
    }
    options.outputs.write_profile(&profile)?;
    if let Some(path) = &options.outputs.pprof {
        let meta = report::pprof::PprofMeta {
            build_id: target.build_id(),
            time_nanos: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0),
            duration_nanos: 0,
        };
        crate::outputs::write(path, |w| report::pprof::write(&profile, &meta, w))?;
    }
    Ok(())
}
