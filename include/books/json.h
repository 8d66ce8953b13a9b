/* json.h: JSON string escaping (RFC 8259 section 7). Writes the inside of a JSON string (without the
 * quotes): `"` and `\` escaped, control characters as \n \r \t or \u00XX, valid UTF-8 copied as it
 * is, and each byte that does not start well-formed UTF-8 (RFC 3629) replaced by \ufffd, so the
 * result is valid JSON whatever the input. No allocation. */
#ifndef BOOKS_JSON_H
#define BOOKS_JSON_H

#include <stdbool.h>
#include <stddef.h>

/* Appends text[0..n) escaped to dst starting at *lenp, never writing at or past dst[limit], and
 * only whole characters or escapes. Updates *lenp. Returns true when all of text was written,
 * false when it stopped early for lack of room. */
bool json_escape_append(char *dst, size_t *lenp, size_t limit, const char *text, size_t n);

#endif
