/* Exits with status 3 through proc_exit, after printing. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    printf("exiting with 3\n");
    fflush(stdout);
    exit(3);
}
