/* test_pg.c: the parts of the postgresql: store that need no database: its URI parameters, the
 * plan of its connections (hosts, the parameters it adds), and the bytes it exchanges for a book's
 * authors. The array literal
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
        {"25006", BOOKS_EUNAVAIL},  /* read-only transaction: a standby; found again */
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

/* The plan: every host of a multi-host URI is one attempt with every other parameter as written;
 * the store adds target_session_attrs=read-write, keepalives and tcp_user_timeout from the silence
 * bound unless the URI sets them, and refuses a target_session_attrs that allows a standby. */
static void test_plan_hosts_and_defaults(void **state)
{
    (void)state;
    struct pg_plan *p = NULL;
    char err[256], shown[256];

    assert_int_equal(pg_plan_new("postgresql://u:pw@h1:1,h2:2,h3:3/db?connect_timeout=2", 5000,
                                 &p, err, sizeof err),
                     0);
    assert_int_equal(pg_plan_hosts(p), 3);
    const char *hosts[] = {"h1", "h2", "h3"}, *ports[] = {"1", "2", "3"};
    for (size_t h = 0; h < 3; h++) {
        assert_string_equal(pg_plan_value(p, h, "host"), hosts[h]);
        assert_string_equal(pg_plan_value(p, h, "port"), ports[h]);
        assert_string_equal(pg_plan_value(p, h, "user"), "u");
        assert_string_equal(pg_plan_value(p, h, "password"), "pw");
        assert_string_equal(pg_plan_value(p, h, "dbname"), "db");
        assert_string_equal(pg_plan_value(p, h, "target_session_attrs"), "read-write");
        assert_string_equal(pg_plan_value(p, h, "keepalives"), "1");
        assert_string_equal(pg_plan_value(p, h, "keepalives_idle"), "2");
        assert_string_equal(pg_plan_value(p, h, "keepalives_interval"), "1");
        assert_string_equal(pg_plan_value(p, h, "keepalives_count"), "3");
        assert_string_equal(pg_plan_value(p, h, "tcp_user_timeout"), "5000");
        assert_string_equal(pg_plan_value(p, h, "fallback_application_name"), "books-server");
    }
    assert_null(pg_plan_value(p, 3, "host"));
    bool from_uri = true;
    assert_string_equal(pg_plan_session_attrs(p, &from_uri), "read-write");
    assert_false(from_uri);
    assert_int_equal(pg_plan_connect_timeout_s(p), 2);
    pg_plan_describe(p, NULL, shown, sizeof shown);
    assert_string_equal(shown, "postgresql://u@h1:1,h2:2,h3:3/db");
    assert_null(strstr(shown, "pw"));
    pg_plan_free(p);

    /* key=value, one port for every host; the URI's own keepalive settings and session attrs
     * win. */
    assert_int_equal(pg_plan_new("host=a,b port=7 dbname=d keepalives_idle=9 tcp_user_timeout=0 "
                                 "target_session_attrs=primary application_name=mine",
                                 30000, &p, err, sizeof err),
                     0);
    assert_int_equal(pg_plan_hosts(p), 2);
    assert_string_equal(pg_plan_value(p, 1, "host"), "b");
    assert_string_equal(pg_plan_value(p, 0, "port"), "7");
    assert_string_equal(pg_plan_value(p, 1, "port"), "7");
    assert_string_equal(pg_plan_value(p, 0, "keepalives_idle"), "9");
    assert_string_equal(pg_plan_value(p, 0, "keepalives_interval"), "5");
    assert_string_equal(pg_plan_value(p, 0, "tcp_user_timeout"), "0");
    assert_string_equal(pg_plan_value(p, 0, "application_name"), "mine");
    assert_string_equal(pg_plan_session_attrs(p, &from_uri), "primary");
    assert_true(from_uri);
    pg_plan_free(p);

    /* One host, a Unix socket: one attempt, as before. */
    assert_int_equal(pg_plan_new("postgresql:///books?host=/cloudsql/p:r:i&user=b", 5000, &p, err,
                                 sizeof err),
                     0);
    assert_int_equal(pg_plan_hosts(p), 1);
    assert_string_equal(pg_plan_value(p, 0, "host"), "/cloudsql/p:r:i");
    assert_int_equal(pg_plan_connect_timeout_s(p), 0);
    pg_plan_free(p);

    /* Lists libpq cannot line up stay one attempt: libpq says why at connect. */
    assert_int_equal(pg_plan_new("host=a,b,c port=1,2", 5000, &p, err, sizeof err), 0);
    assert_int_equal(pg_plan_hosts(p), 1);
    assert_string_equal(pg_plan_value(p, 0, "host"), "a,b,c");
    pg_plan_free(p);

    /* A session that may be a standby is refused, naming the parameter; nothing is echoed. */
    const char *standby[] = {"postgresql://u:secret@h/db?target_session_attrs=any",
                             "postgresql://u:secret@h/db?target_session_attrs=standby",
                             "postgresql://u:secret@h/db?target_session_attrs=prefer-standby",
                             "postgresql://u:secret@h/db?target_session_attrs=read-only"};
    for (size_t i = 0; i < sizeof standby / sizeof standby[0]; i++) {
        p = NULL;
        assert_int_equal(pg_plan_new(standby[i], 5000, &p, err, sizeof err), BOOKS_EINVAL);
        assert_null(p);
        assert_non_null(strstr(err, "target_session_attrs"));
        assert_null(strstr(err, "secret"));
    }
    /* What libpq cannot read is refused without quoting the URI. */
    assert_int_equal(pg_plan_new("postgresql://u:secret@[::1/db", 5000, &p, err, sizeof err),
                     BOOKS_EINVAL);
    assert_null(strstr(err, "secret"));
    pg_plan_free(NULL);
}

/* The store's own silence_timeout_ms is taken out of the URI like its other parameters. */
static void test_silence_timeout_parameter(void **state)
{
    (void)state;
    struct params prm;
    char *conninfo = NULL, err[256];
    assert_int_equal(pg_parse_uri("postgresql://h/db", &prm, &conninfo, err, sizeof err), 0);
    assert_int_equal(prm.silence_timeout_ms, 5000);
    free(conninfo);
    assert_int_equal(pg_parse_uri("postgresql://h1,h2/db?silence_timeout_ms=1500&sslmode=disable",
                                  &prm, &conninfo, err, sizeof err),
                     0);
    assert_int_equal(prm.silence_timeout_ms, 1500);
    assert_string_equal(conninfo, "postgresql://h1,h2/db?sslmode=disable");
    free(conninfo);
    conninfo = NULL;
    assert_int_equal(pg_parse_uri("postgresql://h/db?silence_timeout_ms=99", &prm, &conninfo, err,
                                  sizeof err),
                     BOOKS_EINVAL);
    assert_non_null(strstr(err, "silence_timeout_ms"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_quotes_everything),
        cmocka_unit_test(test_decode_round_trip),
        cmocka_unit_test(test_decode_refuses_what_we_never_write),
        cmocka_unit_test(test_uri_parameters),
        cmocka_unit_test(test_sqlstate_classes),
        cmocka_unit_test(test_plan_hosts_and_defaults),
        cmocka_unit_test(test_silence_timeout_parameter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
