/* json.c: the one JSON writer of this project, for the log lines and the CLI's --json output:
 * string escaping (RFC 8259 section 7) and a builder over a fixed or a growing buffer. Input may
 * be any bytes: invalid UTF-8 becomes U+FFFD, so the output is always valid JSON. The log builds a
 * line per RPC with it, so it formats numbers by hand and copies runs of plain ASCII in one go. */
#include "books/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "books/error.h"
#include "books/utf8.h"

/* Length of the run of bytes at s[0..n) that JSON takes as they are: printable ASCII (0x20..0x7e
 * and DEL) other than '"' and '\\'. Eight bytes at a time: a word has such a byte to stop at when
 * one of its bytes is below 0x20, at or above 0x80, or equal to '"' or '\\' (the classic
 * "has a zero byte" test, (x - 0x01..) & ~x & 0x80.., applied to x ^ '"' and x ^ '\\'), then the
 * stop is found byte by byte. The log writes a line per call, so this runs for every field. */
static size_t plain_run(const unsigned char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x;
        memcpy(&x, s + i, 8);
        uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
        uint64_t stop = ((x - ones * 0x20) | x | ((quote - ones) & ~quote) |
                         ((backslash - ones) & ~backslash)) & highs;
        if (stop)
            break;
    }
    while (i < n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
        i++;
    return i;
}

bool json_escape_append(char *dst, size_t *lenp, size_t limit, const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    static const char hex[] = "0123456789abcdef";
    size_t len = *lenp, i = 0;
    bool complete = true;
    while (i < n) {
        /* Printable ASCII is nearly all of what we log; copy runs of it in one go. */
        size_t j = i + plain_run(s + i, n - i);
        if (j > i) {
            size_t run = j - i;
            if (run > limit - len) {
                run = limit - len;
                complete = false;
            }
            memcpy(dst + len, s + i, run);
            len += run;
            if (!complete)
                break;
            i = j;
            continue;
        }

        char esc[6];
        const char *out = esc;
        size_t out_len = 2, used = 1;
        unsigned char c = s[i];
        esc[0] = '\\';
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
        } else if (c == '\n') {
            esc[1] = 'n';
        } else if (c == '\r') {
            esc[1] = 'r';
        } else if (c == '\t') {
            esc[1] = 't';
        } else if (c < 0x20) {
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xF];
            out_len = 6;
        } else {
            size_t seq = utf8_sequence_len(s + i, n - i);
            if (seq > 0) {
                out = (const char *)s + i; /* valid UTF-8 is JSON as it is */
                out_len = used = seq;
            } else {
                /* One U+FFFD per byte that does not start a well-formed sequence: the next
                 * byte gets its own chance, so a valid character right after a broken one
                 * survives. */
                out = "\\ufffd";
                out_len = 6;
            }
        }
        if (out_len > limit - len) {
            complete = false;
            break;
        }
        memcpy(dst + len, out, out_len);
        len += out_len;
        i += used;
    }
    *lenp = len;
    return complete;
}

/* ---- the builder ----------------------------------------------------------------------------- */

void json_buf_init(struct json_buf *b, char *p, size_t cap, size_t reserve)
{
    b->p = p;
    b->len = 0;
    b->cap = cap;
    b->soft = cap > reserve ? cap - reserve : 0;
    b->heap = false;
    b->full = false;
    b->truncated = false;
}

void json_buf_init_heap(struct json_buf *b)
{
    json_buf_init(b, NULL, 0, 0);
    b->heap = true;
}

void json_buf_free(struct json_buf *b)
{
    if (!b->heap)
        return;
    free(b->p);
    json_buf_init_heap(b);
}

/* Makes room for `more` bytes in a heap buffer (doubling, from 512); out of memory sets full. */
static void reserve(struct json_buf *b, size_t more)
{
    if (!b->heap || b->full || more <= b->soft - b->len)
        return;
    size_t cap = b->cap ? b->cap : 512;
    while (cap - b->len < more) {
        if (cap > SIZE_MAX / 2) {
            b->full = true;
            return;
        }
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->full = true;
        return;
    }
    b->p = p;
    b->cap = b->soft = cap;
}

void json_raw(struct json_buf *b, const char *s, size_t n)
{
    if (n == 0)
        return;
    reserve(b, n);
    if (b->full || n > b->soft - b->len) {
        b->full = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void json_str(struct json_buf *b, const char *s, size_t n, size_t max)
{
    /* An escape is at most six bytes per input byte ("\u00XX", "\ufffd"): a heap buffer gets room
     * for the worst case, so only the budget can cut the string there. */
    size_t budget = n <= SIZE_MAX / 6 - 2 ? 6 * n : SIZE_MAX / 2;
    reserve(b, (budget < max ? budget : max) + 2);
    if (b->full || b->soft - b->len < 2) {
        b->full = true;
        return;
    }
    size_t limit = b->soft - 1; /* the closing quote always fits */
    b->p[b->len++] = '"';
    if (max < limit - b->len)
        limit = b->len + max;
    if (!json_escape_append(b->p, &b->len, limit, s, n))
        b->truncated = true;
    b->p[b->len++] = '"';
}

void json_cstr(struct json_buf *b, const char *s)
{
    json_str(b, s, strlen(s), SIZE_MAX);
}

void json_num(struct json_buf *b, long long v)
{
    char digits[24];
    char *end = digits + sizeof digits, *p = end;
    /* Negate in unsigned arithmetic so that LLONG_MIN works. */
    unsigned long long mag = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag);
    if (v < 0)
        *--p = '-';
    json_raw(b, p, (size_t)(end - p));
}

/* `,"key":`; returns where the field began, for end_field(). */
static size_t begin_field(struct json_buf *b, const char *key)
{
    size_t mark = b->len;
    JSON_LIT(b, ",\"");
    json_raw(b, key, strlen(key));
    JSON_LIT(b, "\":");
    return mark;
}

static void end_field(struct json_buf *b, size_t mark)
{
    if (b->full) {
        b->len = mark;
        b->truncated = true;
    }
}

void json_field_str(struct json_buf *b, const char *key, const char *s, size_t n, size_t max)
{
    if (b->full)
        return;
    size_t mark = begin_field(b, key);
    json_str(b, s, n, max);
    end_field(b, mark);
}

void json_field_num(struct json_buf *b, const char *key, long long v)
{
    if (b->full)
        return;
    size_t mark = begin_field(b, key);
    json_num(b, v);
    end_field(b, mark);
}

void json_field_bool(struct json_buf *b, const char *key, bool v)
{
    if (b->full)
        return;
    size_t mark = begin_field(b, key);
    if (v)
        JSON_LIT(b, "true");
    else
        JSON_LIT(b, "false");
    end_field(b, mark);
}

int json_buf_write(struct json_buf *b, FILE *f)
{
    if (b->full)
        return BOOKS_ENOMEM;
    if (b->len > 0)
        fwrite(b->p, 1, b->len, f);
    b->len = 0;
    return 0;
}
