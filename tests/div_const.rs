//! Division and remainder by constants, which the compiler rewrites into
//! multiplies and shifts (jit/src/divconst.rs), against Rust's operators:
//! every op, signed and unsigned, 32 and 64 bits, many divisors (powers of
//! two, odd, large, negative, the extremes, and the trapping 0 and -1),
//! over edge-case and pseudo-random dividends. Traps must match too.

use backstop::{Engine, Error, Linker, Module, Store, TrapCode};

const DIVISORS_32: &[i32] = &[
    0,
    1,
    2,
    3,
    5,
    6,
    7,
    9,
    10,
    12,
    16,
    25,
    100,
    104,
    125,
    641,
    1000,
    10816,
    65535,
    65536,
    1 << 30,
    0x7fff_ffff,
    1_162_261_467,
    -1,
    -2,
    -3,
    -7,
    -10,
    -16,
    -65536,
    -641,
    i32::MIN,
    i32::MIN + 1,
];

const DIVISORS_64: &[i64] = &[
    0,
    1,
    2,
    3,
    5,
    7,
    10,
    16,
    100,
    1000,
    641,
    65536,
    1_000_000_007,
    1 << 32,
    (1 << 32) + 1,
    10_000_000_000_000_000_000u64 as i64 / 10,
    1 << 62,
    i64::MAX,
    6_700_417,
    -1,
    -2,
    -3,
    -7,
    -10,
    -1_000_000_007,
    -(1 << 40),
    i64::MIN,
    i64::MIN + 1,
];

const OPS: [&str; 4] = ["div_s", "div_u", "rem_s", "rem_u"];

/// One function per (op, divisor): `(op (local.get 0) (const d))`.
fn module_text(ty: &str, divisors: &[i64]) -> String {
    let mut text = String::from("(module\n");
    for op in OPS {
        for (i, d) in divisors.iter().enumerate() {
            text += &format!(
                "(func (export \"{op}_{i}\") (param {ty}) (result {ty}) \
                 ({ty}.{op} (local.get 0) ({ty}.const {d})))\n"
            );
        }
    }
    text + ")"
}

/// What Wasm says `op` gives, as a 64-bit pattern, or the trap.
fn expected(op: &str, n: i64, d: i64, bits: u32) -> Result<i64, TrapCode> {
    let (min, unsigned_mask) = if bits == 32 {
        (i32::MIN as i64, u32::MAX as u64)
    } else {
        (i64::MIN, u64::MAX)
    };
    let (un, ud) = (n as u64 & unsigned_mask, d as u64 & unsigned_mask);
    if d == 0 {
        return Err(TrapCode::IntegerDivisionByZero);
    }
    Ok(match op {
        "div_s" if n == min && d == -1 => return Err(TrapCode::IntegerOverflow),
        "div_s" => n / d,
        "rem_s" if d == -1 => 0,
        "rem_s" => n % d,
        "div_u" => (un / ud) as i64,
        "rem_u" => (un % ud) as i64,
        _ => unreachable!(),
    })
}

fn dividends(extremes: &[i64], divisors: &[i64]) -> Vec<i64> {
    let mut values = vec![0, 1, -1, 2, -2, 3, -3, 7, -7, 100, -100];
    values.extend_from_slice(extremes);
    for d in divisors {
        for delta in [-1, 0, 1] {
            values.push(d.wrapping_add(delta));
            values.push(d.wrapping_mul(3).wrapping_add(delta));
            values.push(d.wrapping_neg().wrapping_add(delta));
        }
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        values.push(state as i64);
        values.push((state >> 40) as i64);
    }
    values
}

fn check<T>(bits: u32, divisors: &[i64], extremes: &[i64])
where
    T: backstop::WasmTy + Copy + Into<i64> + TryFrom<i64> + std::fmt::Debug,
{
    let engine = Engine::default();
    let ty = if bits == 32 { "i32" } else { "i64" };
    let module = Module::new(&engine, module_text(ty, divisors)).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Linker::<()>::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let mut checked = 0;
    for op in OPS {
        for (i, d) in divisors.iter().enumerate() {
            let func = instance
                .get_typed_func::<T, T>(&store, &format!("{op}_{i}"))
                .unwrap();
            for n in dividends(extremes, divisors) {
                let n = if bits == 32 { n as i32 as i64 } else { n };
                let Ok(arg) = T::try_from(n) else { continue };
                let got = func.call(&mut store, arg);
                let want = expected(op, n, *d, bits);
                match (got, want) {
                    (Ok(got), Ok(want)) => {
                        let got: i64 = got.into();
                        let (got, want) = if bits == 32 {
                            (got as i32 as i64, want as i32 as i64)
                        } else {
                            (got, want)
                        };
                        assert_eq!(got, want, "{ty}.{op} {n} by {d}");
                    }
                    (Err(Error::Trap(t)), Err(code)) => {
                        assert_eq!(t.code(), code, "{ty}.{op} {n} by {d}")
                    }
                    (got, want) => panic!("{ty}.{op} {n} by {d}: got {got:?}, want {want:?}"),
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 100_000, "{checked}");
}

/// Pseudo-random divisors of every magnitude, to go beyond the chosen ones.
fn random_divisors(count: usize, seed: u64) -> Vec<i64> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Vary the magnitude: shift a random value right by 0..63 bits.
            (state >> (state % 64)) as i64 * if state & 1 == 0 { 1 } else { -1 }
        })
        .collect()
}

#[test]
fn i32_division_by_constants_matches_the_semantics() {
    let mut divisors: Vec<i64> = DIVISORS_32.iter().map(|d| i64::from(*d)).collect();
    divisors.extend(
        random_divisors(60, 0x1234_5678_9abc_def1)
            .into_iter()
            .map(|d| d as i32 as i64),
    );
    check::<i32>(
        32,
        &divisors,
        &[
            i32::MIN.into(),
            i32::MAX.into(),
            (i32::MIN + 1).into(),
            (i32::MAX - 1).into(),
        ],
    );
}

#[test]
fn i64_division_by_constants_matches_the_semantics() {
    let mut divisors = DIVISORS_64.to_vec();
    divisors.extend(random_divisors(60, 0x0fed_cba9_8765_4321));
    check::<i64>(
        64,
        &divisors,
        &[i64::MIN, i64::MAX, i64::MIN + 1, i64::MAX - 1],
    );
}

/// Unsigned division and remainder of dividends whose range the compiler
/// can see (a mask, a right shift, a narrow load, a zero extension, an
/// earlier division or remainder), which get the narrower multiply forms.
/// Each shape is Wasm text over `(local.get 0)` and its meaning in Rust.
struct Shape {
    name: &'static str,
    wasm: &'static str,
    rust: fn(u64) -> u64,
}

const SHAPES_32: &[Shape] = &[
    Shape { name: "and_ff", wasm: "(i32.and (local.get 0) (i32.const 0xff))", rust: |x| x & 0xff },
    Shape { name: "and_ffff", wasm: "(i32.and (local.get 0) (i32.const 0xffff))", rust: |x| x & 0xffff },
    Shape {
        name: "and_fffff",
        wasm: "(i32.and (i32.const 0xfffff) (local.get 0))",
        rust: |x| x & 0xfffff,
    },
    Shape { name: "shr_20", wasm: "(i32.shr_u (local.get 0) (i32.const 20))", rust: |x| x >> 20 },
    Shape { name: "shr_39", wasm: "(i32.shr_u (local.get 0) (i32.const 39))", rust: |x| x >> 7 },
    Shape {
        name: "rem_10404",
        wasm: "(i32.rem_u (local.get 0) (i32.const 10404))",
        rust: |x| x % 10404,
    },
    Shape {
        name: "div_105",
        wasm: "(i32.div_u (i32.and (local.get 0) (i32.const 0xffff)) (i32.const 105))",
        rust: |x| (x & 0xffff) / 105,
    },
    Shape {
        name: "load8",
        wasm: "(i32.store (i32.const 8) (local.get 0)) (i32.load8_u (i32.const 8))",
        rust: |x| x & 0xff,
    },
    Shape {
        name: "load16",
        wasm: "(i32.store (i32.const 8) (local.get 0)) (i32.load16_u (i32.const 8))",
        rust: |x| x & 0xffff,
    },
    Shape {
        name: "or_masks",
        wasm: "(i32.or (i32.and (local.get 0) (i32.const 0xf0)) (i32.shr_u (local.get 0) (i32.const 28)))",
        rust: |x| (x & 0xf0) | (x >> 28),
    },
];

const SHAPES_64: &[Shape] = &[
    Shape {
        name: "and_ffffffff",
        wasm: "(i64.and (local.get 0) (i64.const 0xffffffff))",
        rust: |x| x & 0xffff_ffff,
    },
    Shape {
        name: "extend_u",
        wasm: "(i64.extend_i32_u (i32.wrap_i64 (local.get 0)))",
        rust: |x| x & 0xffff_ffff,
    },
    Shape {
        name: "shr_40",
        wasm: "(i64.shr_u (local.get 0) (i64.const 40))",
        rust: |x| x >> 40,
    },
    Shape {
        name: "and_ffff",
        wasm: "(i64.and (local.get 0) (i64.const 0xffff))",
        rust: |x| x & 0xffff,
    },
    Shape {
        name: "load32",
        wasm: "(i64.store (i32.const 8) (local.get 0)) (i64.load32_u (i32.const 8))",
        rust: |x| x & 0xffff_ffff,
    },
    Shape {
        name: "rem_1e9",
        wasm: "(i64.rem_u (local.get 0) (i64.const 1000000000))",
        rust: |x| x % 1_000_000_000,
    },
];

fn check_shapes<T>(bits: u32, shapes: &[Shape], divisors: &[u64])
where
    T: backstop::WasmTy + Copy + Into<i64> + TryFrom<i64> + std::fmt::Debug,
{
    let ty = if bits == 32 { "i32" } else { "i64" };
    let mut text = String::from("(module (memory 1)\n");
    for (s, shape) in shapes.iter().enumerate() {
        for op in ["div_u", "rem_u"] {
            for (i, d) in divisors.iter().enumerate() {
                text += &format!(
                    "(func (export \"{op}_{s}_{i}\") (param {ty}) (result {ty}) \
                     ({ty}.{op} {} ({ty}.const {d})))\n",
                    shape.wasm
                );
            }
        }
    }
    text += ")";
    let engine = Engine::default();
    let module = Module::new(&engine, text).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Linker::<()>::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let mask = if bits == 32 {
        u64::from(u32::MAX)
    } else {
        u64::MAX
    };
    let signed: Vec<i64> = divisors.iter().map(|d| *d as i64).collect();
    let mut checked = 0;
    for (s, shape) in shapes.iter().enumerate() {
        for op in ["div_u", "rem_u"] {
            for (i, d) in divisors.iter().enumerate() {
                let func = instance
                    .get_typed_func::<T, T>(&store, &format!("{op}_{s}_{i}"))
                    .unwrap();
                for n in dividends(&[i64::MIN, i64::MAX, -1], &signed) {
                    let n = n as u64 & mask;
                    let arg = if bits == 32 {
                        n as u32 as i32 as i64
                    } else {
                        n as i64
                    };
                    let Ok(arg) = T::try_from(arg) else { continue };
                    let got = func.call(&mut store, arg).unwrap().into() as u64 & mask;
                    let x = (shape.rust)(n);
                    let want = if op == "div_u" { x / d } else { x % d };
                    assert_eq!(got, want, "{ty}.{op} of {} ({n:#x}) by {d}", shape.name);
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 50_000, "{checked}");
}

const RANGE_DIVISORS: &[u64] = &[
    3,
    7,
    10,
    100,
    102,
    105,
    255,
    641,
    1000,
    10404,
    65535,
    65537,
    1 << 20,
];

#[test]
fn unsigned_division_of_narrow_dividends_32() {
    check_shapes::<i32>(32, SHAPES_32, RANGE_DIVISORS);
}

#[test]
fn unsigned_division_of_narrow_dividends_64() {
    let mut divisors = RANGE_DIVISORS.to_vec();
    divisors.extend([1_000_000_007, (1 << 32) + 1, 1 << 40, u64::MAX / 3]);
    check_shapes::<i64>(64, SHAPES_64, &divisors);
}
