//! Division and remainder by constants, which the compiler rewrites into
//! multiplies and shifts (jit/src/divconst.rs), against Rust's operators:
//! every op, signed and unsigned, 32 and 64 bits, many divisors (powers of
//! two, odd, large, negative, the extremes, and the trapping 0 and -1),
//! over edge-case and pseudo-random dividends. Traps must match too.

use backstop::{Engine, Error, Linker, Module, TrapCode};

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
    let mut instance = Linker::<()>::new(&engine).instantiate(&module, ()).unwrap();
    let mut checked = 0;
    for op in OPS {
        for (i, d) in divisors.iter().enumerate() {
            let func = instance.typed_func::<T, T>(&format!("{op}_{i}")).unwrap();
            for n in dividends(extremes, divisors) {
                let n = if bits == 32 { n as i32 as i64 } else { n };
                let Ok(arg) = T::try_from(n) else { continue };
                let got = func.call(&mut instance, arg);
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
