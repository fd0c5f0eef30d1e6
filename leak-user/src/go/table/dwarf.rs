//! Each row against the DWARF of a plain build with that row's toolchain:
//! the struct layouts, the profile special's kind and the functions the row
//! names are what the compiler wrote down for that release.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    io::Read,
    path::Path,
};

use gimli::{constants, AttributeValue, EndianSlice, LittleEndian};
use object::{CompressionFormat, Object, ObjectSection};

use crate::go::{
    elf::GoBinary,
    table::probes_for,
    testutil::{self, Variant, VERSIONS},
};

/// What the tests read from one binary's DWARF.
#[derive(Default)]
struct Facts {
    /// Struct name → (byte size, member name → offset), for the structs
    /// asked for.
    structs: HashMap<String, (u64, HashMap<String, u64>)>,
    /// Integer constants asked for, by name.
    constants: HashMap<String, i64>,
    /// Every function (`DW_TAG_subprogram`) name.
    functions: HashSet<String>,
}

impl Facts {
    /// Each `(field, offset)` of `want` is where DWARF puts that member of
    /// `ty`, plus `base` (a struct nested at `base`).
    fn check_members<T: Into<u64> + Copy>(
        &self,
        ctx: &str,
        ty: &str,
        base: u64,
        want: &[(&str, T)],
    ) {
        for &(field, offset) in want {
            let short = ty.trim_start_matches("runtime.");
            assert_eq!(
                base + self.member(ctx, ty, field),
                offset.into(),
                "{ctx}: {short}.{field}"
            );
        }
    }

    fn member(&self, ctx: &str, ty: &str, field: &str) -> u64 {
        let (_, members) = self
            .structs
            .get(ty)
            .unwrap_or_else(|| panic!("{ctx}: no {ty} in DWARF"));
        *members
            .get(field)
            .unwrap_or_else(|| panic!("{ctx}: {ty} has no field {field}"))
    }

    fn size(&self, ctx: &str, ty: &str) -> u64 {
        self.structs
            .get(ty)
            .unwrap_or_else(|| panic!("{ctx}: no {ty} in DWARF"))
            .0
    }
}

/// A DWARF section's bytes, inflated if the linker compressed it (Go
/// writes `SHF_COMPRESSED` zlib sections).
fn section_bytes<'a>(file: &object::File<'a>, name: &str) -> Cow<'a, [u8]> {
    let Some(section) = file.section_by_name(name) else {
        return Cow::Borrowed(&[]);
    };
    let compressed = section.compressed_data().expect("section data");
    match compressed.format {
        CompressionFormat::None => Cow::Borrowed(compressed.data),
        CompressionFormat::Zlib => {
            let mut out = Vec::with_capacity(compressed.uncompressed_size as usize);
            flate2::read::ZlibDecoder::new(compressed.data)
                .read_to_end(&mut out)
                .expect("inflate DWARF");
            Cow::Owned(out)
        }
        other => panic!("{name}: compression {other:?}"),
    }
}

/// Reads the layouts of `structs`, the values of `constants` and every
/// function name from the DWARF of `path`.
fn read_facts(path: &Path, structs: &[&str], constants: &[&str]) -> Facts {
    let data = std::fs::read(path).expect("read binary");
    let file = object::File::parse(&*data).expect("parse ELF");
    let sections: gimli::DwarfSections<Cow<[u8]>> =
        gimli::DwarfSections::load(|id| Ok::<_, gimli::Error>(section_bytes(&file, id.name())))
            .expect("load DWARF");
    let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
    let mut facts = Facts::default();
    let mut units = dwarf.units();
    while let Some(header) = units.next().expect("unit header") {
        let unit = dwarf.unit(header).expect("unit");
        let name_of = |entry: &gimli::DebuggingInformationEntry<_>| {
            let value = entry.attr_value(constants::DW_AT_name)?;
            let name = dwarf.attr_string(&unit, value).ok()?;
            Some(name.to_string_lossy().into_owned())
        };
        // The struct whose members are being read, and its depth.
        let mut open: Option<(String, isize)> = None;
        let mut entries = unit.entries();
        while let Some(entry) = entries.next_dfs().expect("DIE") {
            if let Some((_, depth)) = &open {
                if entry.depth() <= *depth {
                    open = None;
                }
            }
            match entry.tag() {
                constants::DW_TAG_structure_type => {
                    let Some(name) = name_of(entry).filter(|n| structs.contains(&n.as_str()))
                    else {
                        continue;
                    };
                    let size = entry
                        .attr_value(constants::DW_AT_byte_size)
                        .and_then(|v| v.udata_value())
                        .unwrap_or(0);
                    facts
                        .structs
                        .entry(name.clone())
                        .or_insert((size, HashMap::new()));
                    open = Some((name, entry.depth()));
                }
                constants::DW_TAG_member => {
                    let Some((ty, _)) = &open else { continue };
                    let (Some(field), Some(offset)) = (
                        name_of(entry),
                        entry
                            .attr_value(constants::DW_AT_data_member_location)
                            .and_then(|v| v.udata_value()),
                    ) else {
                        continue;
                    };
                    let members = &mut facts.structs.get_mut(ty).unwrap().1;
                    members.insert(field, offset);
                }
                constants::DW_TAG_constant => {
                    let Some(name) = name_of(entry).filter(|n| constants.contains(&n.as_str()))
                    else {
                        continue;
                    };
                    let value = match entry.attr_value(constants::DW_AT_const_value) {
                        Some(AttributeValue::Sdata(v)) => v,
                        Some(v) => v.udata_value().map(|v| v as i64).unwrap_or(-1),
                        None => continue,
                    };
                    facts.constants.insert(name, value);
                }
                constants::DW_TAG_subprogram => {
                    if let Some(name) = name_of(entry) {
                        facts.functions.insert(name);
                    }
                }
                _ => {}
            }
        }
    }
    facts
}

/// One row per toolchain, picked by the binary's version through the same
/// lookup `leak trace` uses, checked field by field against the DWARF.
#[test]
fn rows_match_the_dwarf_of_their_release() {
    for v in VERSIONS {
        let Some(path) = testutil::seed(v, Variant::Plain) else {
            continue;
        };
        let bin = GoBinary::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let row = probes_for(&bin.go_version().0).unwrap();
        let ctx = format!("go{v} (row {})", row.since);
        let facts = read_facts(
            &path,
            &[
                "runtime.special",
                "runtime.bucket",
                "runtime.moduledata",
                "runtime.memRecord",
                "runtime.memRecordCycle",
                "runtime.mcache",
            ],
            &[
                "runtime._KindSpecialProfile",
                "runtime.maxStack",
                "runtime.maxProfStackDepth",
            ],
        );

        let special = |f| facts.member(&ctx, "runtime.special", f);
        assert_eq!(
            special("kind"),
            u64::from(row.probes.special_kind_offset),
            "{ctx}"
        );
        match facts.constants.get("runtime._KindSpecialProfile") {
            Some(&kind) => assert_eq!(kind, i64::from(row.probes.special_kind_profile), "{ctx}"),
            // prologue.rs checks the kind offset in freeSpecial's code.
            None => eprintln!("{ctx}: no _KindSpecialProfile constant in DWARF: not checked"),
        }

        let b = row.records.bucket;
        facts.check_members(
            &ctx,
            "runtime.bucket",
            0,
            &[
                ("next", b.next),
                ("allnext", b.allnext),
                ("typ", b.typ),
                ("hash", b.hash),
                ("size", b.size),
                ("nstk", b.nstk),
            ],
        );
        // The stack follows the header (`bucket.stk`: `add(b, unsafe.Sizeof(*b))`).
        assert_eq!(
            facts.size(&ctx, "runtime.bucket"),
            u64::from(b.stack),
            "{ctx}: bucket size"
        );

        let r = row.records.mem_record;
        let cycle = |f| facts.member(&ctx, "runtime.memRecordCycle", f);
        assert_eq!(cycle("allocs"), u64::from(r.allocs), "{ctx}: allocs");
        assert_eq!(cycle("frees"), u64::from(r.frees), "{ctx}: frees");
        match r.bytes {
            Some((alloc, free)) => {
                assert_eq!(cycle("alloc_bytes"), u64::from(alloc), "{ctx}");
                assert_eq!(cycle("free_bytes"), u64::from(free), "{ctx}");
            }
            None => {
                let (_, members) = &facts.structs["runtime.memRecordCycle"];
                assert!(
                    !members.contains_key("alloc_bytes"),
                    "{ctx}: has alloc_bytes"
                );
            }
        }
        let cycle_size = facts.size(&ctx, "runtime.memRecordCycle");
        assert_eq!(
            cycle_size,
            u64::from(r.cycle_size),
            "{ctx}: memRecordCycle size"
        );
        let record_size = facts.size(&ctx, "runtime.memRecord");
        assert_eq!(record_size, u64::from(r.size()), "{ctx}: memRecord size");
        let depth = ["runtime.maxProfStackDepth", "runtime.maxStack"]
            .iter()
            .find_map(|c| facts.constants.get(*c));
        match depth {
            Some(&d) => assert_eq!(d, i64::from(row.records.max_profile_depth), "{ctx}: depth"),
            None => eprintln!("{ctx}: no maxStack constant in DWARF: not checked"),
        }

        let m = row.moduledata;
        facts.check_members(
            &ctx,
            "runtime.moduledata",
            0,
            &[
                ("pcHeader", m.pcheader),
                ("funcnametab", m.funcnametab),
                ("text", m.text),
                ("rodata", m.rodata),
                ("gofunc", m.gofunc),
            ],
        );

        // The runtime notices a new rate by itself where each mcache keeps
        // the rate its next sample point was drawn with (1.24 on).
        let (_, mcache) = &facts.structs["runtime.mcache"];
        assert!(mcache.contains_key("nextSample"), "{ctx}: mcache");
        assert_eq!(
            mcache.contains_key("memProfRate"),
            row.rate.change_noticed,
            "{ctx}: mcache.memProfRate"
        );

        for name in row.functions() {
            assert!(facts.functions.contains(name), "{ctx}: no function {name}");
        }
    }
}

/// Each row's goroutine layout against the DWARF of its release: the
/// fields of `g`, `gobuf` and `stack` leak reads, `g`'s size (it is read
/// whole), the status constants, and the functions that locate `allgs`
/// and the wait-reason names.
#[test]
fn goroutine_layouts_match_the_dwarf_of_their_release() {
    for v in VERSIONS {
        let Some(path) = testutil::seed(v, Variant::Plain) else {
            continue;
        };
        let bin = GoBinary::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let row = probes_for(&bin.go_version().0).unwrap();
        let ctx = format!("go{v} (row {})", row.since);
        let status_names = [
            "runtime._Gidle",
            "runtime._Grunnable",
            "runtime._Grunning",
            "runtime._Gsyscall",
            "runtime._Gwaiting",
            "runtime._Gdead",
            "runtime._Gcopystack",
            "runtime._Gpreempted",
            "runtime._Gleaked",
            "runtime._Gdeadextra",
            "runtime._Gscan",
        ];
        let facts = read_facts(
            &path,
            &["runtime.g", "runtime.gobuf", "runtime.stack"],
            &status_names,
        );
        let l = row.goroutines.g;
        let g = |f| facts.member(&ctx, "runtime.g", f);
        assert_eq!(
            facts.size(&ctx, "runtime.g"),
            u64::from(l.size),
            "{ctx}: g size"
        );
        let at = g("stack");
        facts.check_members(
            &ctx,
            "runtime.stack",
            at,
            &[("lo", l.stack_lo), ("hi", l.stack_hi)],
        );
        assert_eq!(g("sched"), u64::from(l.sched), "{ctx}: sched");
        facts.check_members(
            &ctx,
            "runtime.gobuf",
            0,
            &[("sp", l.gobuf.sp), ("pc", l.gobuf.pc), ("bp", l.gobuf.bp)],
        );
        facts.check_members(
            &ctx,
            "runtime.g",
            0,
            &[
                ("atomicstatus", l.atomicstatus),
                ("goid", l.goid),
                ("waitsince", l.waitsince),
                ("waitreason", l.waitreason),
                ("gopc", l.gopc),
                ("startpc", l.startpc),
            ],
        );
        let (_, members) = &facts.structs["runtime.g"];
        let parent = members.get("parentGoid").copied();
        assert_eq!(parent, l.parent_goid.map(u64::from), "{ctx}: parentGoid");

        let s = row.goroutines.status;
        let want = [
            Some(s.idle),
            Some(s.runnable),
            Some(s.running),
            Some(s.syscall),
            Some(s.waiting),
            Some(s.dead),
            Some(s.copystack),
            Some(s.preempted),
            s.leaked,
            s.dead_extra,
            Some(s.scan_bit),
        ];
        for (name, value) in status_names.iter().zip(want) {
            let found = facts.constants.get(*name).copied();
            assert_eq!(found, value.map(i64::from), "{ctx}: {name}");
        }

        // pprof's user goroutines that start in the runtime: runtime.main
        // is in every program, and so is the finalizer goroutine's function
        // in one that sets finalizers (os.File does).
        let g = &row.goroutines;
        for name in ["runtime.main"].iter().chain(g.user_code_runners) {
            if *name != "runtime.runCleanups" {
                assert!(facts.functions.contains(*name), "{ctx}: no function {name}");
            }
        }
    }
}

/// Each row's GC statistics against the DWARF of its release: the fields
/// of `gcControllerState` leak reads, and `memstats.numgc` where the code
/// finds it (the `memstats` symbol plus DWARF's offset of `numgc`).
#[test]
fn gc_stats_layouts_match_the_dwarf_of_their_release() {
    for v in VERSIONS {
        let Some(path) = testutil::seed(v, Variant::Plain) else {
            continue;
        };
        let bin = GoBinary::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let row = probes_for(&bin.go_version().0).unwrap();
        let ctx = format!("go{v} (row {})", row.since);
        let facts = read_facts(&path, &["runtime.gcControllerState", "runtime.mstats"], &[]);
        let c = row.heap_stats.controller;
        facts.check_members(
            &ctx,
            "runtime.gcControllerState",
            0,
            &[
                ("gcPercent", c.gc_percent),
                ("memoryLimit", c.memory_limit),
                ("heapLive", c.heap_live),
                ("heapMarked", c.heap_marked),
            ],
        );
        let memstats = bin.symbol("runtime.memstats").unwrap().vaddr;
        let numgc = crate::go::gcstats::numgc_by_disassembly(&bin, &row.heap_stats)
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(
            numgc,
            memstats + facts.member(&ctx, "runtime.mstats", "numgc"),
            "{ctx}: memstats.numgc"
        );
    }
}

/// Each row's cgo layout against the DWARF of its release (`g.m`,
/// `m.g0`, `m.curg`), and `g`'s place from the TLS base found in the code
/// of each build: -8 (the runtime's `g` is the executable's one TLS
/// variable), linked by Go or by the system linker (PIE).
#[test]
fn cgo_layouts_match_the_dwarf_of_their_release() {
    for v in VERSIONS {
        let Some(path) = testutil::seed(v, Variant::Plain) else {
            continue;
        };
        let bin = GoBinary::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let row = probes_for(&bin.go_version().0).unwrap();
        let ctx = format!("go{v} (row {})", row.since);
        let facts = read_facts(&path, &["runtime.g", "runtime.m"], &[]);
        let c = row.cgo;
        facts.check_members(&ctx, "runtime.g", 0, &[("m", c.g_m)]);
        facts.check_members(&ctx, "runtime.m", 0, &[("g0", c.m_g0), ("curg", c.m_curg)]);
        for variant in [Variant::Plain, Variant::ExternalPie, Variant::StrippedPie] {
            let Some(path) = testutil::seed(v, variant) else {
                continue;
            };
            let bin = GoBinary::open(&path).unwrap();
            let tls = crate::go::cgo::tls_g_offset(&bin, c.tls_fn);
            assert_eq!(tls, Ok(-8), "{ctx} {variant:?}");
        }
    }
}
