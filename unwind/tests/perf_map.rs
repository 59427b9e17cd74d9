//! Exercises the perf map writer: lines for a region land in `/tmp/perf-<pid>.map` in perf's `START SIZE NAME`
//! format, and eight threads appending at once never interleave their lines. The file is removed at the end
//! only if it did not exist before the test.
//!
//! One test function, since all writers in this process share one file.

use std::collections::BTreeSet;
use std::sync::Arc;

use backstop_unwind::{perf_map_lines, perf_map_path, write_perf_map, CodeRegion, FunctionRange};

fn region(start: usize, name: Option<&str>, functions: u32) -> CodeRegion {
    CodeRegion {
        start,
        len: functions as usize * 0x40,
        functions: (0..functions)
            .map(|index| FunctionRange {
                start: index * 0x40,
                len: 0x30 + index,
                index,
                name: (index % 2 == 0).then(|| format!("f{index}")),
            })
            .collect(),
        name: name.map(Into::into),
        ..CodeRegion::default()
    }
}

/// Parses one perf map line: hex start, hex size, then the name (which may hold spaces).
fn parse_line(line: &str) -> (u64, u64, String) {
    let (start, rest) = line.split_once(' ').expect("START SIZE NAME");
    let (size, name) = rest.split_once(' ').expect("START SIZE NAME");
    assert!(
        !start.starts_with("0x") && !size.starts_with("0x"),
        "{line}"
    );
    (
        u64::from_str_radix(start, 16).expect("hex start"),
        u64::from_str_radix(size, 16).expect("hex size"),
        name.to_owned(),
    )
}

/// What a region's lines must say: (start, size, name) per function.
fn expected_entries(region: &CodeRegion) -> Vec<(u64, u64, String)> {
    region
        .functions
        .iter()
        .map(|f| {
            (
                (region.start + f.start as usize) as u64,
                u64::from(f.len),
                region.symbol_name(f),
            )
        })
        .collect()
}

#[test]
fn perf_map_lines_are_appended_whole_and_parse_back() {
    let path = perf_map_path();
    assert_eq!(
        path.to_str().unwrap(),
        format!("/tmp/perf-{}.map", std::process::id())
    );
    let existed = path.exists();

    // The exact format for a known region.
    let named = region(0x7f12_ab00_0000, Some("modname"), 3);
    assert_eq!(
        perf_map_lines(&named),
        "7f12ab000000 30 modname::f0\n\
         7f12ab000040 31 modname::function[1]\n\
         7f12ab000080 32 modname::f2\n"
    );
    // No module name: no prefix. A newline in a name cannot break the line.
    let mut unnamed = region(0x7f12_ac00_0000, None, 2);
    unnamed.functions[0].name = Some("two\nlines".into());
    assert_eq!(
        perf_map_lines(&unnamed),
        "7f12ac000000 30 two lines\n7f12ac000040 31 function[1]\n"
    );

    write_perf_map(&named).unwrap();
    write_perf_map(&unnamed).unwrap();
    write_perf_map(&CodeRegion::default()).unwrap();

    // Eight threads, 50 regions each, all appending at once.
    let regions: Arc<Vec<CodeRegion>> = Arc::new(
        (0..400usize)
            .map(|i| region(0x6100_0000_0000 + i * 0x10_0000, Some(&format!("m{i}")), 5))
            .collect(),
    );
    let threads: Vec<_> = (0..8usize)
        .map(|thread| {
            let regions = Arc::clone(&regions);
            std::thread::spawn(move || {
                for region in regions.iter().skip(thread).step_by(8) {
                    write_perf_map(region).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }

    let contents = std::fs::read_to_string(&path).unwrap();
    assert!(contents.ends_with('\n'));
    let lines: Vec<&str> = contents.lines().collect();
    let ours = |start: u64| {
        (0x7f12_ab00_0000..0x7f12_ad00_0000).contains(&start)
            || (0x6100_0000_0000..0x6200_0000_0000).contains(&start)
    };
    let parsed: Vec<_> = lines
        .iter()
        .map(|line| parse_line(line))
        .filter(|(start, _, _)| ours(*start))
        .collect();

    // The two single-threaded regions, in order.
    let mut expected = expected_entries(&named);
    expected.extend(
        expected_entries(&unnamed)
            .into_iter()
            .map(|(s, l, n)| (s, l, n.replace('\n', " "))),
    );
    assert_eq!(parsed[..expected.len()], expected[..]);

    // Each threaded region's five lines appear once, consecutively and in order.
    let threaded = &parsed[expected.len()..];
    assert_eq!(threaded.len(), regions.len() * 5);
    let mut seen = BTreeSet::new();
    for chunk in threaded.chunks(5) {
        let index = (chunk[0].0 as usize - 0x6100_0000_0000) / 0x10_0000;
        assert!(seen.insert(index), "region {index} written twice");
        assert_eq!(chunk, expected_entries(&regions[index]).as_slice());
    }
    assert_eq!(seen.len(), regions.len());

    if existed {
        // Leave a file someone else created as it is, with our lines: perf maps are append-only.
        eprintln!("{} existed before the test; left in place", path.display());
    } else {
        std::fs::remove_file(&path).unwrap();
    }
}
