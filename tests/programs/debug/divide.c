/* A fixture for source-line backtraces: built with -g, no libc, so the
 * module has DWARF (.debug_line) and no imports. `compute` divides by its
 * argument; calling it with 0 traps inside `divide`. */

__attribute__((noinline)) int divide(int a, int b) {
    return a / b;
}

__attribute__((noinline)) int middle(int x) {
    return divide(100, x) + 1;
}

__attribute__((export_name("compute"))) int compute(int x) {
    return middle(x) * 2;
}
