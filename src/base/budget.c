/* budget.c: the byte budget (budget.h): one atomic counter, compare-and-swap for the charges that
 * must respect the limit, plain adds for the rest. */
#include "books/budget.h"

static void note_peak(struct budget *b, size_t now)
{
    size_t peak = atomic_load_explicit(&b->peak, memory_order_relaxed);
    while (now > peak && !atomic_compare_exchange_weak_explicit(
                             &b->peak, &peak, now, memory_order_relaxed, memory_order_relaxed))
        ;
}

void budget_init(struct budget *b, size_t limit_bytes)
{
    atomic_init(&b->used, 0);
    atomic_init(&b->peak, 0);
    atomic_init(&b->refused, 0);
    b->limit = limit_bytes;
}

bool budget_try_charge(struct budget *b, size_t n)
{
    size_t used = atomic_load_explicit(&b->used, memory_order_relaxed);
    for (;;) {
        if (b->limit && (n > b->limit || used > b->limit - n)) {
            atomic_fetch_add_explicit(&b->refused, 1, memory_order_relaxed);
            return false;
        }
        if (atomic_compare_exchange_weak_explicit(&b->used, &used, used + n, memory_order_relaxed,
                                                  memory_order_relaxed))
            break;
    }
    note_peak(b, used + n);
    return true;
}

void budget_force_charge(struct budget *b, size_t n)
{
    note_peak(b, atomic_fetch_add_explicit(&b->used, n, memory_order_relaxed) + n);
}

void budget_release(struct budget *b, size_t n)
{
    atomic_fetch_sub_explicit(&b->used, n, memory_order_relaxed);
}

size_t budget_headroom(const struct budget *b)
{
    size_t used = atomic_load_explicit(&b->used, memory_order_relaxed);
    if (!b->limit)
        return SIZE_MAX;
    return used >= b->limit ? 0 : b->limit - used;
}

size_t budget_used(const struct budget *b)
{
    return atomic_load_explicit(&b->used, memory_order_relaxed);
}

size_t budget_peak(const struct budget *b)
{
    return atomic_load_explicit(&b->peak, memory_order_relaxed);
}

uint64_t budget_refused(const struct budget *b)
{
    return atomic_load_explicit(&b->refused, memory_order_relaxed);
}
