;; The shape of a false trap of wasmi 2.0.0: `v128.store16_lane` with a
;; large static offset that still ends inside memory. It must store, not
;; trap; wasmi 1.1.0 (the pinned oracle) and Backstop agree. The second
;; store is one byte past the end and must trap on both.
(module
  (memory (export "memory") 1 1)
  (func (export "store_at_the_end")
    (v128.store16_lane offset=65534 7 (i32.const 0)
      (v128.const i16x8 1 2 3 4 5 6 7 0x1234)))
  (func (export "store_past_the_end")
    (v128.store16_lane offset=65535 7 (i32.const 0)
      (v128.const i16x8 1 2 3 4 5 6 7 0x1234))))
