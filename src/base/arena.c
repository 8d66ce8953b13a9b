/* arena.c: a bump allocator over a caller's inline buffer, with heap chunks for what does not fit.
 * A call's request message, its small response objects and its scratch strings come from here, so
 * serving a call does not churn malloc; arena_reset() gives everything back at once. */
#include "books/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Heap chunk header; the payload follows, aligned like max_align_t. */
struct arena_chunk {
    struct arena_chunk *next;
    size_t cap;
    size_t used;
    alignas(max_align_t) unsigned char data[];
};

#define ARENA_ALIGN alignof(max_align_t)
#define ARENA_CHUNK_BYTES 8192

static size_t align_up(size_t n) { return (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1); }

void arena_init(struct arena *a, void *buf, size_t cap)
{
    /* Start handing out from the first aligned byte of the caller's buffer. */
    uintptr_t p = (uintptr_t)buf;
    size_t skip = (size_t)(align_up(p) - p);
    a->buf = (unsigned char *)buf + (skip < cap ? skip : cap);
    a->cap = skip < cap ? cap - skip : 0;
    a->used = 0;
    a->chunks = NULL;
}

void *arena_alloc(struct arena *a, size_t n)
{
    struct arena_chunk *c;
    size_t need = align_up(n ? n : 1);
    if (need < n) /* overflow */
        return NULL;
    if (a->cap - a->used >= need) {
        void *p = a->buf + a->used;
        a->used += need;
        return p;
    }
    c = a->chunks;
    if (c && c->cap - c->used >= need) {
        void *p = c->data + c->used;
        c->used += need;
        return p;
    }
    /* A large request gets a chunk of its own; small ones share a fresh ARENA_CHUNK_BYTES chunk. */
    size_t cap = need > ARENA_CHUNK_BYTES / 2 ? need : ARENA_CHUNK_BYTES;
    if (cap > SIZE_MAX - sizeof *c)
        return NULL;
    c = malloc(sizeof *c + cap);
    if (!c)
        return NULL;
    c->cap = cap;
    c->used = need;
    if (cap == need && a->chunks) {
        /* Keep the partly used chunk at the head so small allocations keep filling it. */
        c->next = a->chunks->next;
        a->chunks->next = c;
    } else {
        c->next = a->chunks;
        a->chunks = c;
    }
    return c->data;
}

size_t arena_heap_bytes(const struct arena *a)
{
    size_t n = 0;
    for (const struct arena_chunk *c = a->chunks; c; c = c->next)
        n += sizeof *c + c->cap;
    return n;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
    char *p = len < SIZE_MAX ? arena_alloc(a, len + 1) : NULL;
    if (!p)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void arena_reset(struct arena *a)
{
    struct arena_chunk *c = a->chunks, *next;
    for (; c; c = next) {
        next = c->next;
        free(c);
    }
    a->chunks = NULL;
    a->used = 0;
}

void arena_cleanup(struct arena *a)
{
    if (!a)
        return;
    arena_reset(a);
}
