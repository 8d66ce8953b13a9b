/* text.h: the small text helpers every layer shares: putting a user's text into a one-line message
 * (quoting), word-wrapping help text for a terminal, and reading a strict decimal number. Each
 * exists once here so that messages, help and numbers behave alike in the server, the store URIs
 * and the CLI. No allocation; no global state: any thread may call any of these at any time. */
#ifndef BOOKS_TEXT_H
#define BOOKS_TEXT_H

#include <stddef.h>
#include <stdio.h>

/* Most bytes of the caller's text that text_quote() copies; longer text ends in "...". */
#define TEXT_QUOTE_MAX 48

/* How text_quote() shows bytes a message must not carry as they are. */
enum text_quote_style {
    /* Printable ASCII only: every other byte (controls, DEL, any byte of UTF-8) becomes '?', and
     * nothing is escaped, so the result is plain ASCII however hostile the input. For messages
     * that go to clients and into logs (books_error_quote()). */
    TEXT_QUOTE_ASCII,
    /* For a terminal, inside double quotes: '"' and '\' get a backslash, control characters
     * (C0 and DEL) become \xNN, and every other byte, UTF-8 included, passes as it is. */
    TEXT_QUOTE_ESCAPE,
};

/* Copies src into dst (dstlen bytes, always NUL-terminated when dstlen > 0) for use inside a
 * message: at most TEXT_QUOTE_MAX bytes of src, shown in `style`, with "..." appended when src was
 * cut. An escape is never split: what does not fit in dst (with room for "...") is left out.
 * dst is the caller's; 64 bytes hold any TEXT_QUOTE_ASCII result, 256 any TEXT_QUOTE_ESCAPE one.
 * Returns dst. */
const char *text_quote(char *dst, size_t dstlen, const char *src, enum text_quote_style style);

/* Writes `text` to f word-wrapped at `width` columns, then a newline. The caller has already
 * written `col` columns of the current line: when col < indent the line is first padded to
 * `indent`, when col > indent the first word is separated by a space (or goes to the next line);
 * every further line starts with `indent` spaces. Words are separated by spaces; a
 * "double-quoted phrase" counts as one word (a command to copy is never split across lines), so
 * quotes must pair up. A word longer than the width gets a line of its own. */
void text_wrap(FILE *f, const char *text, int indent, int col, int width);

/* Strict decimal: ASCII digits only (no sign, blank, base prefix, suffix or other script's
 * digits; leading zeros are fine), read with libbsd's strtonum(3) within [min, max] inclusive.
 * Returns 0 with *out set, or BOOKS_EINVAL (also for the empty string, and for any value out of
 * range however many digits it has) with *out untouched. */
int text_parse_decimal(const char *s, long long min, long long max, long long *out);

#endif
