/* Reads stdin to the end and reports the byte and line counts. */
#include <stdio.h>

int main(void) {
    long bytes = 0, lines = 0;
    int c;
    while ((c = getchar()) != EOF) {
        bytes++;
        if (c == '\n') lines++;
    }
    printf("read %ld bytes, %ld lines\n", bytes, lines);
    return 0;
}
