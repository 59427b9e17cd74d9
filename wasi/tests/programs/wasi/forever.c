/* Loops forever (until stopped with --timeout). */
#include <stdio.h>

int main(void) {
    printf("looping forever\n");
    fflush(stdout);
    volatile unsigned long n = 0;
    for (;;) {
        n++;
    }
}
