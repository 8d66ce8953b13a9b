/* utf8.h: UTF-8 validation (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF).
 * Proto3 `string` fields must hold valid UTF-8, and log lines must be valid JSON; protobuf-c checks
 * neither, so the codec (every string field of a message it decodes, at any depth) and the JSON
 * writer (json.c, under the logs) both ask here. Pure functions, no allocation: any thread. */
#ifndef BOOKS_UTF8_H
#define BOOKS_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Length in bytes (1..4) of the well-formed UTF-8 sequence starting at s (n bytes available, n > 0),
 * or 0 when the bytes there are not well-formed UTF-8. */
size_t utf8_sequence_len(const unsigned char *s, size_t n);

/* True when the n bytes at s are entirely well-formed UTF-8. */
bool utf8_valid(const char *s, size_t n);

#endif
