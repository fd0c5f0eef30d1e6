//! Checks against real Go binaries built by each toolchain (see
//! `testutil`), and against Go's own tools: `go tool addr2line` for
//! function/file/line, `runtime.CallersFrames` for inlined frames, `.symtab`
//! for what stripped binaries make us find another way.

use std::path::Path;

use super::{
    elf::GoBinary,
    error::GoError,
    memrate::{self, RateSource},
    pclntab::{self, TextStartSource},
    table::{self, probes_for},
    testutil::{self, Variant, VERSIONS},
    version::{self, GoVersion, VersionSource},
};

const LEAKY_FN: &str = "main.(*RequestTracker).Track";

fn expected_version(v: &str) -> GoVersion {
    GoVersion::parse(&format!("go{v}")).expect("test version string")
}

fn open(path: &Path) -> GoBinary {
    GoBinary::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn missing_file_is_not_found() {
    let err = GoBinary::open("/nonexistent/leak-test-binary").unwrap_err();
    assert!(matches!(err, GoError::NotFound(_)), "{err:?}");
    assert!(err.to_string().contains("/proc/PID/exe"), "{err}");
}

#[test]
fn text_file_is_not_elf() {
    let path = std::env::temp_dir().join(format!("leak-target-notelf-{}", std::process::id()));
    std::fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
    let err = GoBinary::open(&path).unwrap_err();
    std::fs::remove_file(&path).ok();
    assert!(matches!(err, GoError::NotElf(_)), "{err:?}");
}

#[test]
fn c_program_is_not_go() {
    let ls = Path::new("/bin/ls");
    if !ls.exists() {
        eprintln!("skipped: /bin/ls not present");
        return;
    }
    let err = GoBinary::open(ls).unwrap_err();
    assert!(matches!(err, GoError::NotGo(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "/bin/ls is not a Go program: it has no .gopclntab"
    );
}

/// Each toolchain's binaries, in the variants a user meets: the version is
/// read exactly and the runtime-table row's functions are all there. The
/// 1.23 and 1.24 rows have no toolchain here; their functions are checked
/// below.
#[test]
fn runtime_table_rows_hold_for_real_binaries() {
    for v in VERSIONS {
        for variant in [
            Variant::Plain,
            Variant::Stripped,
            Variant::Pie,
            Variant::StrippedPie,
        ] {
            let Some(path) = testutil::seed(v, variant) else {
                continue;
            };
            let bin = open(&path);
            let ctx = format!("go{v} {variant:?}");
            assert_eq!(bin.is_pie(), variant.is_pie(), "{ctx}");
            assert_eq!(bin.has_symtab(), variant.has_symtab(), "{ctx}");

            let (found, source) = version::detect(&bin);
            assert_eq!(found, expected_version(v), "{ctx}");
            assert_eq!(source, VersionSource::BuildInfo, "{ctx}");

            let row = probes_for(&found).unwrap();
            for name in row.functions() {
                let f = bin.pclntab().func_by_name(name);
                let f = f.unwrap_or_else(|| panic!("{ctx}: {name} missing from row {}", row.since));
                assert!(f.entry < f.end, "{ctx}: {name}");
                assert!(bin.vaddr_to_file_offset(f.entry).is_some(), "{ctx}: {name}");
            }
        }
    }
}

#[test]
fn each_toolchain_lands_on_its_row() {
    let want = [
        ("1.19.8", 19),
        ("1.21.13", 21),
        ("1.25.5", 25),
        ("1.27.3", 27),
    ];
    for (v, since_minor) in want {
        let row = probes_for(&expected_version(v)).unwrap();
        assert_eq!(row.since.minor, since_minor, "go{v}");
    }
    // Every row's function set is checked on some binary above, except the
    // 1.23 and 1.24 rows': 1.23 probes the 1.21 row's functions (only the
    // profile kind and the marker differ), 1.24 the 1.25 row's.
    let row = |minor| probes_for(&GoVersion::new(1, minor, 0)).unwrap();
    let probed = |r: &table::RuntimeProbes| {
        let mut names = vec![
            r.probes.alloc_fn,
            r.probes.free_fn,
            r.probes.gc_fn,
            r.probes.start_fn,
        ];
        names.extend(r.rate.reader_fns);
        names
    };
    assert_eq!(probed(row(21)), probed(row(23)));
    assert_eq!(probed(row(24)), probed(row(25)));
}

/// Each row's rate readers load `runtime.MemProfileRate` (found by symbol
/// in a plain build), and each toolchain's binary has its row's marker but
/// not the next row's: inference lands on the row.
#[test]
fn rate_readers_and_markers_hold_for_real_binaries() {
    for v in VERSIONS {
        let Some(path) = testutil::seed(v, Variant::Plain) else {
            continue;
        };
        let bin = open(&path);
        let row = probes_for(&expected_version(v)).unwrap();
        let rate = bin.symbol("runtime.MemProfileRate").unwrap().vaddr;
        let code_of = |name| {
            let f = bin.pclntab().func_by_name(name).unwrap();
            let code = bin.read_vaddr(f.entry, (f.end - f.entry) as usize).unwrap();
            (code, f.entry)
        };
        for name in row.rate.reader_fns {
            let (code, entry) = code_of(name);
            assert!(
                memrate::rip_relative_operands(code, entry).contains(&rate),
                "go{v}: {name} does not read MemProfileRate"
            );
        }
        // Where the file holds no default, the row's function stores it.
        let in_file = bin.read_u64(rate) == Some(table::DEFAULT_MEM_PROFILE_RATE);
        assert_eq!(in_file, row.rate.set_by.is_none(), "go{v}");
        if let Some(name) = row.rate.set_by {
            let (code, entry) = code_of(name);
            assert_eq!(memrate::stores_of_default(code, entry), [rate], "go{v}");
        }
        let rows = table::rows();
        let at = rows.iter().position(|r| r == row).unwrap();
        assert!(bin.pclntab().func_by_name(row.marker_fn).is_some(), "go{v}");
        if let Some(next) = rows.get(at + 1) {
            assert!(
                bin.pclntab().func_by_name(next.marker_fn).is_none(),
                "go{v} has {}, the marker of {}",
                next.marker_fn,
                next.since
            );
        }
    }
}

/// Unstripped binaries let us check the values found without symbols
/// (text base, moduledata, gofunc) against the symbols.
#[test]
fn moduledata_fields_agree_with_symbols() {
    for v in VERSIONS {
        for variant in [Variant::Plain, Variant::Pie] {
            let Some(path) = testutil::seed(v, variant) else {
                continue;
            };
            let bin = open(&path);
            let tab = bin.pclntab();
            let ctx = format!("go{v} {variant:?}");
            let sym = |name| {
                bin.symbol(name)
                    .unwrap_or_else(|| panic!("{ctx}: no {name}"))
                    .vaddr
            };
            assert_eq!(tab.text_start(), sym("runtime.text"), "{ctx}");
            assert_eq!(tab.header_vaddr(), sym("runtime.pclntab"), "{ctx}");
            assert_eq!(
                tab.moduledata_vaddr(),
                Some(sym("runtime.firstmoduledata")),
                "{ctx}"
            );
            // Go 1.20 renamed go.func.* to go:func.*.
            let gofunc = bin.symbol("go:func.*").or_else(|| bin.symbol("go.func.*"));
            assert_eq!(tab.gofunc(), gofunc.map(|s| s.vaddr), "{ctx}");
            assert!(gofunc.is_some(), "{ctx}: no go:func.* symbol");
            let from_header = tab.text_start_source() == TextStartSource::Header;
            // pcHeader.textStart is gone from 1.26 on.
            assert_eq!(from_header, v != "1.27.3", "{ctx}");
        }
    }
}

/// Cutting `.go.buildinfo` out leaves `runtime.buildVersion`; inference from
/// functions alone gives a lower bound that selects the same table row.
#[test]
fn version_without_build_info() {
    let minimum = [
        ("1.19.8", (1, 19)),
        ("1.21.13", (1, 21)),
        ("1.25.5", (1, 25)),
        ("1.27.3", (1, 27)),
    ];
    for (v, (major, minor)) in minimum {
        let Some(path) = testutil::seed(v, Variant::NoBuildInfo) else {
            continue;
        };
        let bin = open(&path);
        assert!(bin.section(".go.buildinfo").is_none());
        assert_eq!(version::from_build_info(&bin), None);
        assert_eq!(
            version::detect(&bin),
            (expected_version(v), VersionSource::BuildVersion),
            "go{v}"
        );

        let inferred = version::infer(&bin);
        assert_eq!(inferred, GoVersion::new(major, minor, 0), "go{v}");
        let exact_row = probes_for(&expected_version(v)).unwrap();
        assert_eq!(
            probes_for(&inferred).unwrap(),
            exact_row,
            "go{v}: inferred row differs"
        );
    }
}

/// About 300 PCs spread over the whole table give the same function,
/// file and line as Go's own addr2line (which reports the outermost function
/// but the innermost file:line for inlined code).
#[test]
fn symbolization_matches_go_addr2line() {
    for v in VERSIONS {
        for variant in [Variant::Plain, Variant::Stripped, Variant::StrippedPie] {
            let Some(path) = testutil::seed(v, variant) else {
                continue;
            };
            let bin = open(&path);
            let tab = bin.pclntab();
            let step = (tab.len() / 110).max(1);
            let mut pcs = Vec::new();
            for f in tab.functions().step_by(step) {
                let size = f.end - f.entry;
                pcs.extend([f.entry, f.entry + size / 3, f.entry + size * 2 / 3]);
            }
            // Also the leaky function, densely: it has inlined calls.
            let track = tab.func_by_name(LEAKY_FN).expect("Track");
            pcs.extend((track.entry..track.end).step_by(7));
            pcs.sort_unstable();
            pcs.dedup();
            assert!(pcs.len() >= 300, "only {} pcs", pcs.len());

            // Go 1.19's addr2line finds no table in its own stripped PIE
            // builds (it prints "?" for every pc): ask the newest Go.
            let tool = match (v, variant) {
                ("1.19.8", Variant::StrippedPie) => VERSIONS[VERSIONS.len() - 1],
                _ => v,
            };
            if testutil::go_tool(tool).is_none() {
                eprintln!("skipped: go{v} {variant:?}: no Go {tool} for addr2line");
                continue;
            }
            let want = testutil::go_addr2line(tool, &path, &pcs);
            let mut inlined = 0;
            for (pc, (function, file, line)) in pcs.iter().zip(want) {
                let frames = tab.frames(*pc);
                let real = frames.last().expect("at least one frame");
                let innermost = &frames[0];
                // addr2line prints raw names; frames use the runtime's
                // print form (`[...]` for type arguments).
                let name = tab.find_func(*pc).unwrap().name;
                let got = (name.to_owned(), innermost.file.clone(), innermost.line);
                assert_eq!(got, (function, file, line), "go{v} {variant:?} pc {pc:#x}");
                assert_eq!(pclntab::names::print_name(name), real.function);
                inlined += usize::from(frames.len() > 1);
            }
            assert!(inlined > 10, "go{v}: only {inlined} pcs in inlined code");
        }
    }
}

/// Inline expansion matches `runtime.CallersFrames` run inside a program:
/// for each real PC, frames(pc-1) equals the frames Go reports for it.
#[test]
fn inline_frames_match_runtime_callers_frames() {
    for (v, variant) in VERSIONS
        .iter()
        .flat_map(|v| [(*v, Variant::Plain), (*v, Variant::StrippedPie)])
    {
        let Some(path) = testutil::frames_program(v, variant) else {
            continue;
        };
        let output = std::process::Command::new(&path)
            .output()
            .expect("run frames program");
        assert!(output.status.success());
        let text = String::from_utf8(output.stdout).unwrap();
        let bin = open(&path);
        let tab = bin.pclntab();
        let (first, text) = text.split_once('\n').unwrap();
        let runtime_entry = u64::from_str_radix(first.strip_prefix('@').unwrap(), 16).unwrap();
        let bias = runtime_entry - tab.func_by_name("main.notInlined").unwrap().entry;
        assert_eq!(
            bias == 0,
            !variant.is_pie(),
            "go{v} {variant:?}: bias {bias:#x}"
        );

        // Blocks of "#pc" lines, each followed by the frames of those pcs.
        let mut lines = text.lines().peekable();
        let mut deepest = 0;
        while lines.peek().is_some() {
            let mut pcs = Vec::new();
            while let Some(pc) = lines.peek().and_then(|l| l.strip_prefix('#')) {
                pcs.push(u64::from_str_radix(pc, 16).unwrap() - bias);
                lines.next();
            }
            let mut want = Vec::new();
            while let Some(l) = lines.next_if(|l| !l.starts_with('#')) {
                let mut parts = l.split('\t');
                let (_pc, function, file_line) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                let (file, line) = file_line.rsplit_once(':').unwrap();
                want.push((
                    function.to_owned(),
                    file.to_owned(),
                    line.parse::<u32>().unwrap(),
                ));
            }
            // runtime.Callers lists a "virtual" pc per inlined caller; our
            // expansion of the real pc covers them, so skip as many.
            let mut got = Vec::new();
            let mut i = 0;
            while i < pcs.len() {
                let frames = tab.frames(pcs[i] - 1);
                assert!(!frames.is_empty(), "go{v}: no frames for {:#x}", pcs[i]);
                deepest = deepest.max(frames.len());
                i += frames.len();
                got.extend(frames.into_iter().map(|f| (f.function, f.file, f.line)));
            }
            assert_eq!(
                got, want,
                "go{v} {variant:?}: frames differ from runtime.CallersFrames"
            );
        }
        assert!(
            deepest >= 4,
            "go{v}: leaf, middle, outer inline into notInlined; got {deepest}"
        );
    }
}

#[test]
fn leaky_function_found_and_suggested() {
    let seed_src = testutil::repo_root().join("tests/go/seed/main.go");
    let source = std::fs::read_to_string(&seed_src).expect("seed source");
    let decl_line = 1 + source
        .lines()
        .position(|l| l.starts_with("func (t *RequestTracker) Track("))
        .expect("Track declaration") as u32;
    for v in VERSIONS {
        for variant in [Variant::Stripped, Variant::ExternalPie] {
            let Some(path) = testutil::seed(v, variant) else {
                continue;
            };
            let bin = open(&path);
            let tab = bin.pclntab();
            let ctx = format!("go{v} {variant:?}");
            let track = tab
                .func_by_name(LEAKY_FN)
                .unwrap_or_else(|| panic!("{ctx}"));
            assert_eq!(tab.find_func(track.entry).unwrap().name, LEAKY_FN, "{ctx}");
            assert_eq!(
                tab.find_func(track.end - 1).unwrap().name,
                LEAKY_FN,
                "{ctx}"
            );
            // Go 1.18–1.19 tables have no `_func.startLine`.
            let start_line = if v == "1.19.8" { 0 } else { decl_line };
            assert_eq!(track.start_line, start_line, "{ctx}");
            let entry = &tab.frames(track.entry)[0];
            assert!(
                entry.file.ends_with("tests/go/seed/main.go"),
                "{ctx}: {entry:?}"
            );
            assert_eq!(entry.line, decl_line, "{ctx}");

            // t.mu.Lock() is inlined into Track.
            let lock_inlined = (track.entry..track.end).any(|pc| {
                let frames = tab.frames(pc);
                frames.len() >= 2
                    && frames[0].inlined
                    && frames[0].function.ends_with("(*Mutex).Lock")
                    && frames.last().unwrap().line == decl_line + 1
            });
            assert!(lock_inlined, "{ctx}: no inlined Mutex.Lock frame in Track");

            let near = tab.near_matches("main.RequestTracker.Track", 3);
            assert_eq!(
                near.first().map(String::as_str),
                Some(LEAKY_FN),
                "{ctx}: {near:?}"
            );
            let near = tab.near_matches("main.(*RequestTracker).Trak", 3);
            assert_eq!(
                near.first().map(String::as_str),
                Some(LEAKY_FN),
                "{ctx}: {near:?}"
            );
            let err = bin
                .require_function("main.RequestTracker.Track")
                .unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("(did you mean {LEAKY_FN}")),
                "{ctx}: {msg}"
            );
            assert!(bin.require_function(LEAKY_FN).is_ok(), "{ctx}");
        }
    }
}

/// External linking moves `.gopclntab` into `.data.rel.ro` and strips its
/// section name: the header scan and moduledata still find everything.
#[test]
fn external_link_pie_is_found_by_scanning() {
    for v in VERSIONS {
        let Some(path) = testutil::seed(v, Variant::ExternalPie) else {
            continue;
        };
        let bin = open(&path);
        let ctx = format!("go{v} external PIE");
        assert!(bin.is_pie(), "{ctx}");
        // Before 1.27 the C linker merges the table into .data.rel.ro, so
        // only the header scan finds it; 1.27 keeps a .gopclntab section.
        let has_section = bin.section(".gopclntab").is_some();
        assert_eq!(has_section, v == "1.27.3", "{ctx}");
        let text = bin.section(".text").unwrap().vaddr;
        assert_ne!(
            bin.pclntab().text_start(),
            text,
            "{ctx}: runtime.text is after crt code"
        );
        assert_eq!(version::detect(&bin).0, expected_version(v), "{ctx}");
        let row = probes_for(&expected_version(v)).unwrap();
        for name in row.functions() {
            assert!(bin.pclntab().func_by_name(name).is_some(), "{ctx}: {name}");
        }
        memrate::mem_profile_rate_by_disassembly(&bin).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    }
}

#[test]
fn mem_profile_rate_found_without_symbols() {
    for v in VERSIONS {
        // With symbols, disassembly must agree with .symtab.
        for variant in [Variant::Plain, Variant::Pie] {
            let Some(path) = testutil::seed(v, variant) else {
                continue;
            };
            let bin = open(&path);
            let (by_symbol, source) = memrate::mem_profile_rate_addr(&bin).unwrap();
            assert_eq!(source, RateSource::Symbol);
            let by_code = memrate::mem_profile_rate_by_disassembly(&bin).unwrap();
            assert_eq!(by_code, by_symbol, "go{v} {variant:?}");
        }
        for variant in [Variant::Stripped, Variant::StrippedPie] {
            let Some(path) = testutil::seed(v, variant) else {
                continue;
            };
            let bin = open(&path);
            let (addr, source) = memrate::mem_profile_rate_addr(&bin).unwrap();
            assert_eq!(source, RateSource::Disassembly);
            let row = probes_for(&bin.go_version().0).unwrap();
            let section = bin.section_containing(addr).unwrap();
            // Initialised data, or (1.19) zero until the runtime's init.
            let (want, value) = match row.rate.set_by {
                None => (".noptrdata", Some(table::DEFAULT_MEM_PROFILE_RATE)),
                Some(_) => (".noptrbss", None),
            };
            assert_eq!(section.name, want, "go{v} {variant:?}");
            assert_eq!(bin.read_u64(addr), value, "go{v} {variant:?}");
        }
    }
}

#[test]
fn build_ids_and_file_offsets() {
    for v in VERSIONS {
        for variant in [Variant::Plain, Variant::StrippedPie] {
            let Some(path) = testutil::seed(v, variant) else {
                continue;
            };
            let bin = open(&path);
            let ctx = format!("go{v} {variant:?}");
            // Go writes a GNU build ID from 1.24 on.
            let since_1_24 = expected_version(v) >= GoVersion::new(1, 24, 0);
            assert_eq!(bin.build_id().is_some(), since_1_24, "{ctx}");
            let go_id = bin
                .go_build_id()
                .unwrap_or_else(|| panic!("{ctx}: no Go build id"));
            let out = std::process::Command::new(testutil::go_tool(v).unwrap())
                .args(["tool", "buildid"])
                .env("GOTOOLCHAIN", "local")
                .arg(&path)
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), go_id, "{ctx}");

            // The attach offset of a function holds its code.
            let track = bin.pclntab().func_by_name(LEAKY_FN).unwrap();
            let offset = bin.vaddr_to_file_offset(track.entry).unwrap() as usize;
            assert_eq!(
                &bin.data()[offset..offset + 16],
                bin.read_vaddr(track.entry, 16).unwrap()
            );
            let text = bin.section(".text").unwrap();
            assert_eq!(
                track.entry - text.vaddr,
                offset as u64 - text.file_offset.unwrap()
            );
        }
    }
}

/// The Go toolchain's own `go` executable: a large real program (not ours).
/// 2,000 PCs drawn from its functions get the same function, file and line
/// from us as from `go tool addr2line`, on the binary and on a copy with
/// every symbol stripped (`objcopy --strip-all`).
#[test]
fn symbolization_agrees_with_addr2line_on_the_go_command() {
    let v = "1.25.5";
    let Some(go) = testutil::go_tool(v) else {
        eprintln!("skipped: no Go {v}");
        return;
    };
    let out = std::process::Command::new(&go)
        .args(["env", "GOROOT"])
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap();
    let goroot = String::from_utf8(out.stdout).unwrap();
    let real_go = Path::new(goroot.trim()).join("bin/go");
    let dir = testutil::repo_root().join("target/test-go");
    std::fs::create_dir_all(&dir).unwrap();
    let stripped = dir.join("go-cmd-stripped");
    let status = std::process::Command::new("objcopy")
        .arg("--strip-all")
        .arg(&real_go)
        .arg(&stripped)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("skipped: objcopy unavailable");
        return;
    }
    for path in [real_go.as_path(), stripped.as_path()] {
        let bin = open(path);
        assert_eq!(bin.has_symtab(), path == real_go.as_path());
        let tab = bin.pclntab();
        let step = (tab.len() / 700).max(1);
        let mut pcs = Vec::new();
        for f in tab.functions().step_by(step) {
            let size = f.end - f.entry;
            pcs.extend([f.entry, f.entry + size / 3, f.entry + size * 2 / 3]);
        }
        pcs.sort_unstable();
        pcs.dedup();
        pcs.truncate(2000);
        assert_eq!(pcs.len(), 2000, "{}", path.display());
        let want = testutil::go_addr2line(v, path, &pcs);
        for (pc, (function, file, line)) in pcs.iter().zip(want) {
            let frames = tab.frames(*pc);
            let innermost = &frames[0];
            let name = tab.find_func(*pc).unwrap().name;
            assert_eq!(
                (name.to_owned(), innermost.file.clone(), innermost.line),
                (function, file, line),
                "{} pc {pc:#x}",
                path.display()
            );
        }
    }
}
