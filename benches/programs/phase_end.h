// PHASE_END(n, kept): the end of phase n of a benchmark program, for
// benches/programs/phases.sh. Built with -DSTOP_AFTER=n, the program stops
// there, printing `kept` (a value of the phase's result, so that the work
// is kept). Without STOP_AFTER it is empty. Needs <stdio.h>.
#ifdef STOP_AFTER
#define PHASE_END(n, kept)                                                     \
    do {                                                                       \
        if (STOP_AFTER == (n)) { printf("%d\n", (int)(kept)); return 0; }      \
    } while (0)
#else
#define PHASE_END(n, kept) do { } while (0)
#endif
