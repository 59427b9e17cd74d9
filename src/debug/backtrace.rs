//! Wasm backtraces: which guest functions (and host segments between them)
//! were on the guest stack when a run ended.
//!
//! A trap or a termination records the frames its unwind passes, as the
//! unwind passes them (`UnwindWalk`, the stop function of the one-phase
//! unwind), so it costs no walk of its own; `Caller::backtrace` walks with
//! `_Unwind_Backtrace` (one pass, no destructors run). The walk starts in the runtime and
//! stops at the fiber's bottom frame, so it covers exactly this run's guest
//! stack. Each PC is classified through the code registry: compiled Wasm
//! functions become named frames with their Wasm offset; runs of other
//! (Rust) frames become one marked host frame. `Config::wasm_backtrace`
//! turns capture off.

use crate::debug::lines::LineTable;
use backstop_unwind::CodeRegion;
use std::ffi::c_void;
use std::fmt;
use std::os::raw::c_int;
use std::sync::Arc;

/// What a frame of a `WasmBacktrace` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A compiled Wasm function.
    Wasm,
    /// One or more host (Rust) frames: a host function, and whatever it
    /// called, between guest segments.
    Host,
}

/// One frame of a `WasmBacktrace`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    kind: FrameKind,
    module_name: Option<Arc<str>>,
    func_index: Option<u32>,
    func_name: Option<Arc<str>>,
    /// `func_name` demangled, when it is a Rust or C++ symbol.
    demangled_name: Option<Arc<str>>,
    wasm_offset: Option<u32>,
    source: Option<(String, u32)>,
}

impl FrameInfo {
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The module's name from its name section, if any.
    pub fn module_name(&self) -> Option<&str> {
        self.module_name.as_deref()
    }

    /// The function index in its module (Wasm frames).
    pub fn func_index(&self) -> Option<u32> {
        self.func_index
    }

    /// The function's name from the name section, or `<wasm function N>`,
    /// exactly as the module has it (a mangled symbol stays mangled).
    pub fn func_name(&self) -> Option<&str> {
        self.func_name.as_deref()
    }

    /// The function's name for people: a Rust or C++ symbol demangled
    /// (without Rust's hash suffix), any other name as it is. This is what
    /// `Display` prints; `func_name` keeps the raw one.
    pub fn display_name(&self) -> Option<&str> {
        self.demangled_name.as_deref().or(self.func_name.as_deref())
    }

    /// The offset, in the module's binary, of the instruction executing in
    /// this frame (the call, for outer frames).
    pub fn wasm_offset(&self) -> Option<u32> {
        self.wasm_offset
    }

    /// The source file and line, when the module carries DWARF line info
    /// (e.g. built with `clang -g`).
    pub fn source_location(&self) -> Option<(&str, u32)> {
        self.source
            .as_ref()
            .map(|(file, line)| (file.as_str(), *line))
    }

    /// Describes the frame of guest code at `pc`, if it is one.
    pub(crate) fn for_wasm_pc(pc: usize) -> Option<FrameInfo> {
        match Symbolizer::default().classify(pc) {
            Pc::Wasm(frame) => Some(frame),
            Pc::OtherCompiled | Pc::Host => None,
        }
    }

    fn host() -> FrameInfo {
        FrameInfo {
            kind: FrameKind::Host,
            module_name: None,
            func_index: None,
            func_name: None,
            demangled_name: None,
            wasm_offset: None,
            source: None,
        }
    }
}

/// `name` demangled, if it is a Rust symbol (legacy `_ZN...E` or v0
/// `_R...`) or an Itanium C++ one (`_Z...`); `None` for anything else.
/// Rust symbols lose their hash suffix (`json::main`, not
/// `json::main::h0123456789abcdef`).
pub fn demangle(name: &str) -> Option<String> {
    if let Ok(symbol) = rustc_demangle::try_demangle(name) {
        return Some(format!("{symbol:#}"));
    }
    if name.starts_with("_Z") {
        let symbol = cpp_demangle::Symbol::new(name).ok()?;
        return symbol.demangle().ok();
    }
    None
}

impl fmt::Display for FrameInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FrameKind::Host => f.write_str("<host frames>"),
            FrameKind::Wasm => {
                if let Some(module) = &self.module_name {
                    write!(f, "{module}!")?;
                }
                f.write_str(self.display_name().unwrap_or("<unknown>"))?;
                if let Some(offset) = self.wasm_offset {
                    write!(f, " @ {offset:#x}")?;
                }
                if let Some((file, line)) = &self.source {
                    write!(f, " at {file}:{line}")?;
                }
                Ok(())
            }
        }
    }
}

/// What a PC of a walk is.
enum Pc {
    /// In a compiled Wasm function.
    Wasm(FrameInfo),
    /// In other compiled code: a trampoline or a host adapter.
    OtherCompiled,
    /// Anywhere else: the host's frames.
    Host,
}

/// Names the PCs of one walk. It keeps the code region of the last PC and
/// its line table, and shares function names between frames, so a deep
/// stack of a few functions costs one registry lookup per change of region
/// and no allocation per frame for names.
#[derive(Default)]
struct Symbolizer {
    region: Option<Arc<CodeRegion>>,
    module_name: Option<Arc<str>>,
    lines: Option<Arc<LineTable>>,
    /// Function names already made: raw and demangled.
    names: Vec<(FunctionKey, FunctionNames)>,
}

/// A compiled function: its region's start and its index.
type FunctionKey = (usize, u32);

/// A function's name as the module has it, and demangled.
type FunctionNames = (Option<Arc<str>>, Option<Arc<str>>);

impl Symbolizer {
    fn classify(&mut self, pc: usize) -> Pc {
        let known = self
            .region
            .as_ref()
            .is_some_and(|region| pc >= region.start && pc < region.end());
        if !known {
            let Some(info) = backstop_unwind::lookup(pc) else {
                return Pc::Host;
            };
            self.module_name = info.region.name.as_deref().map(Arc::from);
            self.lines = crate::debug::lines::line_table(info.region.start);
            self.region = Some(info.region);
        }
        let Some(region) = self.region.as_ref() else {
            return Pc::Host;
        };
        let offset = (pc - region.start) as u32;
        let function = match region.function_at(offset).map(|i| &region.functions[i]) {
            Some(function) if function.index != u32::MAX => function,
            // A trampoline or host adapter (or padding): not a Wasm frame.
            _ => return Pc::OtherCompiled,
        };
        let key = (region.start, function.index);
        let (func_name, demangled_name) = match self.names.iter().find(|(k, _)| *k == key) {
            Some((_, names)) => names.clone(),
            None => {
                let name: Option<Arc<str>> = function.name.as_deref().map(Arc::from);
                let demangled = name.as_deref().and_then(demangle).map(Arc::from);
                self.names.push((key, (name.clone(), demangled.clone())));
                (name, demangled)
            }
        };
        let wasm_offset = region.source_offset_at(offset);
        let source = wasm_offset
            .and_then(|offset| self.lines.as_ref()?.lookup(offset))
            .map(|(file, line)| (file.to_string(), line));
        Pc::Wasm(FrameInfo {
            kind: FrameKind::Wasm,
            module_name: self.module_name.clone(),
            func_index: Some(function.index),
            func_name,
            demangled_name,
            wasm_offset,
            source,
        })
    }
}

/// The guest functions on the stack when a run ended, innermost first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WasmBacktrace {
    frames: Vec<FrameInfo>,
}

impl WasmBacktrace {
    pub fn frames(&self) -> &[FrameInfo] {
        &self.frames
    }

    /// Walks the current guest stack. `leading_host` keeps a host frame for
    /// the frames above the innermost Wasm frame (a host function that
    /// terminated the run), rather than dropping them (the runtime's own
    /// frames, when guest code trapped).
    pub(crate) fn capture(leading_host: bool) -> WasmBacktrace {
        Self::from_pcs(&walk_guest_stack(), leading_host)
    }

    /// Classifies the PCs of a walk, innermost first (see `capture`).
    fn from_pcs(pcs: &[usize], leading_host: bool) -> WasmBacktrace {
        let mut frames: Vec<FrameInfo> = Vec::with_capacity(pcs.len());
        let mut symbolizer = Symbolizer::default();
        for &pc in pcs {
            match symbolizer.classify(pc) {
                Pc::Wasm(frame) => frames.push(frame),
                Pc::OtherCompiled => {}
                Pc::Host => {
                    let after_host = frames.last().is_some_and(|f| f.kind == FrameKind::Host);
                    if !after_host && (leading_host || !frames.is_empty()) {
                        frames.push(FrameInfo::host());
                    }
                }
            }
        }
        // What follows the outermost Wasm frame is the runtime's entry.
        while frames.last().is_some_and(|f| f.kind == FrameKind::Host) {
            frames.pop();
        }
        WasmBacktrace { frames }
    }
}

/// At most this many frame lines are printed by `WasmBacktrace`'s
/// `Display`; a line says how many frames were left out.
pub const MAX_PRINTED_FRAMES: usize = 100;

/// The longest cycle of frames (mutual recursion) that `Display` collapses.
const MAX_CYCLE: usize = 4;

/// How `Display` prints a stretch of frames: `len` frames from `start`,
/// the first `period` of which are printed and said to repeat `times`
/// times in all (1 for frames printed as they are).
#[derive(Debug, PartialEq, Eq)]
struct Stretch {
    start: usize,
    period: usize,
    times: usize,
}

/// Splits `frames` into stretches: wherever a block of up to `MAX_CYCLE`
/// frames repeats back to back (a recursion), one stretch for all its
/// repetitions; elsewhere, single frames.
fn stretches(frames: &[FrameInfo]) -> Vec<Stretch> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < frames.len() {
        let mut best = Stretch {
            start,
            period: 1,
            times: 1,
        };
        for period in 1..=MAX_CYCLE.min(frames.len() - start) {
            let block = &frames[start..start + period];
            let mut times = 1;
            while frames[start + times * period..]
                .get(..period)
                .is_some_and(|next| next == block)
            {
                times += 1;
            }
            // A cycle counts when it saves lines: a frame twice, a longer
            // block three times.
            let worth = if period == 1 { times >= 2 } else { times >= 3 };
            if worth && period * times > best.period * best.times {
                best = Stretch {
                    start,
                    period,
                    times,
                };
            }
        }
        start += best.period * best.times;
        out.push(best);
    }
    out
}

/// `n` with thousands separators: 65530 -> "65,530".
fn with_separators(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Innermost first, one line per frame, numbered. A recursion's repeated
/// frames print once with a line saying how often they repeat, and after
/// `MAX_PRINTED_FRAMES` lines of frames a last line counts the rest;
/// `frames()` always has every frame.
impl fmt::Display for WasmBacktrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut printed = 0;
        for stretch in stretches(&self.frames) {
            if printed >= MAX_PRINTED_FRAMES {
                let rest = self.frames.len() - stretch.start;
                return writeln!(
                    f,
                    "  ... and {} more frame{}",
                    with_separators(rest),
                    if rest == 1 { "" } else { "s" }
                );
            }
            for i in stretch.start..stretch.start + stretch.period {
                writeln!(f, "  {i:>3}: {}", self.frames[i])?;
                printed += 1;
            }
            if stretch.times > 1 {
                let what = if stretch.period == 1 {
                    "the frame above".to_string()
                } else {
                    format!("the {} frames above", stretch.period)
                };
                writeln!(
                    f,
                    "       ... {what} repeated {} times (frames {}-{})",
                    with_separators(stretch.times),
                    stretch.start,
                    stretch.start + stretch.period * stretch.times - 1
                )?;
            }
        }
        Ok(())
    }
}

type TraceFn = extern "C" fn(*mut c_void, *mut c_void) -> c_int;

extern "C" {
    fn _Unwind_Backtrace(trace: TraceFn, arg: *mut c_void) -> c_int;
    fn _Unwind_GetIPInfo(context: *mut c_void, ip_before_insn: *mut c_int) -> usize;
    fn _Unwind_GetRegionStart(context: *mut c_void) -> usize;
}

const URC_NO_REASON: c_int = 0;
const URC_NORMAL_STOP: c_int = 4;
/// More frames than any guest stack holds: a cap against runaway walks.
const MAX_FRAMES: usize = 1 << 20;

struct Walk {
    pcs: Vec<usize>,
    fiber_base: usize,
}

extern "C" fn visit_frame(context: *mut c_void, arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Walk` passed by `walk_guest_stack`, alive and
    // not otherwise borrowed during the walk; `context` is the unwinder's.
    let (walk, pc, region) = unsafe {
        let walk = &mut *(arg as *mut Walk);
        let mut before_insn: c_int = 0;
        let ip = _Unwind_GetIPInfo(context, &mut before_insn);
        // A return address points after the call: look up the call itself.
        // A faulting frame (a signal frame) is at the exact instruction.
        let pc = if before_insn != 0 {
            ip
        } else {
            ip.saturating_sub(1)
        };
        (walk, pc, _Unwind_GetRegionStart(context))
    };
    if region == walk.fiber_base || walk.pcs.len() >= MAX_FRAMES {
        return URC_NORMAL_STOP;
    }
    walk.pcs.push(pc);
    URC_NO_REASON
}

impl WasmBacktrace {
    /// The backtrace of a fault at `pc` in compiled code whose frame
    /// pointer is `fp`, when only compiled code (which always keeps frame
    /// pointers) lies between it and the root's entry: follows the chain
    /// of frame records while their return addresses are compiled code.
    /// Every record read must lie inside `stack` (`bottom..top`), and each
    /// must be older than the last, so a broken chain ends the walk early
    /// rather than reading anything else.
    pub(crate) fn from_frame_pointers(
        pc: usize,
        fp: usize,
        stack: (usize, usize),
    ) -> WasmBacktrace {
        let mut pcs = Vec::with_capacity(16);
        pcs.push(pc);
        let mut fp = fp;
        while fp >= stack.0 && fp <= stack.1.saturating_sub(16) && fp.is_multiple_of(8) {
            // SAFETY: `fp..fp + 16` lies inside the guest stack, which is
            // mapped and readable while its run is current.
            let (caller_fp, return_address) =
                unsafe { (*(fp as *const usize), *((fp + 8) as *const usize)) };
            if !backstop_unwind::is_registered_code_signal_safe(return_address)
                || pcs.len() >= MAX_FRAMES
            {
                break;
            }
            // A return address points after the call: name the call.
            pcs.push(return_address - 1);
            if caller_fp <= fp {
                break;
            }
            fp = caller_fp;
        }
        WasmBacktrace::from_pcs(&pcs, false)
    }
}

/// The frames a run-ending unwind passes, recorded as it passes them (see
/// `backstop_asm::resume_unwind_one_phase_observed`): the backtrace of a
/// trap or a termination costs no walk of its own. It lives on the heap,
/// with the pending end of the run, because landing pads reuse the stack of
/// the frames already unwound.
pub(crate) struct UnwindWalk {
    walk: Walk,
    /// Set at the fiber's bottom frame: what follows is the embedder's.
    finished: bool,
    leading_host: bool,
}

impl UnwindWalk {
    /// A walk for a backtrace like `WasmBacktrace::capture(leading_host)`.
    pub(crate) fn new(leading_host: bool) -> UnwindWalk {
        UnwindWalk {
            walk: Walk {
                pcs: Vec::with_capacity(64),
                fiber_base: backstop_asm::fiber_base_address(),
            },
            finished: false,
            leading_host,
        }
    }

    pub(crate) fn into_backtrace(self) -> WasmBacktrace {
        WasmBacktrace::from_pcs(&self.walk.pcs, self.leading_host)
    }
}

const UA_END_OF_STACK: c_int = 16;

/// The stop function of a run-ending unwind with a backtrace: records each
/// frame (`arg` is the `UnwindWalk`) and always lets the unwind go on.
pub(crate) extern "C" fn record_unwound_frame(
    _version: c_int,
    actions: c_int,
    _class: u64,
    _exception: *mut c_void,
    context: *mut c_void,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: `arg` is the `UnwindWalk` that `exit::raise` boxed with the
    // pending end of the run, which lives until the root call takes it
    // after the unwind; nothing else touches it meanwhile.
    let walk = unsafe { &mut *(arg as *mut UnwindWalk) };
    if !walk.finished && actions & UA_END_OF_STACK == 0 {
        let walk_ptr = &mut walk.walk as *mut Walk as *mut c_void;
        walk.finished = visit_frame(context, walk_ptr) == URC_NORMAL_STOP;
    }
    URC_NO_REASON
}

/// The PCs of every frame from here down to the fiber's bottom frame.
fn walk_guest_stack() -> Vec<usize> {
    let mut walk = Walk {
        pcs: Vec::with_capacity(64),
        fiber_base: backstop_asm::fiber_base_address(),
    };
    // SAFETY: `visit_frame` matches the callback signature and only touches
    // `walk`, which outlives the call.
    unsafe {
        _Unwind_Backtrace(visit_frame, &mut walk as *mut Walk as *mut c_void);
    }
    walk.pcs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str) -> FrameInfo {
        FrameInfo {
            kind: FrameKind::Wasm,
            func_index: Some(0),
            func_name: Some(Arc::from(name)),
            ..FrameInfo::host()
        }
    }

    fn frames(names: &str) -> Vec<FrameInfo> {
        names.chars().map(|c| frame(&c.to_string())).collect()
    }

    fn shape(names: &str) -> Vec<(usize, usize, usize)> {
        stretches(&frames(names))
            .into_iter()
            .map(|s| (s.start, s.period, s.times))
            .collect()
    }

    #[test]
    fn repeats_and_cycles_become_stretches() {
        assert_eq!(shape(""), vec![]);
        assert_eq!(shape("abc"), vec![(0, 1, 1), (1, 1, 1), (2, 1, 1)]);
        assert_eq!(shape("rrrrm"), vec![(0, 1, 4), (4, 1, 1)]);
        // Mutual recursion: a block of two, three times or more.
        assert_eq!(shape("ababab"), vec![(0, 2, 3)]);
        assert_eq!(
            shape("abab"),
            vec![(0, 1, 1), (1, 1, 1), (2, 1, 1), (3, 1, 1)]
        );
        assert_eq!(shape("xabcabcabcy"), vec![(0, 1, 1), (1, 3, 3), (10, 1, 1)]);
    }

    #[test]
    fn a_deep_recursion_prints_a_few_lines() {
        let mut all = vec![frame("leaf")];
        all.extend(std::iter::repeat_with(|| frame("r")).take(65_530));
        all.push(frame("main"));
        let text = WasmBacktrace { frames: all }.to_string();
        assert_eq!(
            text,
            "    0: leaf\n    1: r\n       ... the frame above repeated 65,530 times \
             (frames 1-65530)\n  65531: main\n"
        );
    }

    #[test]
    fn printing_stops_after_the_cap_and_counts_the_rest() {
        let names: Vec<FrameInfo> = (0..250).map(|i| frame(&format!("f{i}"))).collect();
        let text = WasmBacktrace { frames: names }.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), MAX_PRINTED_FRAMES + 1);
        assert_eq!(lines[0], "    0: f0");
        assert_eq!(lines[MAX_PRINTED_FRAMES], "  ... and 150 more frames");
    }

    #[test]
    fn separators() {
        assert_eq!(with_separators(0), "0");
        assert_eq!(with_separators(999), "999");
        assert_eq!(with_separators(1000), "1,000");
        assert_eq!(with_separators(65530), "65,530");
        assert_eq!(with_separators(1234567), "1,234,567");
    }

    #[test]
    fn rust_and_cpp_symbols_are_demangled() {
        assert_eq!(
            demangle("_ZN4json4main17h0123456789abcdefE").as_deref(),
            Some("json::main")
        );
        assert_eq!(
            demangle("_RNvNtCs1234_7mycrate6module4func").as_deref(),
            Some("mycrate::module::func")
        );
        assert_eq!(demangle("_Z3addii").as_deref(), Some("add(int, int)"));
        assert_eq!(demangle("main"), None);
        assert_eq!(demangle("<wasm function 3>"), None);
        assert_eq!(demangle("_Znot a symbol"), None);
        let mut f = frame("_ZN4json4main17h0123456789abcdefE");
        f.demangled_name = Some(Arc::from("json::main"));
        assert_eq!(f.func_name(), Some("_ZN4json4main17h0123456789abcdefE"));
        assert_eq!(f.to_string(), "json::main");
    }
}
