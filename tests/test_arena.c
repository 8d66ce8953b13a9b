/* test_arena.c: the per-call bump allocator (include/books/arena.h) as its callers rely on it:
 * every pointer aligned for any type, allocations never overlapping and keeping their bytes until
 * the reset, the caller's inline buffer used before any heap memory, heap chunks for what does not
 * fit (a big allocation apart, small ones still filling the current chunk), arena_reset() giving
 * the heap back and the buffer for reuse, n == 0, sizes whose rounding or header would overflow,
 * and arena_strndup(). Leaks (a chunk a reset forgot) are caught by running this under valgrind or
 * ASan, as scripts/test.sh does. */
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "books/arena.h"

#define ALIGN alignof(max_align_t)

/* A caller's inline buffer, aligned like max_align_t so tests can misalign it on purpose. */
struct inline_buf {
    alignas(max_align_t) unsigned char bytes[1024];
};

static int aligned(const void *p)
{
    return ((uintptr_t)p % ALIGN) == 0;
}

static int inside(const void *p, size_t n, const void *lo, size_t len)
{
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)lo;
    return a >= b && a + n <= b + len;
}

/* A deterministic generator, so a failure is reproducible. */
static uint32_t rng_state = 0x2545F491u;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* ---- alignment and integrity ----------------------------------------------------------------- */

/* Every size from 0 up past a heap chunk and then random ones up to 64 KiB: each block is aligned
 * for max_align_t (written through such a pointer, which UBSan checks), and filled with its own
 * byte; at the end every block still holds its byte, so no two blocks overlap. */
static void test_every_allocation_is_aligned_and_distinct(void **state)
{
    (void)state;
    struct inline_buf b;
    struct arena a;
    enum { N = 600 };
    unsigned char *blocks[N];
    size_t sizes[N];

    arena_init(&a, b.bytes, sizeof b.bytes);
    for (size_t i = 0; i < N; i++) {
        sizes[i] = i < 300 ? i : rnd() % (i % 50 == 0 ? 65536 : 300);
        blocks[i] = arena_alloc(&a, sizes[i]);
        assert_non_null(blocks[i]);
        assert_true(aligned(blocks[i]));
        if (sizes[i] >= sizeof(max_align_t)) {
            max_align_t v;
            memset(&v, (int)i, sizeof v);
            *(max_align_t *)(void *)blocks[i] = v;
        }
        memset(blocks[i], (int)(i & 0xff), sizes[i]);
    }
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < sizes[i]; j++)
            if (blocks[i][j] != (unsigned char)(i & 0xff))
                fail_msg("block %zu (%zu bytes) was overwritten at byte %zu", i, sizes[i], j);
    arena_cleanup(&a);
}

/* A buffer that does not start on an aligned address: the arena skips to the first aligned byte and
 * never hands out anything outside the buffer. */
static void test_misaligned_buffer(void **state)
{
    (void)state;
    struct inline_buf b;
    for (size_t off = 1; off < ALIGN; off++) {
        struct arena a;
        unsigned char *start = b.bytes + off;
        size_t cap = 5 * ALIGN;
        arena_init(&a, start, cap);
        /* 4 aligned blocks of ALIGN bytes fit in 5*ALIGN bytes starting off bytes late. */
        for (int k = 0; k < 4; k++) {
            unsigned char *p = arena_alloc(&a, ALIGN);
            assert_non_null(p);
            assert_true(aligned(p));
            assert_true(inside(p, ALIGN, start, cap));
        }
        /* A fifth would need bytes past the buffer's end: it comes from the heap. */
        unsigned char *p = arena_alloc(&a, ALIGN);
        assert_non_null(p);
        assert_true(aligned(p));
        assert_false(inside(p, 1, b.bytes, sizeof b.bytes));
        arena_cleanup(&a);
    }
}

/* A buffer too small to hold one aligned byte once aligned: nothing is taken from it. */
static void test_buffer_too_small_to_use(void **state)
{
    (void)state;
    struct inline_buf b;
    struct arena a;
    arena_init(&a, b.bytes + 1, ALIGN - 2);
    unsigned char *p = arena_alloc(&a, 1);
    assert_non_null(p);
    assert_true(aligned(p));
    assert_false(inside(p, 1, b.bytes, sizeof b.bytes));
    *p = 1;
    arena_cleanup(&a);
}

/* ---- inline buffer first, then heap chunks --------------------------------------------------- */

static void test_inline_buffer_is_used_first(void **state)
{
    (void)state;
    struct inline_buf b;
    struct arena a;
    const size_t cap = 8 * ALIGN;

    arena_init(&a, b.bytes, cap);
    /* Blocks that fit come from the buffer, back to back: an N-byte buffer holds N / ALIGN blocks
     * of ALIGN bytes, and no heap chunk exists yet. */
    unsigned char *prev = NULL;
    for (size_t k = 0; k < cap / ALIGN; k++) {
        unsigned char *p = arena_alloc(&a, ALIGN);
        assert_true(inside(p, ALIGN, b.bytes, cap));
        if (prev)
            assert_ptr_equal(p, prev + ALIGN);
        prev = p;
    }
    assert_null(a.chunks);
    /* The buffer is full: the next block comes from the heap. */
    unsigned char *heap = arena_alloc(&a, 1);
    assert_non_null(heap);
    assert_false(inside(heap, 1, b.bytes, sizeof b.bytes));
    assert_non_null(a.chunks);
    arena_cleanup(&a);
}

/* A block bigger than what is left of the buffer goes to the heap without wasting the buffer:
 * a later small block still fits in the buffer's remainder. */
static void test_what_does_not_fit_goes_to_the_heap(void **state)
{
    (void)state;
    struct inline_buf b;
    struct arena a;
    arena_init(&a, b.bytes, 4 * ALIGN);

    unsigned char *first = arena_alloc(&a, ALIGN);
    assert_true(inside(first, ALIGN, b.bytes, 4 * ALIGN));
    unsigned char *big = arena_alloc(&a, 4 * ALIGN); /* 3*ALIGN left: does not fit */
    assert_non_null(big);
    assert_false(inside(big, 1, b.bytes, sizeof b.bytes));
    memset(big, 0xAB, 4 * ALIGN);
    unsigned char *small = arena_alloc(&a, ALIGN);
    assert_ptr_equal(small, first + ALIGN);
    arena_cleanup(&a);
}

/* A big block gets a chunk of its own; the small blocks around it keep filling the chunk they were
 * filling, so one big block in a call does not strand the rest of a chunk. */
static void test_big_allocation_gets_its_own_chunk(void **state)
{
    (void)state;
    struct inline_buf b;
    struct arena a;
    arena_init(&a, b.bytes, 0); /* no inline room: everything from the heap */

    /* Small blocks share a chunk, back to back: each takes its size rounded up to the alignment. */
    const size_t step = (24 + ALIGN - 1) / ALIGN * ALIGN;
    unsigned char *s1 = arena_alloc(&a, 24);
    unsigned char *s2 = arena_alloc(&a, 24);
    assert_ptr_equal(s2, s1 + step);

    for (size_t big_size = 64 * 1024; big_size <= 1024 * 1024; big_size *= 4) {
        unsigned char *big = arena_alloc(&a, big_size);
        assert_non_null(big);
        assert_true(aligned(big));
        memset(big, 0x5A, big_size); /* every byte usable (valgrind/ASan check the bounds) */
        /* Not inside the small blocks' chunk region. */
        assert_false(big <= s2 && s2 < big + big_size);
        unsigned char *s3 = arena_alloc(&a, 24);
        assert_ptr_equal(s3, s2 + step);
        s2 = s3;
    }
    arena_cleanup(&a);
}

/* ---- reset and cleanup ----------------------------------------------------------------------- */

static void test_reset_frees_chunks_and_reuses_the_buffer(void **state)
{
    (void)state;
    struct inline_buf b;
    struct arena a;
    arena_init(&a, b.bytes, 2 * ALIGN);

    unsigned char *first = arena_alloc(&a, ALIGN);
    for (int round = 0; round < 3; round++) {
        /* Fill the buffer, then spill into several heap chunks, a big one among them. */
        for (int k = 0; k < 200; k++)
            assert_non_null(arena_alloc(&a, 100));
        assert_non_null(arena_alloc(&a, 100000));
        assert_non_null(a.chunks);

        /* The heap chunks go back to the allocator (a leak shows under valgrind/ASan: no
         * cleanup follows the last reset); the inline buffer is handed out again from its start. */
        arena_reset(&a);
        assert_null(a.chunks);
        assert_ptr_equal(arena_alloc(&a, ALIGN), first);
    }
    arena_reset(&a);
}

static void test_cleanup(void **state)
{
    (void)state;
    struct inline_buf b;
    struct arena a;
    arena_cleanup(NULL); /* a no-op, like every destructor here */

    arena_init(&a, b.bytes, sizeof b.bytes);
    arena_cleanup(&a); /* nothing allocated */

    arena_init(&a, b.bytes, 64);
    assert_non_null(arena_alloc(&a, 10000));
    assert_non_null(arena_alloc(&a, 10));
    arena_cleanup(&a); /* frees the chunks: a leak shows under valgrind/ASan */
    /* Re-initialised, the arena works again. */
    arena_init(&a, b.bytes, 64);
    assert_true(inside(arena_alloc(&a, 8), 8, b.bytes, 64));
    arena_cleanup(&a);
}

/* ---- edge sizes ------------------------------------------------------------------------------ */

static void test_zero_bytes(void **state)
{
    (void)state;
    struct inline_buf b;
    struct arena a;
    arena_init(&a, b.bytes, sizeof b.bytes);
    void *p = arena_alloc(&a, 0);
    assert_non_null(p);
    assert_true(aligned(p));
    /* With no room in the buffer, n == 0 still gives a valid pointer (from the heap). */
    arena_init(&a, b.bytes, 0);
    p = arena_alloc(&a, 0);
    assert_non_null(p);
    assert_true(aligned(p));
    arena_cleanup(&a);
}

/* Sizes whose rounding up to the alignment, or whose chunk header, would wrap around SIZE_MAX must
 * fail with NULL (BOOKS_ENOMEM for the caller), never hand out a small block for a huge request. */
static void test_huge_sizes_overflow_to_null(void **state)
{
    (void)state;
    struct inline_buf b;
    struct arena a;
    const size_t huge[] = {
        SIZE_MAX,
        SIZE_MAX - 1,
        SIZE_MAX - ALIGN + 2,      /* rounding up wraps */
        SIZE_MAX - ALIGN + 1,      /* rounds to exactly 0 mod 2^64 */
        (SIZE_MAX & ~(ALIGN - 1)), /* aligned: adding the chunk header would wrap */
    };
    arena_init(&a, b.bytes, sizeof b.bytes);
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++)
        if (arena_alloc(&a, huge[i]) != NULL)
            fail_msg("arena_alloc(%zu) did not fail", huge[i]);
    /* The failures left the arena usable and the buffer untouched. */
    void *p = arena_alloc(&a, 16);
    assert_ptr_equal(p, b.bytes);
    arena_cleanup(&a);
}

/* ---- arena_strndup --------------------------------------------------------------------------- */

static void test_strndup(void **state)
{
    (void)state;
    struct inline_buf b;
    struct arena a;
    arena_init(&a, b.bytes, 64);

    char *s = arena_strndup(&a, "abcdef", 3); /* a prefix: exactly len bytes, then NUL */
    assert_string_equal(s, "abc");
    assert_true(inside(s, 4, b.bytes, 64));

    char *e = arena_strndup(&a, "xyz", 0);
    assert_non_null(e);
    assert_string_equal(e, "");

    /* Bytes are copied as they are, NUL included; the copy does not alias the source. */
    char src[] = {'a', '\0', 'b'};
    char *c = arena_strndup(&a, src, sizeof src);
    assert_memory_equal(c, src, sizeof src);
    assert_int_equal(c[3], '\0');
    src[0] = 'z';
    assert_int_equal(c[0], 'a');

    /* Longer than the buffer: from the heap, whole. */
    enum { LONG = 20000 };
    char *big = malloc(LONG);
    for (size_t i = 0; i < LONG; i++)
        big[i] = (char)('a' + i % 26);
    char *copy = arena_strndup(&a, big, LONG);
    assert_non_null(copy);
    assert_memory_equal(copy, big, LONG);
    assert_int_equal(copy[LONG], '\0');
    free(big);
    /* The earlier copies are intact. */
    assert_string_equal(s, "abc");
    assert_string_equal(e, "");
    arena_cleanup(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_is_aligned_and_distinct),
        cmocka_unit_test(test_misaligned_buffer),
        cmocka_unit_test(test_buffer_too_small_to_use),
        cmocka_unit_test(test_inline_buffer_is_used_first),
        cmocka_unit_test(test_what_does_not_fit_goes_to_the_heap),
        cmocka_unit_test(test_big_allocation_gets_its_own_chunk),
        cmocka_unit_test(test_reset_frees_chunks_and_reuses_the_buffer),
        cmocka_unit_test(test_cleanup),
        cmocka_unit_test(test_zero_bytes),
        cmocka_unit_test(test_huge_sizes_overflow_to_null),
        cmocka_unit_test(test_strndup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
