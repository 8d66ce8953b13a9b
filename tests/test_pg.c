/* test_pg.c: the parts of the postgresql: store that need no database: its URI parameters, and
 * the bytes it exchanges for a book's authors. The array literal
 * it sends must keep every author exactly (quotes, backslashes, commas, braces, spaces, the word
 * NULL, empty strings, UTF-8), and the decoder of the binary text[] it reads back must accept what
 * PostgreSQL sends and refuse, without reading past the buffer, anything else: it is data from the
 * network. The wire tests check the same round trip against a real PostgreSQL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "books/error.h"
#include "pg.h"
#include "rows.h"

static void test_literal_quotes_everything(void **state)
{
    (void)state;
    const char *text[] = {"Plain", "", "With \"quotes\"", "back\\slash", "a,b", "{x}", "NULL",
                          "  spaced  ", "\xe6\x9d\x91\xe4\xb8\x8a"};
    size_t n = sizeof text / sizeof text[0];
    struct store_text authors[sizeof text / sizeof text[0]];
    for (size_t i = 0; i < n; i++)
        authors[i] = (struct store_text){text[i], strlen(text[i])};
    char buf[256];
    size_t need = pg_authors_literal_size(authors, n);
    size_t len = pg_authors_literal(authors, n, buf, sizeof buf);
    assert_true(len > 0);
    assert_true(len + 1 <= need);
    assert_string_equal(buf, "{\"Plain\",\"\",\"With \\\"quotes\\\"\",\"back\\\\slash\",\"a,b\","
                             "\"{x}\",\"NULL\",\"  spaced  \",\"\xe6\x9d\x91\xe4\xb8\x8a\"}");
    /* Too small a buffer: refused, not overrun. */
    assert_int_equal(pg_authors_literal(authors, n, buf, need - 1), 0);
    /* No authors: the empty array. */
    assert_int_equal(pg_authors_literal(NULL, 0, buf, sizeof buf), 2);
    assert_string_equal(buf, "{}");
}

/* array_send's layout for a one-dimensional text[]. */
static size_t encode(const char *const *elems, size_t n, uint8_t *out)
{
    size_t o = 0;
#define PUT32(v)                                                                                   \
    do {                                                                                           \
        uint32_t x = (uint32_t)(v);                                                                \
        out[o++] = (uint8_t)(x >> 24);                                                             \
        out[o++] = (uint8_t)(x >> 16);                                                             \
        out[o++] = (uint8_t)(x >> 8);                                                              \
        out[o++] = (uint8_t)x;                                                                     \
    } while (0)
    PUT32(n ? 1 : 0); /* ndim */
    PUT32(0);         /* no NULLs */
    PUT32(PG_TEXT_OID);
    if (n) {
        PUT32(n); /* size */
        PUT32(1); /* lower bound */
    }
    for (size_t i = 0; i < n; i++) {
        PUT32(strlen(elems[i]));
        memcpy(out + o, elems[i], strlen(elems[i]));
        o += strlen(elems[i]);
    }
#undef PUT32
    return o;
}

static void test_decode_round_trip(void **state)
{
    (void)state;
    const char *authors[] = {"A", "", "B \"b\"", "\xf0\x9f\x93\x9a"};
    uint8_t buf[256];
    struct store_text out[8];
    size_t n = 99, len = encode(authors, 4, buf);
    assert_int_equal(pg_decode_text_array(buf, len, out, 8, &n), 0);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(out[i].len, strlen(authors[i]));
        assert_memory_equal(out[i].p, authors[i], out[i].len);
    }
    len = encode(NULL, 0, buf);
    assert_int_equal(pg_decode_text_array(buf, len, out, 8, &n), 0);
    assert_int_equal(n, 0);
}

static void test_decode_refuses_what_we_never_write(void **state)
{
    (void)state;
    const char *authors[] = {"one", "two"};
    uint8_t buf[128], bad[128];
    struct store_text out[8];
    size_t n, len = encode(authors, 2, buf);

    /* Every truncation, in an exact-size heap block (valgrind sees any read past it). */
    for (size_t cut = 0; cut < len; cut++) {
        uint8_t *p = malloc(cut ? cut : 1);
        memcpy(p, buf, cut);
        assert_int_equal(pg_decode_text_array(p, cut, out, 8, &n), BOOKS_ECORRUPT);
        free(p);
    }
    /* Trailing bytes. */
    memcpy(bad, buf, len);
    bad[len] = 'x';
    assert_int_equal(pg_decode_text_array(bad, len + 1, out, 8, &n), BOOKS_ECORRUPT);
    /* Two dimensions; a NULL flag; another element type; a NULL element; a negative or huge
     * length; more elements than the caller's room. */
    struct {
        size_t at;
        uint8_t v[4];
    } flips[] = {
        {0, {0, 0, 0, 2}},          {4, {0, 0, 0, 1}},          {8, {0, 0, 0, 23}},
        {20, {0xff, 0xff, 0xff, 0xff}}, {20, {0x7f, 0xff, 0xff, 0xff}}, {12, {0x80, 0, 0, 0}},
    };
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        memcpy(bad, buf, len);
        memcpy(bad + flips[i].at, flips[i].v, 4);
        assert_int_equal(pg_decode_text_array(bad, len, out, 8, &n), BOOKS_ECORRUPT);
    }
    assert_int_equal(pg_decode_text_array(buf, len, out, 1, &n), BOOKS_ECORRUPT);
}

/* The store's own parameters come out of the URI; everything else reaches libpq as written. */
/* Every SQLSTATE class the store meets maps on purpose (pg.h), retryable ones apart from those a
 * retry cannot fix. The wire tests produce 42501, 42P01, 23514, 57P01, 08006 and 57014 for real. */
static void test_sqlstate_classes(void **state)
{
    (void)state;
    static const struct {
        const char *state;
        int err;
    } cases[] = {
        {"08006", BOOKS_EUNAVAIL},  /* connection failure */
        {"08001", BOOKS_EUNAVAIL},  /* cannot connect */
        {"57P01", BOOKS_EUNAVAIL},  /* admin shutdown (pg_terminate_backend) */
        {"57P03", BOOKS_EUNAVAIL},  /* cannot connect now (starting up) */
        {"57014", BOOKS_EDEADLINE}, /* query canceled: statement_timeout */
        {"53100", BOOKS_ENOSPC},    /* disk full */
        {"53200", BOOKS_ETHROTTLED}, /* out of memory: for now */
        {"53300", BOOKS_ETHROTTLED}, /* too many connections */
        {"40001", BOOKS_EABORTED},  /* serialization failure */
        {"40P01", BOOKS_EABORTED},  /* deadlock detected */
        {"42501", BOOKS_EREFUSED},  /* insufficient privilege */
        {"42P01", BOOKS_EREFUSED},  /* undefined table */
        {"23514", BOOKS_EREFUSED},  /* check violation */
        {"22001", BOOKS_EREFUSED},  /* string data right truncation */
        {"54000", BOOKS_EREFUSED},  /* program limit exceeded */
        {"XX000", BOOKS_EINTERNAL}, /* internal error */
        {"25P02", BOOKS_EINTERNAL}, /* in failed transaction */
        {"", BOOKS_EUNAVAIL},
        {"4", BOOKS_EUNAVAIL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (pg_sqlstate_error(cases[i].state) != cases[i].err)
            fail_msg("SQLSTATE %s: %s, want %s", cases[i].state,
                     books_err_name(pg_sqlstate_error(cases[i].state)),
                     books_err_name(cases[i].err));
    assert_int_equal(pg_sqlstate_error(NULL), BOOKS_EUNAVAIL);
}

static void test_uri_parameters(void **state)
{
    (void)state;
    struct params prm;
    char *conninfo = NULL, err[256];

    assert_int_equal(pg_parse_uri("postgresql://u:pw@h:5/db", &prm, &conninfo, err, sizeof err), 0);
    assert_string_equal(conninfo, "postgresql://u:pw@h:5/db");
    assert_int_equal(prm.pool, 2);
    assert_int_equal(prm.statement_timeout_ms, 10000);
    assert_int_equal(prm.startup_timeout_s, 30);
    assert_int_equal(prm.cache_mb, 16);
    assert_int_equal(prm.group_commit, 1);
    free(conninfo);

    assert_int_equal(pg_parse_uri("postgresql:///books?host=/cloudsql/p:r:i&pool=5&sslmode=disable"
                                  "&statement_timeout_ms=0&group_commit=off&cache_mb=0",
                                  &prm, &conninfo, err, sizeof err),
                     0);
    assert_string_equal(conninfo, "postgresql:///books?host=/cloudsql/p:r:i&sslmode=disable");
    assert_int_equal(prm.pool, 5);
    assert_int_equal(prm.statement_timeout_ms, 0);
    assert_int_equal(prm.group_commit, 0);
    assert_int_equal(prm.cache_mb, 0);
    free(conninfo);

    const char *bad[] = {"postgresql://u:secret@h/db?pool=0", "postgresql://u:secret@h/db?pool=65",
                         "postgresql://u:secret@h/db?pool=x", "postgresql://u:secret@h/db?pool",
                         "postgresql://u:secret@h/db?pool=2&pool=3",
                         "postgresql://u:secret@h/db?group_commit=maybe"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        conninfo = NULL;
        assert_int_equal(pg_parse_uri(bad[i], &prm, &conninfo, err, sizeof err), BOOKS_EINVAL);
        assert_null(conninfo);
        assert_non_null(strstr(err, "parameter"));
        assert_null(strstr(err, "secret")); /* the URI is never echoed: it may hold a password */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_quotes_everything),
        cmocka_unit_test(test_decode_round_trip),
        cmocka_unit_test(test_decode_refuses_what_we_never_write),
        cmocka_unit_test(test_uri_parameters),
        cmocka_unit_test(test_sqlstate_classes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
