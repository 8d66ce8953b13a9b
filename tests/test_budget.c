/* test_budget.c: the byte budget of calls in flight (budget.h). A charge fits the limit or changes
 * nothing; forced charges always count; releases give back exactly; the peak and the refusals are
 * counted; many threads charging and releasing at once never let a fitting charge exceed the limit
 * and leave nothing behind. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "books/budget.h"

static void test_charges_fit_or_change_nothing(void **state)
{
    (void)state;
    struct budget b;
    budget_init(&b, 100);
    assert_true(budget_try_charge(&b, 60));
    assert_int_equal(budget_headroom(&b), 40);
    assert_false(budget_try_charge(&b, 41));
    assert_int_equal(budget_used(&b), 60);
    assert_true(budget_try_charge(&b, 40));
    assert_int_equal(budget_headroom(&b), 0);
    assert_false(budget_try_charge(&b, 1));
    assert_true(budget_try_charge(&b, 0));
    assert_false(budget_try_charge(&b, SIZE_MAX)); /* no overflow into "fits" */
    budget_force_charge(&b, 30);                    /* held memory counts, whatever the limit */
    assert_int_equal(budget_used(&b), 130);
    assert_int_equal(budget_headroom(&b), 0);
    assert_int_equal(budget_peak(&b), 130);
    budget_release(&b, 130);
    assert_int_equal(budget_used(&b), 0);
    assert_int_equal(budget_peak(&b), 130);
    assert_int_equal(budget_refused(&b), 3);
}

static void test_no_limit(void **state)
{
    (void)state;
    struct budget b;
    budget_init(&b, 0);
    assert_true(budget_try_charge(&b, SIZE_MAX / 2));
    assert_int_equal(budget_headroom(&b), SIZE_MAX);
    budget_release(&b, SIZE_MAX / 2);
    assert_int_equal(budget_used(&b), 0);
}

enum { THREADS = 8, ROUNDS = 20000, LIMIT = 1000 };
static struct budget shared;
static _Atomic size_t over; /* charges seen to push `used` past the limit */

static void *churn(void *arg)
{
    size_t n = (size_t)(uintptr_t)arg;
    for (int i = 0; i < ROUNDS; i++) {
        if (budget_try_charge(&shared, n)) {
            if (budget_used(&shared) > LIMIT)
                atomic_fetch_add(&over, 1);
            budget_release(&shared, n);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t t[THREADS];
    budget_init(&shared, LIMIT);
    for (uintptr_t i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn, (void *)(100 + i * 50)), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&over), 0);
    assert_int_equal(budget_used(&shared), 0);
    assert_true(budget_peak(&shared) <= LIMIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_charges_fit_or_change_nothing),
        cmocka_unit_test(test_no_limit),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
