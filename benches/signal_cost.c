// What one fault costs to deliver on this machine, per faulting instruction.
// Backstop picks its trap instruction from these figures (see
// jit/src/lib.rs, privileged_trap_instruction, and BENCHMARKS.md).
//
//   cc -O2 benches/signal_cost.c -o /tmp/signal_cost && /tmp/signal_cost
//
// The handler skips the faulting instruction, so each loop iteration is one
// fault, one signal delivery and one sigreturn.
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

static int instruction_length;

static void skip_instruction(int signal, siginfo_t *info, void *context) {
    (void)signal;
    (void)info;
    ((ucontext_t *)context)->uc_mcontext.gregs[REG_RIP] += instruction_length;
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

#define MEASURE(name, length, instruction)                                   \
    do {                                                                     \
        instruction_length = length;                                         \
        double start = now_ns();                                             \
        for (int i = 0; i < ROUNDS; i++) __asm__ volatile(instruction);      \
        printf("%-28s %6.0f ns\n", name, (now_ns() - start) / ROUNDS);       \
    } while (0)

enum { ROUNDS = 200000 };

int main(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = skip_instruction;
    action.sa_flags = SA_SIGINFO;
    sigaction(SIGILL, &action, 0);
    sigaction(SIGSEGV, &action, 0);
    sigaction(SIGTRAP, &action, 0);
    for (int run = 0; run < 3; run++) {
        MEASURE("ud2 (#UD, SIGILL)", 2, "ud2");
        MEASURE("hlt (#GP, SIGSEGV)", 1, "hlt");
        MEASURE("int3 (#BP, SIGTRAP)", 0, "int3");
        MEASURE("load from 0 (#PF, SIGSEGV)", 2, "movl (%%rax), %%eax" ::"a"(0));
    }
    return 0;
}
