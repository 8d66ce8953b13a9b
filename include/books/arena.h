/* arena.h: a per-call bump allocator. Request messages are unpacked into it and handlers build
 * their responses in it, so a call costs no malloc/free pairs for its small objects; everything is
 * released at once by arena_reset() when the call is over. Not thread-safe: one call, one thread at
 * a time. Never use it for anything that must outlive the call. Knows nothing of protobuf: the
 * codec wraps it in protobuf-c's allocator interface. */
#ifndef BOOKS_ARENA_H
#define BOOKS_ARENA_H

#include <stddef.h>

struct arena_chunk;

/* Caller-owned; initialise with arena_init(). */
struct arena {
    unsigned char *buf;         /* the caller's inline buffer (not owned) */
    size_t cap;                 /* its size in bytes */
    size_t used;                /* bytes handed out from buf */
    struct arena_chunk *chunks; /* heap chunks for what did not fit, freed by reset */
};

/* Bytes of heap chunks the arena holds now (its inline buffer not counted): what a call's
 * arena costs beyond the call object, for memory budgets. */
size_t arena_heap_bytes(const struct arena *a);

/* Uses `buf` (`cap` bytes, caller-owned, must outlive the arena) as the first block. */
void arena_init(struct arena *a, void *buf, size_t cap);

/* Returns `n` bytes aligned for any type, or NULL when out of memory (BOOKS_ENOMEM for the caller).
 * The memory stays valid until arena_reset() or arena_cleanup(). n == 0 returns a valid pointer. */
void *arena_alloc(struct arena *a, size_t n);

/* Copies `len` bytes of `s` and a terminating NUL into the arena; NULL when out of memory. */
char *arena_strndup(struct arena *a, const char *s, size_t len);

/* Releases everything allocated since init or the last reset; keeps the inline buffer. */
void arena_reset(struct arena *a);

/* Releases all heap memory; the arena must be re-initialised before reuse. NULL is a no-op. */
void arena_cleanup(struct arena *a);

#endif
