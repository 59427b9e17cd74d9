;; The shape of a wrong result of wasmi 2.0.0 (a `select` whose condition is
;; an `eqz`/`ne` of a loop variable, inside the loop), the reason the oracle
;; is pinned at 1.1.0, which agrees with Backstop here. If the pin moves to
;; a wasmi that gets this wrong, this case fails.
(module
  (func (export "select_in_loop") (param $n i32) (result i32)
    (local $acc i32)
    (loop $again
      (local.set $acc
        (i32.add (local.get $acc)
          (select (i32.const 7) (i32.const 100) (i32.eqz (i32.and (local.get $n) (i32.const 1))))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $again (i32.ne (local.get $n) (i32.const -9))))
    (local.get $acc)))
