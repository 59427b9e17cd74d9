;; Found by `backstop-fuzz campaign --target differential --seed 2`, case
;; 3177, reduced by hand. An element segment that does not fit its table
;; at instantiation: Backstop traps TableOutOfBounds (as the spec says);
;; wasmi 1.1.0 returns an instantiation error "out of bounds table access"
;; that is not a trap. The oracle side now reads that error as the trap it
;; is; this case checks that it does, and that the two still agree.
(module
  (table (export "t") 1 10 funcref)
  (func $f)
  (elem (i32.const 4293003284) $f))
