//! Chains of xors whose intermediate values are used more than once, which
//! Cranelift's e-graph once reassociated into extra xor trees (see
//! `jit/src/cranelift_guards.rs`), must compute what they say: xorshift
//! generators (32- and 64-bit, in loops, unrolled) and a mixing function
//! whose shared xors feed several others, against the same code in Rust,
//! with Cranelift's verifier on.

use backstop::{Config, Engine, Linker, Module, Store};

const GUEST: &str = r#"
    (module
      ;; n steps of xorshift32, two per iteration as clang unrolls it.
      (func (export "xorshift32") (param $x i32) (param $n i32) (result i32)
        (loop $l
          (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 13))))
          (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 17))))
          (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 5))))
          (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 13))))
          (local.set $x (i32.xor (local.get $x) (i32.shr_u (local.get $x) (i32.const 17))))
          (local.set $x (i32.xor (local.get $x) (i32.shl (local.get $x) (i32.const 5))))
          (local.set $n (i32.sub (local.get $n) (i32.const 1)))
          (br_if $l (i32.gt_s (local.get $n) (i32.const 0))))
        (local.get $x))

      ;; One step of xorshift64.
      (func (export "xorshift64") (param $x i64) (result i64)
        (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
        (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
        (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))

      ;; Shared xors feeding several others, and x ^ x through a shared value.
      (func (export "mix") (param $a i32) (param $b i32) (param $c i32) (param $d i32) (result i32)
        (local $h i32) (local $i i32) (local $j i32)
        (local.set $h (i32.xor (local.get $a) (local.get $b)))
        (local.set $i (i32.xor (i32.xor (local.get $h) (local.get $c)) (i32.const 0x5bd1e995)))
        (local.set $j (i32.xor (i32.xor (local.get $h) (local.get $d)) (local.get $i)))
        (i32.add
          (i32.xor (i32.xor (local.get $i) (local.get $j)) (i32.rotl (local.get $h) (i32.const 7)))
          (i32.add (i32.xor (local.get $h) (local.get $h))
                   (i32.mul (i32.xor (local.get $j) (local.get $c)) (i32.const 3)))))
    )
"#;

fn xorshift32(mut x: u32) -> u32 {
    x ^= x << 13;
    x ^= x >> 17;
    x ^ (x << 5)
}

fn xorshift64(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^ (x << 17)
}

fn mix(a: u32, b: u32, c: u32, d: u32) -> u32 {
    let h = a ^ b;
    let i = h ^ c ^ 0x5bd1_e995;
    let j = h ^ d ^ i;
    (i ^ j ^ h.rotate_left(7)).wrapping_add((j ^ c).wrapping_mul(3))
}

#[test]
fn shared_xor_chains_compute_what_rust_does() {
    let mut config = Config::new();
    config.verify_compiled_code(true);
    let engine = Engine::new(&config).unwrap();
    let module = Module::new(&engine, GUEST).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = Linker::<()>::new(&engine)
        .instantiate(&mut store, &module)
        .unwrap();
    let run32 = instance
        .get_typed_func::<(i32, i32), i32>(&store, "xorshift32")
        .unwrap();
    let step64 = instance
        .get_typed_func::<i64, i64>(&store, "xorshift64")
        .unwrap();
    let mix_wasm = instance
        .get_typed_func::<(i32, i32, i32, i32), i32>(&store, "mix")
        .unwrap();

    let mut seed = 2_463_534_242u32;
    for steps in 1..200 {
        let want = (0..2 * steps).fold(seed, |x, _| xorshift32(x));
        let got = run32.call(&mut store, (seed as i32, steps)).unwrap() as u32;
        assert_eq!(got, want, "xorshift32 from {seed:#x}, {steps} double steps");
        seed = want;
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..1000 {
        let want = xorshift64(state);
        assert_eq!(step64.call(&mut store, state as i64).unwrap() as u64, want);
        state = want;
    }
    for _ in 0..1000 {
        let [a, b, c, d] = [0, 1, 2, 3].map(|k| (state >> (16 * k)) as u32);
        let got = mix_wasm.call(&mut store, (a as i32, b as i32, c as i32, d as i32));
        assert_eq!(
            got.unwrap() as u32,
            mix(a, b, c, d),
            "mix({a}, {b}, {c}, {d})"
        );
        state = xorshift64(state);
    }
}
