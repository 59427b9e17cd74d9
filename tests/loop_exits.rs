//! The compiler's loop-closing pass (`jit/src/loop_exits.rs`) must not
//! change what programs compute. These guests keep many values live in a
//! loop (so the default engine closes it) and use them after the loop in
//! several ways: straight-line code, calls that clobber every register, a
//! second loop, the next iteration of an enclosing loop, recursion. Every
//! result is compared with the same computation in Rust, under the default
//! engine and under one that closes every loop it can.

use backstop::{Config, Engine, Linker, Module, Store};

/// Ten values rotate through a loop, as SHA-256's working variables do.
const GUEST: &str = r#"
    (module
      (func $mix (param i32 i32) (result i32)
        (i32.add (i32.mul (local.get 0) (i32.const 31)) (local.get 1)))

      ;; n rounds over ten values; then straight-line uses and calls.
      (func $rounds (export "rounds") (param $n i32) (result i32)
        (local $a i32) (local $b i32) (local $c i32) (local $d i32) (local $e i32)
        (local $f i32) (local $g i32) (local $h i32) (local $i i32) (local $j i32)
        (local $k i32) (local $t i32)
        (local.set $a (i32.const 1)) (local.set $b (i32.const 2)) (local.set $c (i32.const 3))
        (local.set $d (i32.const 4)) (local.set $e (i32.const 5)) (local.set $f (i32.const 6))
        (local.set $g (i32.const 7)) (local.set $h (i32.const 8)) (local.set $i (i32.const 9))
        (local.set $j (i32.const 10))
        (loop $l
          (local.set $t (i32.add (i32.xor (local.get $a) (i32.rotl (local.get $e) (i32.const 7)))
                                 (i32.add (local.get $k) (local.get $j))))
          (local.set $j (local.get $i)) (local.set $i (local.get $h)) (local.set $h (local.get $g))
          (local.set $g (local.get $f)) (local.set $f (i32.add (local.get $e) (local.get $t)))
          (local.set $e (local.get $d)) (local.set $d (local.get $c)) (local.set $c (local.get $b))
          (local.set $b (local.get $a)) (local.set $a (i32.mul (local.get $t) (i32.const 3)))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $k) (local.get $n))))
        (call $mix (call $mix (call $mix (call $mix (call $mix (local.get $a) (local.get $b))
                                                    (call $mix (local.get $c) (local.get $d)))
                                         (call $mix (local.get $e) (local.get $f)))
                              (call $mix (local.get $g) (local.get $h)))
                   (call $mix (local.get $i) (i32.add (local.get $j) (local.get $k)))))

      ;; The rounds loop, then a second loop that reads its results.
      (func (export "then_loop") (param $n i32) (result i32)
        (local $a i32) (local $b i32) (local $c i32) (local $d i32) (local $e i32)
        (local $f i32) (local $g i32) (local $h i32) (local $i i32) (local $j i32)
        (local $k i32) (local $s i32)
        (loop $l
          (local.set $j (local.get $i)) (local.set $i (local.get $h))
          (local.set $h (i32.add (local.get $g) (local.get $k)))
          (local.set $g (local.get $f)) (local.set $f (local.get $e))
          (local.set $e (i32.xor (local.get $d) (local.get $k)))
          (local.set $d (local.get $c)) (local.set $c (local.get $b))
          (local.set $b (local.get $a)) (local.set $a (i32.add (local.get $j) (i32.const 5)))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $k) (local.get $n))))
        (local.set $k (i32.const 0))
        (loop $m
          (local.set $s (i32.add (local.get $s)
            (i32.mul (i32.add (local.get $a) (local.get $e)) (i32.add (local.get $h) (local.get $k)))))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $m (i32.lt_u (local.get $k) (i32.const 100))))
        (i32.add (local.get $s) (i32.add (local.get $j) (local.get $c))))

      ;; An enclosing loop: each outer round runs the inner rounds and
      ;; feeds their results into the next outer round.
      (func (export "nested") (param $n i32) (result i32)
        (local $acc i32) (local $o i32)
        (loop $outer
          (local.set $acc (i32.add (local.get $acc) (call $rounds (i32.add (local.get $n) (local.get $o)))))
          (local.set $acc (i32.rotl (local.get $acc) (i32.const 5)))
          (local.set $o (i32.add (local.get $o) (i32.const 1)))
          (br_if $outer (i32.lt_u (local.get $o) (i32.const 8))))
        (local.get $acc))

      ;; Recursion around the loop: the closed values cross a call to itself.
      (func $recursive (export "recursive") (param $depth i32) (result i32)
        (if (result i32) (i32.eqz (local.get $depth))
          (then (call $rounds (i32.const 3)))
          (else (i32.add (call $rounds (local.get $depth))
                         (call $recursive (i32.sub (local.get $depth) (i32.const 1))))))))
"#;

fn mix(a: i32, b: i32) -> i32 {
    a.wrapping_mul(31).wrapping_add(b)
}

fn rounds(n: i32) -> i32 {
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h, mut i, mut j] =
        [1i32, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    let mut k = 0i32;
    loop {
        let t = (a ^ e.rotate_left(7)).wrapping_add(k.wrapping_add(j));
        j = i;
        i = h;
        h = g;
        g = f;
        f = e.wrapping_add(t);
        e = d;
        d = c;
        c = b;
        b = a;
        a = t.wrapping_mul(3);
        k = k.wrapping_add(1);
        if (k as u32) >= (n as u32) {
            break;
        }
    }
    mix(
        mix(mix(mix(mix(a, b), mix(c, d)), mix(e, f)), mix(g, h)),
        mix(i, j.wrapping_add(k)),
    )
}

fn then_loop(n: i32) -> i32 {
    let (mut a, mut b, mut c, mut d, mut e) = (0i32, 0i32, 0i32, 0i32, 0i32);
    let (mut f, mut g, mut h, mut i) = (0i32, 0i32, 0i32, 0i32);
    let mut k = 0i32;
    let mut j;
    loop {
        j = i;
        i = h;
        h = g.wrapping_add(k);
        g = f;
        f = e;
        e = d ^ k;
        d = c;
        c = b;
        b = a;
        a = j.wrapping_add(5);
        k += 1;
        if (k as u32) >= (n as u32) {
            break;
        }
    }
    let _ = (b, f, g, i);
    let mut s = 0i32;
    for k in 0..100 {
        s = s.wrapping_add(a.wrapping_add(e).wrapping_mul(h.wrapping_add(k)));
    }
    s.wrapping_add(j.wrapping_add(c))
}

fn nested(n: i32) -> i32 {
    let mut acc = 0i32;
    for o in 0..8 {
        acc = acc.wrapping_add(rounds(n.wrapping_add(o)));
        acc = acc.rotate_left(5);
    }
    acc
}

fn recursive(depth: i32) -> i32 {
    if depth == 0 {
        rounds(3)
    } else {
        rounds(depth).wrapping_add(recursive(depth - 1))
    }
}

fn check(engine: &Engine) {
    let module = Module::new(engine, GUEST).unwrap();
    let mut store = Store::new(engine, ());
    let instance = Linker::<()>::new(engine)
        .instantiate(&mut store, &module)
        .unwrap();
    for n in [1, 2, 3, 7, 64, 1000] {
        assert_eq!(
            instance.call::<i32, i32>(&mut store, "rounds", n).unwrap(),
            rounds(n),
            "rounds({n})"
        );
        assert_eq!(
            instance
                .call::<i32, i32>(&mut store, "then_loop", n)
                .unwrap(),
            then_loop(n),
            "then_loop({n})"
        );
        assert_eq!(
            instance.call::<i32, i32>(&mut store, "nested", n).unwrap(),
            nested(n),
            "nested({n})"
        );
    }
    for depth in [0, 1, 5, 40] {
        assert_eq!(
            instance
                .call::<i32, i32>(&mut store, "recursive", depth)
                .unwrap(),
            recursive(depth),
            "recursive({depth})"
        );
    }
}

#[test]
fn loops_under_pressure_compute_the_same_when_closed() {
    check(&Engine::default());
}

#[test]
fn every_loop_closed_computes_the_same() {
    let mut config = Config::new();
    config.loop_closing_threshold(0).verify_compiled_code(true);
    check(&Engine::new(&config).unwrap());
}

#[test]
fn no_loop_closed_computes_the_same() {
    let mut config = Config::new();
    config.loop_closing_threshold(usize::MAX);
    check(&Engine::new(&config).unwrap());
}
