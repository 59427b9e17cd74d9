//! Values: script arguments to `Val`, matching results against the
//! script's expectations (NaN patterns, v128 lanes, references), and the
//! descriptions that failure reasons use.

use backstop::{Error, ExternRef, Val, ValType, V128};
use std::num::NonZeroU64;
use wast::core::{AbstractHeapType, HeapType, NanPattern, V128Pattern, WastArgCore, WastRetCore};
use wast::token::{F32, F64};
use wast::WastArg;

/// The host handle for the script's `ref.extern N` (handles are non-zero).
pub(crate) fn extern_ref(n: u32) -> ExternRef {
    ExternRef::new(NonZeroU64::new(u64::from(n) + 1).expect("n + 1 is non-zero"))
}

pub(crate) fn arg_to_val(arg: &WastArg<'_>) -> Result<Val, String> {
    let WastArg::Core(arg) = arg else {
        return Err("component-model argument".into());
    };
    Ok(match arg {
        WastArgCore::I32(v) => Val::I32(*v),
        WastArgCore::I64(v) => Val::I64(*v),
        WastArgCore::F32(f) => Val::F32(f.bits),
        WastArgCore::F64(f) => Val::F64(f.bits),
        WastArgCore::V128(v) => Val::V128(V128(u128::from_le_bytes(v.to_le_bytes()))),
        WastArgCore::RefNull(heap) => match null_type(heap) {
            Some(ValType::FuncRef) => Val::FuncRef(None),
            Some(_) => Val::ExternRef(None),
            None => return Err(format!("unsupported ref.null type {heap:?}")),
        },
        WastArgCore::RefExtern(n) => Val::ExternRef(Some(extern_ref(*n))),
        WastArgCore::RefHost(_) => return Err("ref.host arguments are not supported".into()),
    })
}

/// The value type of `ref.null <heap>`, for the heap types of Wasm 2.0.
pub(crate) fn null_type(heap: &HeapType<'_>) -> Option<ValType> {
    match heap {
        HeapType::Abstract {
            ty: AbstractHeapType::Func,
            ..
        } => Some(ValType::FuncRef),
        HeapType::Abstract {
            ty: AbstractHeapType::Extern,
            ..
        } => Some(ValType::ExternRef),
        _ => None,
    }
}

pub(crate) enum Match {
    Yes,
    No,
    Unsupported(String),
}

impl From<bool> for Match {
    fn from(b: bool) -> Match {
        if b {
            Match::Yes
        } else {
            Match::No
        }
    }
}

pub(crate) fn f32_matches(bits: u32, want: &NanPattern<F32>) -> bool {
    match want {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff == 0x7fc0_0000,
        NanPattern::ArithmeticNan => bits & 0x7fc0_0000 == 0x7fc0_0000,
        NanPattern::Value(f) => bits == f.bits,
    }
}

pub(crate) fn f64_matches(bits: u64, want: &NanPattern<F64>) -> bool {
    match want {
        NanPattern::CanonicalNan => bits & 0x7fff_ffff_ffff_ffff == 0x7ff8_0000_0000_0000,
        NanPattern::ArithmeticNan => bits & 0x7ff8_0000_0000_0000 == 0x7ff8_0000_0000_0000,
        NanPattern::Value(f) => bits == f.bits,
    }
}

/// Lane `i` of width `bits` of a v128, as an unsigned integer.
pub(crate) fn lane(v: u128, bits: u32, i: usize) -> u128 {
    let mask = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    (v >> (bits as usize * i)) & mask
}

pub(crate) fn v128_matches(v: u128, want: &V128Pattern) -> bool {
    match want {
        V128Pattern::I8x16(l) => l
            .iter()
            .enumerate()
            .all(|(i, x)| lane(v, 8, i) == u128::from(*x as u8)),
        V128Pattern::I16x8(l) => l
            .iter()
            .enumerate()
            .all(|(i, x)| lane(v, 16, i) == u128::from(*x as u16)),
        V128Pattern::I32x4(l) => l
            .iter()
            .enumerate()
            .all(|(i, x)| lane(v, 32, i) == u128::from(*x as u32)),
        V128Pattern::I64x2(l) => l
            .iter()
            .enumerate()
            .all(|(i, x)| lane(v, 64, i) == u128::from(*x as u64)),
        V128Pattern::F32x4(l) => l
            .iter()
            .enumerate()
            .all(|(i, p)| f32_matches(lane(v, 32, i) as u32, p)),
        V128Pattern::F64x2(l) => l
            .iter()
            .enumerate()
            .all(|(i, p)| f64_matches(lane(v, 64, i) as u64, p)),
    }
}

pub(crate) fn match_ret(got: &Val, want: &WastRetCore<'_>) -> Match {
    match (want, got) {
        (WastRetCore::I32(w), Val::I32(g)) => (w == g).into(),
        (WastRetCore::I64(w), Val::I64(g)) => (w == g).into(),
        (WastRetCore::F32(w), Val::F32(g)) => f32_matches(*g, w).into(),
        (WastRetCore::F64(w), Val::F64(g)) => f64_matches(*g, w).into(),
        (WastRetCore::V128(w), Val::V128(g)) => v128_matches(g.0, w).into(),
        (WastRetCore::RefNull(None), Val::FuncRef(r)) => r.is_none().into(),
        (WastRetCore::RefNull(None), Val::ExternRef(r)) => r.is_none().into(),
        (WastRetCore::RefNull(Some(heap)), got) => match null_type(heap) {
            Some(ty) => {
                (got.ty() == ty && matches!(got, Val::FuncRef(None) | Val::ExternRef(None))).into()
            }
            None => Match::Unsupported(format!("ref.null of heap type {heap:?}")),
        },
        (WastRetCore::RefExtern(None), Val::ExternRef(r)) => r.is_some().into(),
        (WastRetCore::RefExtern(Some(n)), Val::ExternRef(r)) => (*r == Some(extern_ref(*n))).into(),
        // The script cannot name which function; any non-null funcref will do.
        (WastRetCore::RefFunc(_), Val::FuncRef(r)) => r.is_some().into(),
        (WastRetCore::Either(options), got) => {
            let mut result = Match::No;
            for option in options {
                match match_ret(got, option) {
                    Match::Yes => return Match::Yes,
                    Match::Unsupported(w) => result = Match::Unsupported(w),
                    Match::No => {}
                }
            }
            result
        }
        (
            WastRetCore::RefHost(_)
            | WastRetCore::RefAny
            | WastRetCore::RefEq
            | WastRetCore::RefArray
            | WastRetCore::RefStruct
            | WastRetCore::RefI31
            | WastRetCore::RefI31Shared,
            _,
        ) => Match::Unsupported(format!("expected result {}", describe_ret(want))),
        _ => Match::No,
    }
}

// ---------------------------------------------------------------------------
// Descriptions for failure reasons
// ---------------------------------------------------------------------------

pub(crate) fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 300 {
        let mut cut: String = s.chars().take(300).collect();
        cut.push('…');
        cut
    } else {
        s
    }
}

pub(crate) fn describe_error(e: &Error) -> String {
    let kind = match e {
        Error::Invalid(_) => "Invalid",
        Error::Unsupported(_) => "Unsupported",
        Error::Link(_) => "Link",
        Error::Trap(_) => "Trap",
        Error::InvalidArgument(_) => "InvalidArgument",
        Error::InstanceState(_) => "InstanceState",
        Error::MemoryAccess(_) => "MemoryAccess",
        Error::Resource(_) => "Resource",
        Error::Host(_) => "Host",
        Error::Message(_) => "Message",
        _ => "other",
    };
    format!("Error::{kind}({})", one_line(&e.to_string()))
}

pub(crate) fn describe_val(v: &Val) -> String {
    match v {
        Val::I32(x) => format!("i32:{x}"),
        Val::I64(x) => format!("i64:{x}"),
        Val::F32(b) => format!("f32:{} (0x{b:08x})", f32::from_bits(*b)),
        Val::F64(b) => format!("f64:{} (0x{b:016x})", f64::from_bits(*b)),
        Val::V128(x) => format!("v128:0x{:032x}", x.0),
        Val::FuncRef(None) => "ref.null func".into(),
        Val::FuncRef(Some(_)) => "ref.func".into(),
        Val::ExternRef(None) => "ref.null extern".into(),
        Val::ExternRef(Some(r)) => format!(
            "ref.extern {} (handle {})",
            r.handle().get() - 1,
            r.handle()
        ),
    }
}

pub(crate) fn describe_vals(vs: &[Val]) -> String {
    let parts: Vec<String> = vs.iter().map(describe_val).collect();
    format!("[{}]", parts.join(", "))
}

pub(crate) fn describe_nan<T>(p: &NanPattern<T>, bits: impl Fn(&T) -> String) -> String {
    match p {
        NanPattern::CanonicalNan => "nan:canonical".into(),
        NanPattern::ArithmeticNan => "nan:arithmetic".into(),
        NanPattern::Value(v) => bits(v),
    }
}

pub(crate) fn describe_ret(r: &WastRetCore<'_>) -> String {
    let f32s = |f: &F32| format!("{} (0x{:08x})", f32::from_bits(f.bits), f.bits);
    let f64s = |f: &F64| format!("{} (0x{:016x})", f64::from_bits(f.bits), f.bits);
    match r {
        WastRetCore::I32(x) => format!("i32:{x}"),
        WastRetCore::I64(x) => format!("i64:{x}"),
        WastRetCore::F32(p) => format!("f32:{}", describe_nan(p, f32s)),
        WastRetCore::F64(p) => format!("f64:{}", describe_nan(p, f64s)),
        WastRetCore::V128(p) => {
            let lanes: Vec<String> = match p {
                V128Pattern::I8x16(l) => l.iter().map(|x| x.to_string()).collect(),
                V128Pattern::I16x8(l) => l.iter().map(|x| x.to_string()).collect(),
                V128Pattern::I32x4(l) => l.iter().map(|x| x.to_string()).collect(),
                V128Pattern::I64x2(l) => l.iter().map(|x| x.to_string()).collect(),
                V128Pattern::F32x4(l) => l.iter().map(|x| describe_nan(x, f32s)).collect(),
                V128Pattern::F64x2(l) => l.iter().map(|x| describe_nan(x, f64s)).collect(),
            };
            let shape = match p {
                V128Pattern::I8x16(_) => "i8x16",
                V128Pattern::I16x8(_) => "i16x8",
                V128Pattern::I32x4(_) => "i32x4",
                V128Pattern::I64x2(_) => "i64x2",
                V128Pattern::F32x4(_) => "f32x4",
                V128Pattern::F64x2(_) => "f64x2",
            };
            format!("v128 {shape} [{}]", lanes.join(" "))
        }
        WastRetCore::RefNull(None) => "ref.null".into(),
        WastRetCore::RefNull(Some(h)) => match null_type(h) {
            Some(ValType::FuncRef) => "ref.null func".into(),
            Some(_) => "ref.null extern".into(),
            None => format!("ref.null {h:?}"),
        },
        WastRetCore::RefExtern(None) => "ref.extern (any)".into(),
        WastRetCore::RefExtern(Some(n)) => format!("ref.extern {n}"),
        WastRetCore::RefFunc(_) => "ref.func (non-null)".into(),
        WastRetCore::Either(options) => {
            let parts: Vec<String> = options.iter().map(describe_ret).collect();
            format!("either({})", parts.join(" | "))
        }
        other => format!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
