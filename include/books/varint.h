/* varint.h: the base-128 varints of the protobuf binary encoding (protobuf.dev, "Encoding": seven
 * bits a byte, least significant group first, the high bit set on every byte but the last; a
 * uint64 takes at most 10 bytes). For the few places that read or write protobuf bytes without
 * protobuf-c: the codec's pre-scan of a request, a record's name field (store.c), the layout of a
 * book of 363d47a (legacy.c). Pure functions, no allocation: any thread. */
#ifndef BOOKS_VARINT_H
#define BOOKS_VARINT_H

#include <stddef.h>
#include <stdint.h>

/* Most bytes a varint of a uint64 takes. */
#define VARINT_MAX_BYTES 10

/* Reads the varint at p into *v, never reading at or past `end`; returns its length in bytes, or
 * 0 when the bytes are not one (cut short, or longer than VARINT_MAX_BYTES): *v is then
 * untouched. */
size_t varint_read(const uint8_t *p, const uint8_t *end, uint64_t *v);

/* Writes v at out (room for varint_size(v) bytes) and returns the byte after it. */
uint8_t *varint_write(uint8_t *out, uint64_t v);

/* Bytes the varint of v takes (1..VARINT_MAX_BYTES). */
size_t varint_size(uint64_t v);

#endif
