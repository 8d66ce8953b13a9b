/* error.h: the project's error codes and the AIP-193 error value (reason, message, field
 * violations) that handlers fill in and the codec turns into google.rpc.Status. This module never
 * logs and knows nothing of gRPC: the one mapping from these codes to gRPC status codes is
 * status.h's (rpc_status_of, in the RPC layer, README "Errors"); it allocates only from the arena it
 * is given.
 * Thread safety: a struct books_error belongs to one call; the functions keep no state. */
#ifndef BOOKS_ERROR_H
#define BOOKS_ERROR_H

#include <stddef.h>

/* Every function in this project that can fail returns 0 or one of these (always negative).
 * Out-parameters are left untouched on failure. Which gRPC status each becomes is rpc_status_of()'s
 * (status.c), and nowhere else. */
enum books_err {
    BOOKS_OK = 0,
    BOOKS_EINVAL = -1,     /* the caller sent a bad value */
    BOOKS_ENOTFOUND = -2,  /* no such resource */
    BOOKS_EEXIST = -3,     /* the resource name is taken */
    BOOKS_ENOMEM = -4,     /* out of memory */
    BOOKS_ENOSPC = -5,     /* the store is full (disk, quota) */
    BOOKS_EIO = -6,        /* the store failed to read or write; retry later */
    BOOKS_EUNAVAIL = -7,   /* the server or store cannot serve now */
    BOOKS_EBADMSG = -8,    /* the request bytes are not a valid message */
    BOOKS_EUNIMPL = -9,    /* no such method */
    BOOKS_EDEADLINE = -10, /* the caller's deadline passed before the work was done */
    BOOKS_ECORRUPT = -11,  /* stored data is not what was written */
    BOOKS_EINTERNAL = -12, /* a bug or an impossible state */
    BOOKS_E2BIG = -13,     /* the request is larger than the server accepts */
    BOOKS_EBUSY = -14,     /* too much work in flight (a queue or the memory
                            * budget of calls in flight is full); nothing was done: retry later */
    BOOKS_EUNKNOWN = -15,  /* a write whose outcome cannot be known (the
                            * connection broke after COMMIT was sent) */
    BOOKS_EABORTED = -16,  /* the store aborted it (serialization, deadlock) */
    BOOKS_EREFUSED = -17,  /* the store refuses it and will go on refusing
                            * (its permissions, its own rules) until fixed */
    BOOKS_EREUSED = -18,   /* an AIP-155 request_id already used by another
                            * request */
    BOOKS_ETHROTTLED = -19, /* the store turns work away for now (a quota, a
                             * ramp-up, its memory): nothing was done; retry after a delay */
};
/* The most negative code: every code lies in [BOOKS_ERR_LOWEST, -1] (tests walk them all). */
#define BOOKS_ERR_LOWEST BOOKS_ETHROTTLED

/* A short static name for an enum books_err ("BOOKS_ENOTFOUND"), for logs and tests. */
const char *books_err_name(int err);

/* ErrorInfo.domain for every error this server sends (AIP-193): the API's service name. */
#define BOOKS_ERROR_DOMAIN "books.example.com"

#define BOOKS_ERROR_MESSAGE_BYTES 1024
#define BOOKS_ERROR_FIELD_BYTES 48
#define BOOKS_ERROR_DESCRIPTION_BYTES 256
#define BOOKS_ERROR_INLINE_VIOLATIONS 4
/* Most field violations one error carries (AIP-193 asks for one per bad field, not for a million:
 * a request with more bad fields gets the first ones and a count of the rest). */
#define BOOKS_ERROR_MAX_VIOLATIONS 32
/* Most bytes of violation text (fields and descriptions) one error carries. The details travel
 * base64-encoded in the grpc-status-details-bin trailer beside the grpc-message (at most
 * BOOKS_ERROR_MESSAGE_BYTES): 4 KiB keeps the whole trailer within the 8 KiB of metadata that a
 * gRPC client accepts by default, so the caller always gets the error itself, never a
 * RESOURCE_EXHAUSTED about its size. */
#define BOOKS_ERROR_MAX_VIOLATION_BYTES 4096
#define BOOKS_ERROR_META_VALUE_BYTES 128

/* One google.rpc.BadRequest.FieldViolation: `field` is the path of the field in the request,
 * e.g. "book.authors[2]"; `description` says what is wrong and what to send instead. */
struct books_field_violation {
    char field[BOOKS_ERROR_FIELD_BYTES];
    char description[BOOKS_ERROR_DESCRIPTION_BYTES];
};

struct arena;

/* An error as the caller will see it (AIP-193). Plain data with fixed-size text buffers, so it lives
 * inside a per-call object; text that does not fit is truncated. Field violations start in a small
 * inline array and grow in the call's arena up to BOOKS_ERROR_MAX_VIOLATIONS; the rest are counted
 * in n_dropped, and the message says how many were left out.
 * Initialise with books_error_init(); `code` == 0 means "no error". */
struct books_error {
    int code;            /* enum books_err; 0 when there is no error */
    const char *reason;  /* ErrorInfo.reason: static UPPER_SNAKE_CASE string, never NULL when code != 0 */
    char message[BOOKS_ERROR_MESSAGE_BYTES]; /* the grpc-message: English, says what to fix */
    const char *meta_key;                    /* optional ErrorInfo.metadata entry (static key) */
    char meta_value[BOOKS_ERROR_META_VALUE_BYTES];
    const char *resource_type;               /* optional google.rpc.ResourceInfo (static type) */
    unsigned retry_delay_ms;                 /* google.rpc.RetryInfo.retry_delay; 0: none sent */
    char resource_name[BOOKS_ERROR_META_VALUE_BYTES];
    struct arena *arena;                     /* where more violations go; NULL: inline only */
    size_t n_violations;
    size_t cap_violations;
    size_t n_dropped;                        /* violations past the caps, or that found no memory */
    size_t violation_bytes;                  /* text of the kept violations, in bytes */
    struct books_field_violation *violations; /* inline_violations or arena memory */
    struct books_field_violation inline_violations[BOOKS_ERROR_INLINE_VIOLATIONS];
};

/* Formats a start-up or open error message into err (errlen bytes, always NUL-terminated when
 * errlen > 0; truncated to fit). err may be NULL or errlen 0: then nothing is written. The caller
 * owns err. Used by every "char *err, size_t errlen" out-parameter (config, store openers). */
void books_format_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepares `e` (no error) to allocate extra violations from `arena` (may be NULL). The arena must
 * outlive every use of e until the next books_error_init(). */
void books_error_init(struct books_error *e, struct arena *arena);

/* Resets `e` to "no error", keeping its arena. Violations allocated before stay in the arena
 * until it is reset. */
void books_error_clear(struct books_error *e);

/* Sets code, reason (static string) and a printf-formatted message. Keeps existing violations. */
void books_error_set(struct books_error *e, int code, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Appends one field violation (printf-formatted description); `field` is copied (truncated to
 * fit). Past BOOKS_ERROR_MAX_VIOLATIONS or BOOKS_ERROR_MAX_VIOLATION_BYTES, or when the arena cannot
 * grow (or there is none and the inline array is full), the violation is only counted in
 * n_dropped. At most
 * BOOKS_ERROR_MAX_VIOLATIONS * sizeof(struct books_field_violation) bytes (about 10 KiB) come from
 * the arena however many are added. */
void books_error_add_violation(struct books_error *e, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets the one ErrorInfo.metadata entry: `key` must be a static string, `value` is copied. */
void books_error_set_meta(struct books_error *e, const char *key, const char *value);

/* Sets google.rpc.RetryInfo: how long the caller should wait before it retries (AIP-193, AIP-194),
 * in milliseconds; 0 sends none. */
void books_error_set_retry(struct books_error *e, unsigned delay_ms);

/* Sets google.rpc.ResourceInfo: `type` static (e.g. "books.example.com/Book"), `name` copied. */
void books_error_set_resource(struct books_error *e, const char *type, const char *name);

/* Turns the violations collected in `e` into one INVALID_ARGUMENT error (reason FIELD_VIOLATION)
 * whose message names the request kind (`what`, e.g. "CreateBookRequest") and lists each field with
 * what to fix, as many as fit, then how many more the BadRequest details hold and how many were
 * not reported at all (n_dropped). */
void books_error_finish_fields(struct books_error *e, const char *what);

/* Copies caller input into dst (dstlen bytes) for use inside an error message: printable ASCII
 * only (any other byte becomes '?'), at most 48 characters, "..." appended when cut. Messages never
 * echo raw bytes back to the caller or into logs. This is text.h's text_quote() in the style
 * TEXT_QUOTE_ASCII, under the name the RPC and API layers use. Returns dst. Any thread. */
const char *books_error_quote(char *dst, size_t dstlen, const char *src);

#endif
