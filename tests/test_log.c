/* test_log.c: the JSON log read back from a file. Every line the tests produce is checked by a
 * small JSON parser written here independently of log.c (its own UTF-8 decoder included): one flat
 * object per line, keys "severity", "message", "time" first, no raw control characters, valid
 * UTF-8 only. On top of that each test checks exact bytes: escaping, replacement of invalid UTF-8,
 * fields of log_event() and log_rpc(), per-thread buffering and flushing, truncation of long
 * lines, and lines from many threads at once. The fixture points the log at a fresh temporary
 * file; the teardown flushes this thread's buffer and closes it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "books/error.h"
#include "books/log.h"

/* The line bound log.c promises (LOG_LINE_BYTES there; not in the header). */
#define MAX_LINE 8192

struct fixture {
    FILE *file;
    int fd;
    char *out; /* last read_output() result */
    size_t out_len;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    f->file = tmpfile();
    if (f->file == NULL) {
        free(f);
        return -1;
    }
    f->fd = fileno(f->file);
    log_init(LOG_DEBUG, f->fd);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    log_thread_flush(); /* nothing of this test may end up in the next one's file */
    log_init(LOG_INFO, -1);
    fclose(f->file);
    free(f->out);
    free(f);
    return 0;
}

/* Everything written to the log file so far, NUL-terminated (kept in the fixture). */
static const char *read_output(struct fixture *f)
{
    struct stat st;
    assert_int_equal(fstat(f->fd, &st), 0);
    free(f->out);
    f->out_len = (size_t)st.st_size;
    f->out = malloc(f->out_len + 1);
    assert_non_null(f->out);
    assert_int_equal(pread(f->fd, f->out, f->out_len, 0), (ssize_t)f->out_len);
    f->out[f->out_len] = '\0';
    return f->out;
}

/* ---- an independent JSON line checker -------------------------------------------------------- */

/* Decodes one UTF-8 character by computing its value and then rejecting overlongs, surrogates and
 * values past U+10FFFF (a different method from log.c's byte-range table). 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n)
{
    static const uint32_t min_value[] = {0, 0, 0x80, 0x800, 0x10000};
    size_t len;
    uint32_t c;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xE0) == 0xC0)
        len = 2, c = s[0] & 0x1Fu;
    else if ((s[0] & 0xF0) == 0xE0)
        len = 3, c = s[0] & 0x0Fu;
    else if ((s[0] & 0xF8) == 0xF0)
        len = 4, c = s[0] & 0x07u;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3Fu);
    }
    if (c < min_value[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    return len;
}

struct parse {
    const unsigned char *p, *end;
    const char *why;
};

static bool reject(struct parse *ps, const char *why)
{
    if (ps->why == NULL)
        ps->why = why;
    return false;
}

/* A JSON string at ps->p; its raw (still escaped) contents are copied to out if out != NULL. */
static bool parse_string(struct parse *ps, char *out, size_t outlen)
{
    size_t o = 0;
    if (ps->p >= ps->end || *ps->p != '"')
        return reject(ps, "expected a string");
    const unsigned char *start = ++ps->p;
    while (ps->p < ps->end && *ps->p != '"') {
        unsigned char c = *ps->p;
        if (c < 0x20)
            return reject(ps, "raw control character in a string");
        if (c == '\\') {
            if (ps->end - ps->p < 2)
                return reject(ps, "escape at end");
            char e = (char)ps->p[1];
            if (e == 'u') {
                if (ps->end - ps->p < 6)
                    return reject(ps, "short \\u escape");
                for (int i = 2; i < 6; i++)
                    if (!strchr("0123456789abcdefABCDEF", ps->p[i]) || ps->p[i] == 0)
                        return reject(ps, "bad \\u escape");
                ps->p += 6;
            } else if (strchr("\"\\/bfnrt", e) && e != 0) {
                ps->p += 2;
            } else {
                return reject(ps, "bad escape");
            }
            continue;
        }
        size_t k = utf8_decode(ps->p, (size_t)(ps->end - ps->p));
        if (k == 0)
            return reject(ps, "invalid UTF-8 in a string");
        ps->p += k;
    }
    if (ps->p >= ps->end)
        return reject(ps, "unterminated string");
    if (out != NULL) {
        o = (size_t)(ps->p - start);
        if (o >= outlen)
            o = outlen - 1;
        memcpy(out, start, o);
        out[o] = '\0';
    }
    ps->p++;
    return true;
}

static bool parse_value(struct parse *ps)
{
    if (ps->p >= ps->end)
        return reject(ps, "expected a value");
    if (*ps->p == '"')
        return parse_string(ps, NULL, 0);
    if (ps->end - ps->p >= 4 && memcmp(ps->p, "true", 4) == 0) {
        ps->p += 4;
        return true;
    }
    if (ps->end - ps->p >= 5 && memcmp(ps->p, "false", 5) == 0) {
        ps->p += 5;
        return true;
    }
    if (*ps->p == '-')
        ps->p++;
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
        return reject(ps, "expected a number");
    if (*ps->p == '0' && ps->p + 1 < ps->end && ps->p[1] >= '0' && ps->p[1] <= '9')
        return reject(ps, "leading zero");
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
        ps->p++;
    return true;
}

#define MAX_KEYS 512

/* Checks that line[0..len) is `{"k":v,...}\n` with string, integer or true values, that the first
 * keys are severity, message, time, and that no key repeats. NULL when it is, else why not. */
static const char *line_error(const char *line, size_t len)
{
    struct parse ps = {(const unsigned char *)line, (const unsigned char *)line + len, NULL};
    char keys[MAX_KEYS][64];
    size_t n = 0;
    if (len < 2 || line[len - 1] != '\n' || memchr(line, '\n', len - 1) != NULL)
        return "not one line ending in \\n";
    ps.end--; /* the \n */
    if (*ps.p != '{')
        return "does not start with {";
    ps.p++;
    for (;;) {
        if (n == MAX_KEYS)
            return "too many keys";
        if (!parse_string(&ps, keys[n], sizeof keys[n]))
            return ps.why;
        for (size_t i = 0; i < n; i++)
            if (strcmp(keys[i], keys[n]) == 0)
                return "repeated key";
        n++;
        if (ps.p >= ps.end || *ps.p++ != ':')
            return "expected :";
        if (!parse_value(&ps))
            return ps.why;
        if (ps.p < ps.end && *ps.p == ',') {
            ps.p++;
            continue;
        }
        break;
    }
    if (ps.p >= ps.end || *ps.p++ != '}' || ps.p != ps.end)
        return "expected } at the end";
    if (n < 3 || strcmp(keys[0], "severity") || strcmp(keys[1], "message") ||
        strcmp(keys[2], "time"))
        return "first keys are not severity, message, time";
    if (strncmp(line, "{\"severity\":\"", 13) != 0)
        return "does not start with {\"severity\":\"";
    return NULL;
}

/* Checks every line of `out` and returns how many there are. `out` must end with a whole line. */
static size_t check_lines(const char *out, size_t len)
{
    size_t n = 0;
    const char *p = out, *end = out + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            fail_msg("output ends in the middle of a line: \"%.80s\"", p);
        const char *why = line_error(p, (size_t)(nl - p + 1));
        if (why != NULL)
            fail_msg("line %zu is not valid: %s: \"%.200s\"", n + 1, why, p);
        assert_true(nl - p + 1 <= MAX_LINE);
        n++;
        p = nl + 1;
    }
    return n;
}

/* Reads the output, checks it, and asserts it holds exactly `want` lines. */
static const char *expect_lines(struct fixture *f, size_t want)
{
    const char *out = read_output(f);
    assert_int_equal(check_lines(out, f->out_len), want);
    return out;
}

/* The checker itself must reject what it is there to catch. */
static void test_checker_rejects_bad_lines(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"severity\":\"INFO\",\"message\":\"a\",\"time\":\"t\"}",      /* no \n */
        "{\"severity\":\"INFO\",\"message\":\"a\tb\",\"time\":\"t\"}\n", /* raw tab */
        "{\"severity\":\"INFO\",\"message\":\"\xff\",\"time\":\"t\"}\n", /* bad UTF-8 */
        "{\"severity\":\"INFO\",\"message\":\"\xc0\xaf\",\"time\":\"t\"}\n",
        "{\"severity\":\"INFO\",\"message\":\"\xed\xa0\x80\",\"time\":\"t\"}\n",
        "{\"severity\":\"INFO\",\"message\":\"a\\q\",\"time\":\"t\"}\n", /* bad escape */
        "{\"severity\":\"INFO\",\"message\":\"a\",\"time\":\"t\"\n",     /* no } */
        "{\"severity\":\"INFO\",\"time\":\"t\",\"message\":\"a\"}\n",    /* key order */
        "{\"severity\":\"INFO\",\"message\":\"a\",\"time\":\"t\",\"n\":1x}\n",
        "{\"severity\":\"INFO\",\"message\":\"a\",\"time\":\"t\",\"time\":\"t\"}\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_non_null(line_error(bad[i], strlen(bad[i])));
    const char *good = "{\"severity\":\"INFO\",\"message\":\"\\u00e9\xc3\xa9\",\"time\":\"t\","
                       "\"n\":-12,\"t\":true}\n";
    assert_null(line_error(good, strlen(good)));
}

/* ---- levels ---------------------------------------------------------------------------------- */

static void test_level_filtering(void **state)
{
    struct fixture *f = *state;
    log_init(LOG_WARNING, f->fd);
    assert_false(log_enabled(LOG_DEBUG));
    assert_false(log_enabled(LOG_INFO));
    assert_true(log_enabled(LOG_WARNING));
    assert_true(log_enabled(LOG_ERROR));

    log_msg(LOG_DEBUG, "debug %d", 1);
    log_msg(LOG_INFO, "info %d", 2);
    log_event(LOG_INFO, "event", NULL, 0);
    struct log_rpc r = {.method = "/m", .method_len = 2, .code = "OK", .latency_us = 1};
    log_rpc(&r);
    assert_false(log_thread_pending());
    log_msg(LOG_WARNING, "warning %d", 3);
    log_msg(LOG_ERROR, "error %d", 4);

    const char *out = expect_lines(f, 2);
    const char *head = "{\"severity\":\"WARNING\",\"message\":\"warning 3\",\"time\":\"";
    assert_memory_equal(out, head, strlen(head));
    assert_non_null(strstr(out, "\n{\"severity\":\"ERROR\",\"message\":\"error 4\",\"time\":\""));

    log_init(LOG_DEBUG, f->fd);
    assert_true(log_enabled(LOG_DEBUG));
    log_msg(LOG_DEBUG, "now %s", "visible");
    out = expect_lines(f, 3);
    assert_non_null(strstr(out, "{\"severity\":\"DEBUG\",\"message\":\"now visible\""));
}

static void test_level_parse_and_name(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum log_level level;
    } good[] = {
        {"debug", LOG_DEBUG},  {"DEBUG", LOG_DEBUG},     {"info", LOG_INFO},
        {"Info", LOG_INFO},    {"warning", LOG_WARNING}, {"WARN", LOG_WARNING},
        {"warn", LOG_WARNING}, {"error", LOG_ERROR},     {"eRRoR", LOG_ERROR},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        enum log_level l = (enum log_level)99;
        assert_int_equal(log_level_parse(good[i].text, &l), 0);
        assert_int_equal(l, good[i].level);
    }
    static const char *const bad[] = {"",  "information", "warnings", " info", "info ",
                                      "2", "fatal",       "critical", "deb"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum log_level l = LOG_ERROR;
        assert_int_equal(log_level_parse(bad[i], &l), BOOKS_EINVAL);
        assert_int_equal(l, LOG_ERROR); /* untouched */
    }
    enum log_level l = LOG_ERROR;
    assert_int_equal(log_level_parse(NULL, &l), BOOKS_EINVAL);

    assert_string_equal(log_level_name(LOG_DEBUG), "DEBUG");
    assert_string_equal(log_level_name(LOG_INFO), "INFO");
    assert_string_equal(log_level_name(LOG_WARNING), "WARNING");
    assert_string_equal(log_level_name(LOG_ERROR), "ERROR");
}

/* ---- line shape and escaping ----------------------------------------------------------------- */

static bool is_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static void test_line_shape_and_time(void **state)
{
    struct fixture *f = *state;
    time_t before = time(NULL);
    log_msg(LOG_INFO, "hello %d", 42);
    time_t after = time(NULL);
    const char *out = expect_lines(f, 1);
    const char *prefix = "{\"severity\":\"INFO\",\"message\":\"hello 42\",\"time\":\"";
    assert_memory_equal(out, prefix, strlen(prefix));

    /* "2026-11-23T08:43:00.123456Z" then "}\n" and nothing else */
    const char *t = out + strlen(prefix);
    assert_int_equal(strlen(t), 27 + 3);
    assert_true(is_digits(t, 4) && t[4] == '-' && is_digits(t + 5, 2) && t[7] == '-' &&
                is_digits(t + 8, 2) && t[10] == 'T' && is_digits(t + 11, 2) && t[13] == ':' &&
                is_digits(t + 14, 2) && t[16] == ':' && is_digits(t + 17, 2) && t[19] == '.' &&
                is_digits(t + 20, 6) && t[26] == 'Z');
    assert_string_equal(t + 27, "\"}\n");

    /* It is UTC and it is now. */
    struct tm tm = {0};
    assert_non_null(strptime(t, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t logged = timegm(&tm);
    assert_true(logged >= before && logged <= after);
}

/* log_msg(level, "%s", in) must give exactly "message":"<want>". */
static void expect_message(struct fixture *f, const char *in, const char *want)
{
    char expected[512];
    snprintf(expected, sizeof expected, "\"message\":\"%s\",\"time\":", want);
    off_t start = lseek(f->fd, 0, SEEK_END);
    log_msg(LOG_INFO, "%s", in);
    read_output(f);
    const char *line = f->out + start;
    assert_int_equal(check_lines(line, f->out_len - (size_t)start), 1);
    if (strstr(line, expected) == NULL)
        fail_msg("want %s in %s", expected, line);
}

static void test_escaping(void **state)
{
    struct fixture *f = *state;
    expect_message(f, "plain ASCII, DEL \x7f stays", "plain ASCII, DEL \x7f stays");
    expect_message(f, "say \"hi\"", "say \\\"hi\\\"");
    expect_message(f, "C:\\path\\", "C:\\\\path\\\\");
    expect_message(f, "a\nb\rc\td", "a\\nb\\rc\\td");
    expect_message(f, "\x01\x08\x0c\x1b\x1f", "\\u0001\\u0008\\u000c\\u001b\\u001f");
    expect_message(f, "/slash/ and 'quote'", "/slash/ and 'quote'");
    expect_message(f, "", "");
}

static void test_nul_byte_in_formatted_message(void **state)
{
    struct fixture *f = *state;
    log_msg(LOG_INFO, "a%cb", '\0');
    const char *out = expect_lines(f, 1);
    assert_non_null(strstr(out, "\"message\":\"a\\u0000b\""));
}

static void test_valid_utf8_preserved(void **state)
{
    struct fixture *f = *state;
    static const char *const good[] = {
        "caf\xc3\xa9",           /* U+00E9, 2 bytes */
        "\xc2\x80",              /* U+0080, smallest 2-byte */
        "\xe0\xa0\x80",          /* U+0800, smallest 3-byte */
        "\xe2\x82\xac 5",        /* U+20AC */
        "\xed\x9f\xbf",          /* U+D7FF, just below the surrogates */
        "\xee\x80\x80",          /* U+E000, just above them */
        "\xef\xbf\xbf",          /* U+FFFF */
        "\xf0\x90\x80\x80",      /* U+10000, smallest 4-byte */
        "\xf0\x9d\x84\x9e clef", /* U+1D11E */
        "\xf4\x8f\xbf\xbf",      /* U+10FFFF, the largest */
        "\xe6\x9b\xb8\xe5\x90\x8d",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        expect_message(f, good[i], good[i]);
}

static void test_invalid_utf8_replaced(void **state)
{
    struct fixture *f = *state;
#define R "\\ufffd"
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"a\377b", "a" R "b"},         /* 0xFF: never valid in UTF-8 */
        {"\xfe\xf5\xf8", R R R},       /* bytes above F4 */
        {"\200x", R "x"},              /* 0x80: a lone continuation byte */
        {"\xbf\xbf", R R},             /* two of them */
        {"\xc0\xaf", R R},             /* overlong "/" */
        {"\xc1\xbf", R R},             /* overlong U+007F */
        {"\xe0\x80\xaf", R R R},       /* overlong 3-byte */
        {"\xe0\x9f\xbf", R R R},       /* overlong U+07FF */
        {"\xf0\x80\x80\xaf", R R R R}, /* overlong 4-byte */
        {"\xf0\x8f\xbf\xbf", R R R R}, /* overlong U+FFFF */
        {"\xed\xa0\x80", R R R},       /* U+D800, a surrogate */
        {"\xed\xbf\xbf", R R R},       /* U+DFFF */
        {"\xf4\x90\x80\x80", R R R R}, /* U+110000, past the end */
        {"\342\202A", R R "A"},        /* E2 82: a truncated sequence, one U+FFFD per byte */
        {"\xf0\x9d\x84!", R R R "!"},  /* truncated 4-byte */
        {"end\xe2\x82", "end" R R},    /* truncated at the end of the string */
        {"end\xf0", "end" R},
        {"\xc3\xa9\xc3\xc3\xa9", "\xc3\xa9" R "\xc3\xa9"}, /* the next valid one survives */
        {"\xe2\x82\xe2\x82\xac", R R "\xe2\x82\xac"},
        {"\xe2\x82\xac\xac", "\xe2\x82\xac" R}, /* one continuation too many */
    };
#undef R
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_message(f, cases[i].in, cases[i].want);
}

/* ---- log_event ------------------------------------------------------------------------------- */

static void test_event_fields(void **state)
{
    struct fixture *f = *state;
    const struct log_field fields[] = {
        {.key = "port", .num = 8080},     {.key = "store", .str = "memory:\"x\"\n\xff"},
        {.key = "neg", .num = LLONG_MIN}, {.key = "max", .num = LLONG_MAX},
        {.key = "zero", .num = 0},        {.key = "empty", .str = ""},
    };
    log_event(LOG_INFO, "listening", fields, sizeof fields / sizeof fields[0]);
    log_event(LOG_WARNING, "bare", NULL, 0);
    const char *out = expect_lines(f, 2);
    const char *head = "{\"severity\":\"INFO\",\"message\":\"listening\",\"time\":\"";
    assert_memory_equal(out, head, strlen(head));
    const char *after_time = strstr(out, "Z\",");
    assert_non_null(after_time);
    const char *want = "Z\",\"port\":8080,\"store\":\"memory:\\\"x\\\"\\n\\ufffd\","
                       "\"neg\":-9223372036854775808,\"max\":9223372036854775807,\"zero\":0,"
                       "\"empty\":\"\"}\n{\"severity\":\"WARNING\",\"message\":\"bare\",";
    assert_memory_equal(after_time, want, strlen(want));
}

static void test_event_too_long_stays_valid(void **state)
{
    struct fixture *f = *state;
    size_t big = 3 * MAX_LINE;
    char *s = malloc(big + 1);
    assert_non_null(s);
    memset(s, 'v', big);
    s[big] = '\0';
    const struct log_field fields[] = {
        {.key = "first", .num = 1},
        {.key = "big", .str = s},
        {.key = "after", .num = 2}, /* no room left: dropped whole, never half-written */
    };
    log_event(LOG_ERROR, s, fields, 3);
    const char *out = expect_lines(f, 1);
    assert_true(f->out_len <= MAX_LINE);
    assert_true(f->out_len > MAX_LINE - 100); /* cut near the bound, not far below it */
    assert_non_null(strstr(out, "\",\"time\":\""));
    assert_non_null(strstr(out, ",\"truncated\":true}\n"));
    assert_null(strstr(out, "\"after\""));
    free(s);
}

/* So many fields that the line fills up: wherever the bound falls (inside a key, inside a number,
 * between fields), the field it falls in is dropped whole. The message length shifts the bound
 * across every position of a field. */
static void test_event_too_many_fields(void **state)
{
    struct fixture *f = *state;
    enum { N = 400 };
    static char keys[N][16];
    static struct log_field fields[N];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        fields[i].key = keys[i];
        fields[i].str = NULL;
        fields[i].num = i % 2 ? LLONG_MIN : LLONG_MAX;
    }
    char msg[40] = "";
    for (size_t shift = 0; shift < 30; shift++) {
        msg[shift] = 'm';
        off_t start = lseek(f->fd, 0, SEEK_END);
        log_event(LOG_INFO, msg, fields, N);
        read_output(f);
        const char *line = f->out + start;
        assert_int_equal(check_lines(line, f->out_len - (size_t)start), 1);
        assert_true(f->out_len - (size_t)start <= MAX_LINE);
        const char *tail = strstr(line, "807,\"truncated\":true}\n");
        if (tail == NULL)
            tail = strstr(line, "808,\"truncated\":true}\n");
        if (tail == NULL)
            fail_msg("the last field is not a whole number: %s", line + strlen(line) - 80);
    }
}

static void test_msg_too_long_cut_at_character_boundaries(void **state)
{
    struct fixture *f = *state;
    /* Each input expands differently when escaped: 1, 3 (as raw UTF-8) and 6 bytes per unit.
     * Whatever the unit, the cut must not split it (check_lines would see bad UTF-8 or a bad
     * escape) and the line must end properly. */
    static const char *const units[] = {"x", "\xe2\x82\xac", "\x01", "\"", "\xff"};
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        size_t ulen = strlen(units[u]), n = 3 * MAX_LINE / ulen;
        char *s = malloc(n * ulen + 1);
        assert_non_null(s);
        for (size_t i = 0; i < n; i++)
            memcpy(s + i * ulen, units[u], ulen);
        s[n * ulen] = '\0';
        off_t start = lseek(f->fd, 0, SEEK_END);
        log_msg(LOG_INFO, "%s", s);
        read_output(f);
        assert_int_equal(check_lines(f->out + start, f->out_len - (size_t)start), 1);
        assert_true(f->out_len - (size_t)start <= MAX_LINE);
        assert_non_null(strstr(f->out + start, "\",\"time\":\""));
        assert_non_null(strstr(f->out + start, "Z\",\"truncated\":true}\n"));
        free(s);
    }
}

static void test_errno_preserved_and_write_errors_dropped(void **state)
{
    struct fixture *f = *state;
    int ro = open("/dev/null", O_RDONLY);
    assert_true(ro >= 0);
    log_init(LOG_INFO, ro); /* every write fails with EBADF: lines are dropped, nothing breaks */
    errno = ENOENT;
    log_msg(LOG_ERROR, "cannot open %s: %m", "x");
    assert_int_equal(errno, ENOENT);
    struct log_rpc r = {.method = "/m", .method_len = 2, .code = "OK"};
    log_rpc(&r);
    log_thread_flush();
    assert_false(log_thread_pending());
    assert_int_equal(errno, ENOENT);
    close(ro);

    /* Back on the file, "%m" shows the caller's errno. */
    log_init(LOG_INFO, f->fd);
    errno = ENOENT;
    log_msg(LOG_ERROR, "cannot open %s: %m", "x");
    const char *out = expect_lines(f, 1);
    assert_non_null(strstr(out, "\"message\":\"cannot open x: No such file or directory\""));
}

/* A write that gives up halfway through a line (a full non-blocking pipe nobody drains) must not
 * glue the next line onto the broken one: the next write starts on a fresh line. This test waits
 * for log.c's write timeout (about a second) once. */
static void test_cut_line_next_starts_fresh(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK), 0);
    /* Two pages: the first filled by us, the second takes the first 4096 bytes of the line,
     * then the pipe is full and the write cannot finish. */
    assert_int_equal(fcntl(p[1], F_SETPIPE_SZ, 8192), 8192);
    int cap = 8192;
    char *buf = malloc(2 * (size_t)cap);
    assert_non_null(buf);
    memset(buf, 'z', (size_t)cap);
    assert_int_equal(write(p[1], buf, 4096), 4096);

    log_init(LOG_INFO, p[1]);
    char big[6000];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_msg(LOG_INFO, "%s", big);
    assert_int_equal(read(p[0], buf, 2 * (size_t)cap), cap); /* the pipe was full */
    assert_memory_equal(buf + 4096, "{\"severity\":\"INFO\",\"message\":\"bbbb", 34);

    log_msg(LOG_INFO, "next");
    ssize_t got = read(p[0], buf, 2 * (size_t)cap);
    assert_true(got > 0);
    assert_true(buf[0] == '\n');
    assert_int_equal(check_lines(buf + 1, (size_t)got - 1), 1);
    assert_non_null(strstr(buf + 1, "\"message\":\"next\""));
    free(buf);
    close(p[0]);
    close(p[1]);
}

/* ---- log_rpc --------------------------------------------------------------------------------- */

static void test_rpc_line(void **state)
{
    struct fixture *f = *state;
    struct log_rpc r = {
        .method = "/books.v1.BooksService/GetBook",
        .method_len = strlen("/books.v1.BooksService/GetBook"),
        .code = "NOT_FOUND",
        .latency_us = 1234,
        .peer = "ipv4:127.0.0.1:53814",
        .message = "book \"shelves/1/books/2\" not found",
    };
    log_rpc(&r);
    r.peer = NULL;
    r.message = NULL;
    r.code = "OK";
    r.latency_us = 0;
    log_rpc(&r);
    log_thread_flush();
    const char *out = expect_lines(f, 2);
    const char *head = "{\"severity\":\"INFO\",\"message\":\"/books.v1.BooksService/GetBook "
                       "NOT_FOUND\",\"time\":\"";
    assert_memory_equal(out, head, strlen(head));
    const char *tail =
        "Z\",\"method\":\"/books.v1.BooksService/GetBook\",\"code\":\"NOT_FOUND\","
        "\"latency_us\":1234,\"peer\":\"ipv4:127.0.0.1:53814\","
        "\"status_message\":\"book \\\"shelves/1/books/2\\\" not found\"}\n"
        "{\"severity\":\"INFO\",\"message\":\"/books.v1.BooksService/GetBook OK\",\"time\":\"";
    const char *t = strstr(out, "Z\",\"method\"");
    assert_non_null(t);
    assert_memory_equal(t, tail, strlen(tail));
    /* Peer and status message left out when NULL. */
    const char *second = strchr(out, '\n') + 1;
    t = strstr(second, "Z\",\"method\"");
    assert_non_null(t);
    assert_string_equal(t, "Z\",\"method\":\"/books.v1.BooksService/GetBook\",\"code\":\"OK\","
                           "\"latency_us\":0}\n");
}

static void test_rpc_line_with_trace(void **state)
{
    struct fixture *f = *state;
    struct trace_context tc = {.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                               .span_id = "00f067aa0ba902b7",
                               .sampled = true};
    struct log_rpc r = {
        .method = "/books.v1.BooksService/GetBook",
        .method_len = strlen("/books.v1.BooksService/GetBook"),
        .code = "OK",
        .latency_us = 7,
        .trace = &tc,
    };
    /* Without a project, no trace fields: Cloud Logging needs "projects/ID/traces/...". */
    log_set_project("");
    log_rpc(&r);
    log_set_project("my-project");
    log_rpc(&r);
    tc.span_id[0] = '\0';
    tc.sampled = false;
    log_rpc(&r);
    log_set_project(NULL);
    log_thread_flush();
    const char *out = expect_lines(f, 3);
    const char *l2 = strchr(out, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    assert_memory_equal(strstr(out, "\"latency_us\":7"), "\"latency_us\":7}\n", 16);
    const char *want2 = "\"latency_us\":7,"
                        "\"logging.googleapis.com/trace\":"
                        "\"projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736\","
                        "\"logging.googleapis.com/spanId\":\"00f067aa0ba902b7\","
                        "\"logging.googleapis.com/trace_sampled\":true}\n";
    assert_memory_equal(strstr(l2, "\"latency_us\""), want2, strlen(want2));
    const char *want3 = "\"latency_us\":7,"
                        "\"logging.googleapis.com/trace\":"
                        "\"projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736\","
                        "\"logging.googleapis.com/trace_sampled\":false}\n";
    assert_memory_equal(strstr(l3, "\"latency_us\""), want3, strlen(want3));
}

static void test_rpc_method_by_length_and_escaped(void **state)
{
    struct fixture *f = *state;
    /* The method comes from a slice: not NUL-terminated, and whatever bytes the client sent. */
    const char method[] = "/evil\"\n\xff/Method trailing bytes not part of it";
    struct log_rpc r = {.method = method,
                        .method_len = 15,
                        .code = "UNIMPLEMENTED",
                        .latency_us = UINT64_MAX,
                        .peer = "ipv6:[::1]:1\x01"};
    log_rpc(&r);
    log_thread_flush();
    const char *out = expect_lines(f, 1);
    assert_non_null(strstr(out, "\"message\":\"/evil\\\"\\n\\ufffd/Method UNIMPLEMENTED\""));
    assert_non_null(strstr(out, "\"method\":\"/evil\\\"\\n\\ufffd/Method\",\"code\""));
    assert_non_null(strstr(out, "\"latency_us\":9223372036854775807,")); /* clamped, not negative */
    assert_non_null(strstr(out, "\"peer\":\"ipv6:[::1]:1\\u0001\"}\n"));
    assert_null(strstr(out, "trailing"));
}

static struct log_rpc rpc_n(char *buf, size_t buflen, unsigned tid, unsigned seq)
{
    int n = snprintf(buf, buflen, "/books.v1.BooksService/T%u/%u", tid, seq);
    struct log_rpc r = {.method = buf,
                        .method_len = (size_t)n,
                        .code = "OK",
                        .latency_us = seq,
                        .peer = "ipv4:10.0.0.1:4242"};
    return r;
}

static void test_rpc_buffered_until_flush(void **state)
{
    struct fixture *f = *state;
    char m[64];
    struct log_rpc r = rpc_n(m, sizeof m, 0, 1);
    assert_false(log_thread_pending());
    log_rpc(&r);
    /* The first line of a batch cannot be due yet: nothing is written before a flush. */
    assert_true(log_thread_pending());
    expect_lines(f, 0);
    log_thread_flush();
    assert_false(log_thread_pending());
    const char *out = expect_lines(f, 1);
    assert_non_null(strstr(out, "\"method\":\"/books.v1.BooksService/T0/1\""));
    /* A second flush writes nothing again. */
    log_thread_flush();
    expect_lines(f, 1);
}

static void test_rpc_many_lines_whole_and_in_order(void **state)
{
    struct fixture *f = *state;
    /* 200 bytes to 3 KiB each, several times the thread buffer: many lines do not fit in the
     * room left behind the lines already buffered. */
    enum { N = 600 };
    char m[64], status[3001];
    memset(status, 's', sizeof status - 1);
    for (unsigned i = 0; i < N; i++) {
        struct log_rpc r = rpc_n(m, sizeof m, 0, i);
        size_t len = (i * 997u) % sizeof status;
        status[len] = '\0';
        r.message = status;
        log_rpc(&r);
        status[len] = 's';
    }
    /* The buffer filled up several times, and each time went out as whole lines only. */
    const char *out = read_output(f);
    size_t before = check_lines(out, f->out_len);
    assert_true(before > 0 && before < N);
    log_thread_flush();
    out = expect_lines(f, N);
    assert_null(strstr(out, "truncated")); /* a line that did not fit behind others was not cut */
    unsigned seq = 0;
    for (const char *p = out; *p; p = strchr(p, '\n') + 1) {
        char want[96];
        snprintf(want, sizeof want, "\"method\":\"/books.v1.BooksService/T0/%u\"", seq);
        const char *nl = strchr(p, '\n');
        const char *hit = strstr(p, want);
        assert_true(hit != NULL && hit < nl);
        seq++;
    }
    assert_int_equal(seq, N);
}

static void test_rpc_flushed_when_oldest_line_is_due(void **state)
{
    struct fixture *f = *state;
    char m[64];
    struct log_rpc r = rpc_n(m, sizeof m, 0, 1);
    uint64_t start = log_now_us();
    log_rpc(&r);
    assert_true(log_thread_pending());
    /* Wait (by the log's own clock) until the buffered line is older than LOG_FLUSH_MS. */
    while (log_now_us() - start <= (uint64_t)LOG_FLUSH_MS * 1000) {
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    r = rpc_n(m, sizeof m, 0, 2);
    log_rpc(&r); /* this append notices the age and writes both */
    assert_false(log_thread_pending());
    const char *out = expect_lines(f, 2);
    assert_non_null(strstr(out, "T0/1\""));
    assert_non_null(strstr(out, "T0/2\""));
}

static void test_rpc_line_longer_than_thread_buffer(void **state)
{
    struct fixture *f = *state;
    size_t big = 40 * 1024; /* larger than the 16 KiB thread buffer */
    char *method = malloc(big), *status = malloc(big + 1), *peer = malloc(big + 1);
    assert_non_null(method);
    assert_non_null(status);
    assert_non_null(peer);
    for (size_t i = 0; i < big; i++)
        method[i] = (char)('a' + i % 26);
    memset(status, '\n', big); /* 2 bytes each once escaped */
    status[big] = '\0';
    memset(peer, 'p', big);
    peer[big] = '\0';

    char m[64];
    struct log_rpc small = rpc_n(m, sizeof m, 0, 1);
    log_rpc(&small); /* already buffered: must come out first, whole */
    struct log_rpc r = {.method = method,
                        .method_len = big,
                        .code = "INVALID_ARGUMENT",
                        .latency_us = 7,
                        .peer = peer,
                        .message = status};
    log_rpc(&r);
    small = rpc_n(m, sizeof m, 0, 2);
    log_rpc(&small);
    log_thread_flush();

    const char *out = expect_lines(f, 3);
    const char *l2 = strchr(out, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    assert_non_null(strstr(out, "T0/1\""));
    assert_true(strstr(out, "T0/1\"") < l2);
    assert_true(strstr(l3, "T0/2\"") != NULL);
    /* The long line kept every field, cut only the long values, and says so. */
    assert_true((size_t)(l3 - l2) <= MAX_LINE);
    assert_memory_equal(l2, "{\"severity\":\"INFO\",\"message\":\"abcdefghij", 40);
    const char *fields[] = {"\",\"time\":\"",
                            "\",\"method\":\"abcdef",
                            "\",\"code\":\"INVALID_ARGUMENT\"",
                            ",\"latency_us\":7,",
                            ",\"peer\":\"ppp",
                            ",\"status_message\":\"\\n\\n",
                            "\\n\",\"truncated\":true}\n"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *hit = strstr(l2, fields[i]);
        if (hit == NULL || hit >= l3)
            fail_msg("field %s missing from the long line", fields[i]);
    }
    free(method);
    free(status);
    free(peer);
}

static void *exit_without_flush(void *arg)
{
    char m[64];
    struct log_rpc r = rpc_n(m, sizeof m, 9, 1);
    (void)arg;
    log_rpc(&r);
    return NULL; /* no log_thread_flush(): the thread's exit must flush */
}

static void test_rpc_flushed_at_thread_exit(void **state)
{
    struct fixture *f = *state;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, exit_without_flush, NULL), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    const char *out = expect_lines(f, 1);
    assert_non_null(strstr(out, "/T9/1\""));
}

/* ---- many threads ---------------------------------------------------------------------------- */

enum { THREADS = 8, PER_THREAD = 1500 };

static void *log_from_thread(void *arg)
{
    unsigned tid = (unsigned)(uintptr_t)arg;
    char m[64];
    for (unsigned i = 0; i < PER_THREAD; i++) {
        struct log_rpc r = rpc_n(m, sizeof m, tid, i);
        log_rpc(&r);
        if (i % 100 == 0)
            log_msg(LOG_WARNING, "thread %u at %u with \"quotes\" and \xe2\x82\xac", tid, i);
        if (i % 500 == 0) {
            const struct log_field fl[] = {{.key = "tid", .num = tid}, {.key = "s", .str = m}};
            log_event(LOG_INFO, "progress", fl, 2);
        }
    }
    if (tid % 2 == 0)
        log_thread_flush(); /* odd threads leave it to the exit hook */
    return NULL;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void test_concurrent_threads_whole_lines(void **state)
{
    struct fixture *f = *state;
    pthread_t t[THREADS];
    for (unsigned i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, log_from_thread, (void *)(uintptr_t)i), 0);
    for (unsigned i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);

    enum { MSGS = PER_THREAD / 100, EVENTS = (PER_THREAD + 499) / 500 };
    const char *out = expect_lines(f, THREADS * (PER_THREAD + MSGS + EVENTS));
    assert_null(strstr(out, "truncated"));

    /* Each thread's RPC lines are all there, in the order it logged them. */
    unsigned next[THREADS] = {0};
    size_t msgs = 0, events = 0;
    for (const char *p = out; *p; p = strchr(p, '\n') + 1) {
        unsigned tid, seq;
        const char *m = strstr(p, "\"method\":\"/books.v1.BooksService/T");
        const char *nl = strchr(p, '\n');
        if (starts_with(p, "{\"severity\":\"WARNING\",\"message\":\"thread ")) {
            msgs++;
            continue;
        }
        if (starts_with(p, "{\"severity\":\"INFO\",\"message\":\"progress\",")) {
            events++;
            continue;
        }
        if (m == NULL || m > nl)
            fail_msg("unexpected line: %.*s", (int)(nl - p), p);
        assert_int_equal(sscanf(m, "\"method\":\"/books.v1.BooksService/T%u/%u\"", &tid, &seq), 2);
        assert_true(tid < THREADS);
        assert_int_equal(seq, next[tid]);
        next[tid]++;
    }
    for (unsigned i = 0; i < THREADS; i++)
        assert_int_equal(next[i], PER_THREAD);
    assert_int_equal(msgs, THREADS * MSGS);
    assert_int_equal(events, THREADS * EVENTS);
}

static void test_now_us_is_monotonic(void **state)
{
    (void)state;
    uint64_t prev = log_now_us();
    assert_true(prev > 0);
    for (int i = 0; i < 1000; i++) {
        uint64_t now = log_now_us();
        assert_true(now >= prev);
        prev = now;
    }
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_checker_rejects_bad_lines),
        T(test_level_filtering),
        T(test_level_parse_and_name),
        T(test_line_shape_and_time),
        T(test_escaping),
        T(test_nul_byte_in_formatted_message),
        T(test_valid_utf8_preserved),
        T(test_invalid_utf8_replaced),
        T(test_event_fields),
        T(test_event_too_long_stays_valid),
        T(test_event_too_many_fields),
        T(test_msg_too_long_cut_at_character_boundaries),
        T(test_errno_preserved_and_write_errors_dropped),
        T(test_cut_line_next_starts_fresh),
        T(test_rpc_line),
        T(test_rpc_line_with_trace),
        T(test_rpc_method_by_length_and_escaped),
        T(test_rpc_buffered_until_flush),
        T(test_rpc_many_lines_whole_and_in_order),
        T(test_rpc_flushed_when_oldest_line_is_due),
        T(test_rpc_line_longer_than_thread_buffer),
        T(test_rpc_flushed_at_thread_exit),
        T(test_concurrent_threads_whole_lines),
        T(test_now_us_is_monotonic),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
