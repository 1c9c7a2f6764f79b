// A library preloaded (LD_PRELOAD) into a process to make it see a CPU with a narrower vector unit:
// RIND_CPUID_MASK=avx2 hides AVX-512 (and AVX-VNNI, AMX), =baseline hides AVX, AVX2 and FMA as
// well. Every library in the process then picks the code it would pick on such a CPU: rind's
// kernels, OpenBLAS, oneDNN, ONNX Runtime's MLAS, PyTorch. `rind bench --cpuid-mask` runs each
// engine's rows under it, so that one AVX-512 machine can compare the engines as on an AVX2-only
// one.
//
// How: Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, 0) makes each CPUID instruction of this
// thread, and of the threads it starts, raise SIGSEGV. The handler turns faulting off for a moment,
// executes CPUID, clears the hidden feature bits and steps over the instruction. XCR0 (xgetbv) is
// left alone; the libraries above check CPUID's feature bits too. glibc's own string functions
// chose their code before this library loaded and keep it. Where the CPU or kernel lacks CPUID
// faulting the process exits at once with status 3 and one line on stderr.
#if defined(__x86_64__) && defined(__linux__)
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

enum { KEEP_ALL, HIDE_AVX512, HIDE_AVX };
static int hide = KEEP_ALL;
static struct sigaction previous;

static void clear_features(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
    enum { EAX, EBX, ECX, EDX };
    if (leaf == 7 && subleaf == 0) {
        // AVX512 F, DQ, IFMA, PF, ER, CD, BW, VL; VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ;
        // 4VNNIW, 4FMAPS, VP2INTERSECT, FP16; AMX BF16, TILE, INT8.
        r[EBX] &= ~(1u << 16 | 1u << 17 | 1u << 21 | 1u << 26 | 1u << 27 | 1u << 28 | 1u << 30 | 1u << 31);
        r[ECX] &= ~(1u << 1 | 1u << 6 | 1u << 11 | 1u << 12 | 1u << 14);
        r[EDX] &= ~(1u << 2 | 1u << 3 | 1u << 8 | 1u << 22 | 1u << 23 | 1u << 24 | 1u << 25);
        if (hide == HIDE_AVX) r[EBX] &= ~(1u << 5);   // AVX2
    }
    if (leaf == 7 && subleaf == 1) r[EAX] &= ~(1u << 4 | 1u << 5);   // AVX-VNNI, AVX512_BF16
    if (leaf == 1 && hide == HIDE_AVX) r[ECX] &= ~(1u << 12 | 1u << 28 | 1u << 29);   // FMA, AVX, F16C
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *reg = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)reg[REG_RIP];
    if (ip[0] == 0x0f && ip[1] == 0xa2) {   // CPUID
        uint32_t leaf = (uint32_t)reg[REG_RAX], subleaf = (uint32_t)reg[REG_RCX], r[4];
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
        __cpuid_count(leaf, subleaf, r[0], r[1], r[2], r[3]);
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
        clear_features(leaf, subleaf, r);
        reg[REG_RAX] = r[0]; reg[REG_RBX] = r[1]; reg[REG_RCX] = r[2]; reg[REG_RDX] = r[3];
        reg[REG_RIP] += 2;
        return;
    }
    // A real fault: hand it to whatever handled SIGSEGV before, or die of it as usual.
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction) { previous.sa_sigaction(sig, info, context); return; }
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
        return;
    }
    signal(SIGSEGV, SIG_DFL);   // returning re-executes the faulting instruction
}

static void fail(const char *message) {
    write(2, message, strlen(message));
    _exit(3);
}

__attribute__((constructor)) static void start(void) {
    const char *mask = getenv("RIND_CPUID_MASK");
    if (!mask || !*mask) return;
    if (strcmp(mask, "avx2") == 0) hide = HIDE_AVX512;
    else if (strcmp(mask, "baseline") == 0) hide = HIDE_AVX;
    else fail("RIND_CPUID_MASK: must be avx2 or baseline\n");
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    sigaction(SIGSEGV, &action, &previous);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0)
        fail("RIND_CPUID_MASK: this CPU or kernel has no CPUID faulting (arch_prctl ARCH_SET_CPUID)\n");
}
#endif
