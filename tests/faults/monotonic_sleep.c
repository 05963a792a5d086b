/*
 * Preloaded before libfaketime by the fault tier's clock test (tests/faults/test_host_faults.py):
 * sleeps on any clock but CLOCK_REALTIME go straight to the kernel.
 *
 * Why: libfaketime 0.9.10 (Debian's) shifts the deadline of an absolute
 * clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ...) by the faked wall-clock offset even
 * with FAKETIME_DONT_FAKE_MONOTONIC=1, so the kernel gets a nonsense deadline and answers
 * EINVAL; Python >= 3.11 sleeps exactly that way (time.sleep). See
 * https://github.com/wolfcw/libfaketime/issues/426. Wall-clock sleeps still go to libfaketime.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef int (*clock_nanosleep_fn)(clockid_t, int, const struct timespec *, struct timespec *);

int clock_nanosleep(clockid_t clock_id, int flags, const struct timespec *request,
                    struct timespec *remain) {
    static clock_nanosleep_fn next;
    if (clock_id != CLOCK_REALTIME) {
        /* clock_nanosleep returns the error number; the raw syscall sets errno. */
        return syscall(SYS_clock_nanosleep, clock_id, flags, request, remain) == -1 ? errno : 0;
    }
    if (next == NULL) {
        next = (clock_nanosleep_fn)dlsym(RTLD_NEXT, "clock_nanosleep");
    }
    return next(clock_id, flags, request, remain);
}
