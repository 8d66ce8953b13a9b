/* grpc_init.c: how every user of gRPC core in this project starts it (rpc.h: rpc_grpc_init): the
 * server, the firestore: store's client, the books CLI. */
#include "books/rpc.h"

#include <dlfcn.h>
#include <grpc/grpc.h>
#include <pthread.h>
#include <string.h>

/* Abseil's mutex deadlock detection. Debian builds abseil without NDEBUG, which leaves it on: each
 * absl::Mutex lock and unlock in gRPC core (its pollers, combiners, call state) then records lock
 * order in a process-wide graph, a measurable share of every call (docs/performance.md). Upstream's release builds have it off. It is a
 * debugging aid for gRPC's developers, not a guard for a server: switched off through abseil's own
 * setter, absl::SetMutexDeadlockDetectionMode(OnDeadlockCycle::kIgnore, which is 0). C cannot
 * include the C++ header, so the function is named by its symbol: a weak reference (resolved when
 * abseil is linked statically, BOOKS_STATIC_GRPC), else looked up in the loaded shared objects,
 * first in Debian's inline namespace (debian3), then without one. Not found (another abseil
 * build): nothing changes. Once per process, before grpc_init() takes its first mutex. */
#define ABSL_SET_DEADLOCK_MODE_DEBIAN                                                              \
    "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE"
extern void absl_set_deadlock_mode_debian(int mode) __asm__(ABSL_SET_DEADLOCK_MODE_DEBIAN)
    __attribute__((weak));

static void absl_deadlock_detection_off(void)
{
    static const char *const names[] = {
        ABSL_SET_DEADLOCK_MODE_DEBIAN,
        "_ZN4absl29SetMutexDeadlockDetectionModeENS_15OnDeadlockCycleE",
    };
    if (absl_set_deadlock_mode_debian) {
        absl_set_deadlock_mode_debian(0);
        return;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *sym = dlsym(RTLD_DEFAULT, names[i]);
        if (sym) {
            void (*set_mode)(int);
            memcpy(&set_mode, &sym, sizeof set_mode); /* object to function pointer: POSIX */
            set_mode(0);
            return;
        }
    }
}

static pthread_once_t absl_once = PTHREAD_ONCE_INIT;

void rpc_grpc_init(void)
{
    pthread_once(&absl_once, absl_deadlock_detection_off);
    grpc_init();
}

