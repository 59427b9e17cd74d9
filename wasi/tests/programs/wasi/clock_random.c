/* Checks the clocks move forward and random bytes are not all zero. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

int main(void) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (volatile int i = 0; i < 1000000; i++) {
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    long long delta = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
    printf("monotonic clock advanced: %s\n", delta > 0 ? "yes" : "no");
    time_t now = time(NULL);
    printf("realtime after 2020: %s\n", now > 1577836800 ? "yes" : "no");
    unsigned char buf[32] = {0};
    getentropy(buf, sizeof buf);
    int nonzero = 0;
    for (unsigned i = 0; i < sizeof buf; i++) nonzero |= buf[i];
    printf("random bytes: %s\n", nonzero ? "yes" : "no");
    return 0;
}
