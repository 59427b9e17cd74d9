/* Dereferences a wild pointer: the access lands past the end of linear
 * memory (the Wasm analogue of a null dereference faulting), so the guest
 * traps with an out-of-bounds memory access. */
#include <stdio.h>

int main(void) {
    printf("about to dereference a bad pointer\n");
    fflush(stdout);
    volatile int *bad = (volatile int *)0xfffffff0u;
    return *bad;
}
