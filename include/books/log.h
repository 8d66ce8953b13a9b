/* log.h: structured logs, one JSON object per line on stdout in Cloud Logging's shape (`severity`,
 * `message`, `time` in RFC 3339 UTC). The level check comes before any formatting. Per-RPC lines are
 * buffered per thread and written in batches (at most LOG_FLUSH_MS late, or when the buffer fills);
 * every other line is written at once. Writes never interleave within a line. Never called from a
 * signal handler. A line is at most 8 KiB: longer values are cut at a character boundary and the line
 * gets "truncated":true. A thread's buffered per-RPC lines are also written when the thread exits;
 * the main thread must call log_thread_flush() before exit(). On a non-blocking fd that stays full
 * for 1 s the rest of a line is dropped. */
#ifndef BOOKS_LOG_H
#define BOOKS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "books/options.h"
#include "books/trace.h"

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARNING = 2, LOG_ERROR = 3 };

/* A per-RPC line waits at most this long in a thread's buffer while that thread is busy. */
#define LOG_FLUSH_MS 100

/* Sets the minimum level and the output file descriptor (1 for stdout). Call before other threads
 * start logging. */
void log_init(enum log_level min_level, int fd);

/* True when lines of `level` are written. Cheap: check it before building anything to log. */
bool log_enabled(enum log_level level);

/* The level names "debug", "info", "warning" (alias "warn"), "error" and their enum log_level
 * values, for opt_set_choice() rows (the server's --log-level). */
extern const struct opt_choice log_level_choices[];

/* Parses a name of log_level_choices, case-insensitively. 0, or BOOKS_EINVAL with *out
 * untouched. Any thread. */
int log_level_parse(const char *s, enum log_level *out);

/* The Cloud Logging severity name of a level ("INFO"). */
const char *log_level_name(enum log_level level);

/* Writes one line at once: {"severity", "message" (printf-formatted, JSON-escaped), "time"}. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* An extra field of a log_event() line: a string (JSON-escaped) when `str` is non-NULL, else the
 * integer `num`. */
struct log_field {
    const char *key; /* static, plain ASCII, not escaped */
    const char *str;
    long long num;
};

/* Like log_msg() with a fixed message and `n` extra top-level fields, e.g. the "listening" line
 * {"severity":"INFO","message":"listening","time":...,"port":8080,"store":"memory:"}. */
void log_event(enum log_level level, const char *message, const struct log_field *fields, size_t n);

/* One finished RPC. Strings need not be NUL-terminated (lengths given) and are JSON-escaped. */
struct log_rpc {
    const char *method;   /* the :path, e.g. "/books.v1.BooksService/GetBook" */
    size_t method_len;
    const char *code;     /* gRPC status code name, e.g. "NOT_FOUND" */
    uint64_t latency_us;  /* from the call's arrival to its last batch completing */
    const char *peer;     /* e.g. "ipv4:127.0.0.1:53814"; may be NULL */
    const char *message;  /* the status message sent, or NULL */
    const struct trace_context *trace; /* the caller's trace context, or NULL */
};

/* Sets the Google Cloud project id used in "logging.googleapis.com/trace":
 * "projects/PROJECT/traces/TRACE_ID". Empty or NULL: per-RPC lines carry no trace fields. At most
 * 100 characters (config validates the id). Call before serving starts. */
void log_set_project(const char *project);

/* Appends an INFO line for `r` to this thread's buffer: {"severity":"INFO","message":"<method>
 * <code>","time",...,"method","code","latency_us","peer","status_message"}, plus, when r->trace is
 * set and a project is configured, "logging.googleapis.com/trace", ".../spanId" (when the caller
 * sent one) and ".../trace_sampled". "peer" and "status_message" are left out when NULL; peer,
 * code and message are NUL-terminated, method is not. Flushed by log_thread_flush(), when the
 * buffer fills, or when the oldest line is LOG_FLUSH_MS old. Cheap no-op when INFO is disabled. */
void log_rpc(const struct log_rpc *r);

/* Writes this thread's buffered lines now. */
void log_thread_flush(void);

/* True when this thread has buffered lines (the caller should flush within LOG_FLUSH_MS). */
bool log_thread_pending(void);

/* Monotonic clock in microseconds (CLOCK_MONOTONIC), for latencies. */
uint64_t log_now_us(void);

#endif
