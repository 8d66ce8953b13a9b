/* error.c: the one mapping from enum books_err to gRPC status codes, and the helpers that fill an
 * AIP-193 error value. Formatting is bounded by the fixed buffers in struct books_error: a message
 * that does not fit is cut, never overflowed. */
#include "books/error.h"

#include "books/arena.h"
#include "books/text.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

const char *books_err_name(int err)
{
    switch (err) {
    case BOOKS_OK: return "BOOKS_OK";
    case BOOKS_EINVAL: return "BOOKS_EINVAL";
    case BOOKS_ENOTFOUND: return "BOOKS_ENOTFOUND";
    case BOOKS_EEXIST: return "BOOKS_EEXIST";
    case BOOKS_ENOMEM: return "BOOKS_ENOMEM";
    case BOOKS_ENOSPC: return "BOOKS_ENOSPC";
    case BOOKS_EIO: return "BOOKS_EIO";
    case BOOKS_EUNAVAIL: return "BOOKS_EUNAVAIL";
    case BOOKS_EBADMSG: return "BOOKS_EBADMSG";
    case BOOKS_EUNIMPL: return "BOOKS_EUNIMPL";
    case BOOKS_EDEADLINE: return "BOOKS_EDEADLINE";
    case BOOKS_ECORRUPT: return "BOOKS_ECORRUPT";
    case BOOKS_EINTERNAL: return "BOOKS_EINTERNAL";
    case BOOKS_E2BIG: return "BOOKS_E2BIG";
    case BOOKS_EBUSY: return "BOOKS_EBUSY";
    case BOOKS_EUNKNOWN: return "BOOKS_EUNKNOWN";
    case BOOKS_EABORTED: return "BOOKS_EABORTED";
    case BOOKS_EREFUSED: return "BOOKS_EREFUSED";
    case BOOKS_EREUSED: return "BOOKS_EREUSED";
    case BOOKS_ETHROTTLED: return "BOOKS_ETHROTTLED";
    default: return "BOOKS_E?";
    }
}

void books_error_init(struct books_error *e, struct arena *arena)
{
    e->arena = arena;
    books_error_clear(e);
}

void books_error_clear(struct books_error *e)
{
    e->code = 0;
    e->reason = NULL;
    e->message[0] = '\0';
    e->meta_key = NULL;
    e->meta_value[0] = '\0';
    e->resource_type = NULL;
    e->resource_name[0] = '\0';
    e->retry_delay_ms = 0;
    e->n_violations = 0;
    e->n_dropped = 0;
    e->violation_bytes = 0;
    e->violations = e->inline_violations;
    e->cap_violations = BOOKS_ERROR_INLINE_VIOLATIONS;
}

/* Doubles the violation array in the arena; false when there is no room. */
static bool grow_violations(struct books_error *e)
{
    struct books_field_violation *more;
    size_t cap = e->cap_violations * 2;
    if (cap > BOOKS_ERROR_MAX_VIOLATIONS)
        cap = BOOKS_ERROR_MAX_VIOLATIONS;
    if (!e->arena || cap <= e->cap_violations)
        return false;
    more = arena_alloc(e->arena, cap * sizeof *more);
    if (!more)
        return false;
    memcpy(more, e->violations, e->n_violations * sizeof *more);
    e->violations = more;
    e->cap_violations = cap;
    return true;
}

void books_error_set(struct books_error *e, int code, const char *reason, const char *fmt, ...)
{
    va_list ap;
    e->code = code;
    e->reason = reason;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

void books_error_add_violation(struct books_error *e, const char *field, const char *fmt, ...)
{
    va_list ap;
    struct books_field_violation *v;
    size_t bytes;
    if (e->n_violations >= BOOKS_ERROR_MAX_VIOLATIONS ||
        (e->n_violations == e->cap_violations && !grow_violations(e))) {
        e->n_dropped++;
        return;
    }
    v = &e->violations[e->n_violations];
    snprintf(v->field, sizeof v->field, "%s", field);
    va_start(ap, fmt);
    vsnprintf(v->description, sizeof v->description, fmt, ap);
    va_end(ap);
    /* Each violation costs its text plus a few bytes of protobuf framing. */
    bytes = strlen(v->field) + strlen(v->description) + 8;
    if (e->violation_bytes + bytes > BOOKS_ERROR_MAX_VIOLATION_BYTES) {
        e->n_dropped++;
        return;
    }
    e->violation_bytes += bytes;
    e->n_violations++;
}

void books_error_set_meta(struct books_error *e, const char *key, const char *value)
{
    e->meta_key = key;
    snprintf(e->meta_value, sizeof e->meta_value, "%s", value);
}

void books_error_set_resource(struct books_error *e, const char *type, const char *name)
{
    e->resource_type = type;
    snprintf(e->resource_name, sizeof e->resource_name, "%s", name);
}

const char *books_error_quote(char *dst, size_t dstlen, const char *src)
{
    return text_quote(dst, dstlen, src, TEXT_QUOTE_ASCII);
}

void books_error_finish_fields(struct books_error *e, const char *what)
{
    size_t off, i, room = sizeof e->message;
    /* Leave space for the tail that says how many violations are not in the message. */
    const size_t tail = 160;
    off = (size_t)snprintf(e->message, room, "invalid %s: ", what);
    for (i = 0; i < e->n_violations; i++) {
        const struct books_field_violation *v = &e->violations[i];
        size_t need = strlen(v->field) + strlen(v->description) + 4;
        if (off + need + tail >= room)
            break;
        off += (size_t)snprintf(e->message + off, room - off, "%s%s: %s", i ? "; " : "", v->field,
                                v->description);
    }
    if (e->n_dropped)
        snprintf(e->message + off, room - off,
                 "%s(%zu more field problems: %zu in the BadRequest details, %zu not reported; at "
                 "most %d are reported per request)",
                 i ? "; " : "", e->n_violations + e->n_dropped - i, e->n_violations - i,
                 e->n_dropped, BOOKS_ERROR_MAX_VIOLATIONS);
    else if (i < e->n_violations)
        snprintf(e->message + off, room - off, "%s(%zu more field problems; see the BadRequest "
                 "details)", i ? "; " : "", e->n_violations - i);
    e->code = BOOKS_EINVAL;
    e->reason = "FIELD_VIOLATION";
}

void books_format_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void books_error_set_retry(struct books_error *e, unsigned delay_ms) { e->retry_delay_ms = delay_ms; }
