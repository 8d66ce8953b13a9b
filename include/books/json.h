/* json.h: writing JSON (RFC 8259): the string escaper, and the one builder every JSON document of
 * this project is made with (the log lines, the CLI's --json output). Strings are escaped as RFC
 * 8259 section 7 says: `"` and `\` escaped, control characters as \n \r \t or \u00XX, valid UTF-8
 * copied as it is, and each byte that does not start well-formed UTF-8 (RFC 3629) replaced by
 * \ufffd, so the result is valid JSON whatever the input. The builder never formats numbers with
 * printf and never splits an escape. No global state: any thread, each with its own buffer. */
#ifndef BOOKS_JSON_H
#define BOOKS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Appends text[0..n) escaped to dst starting at *lenp, never writing at or past dst[limit], and
 * only whole characters or escapes. Updates *lenp. Returns true when all of text was written,
 * false when it stopped early for lack of room. No allocation. */
bool json_escape_append(char *dst, size_t *lenp, size_t limit, const char *text, size_t n);

/* A JSON document (or line) under construction, in one of two kinds of memory:
 *  - fixed (json_buf_init): the caller's buffer, no allocation. Appends stop at `soft`, which
 *    keeps `reserve` bytes at the end for the caller to close the document with (the log writes
 *    `,"truncated":true}\n` there); what does not fit sets `full`, and nothing more is added.
 *  - heap (json_buf_init_heap): grows with realloc(3) as needed; `full` then means out of memory.
 * The fields are public so that a caller can add bytes of its own (p[len..soft)), but appending
 * through the functions below keeps the rules. */
struct json_buf {
    char *p;        /* the document so far; not NUL-terminated */
    size_t len;     /* bytes used */
    size_t soft;    /* appends never pass this */
    size_t cap;     /* bytes of p */
    bool heap;      /* p is malloc'ed by this module and grows; free with json_buf_free() */
    bool full;      /* an append did not fit (heap: no memory); later appends do nothing */
    bool truncated; /* a string was cut to its budget, or a field was taken out again */
};

/* A fixed buffer: p (cap bytes, the caller's, cap > reserve), appends up to cap - reserve. */
void json_buf_init(struct json_buf *b, char *p, size_t cap, size_t reserve);

/* A growable, empty buffer (no allocation until the first append). */
void json_buf_init_heap(struct json_buf *b);

/* Frees a heap buffer's memory and leaves it empty; a no-op for a fixed buffer. */
void json_buf_free(struct json_buf *b);

/* Appends s[0..n) as it is (the caller's JSON syntax). */
void json_raw(struct json_buf *b, const char *s, size_t n);
#define JSON_LIT(b, lit) json_raw((b), (lit), sizeof(lit) - 1)

/* A string value: `"`, at most `max` bytes of escaped s[0..n) (SIZE_MAX: all of it), `"`. A cut
 * string (budget or room) still gets its closing quote and sets `truncated`. */
void json_str(struct json_buf *b, const char *s, size_t n, size_t max);

/* A NUL-terminated string value, whole. */
void json_cstr(struct json_buf *b, const char *s);

/* A decimal integer. */
void json_num(struct json_buf *b, long long v);

/* Fields after the first of an object: `,"key":` and the value. key is plain ASCII, not escaped.
 * A field that does not fit whole is taken out again (a cut never lands inside a key or a
 * number) and sets `truncated`; no later field is added. */
void json_field_str(struct json_buf *b, const char *key, const char *s, size_t n, size_t max);
void json_field_num(struct json_buf *b, const char *key, long long v);
void json_field_bool(struct json_buf *b, const char *key, bool v);

/* Writes the document to f and empties the buffer for the next one. Returns 0, or BOOKS_ENOMEM
 * (nothing written, buffer kept) when something did not fit: a heap buffer ran out of memory,
 * or a fixed one was full. Errors of f itself are left to the caller (ferror). */
int json_buf_write(struct json_buf *b, FILE *f);

#endif
