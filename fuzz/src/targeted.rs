//! Targeted generators: modules of the shapes wasm-smith rarely makes and
//! Backstop's own passes and machinery care about most, written as WAT
//! from a case's random numbers. Each module exports `run`, which drives
//! its functions over 64 inputs made inside Wasm (a linear congruential
//! generator) and folds the results, so one call covers many inputs.
//!
//! | shape | what it aims at |
//! |---|---|
//! | `division` | `divconst`: division and remainder by constants (powers of two, odd, even, near the limits, -1) of dividends narrowed by masks, shifts and extensions |
//! | `xor_chain` | long xor/shift/rotate chains whose intermediates are used twice (once Backstop's `xor_fences` pass, now the e-graph's own rules) |
//! | `loop_exits` | `loop_exits`: loops with many values live out and several exits |
//! | `call_indirect_chain` | tables and signature checks: a deep chain of `call_indirect` through a table |
//! | `first_instruction_trap` | trap sites at offset 0 of a function: the first instruction faults |

use crate::generate::Rng;
use std::fmt::Write;

/// The shapes, in the order `module` picks from.
pub const SHAPES: [&str; 5] = [
    "division",
    "xor_chain",
    "loop_exits",
    "call_indirect_chain",
    "first_instruction_trap",
];

/// The WAT of a targeted module for this case's bytes.
pub fn module(input: &[u8]) -> String {
    let mut seed = [0u8; 8];
    for (i, b) in input.iter().take(8).enumerate() {
        seed[i] = *b;
    }
    let mut rng = Rng::new(u64::from_le_bytes(seed), input.len() as u64);
    let shape = SHAPES[rng.below(SHAPES.len() as u64) as usize];
    let body = match shape {
        "division" => division(&mut rng),
        "xor_chain" => xor_chain(&mut rng),
        "loop_exits" => loop_exits(&mut rng),
        "call_indirect_chain" => call_indirect_chain(&mut rng),
        _ => first_instruction_trap(&mut rng),
    };
    format!(";; targeted shape: {shape}\n(module\n  (memory (export \"memory\") 1 1)\n  (global $acc (export \"acc\") (mut i64) (i64.const 0))\n{body}{DRIVER})\n")
}

/// `run`: calls `$f` (i64, i64) -> i64 on 64 generated pairs, folding the
/// results into `$acc`, and returns the fold.
const DRIVER: &str = r#"  (func (export "run") (result i64)
    (local $i i32) (local $x i64) (local $y i64)
    (local.set $x (i64.const 0x243f6a8885a308d3))
    (loop $next
      (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005)) (i64.const 1442695040888963407)))
      (local.set $y (i64.rotl (local.get $x) (i64.extend_i32_u (local.get $i))))
      (global.set $acc
        (i64.add (i64.rotl (global.get $acc) (i64.const 5))
          (call $f (local.get $x) (local.get $y))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $i) (i32.const 64))))
    (global.get $acc))
"#;

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

/// A divisor: powers of two, small odd and even numbers, magic-number
/// edges, and the extremes (0 and -1 are left to the trap checks).
fn divisor(rng: &mut Rng, bits: u32) -> i64 {
    let max = if bits == 32 {
        i32::MAX as i64
    } else {
        i64::MAX
    };
    match rng.below(6) {
        0 => 1i64 << rng.below(u64::from(bits) - 1),
        1 => 3 + 2 * rng.below(50) as i64,
        2 => 2 + 2 * rng.below(50) as i64,
        3 => max - rng.below(3) as i64,
        4 => -(2 + rng.below(1000) as i64),
        _ => (rng.next_u64() as i64 % max).abs().max(2),
    }
}

/// A dividend narrowed the way real code narrows it.
fn narrowed(rng: &mut Rng, bits: u32, param: &str) -> String {
    let (ty, value) = if bits == 32 {
        ("i32", format!("(i32.wrap_i64 (local.get {param}))"))
    } else {
        ("i64", format!("(local.get {param})"))
    };
    match rng.below(5) {
        0 => format!(
            "({ty}.and {value} ({ty}.const {}))",
            (1u64 << rng.below(u64::from(bits) - 1)) - 1
        ),
        1 => format!(
            "({ty}.shr_u {value} ({ty}.const {}))",
            1 + rng.below(u64::from(bits) - 1)
        ),
        2 if bits == 64 => format!(
            "(i64.extend_i32_{} (i32.wrap_i64 (local.get {param})))",
            pick(rng, &["u", "s"])
        ),
        3 => format!(
            "({ty}.shr_s {value} ({ty}.const {}))",
            1 + rng.below(u64::from(bits) - 1)
        ),
        _ => value,
    }
}

fn division(rng: &mut Rng) -> String {
    let mut terms = Vec::new();
    for _ in 0..1 + rng.below(6) {
        let bits = if rng.below(2) == 0 { 32 } else { 64 };
        let op = pick(rng, &["div_s", "div_u", "rem_s", "rem_u"]);
        let ty = if bits == 32 { "i32" } else { "i64" };
        let c = divisor(rng, bits);
        let param = if rng.below(2) == 0 { "$x" } else { "$y" };
        let dividend = narrowed(rng, bits, param);
        let term = format!("({ty}.{op} {dividend} ({ty}.const {c}))");
        terms.push(if bits == 32 {
            format!("(i64.extend_i32_u {term})")
        } else {
            term
        });
    }
    let sum = terms
        .into_iter()
        .reduce(|a, b| format!("(i64.xor {a} {b})"))
        .expect("at least one term");
    format!("  (func $f (param $x i64) (param $y i64) (result i64)\n    {sum})\n")
}

fn xor_chain(rng: &mut Rng) -> String {
    let mut body = String::from("    (local $t0 i64) (local $t1 i64) (local $t2 i64)\n");
    let mut last = "(local.get $x)".to_string();
    let length = 8 + rng.below(40);
    for i in 0..length {
        let other = pick(
            rng,
            &[
                "(local.get $y)",
                "(local.get $t0)",
                "(local.get $t1)",
                "(local.get $t2)",
                "(local.get $x)",
            ],
        );
        let step = match rng.below(5) {
            0 => format!("(i64.xor {last} {other})"),
            1 => format!(
                "(i64.xor {last} (i64.shl {other} (i64.const {})))",
                rng.below(64)
            ),
            2 => format!(
                "(i64.xor {last} (i64.shr_u {other} (i64.const {})))",
                rng.below(64)
            ),
            3 => format!("(i64.rotl {last} (i64.const {}))", rng.below(64)),
            _ => format!("(i64.xor {last} (i64.const {}))", rng.next_u64() as i64),
        };
        // Intermediates used twice: through a tee into a temporary.
        let temp = ["$t0", "$t1", "$t2"][(i % 3) as usize];
        last = if rng.below(3) == 0 {
            format!("(local.tee {temp} {step})")
        } else {
            step
        };
    }
    write!(
        body,
        "    (i64.add {last} (i64.xor (local.get $t0) (i64.add (local.get $t1) (local.get $t2))))"
    )
    .unwrap();
    format!("  (func $f (param $x i64) (param $y i64) (result i64)\n{body})\n")
}

fn loop_exits(rng: &mut Rng) -> String {
    let live = 4 + rng.below(16) as usize;
    let mut s =
        String::from("  (func $f (param $x i64) (param $y i64) (result i64)\n    (local $n i32)");
    for v in 0..live {
        write!(s, " (local $v{v} i64)").unwrap();
    }
    s.push('\n');
    for v in 0..live {
        writeln!(
            s,
            "    (local.set $v{v} (i64.add (local.get $x) (i64.const {})))",
            v * 7 + 1
        )
        .unwrap();
    }
    let exits = 1 + rng.below(4) as usize;
    for e in 0..exits {
        writeln!(s, "    (block $exit{e}").unwrap();
    }
    s.push_str("    (loop $body\n");
    for v in 0..live {
        let other = rng.below(live as u64);
        writeln!(
            s,
            "      (local.set $v{v} (i64.add (i64.mul (local.get $v{v}) (i64.const {})) (local.get $v{other})))",
            1 + 2 * rng.below(10)
        )
        .unwrap();
        if v % (live / exits).max(1) == 0 {
            let e = rng.below(exits as u64);
            writeln!(
                s,
                "      (br_if $exit{e} (i64.eq (i64.and (local.get $v{v}) (i64.const {})) (i64.const 0)))",
                (1u64 << (3 + rng.below(6))) - 1
            )
            .unwrap();
        }
    }
    writeln!(
        s,
        "      (local.set $n (i32.add (local.get $n) (i32.const 1)))\n      (br_if $body (i32.lt_u (local.get $n) (i32.const {}))))",
        2 + rng.below(200)
    )
    .unwrap();
    for e in (0..exits).rev() {
        writeln!(
            s,
            "    (local.set $v0 (i64.add (local.get $v0) (i64.const {e}))))"
        )
        .unwrap();
    }
    let fold = (1..live).fold("(local.get $v0)".to_string(), |acc, v| {
        format!("(i64.xor (i64.rotl {acc} (i64.const 3)) (local.get $v{v}))")
    });
    writeln!(s, "    (i64.add {fold} (i64.extend_i32_u (local.get $n))))").unwrap();
    s
}

fn call_indirect_chain(rng: &mut Rng) -> String {
    let length = 2 + rng.below(30) as usize;
    let mut s = String::from("  (type $link (func (param i64 i32) (result i64)))\n  (type $other (func (param i64) (result i64)))\n");
    writeln!(s, "  (table $chain {} {} funcref)", length + 1, length + 1).unwrap();
    s.push_str("  (elem (table $chain) (i32.const 0) func");
    for i in 0..length {
        write!(s, " $c{i}").unwrap();
    }
    s.push_str(" $odd)\n");
    for i in 0..length {
        let next = if i + 1 < length { i + 1 } else { length };
        // The last link calls `$odd` with the wrong type, when the depth
        // says so: a signature trap at the end of a deep chain.
        let callee = if next == length {
            format!(
                "(if (result i64) (i32.and (local.get 1) (i32.const {}))
        (then (call_indirect $chain (type $other) (local.get 0) (i32.const {length})))
        (else (local.get 0)))",
                1 + rng.below(7)
            )
        } else {
            format!(
                "(call_indirect $chain (type $link) (i64.add (local.get 0) (i64.const {})) (local.get 1) (i32.const {next}))",
                rng.below(1000)
            )
        };
        writeln!(s, "  (func $c{i} (type $link) {callee})").unwrap();
    }
    s.push_str("  (func $odd (param i64 i32) (result i64) (i64.const -1))\n");
    s.push_str("  (func $f (param $x i64) (param $y i64) (result i64)\n    (call_indirect $chain (type $link) (local.get $x) (i32.wrap_i64 (i64.and (local.get $y) (i64.const 0xff))) (i32.const 0)))\n");
    s
}

fn first_instruction_trap(rng: &mut Rng) -> String {
    let first = match rng.below(5) {
        0 => "(unreachable)".to_string(),
        1 => "(drop (i64.load (i32.const 70000)))".to_string(),
        2 => {
            "(drop (i32.div_u (i32.const 1) (i32.wrap_i64 (i64.and (local.get $y) (i64.const 0)))))"
                .to_string()
        }
        3 => "(drop (i32.trunc_f64_s (f64.const nan)))".to_string(),
        _ => format!(
            "(drop (i64.load offset={} (i32.wrap_i64 (i64.shr_u (local.get $x) (i64.const 40)))))",
            rng.below(65536)
        ),
    };
    // Only some inputs reach the trapping function, so the run is a mix of
    // returns and one trap at offset 0 of `$t`.
    format!(
        "  (func $t (param $x i64) (param $y i64) (result i64)\n    {first}\n    (i64.const 1))\n  (func $f (param $x i64) (param $y i64) (result i64)\n    (if (result i64) (i64.eq (i64.and (local.get $x) (i64.const {})) (i64.const 0))\n      (then (call $t (local.get $x) (local.get $y)))\n      (else (i64.popcnt (local.get $x)))))\n",
        (1u64 << rng.below(8)) - 1
    )
}
