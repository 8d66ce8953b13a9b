/* budget.h: a byte budget that any thread charges and releases: what the server lets calls in
 * flight hold (BOOKS_MEMORY_LIMIT_MB's share for them, config.h). A charge either fits the limit
 * or changes nothing; accounting that must happen whatever the limit says (bytes already
 * allocated) is forced. The budget allocates nothing itself and knows nothing of gRPC.
 *
 * Thread safety: every function may be called from any thread at once (atomics); budget_init()
 * before the budget is shared. */
#ifndef BOOKS_BUDGET_H
#define BOOKS_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct budget {
    _Atomic size_t used;      /* bytes charged now */
    size_t limit;             /* bytes; 0: no limit (every try succeeds) */
    _Atomic size_t peak;      /* most bytes ever charged at once */
    _Atomic uint64_t refused; /* budget_try_charge() calls that did not fit */
};

/* Prepares `b` with a limit of `limit_bytes` (0: unlimited). */
void budget_init(struct budget *b, size_t limit_bytes);

/* Charges n bytes if used + n stays within the limit: true (charged) or false (nothing changed,
 * counted in `refused`). n == 0 always fits. */
bool budget_try_charge(struct budget *b, size_t n);

/* Charges n bytes whatever the limit (for memory that is already allocated and held). */
void budget_force_charge(struct budget *b, size_t n);

/* Gives back n bytes charged before (by either form). Never more than was charged. */
void budget_release(struct budget *b, size_t n);

/* Bytes that can still be charged before the limit (SIZE_MAX without one); a snapshot. */
size_t budget_headroom(const struct budget *b);

/* Snapshots of the counters. */
size_t budget_used(const struct budget *b);
size_t budget_peak(const struct budget *b);
uint64_t budget_refused(const struct budget *b);

#endif
