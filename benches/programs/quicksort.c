// Quicksort (our own: median-of-three, Hoare-style partition, insertion
// sort below 16 elements, recursion on the smaller side) of 6 million
// pseudo-random 32-bit ints. Checks the order and prints a checksum.
// A WASI command for benches/programs.rs.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define N 6000000

#include "phase_end.h"

static void insertion(int32_t *a, long lo, long hi) {
    for (long i = lo + 1; i <= hi; i++) {
        int32_t v = a[i];
        long j = i - 1;
        while (j >= lo && a[j] > v) { a[j + 1] = a[j]; j--; }
        a[j + 1] = v;
    }
}

static void swap(int32_t *a, long i, long j) { int32_t t = a[i]; a[i] = a[j]; a[j] = t; }

static void quicksort(int32_t *a, long lo, long hi) {
    while (hi - lo > 16) {
        long mid = lo + (hi - lo) / 2;
        if (a[mid] < a[lo]) swap(a, mid, lo);
        if (a[hi] < a[lo]) swap(a, hi, lo);
        if (a[hi] < a[mid]) swap(a, hi, mid);
        int32_t pivot = a[mid];
        long i = lo - 1, j = hi + 1;
        for (;;) {
            do i++; while (a[i] < pivot);
            do j--; while (a[j] > pivot);
            if (i >= j) break;
            swap(a, i, j);
        }
        // [lo, j] <= pivot <= [j+1, hi]; recurse on the smaller side.
        if (j - lo < hi - j) { quicksort(a, lo, j); lo = j + 1; }
        else { quicksort(a, j + 1, hi); hi = j; }
    }
    insertion(a, lo, hi);
}

int main(void) {
    int32_t *a = malloc(N * sizeof *a);
    if (!a) return 1;
    uint32_t x = 2463534242u;
    for (long i = 0; i < N; i++) {
        x ^= x << 13; x ^= x >> 17; x ^= x << 5;
        a[i] = (int32_t)x;
    }
    PHASE_END(1, a[5]);  // filled
    quicksort(a, 0, N - 1);
    PHASE_END(2, a[5]);  // sorted
    uint64_t sum = 0;
    for (long i = 0; i < N; i++) {
        if (i && a[i - 1] > a[i]) { printf("not sorted at %ld\n", i); return 1; }
        sum = sum * 31 + (uint32_t)a[i];
    }
    printf("quicksort %d ints: min %d max %d checksum %016llx\n", N, a[0], a[N - 1],
           (unsigned long long)sum);
    free(a);
    return 0;
}
