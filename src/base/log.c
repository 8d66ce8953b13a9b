/* log.c: structured JSON logs, one object per line, in Cloud Logging's shape. Lines are built by
 * hand into fixed buffers (no malloc, no snprintf of the whole line) because one is written per
 * RPC. Every string value goes through one escaper that also repairs invalid UTF-8 (utf8.h says
 * what is valid), so a line is valid JSON whatever a client puts in its method name or peer.
 * Per-RPC lines collect in a per-thread buffer and leave in batches; all other lines are written
 * at once. Every write(2) happens under one process-wide mutex and carries whole lines, so lines
 * never interleave. */
#include "books/log.h"

#include "books/error.h"
#include "books/json.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Longest line written, "\n" included. Longer values are cut (at a character boundary) and the
 * line gets "truncated":true, so it stays valid JSON. */
#define LOG_LINE_BYTES 8192

/* Per-thread buffer of per-RPC lines: room for at least two maximal lines, and for ~60 typical
 * ones, so a busy thread makes one write(2) per few dozen calls. */
#define LOG_RPC_BUF_BYTES 16384

/* Bytes every line keeps free for its tail: `,"truncated":true}\n`. */
#define LOG_TAIL_RESERVE 32

/* The longest `,"time":"..."` field: 37 bytes with a 4-digit year, plus room for a longer one. */
#define LOG_TIME_FIELD_BYTES 48

/* How long a write waits for a non-blocking fd that is full before the rest of the line is dropped:
 * logging must not stall the server forever because nobody reads its stdout. */
#define LOG_WRITE_TIMEOUT_MS 1000

/* Output budget (escaped bytes) of each variable string in a per-RPC line, so the fields after a
 * hostile method name (code, latency, peer) always fit in LOG_LINE_BYTES. */
#define LOG_RPC_METHOD_MAX 2048
#define LOG_RPC_CODE_MAX 64
#define LOG_RPC_PEER_MAX 512

/* Below this much free space, a thread buffer is flushed before a per-RPC line is formatted. */
#define LOG_RPC_MIN_ROOM 512

static_assert(LOG_RPC_BUF_BYTES >= 2 * LOG_LINE_BYTES, "a thread buffer holds two maximal lines");
static_assert(LOG_TAIL_RESERVE >= sizeof(",\"truncated\":true}\n") - 1, "tail fits the reserve");
static_assert(2 * LOG_RPC_METHOD_MAX + 2 * LOG_RPC_CODE_MAX + LOG_RPC_PEER_MAX + 512 <
                  LOG_LINE_BYTES - LOG_TAIL_RESERVE - LOG_TIME_FIELD_BYTES,
              "the fixed fields of a per-RPC line always fit");

/* Set by log_init() before other threads log; atomics only so that a later log_init() (tests, or
 * a future reload) is not a data race. Relaxed loads are plain loads on every target we build. */
static atomic_int g_min_level = LOG_INFO;
static atomic_int g_fd = 1;

/* Serialises write(2) so that the bytes of one line (or one batch) are contiguous in the output. */
static pthread_mutex_t g_write_mu = PTHREAD_MUTEX_INITIALIZER;
/* True when the last write gave up in the middle of a line; the next one starts with "\n" so that
 * the damage stays confined to that one line. Guarded by g_write_mu. */
static bool g_line_cut;

/* ---- output ---------------------------------------------------------------------------------- */

/* Writes as much of p[0..n) as the fd takes and returns how much that was. Retries partial writes
 * and EINTR; waits at most LOG_WRITE_TIMEOUT_MS for a non-blocking fd that is full; gives up on any
 * other error (EPIPE, EBADF, ENOSPC): a log line is not worth crashing or hanging for. */
static size_t write_all(int fd, const char *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int ready = poll(&pfd, 1, LOG_WRITE_TIMEOUT_MS);
            if (ready > 0 || (ready < 0 && errno == EINTR))
                continue;
        }
        break;
    }
    return done;
}

/* Writes whole lines (p[n - 1] == '\n') in one go under the process-wide mutex. Keeps errno, so a
 * caller can log and then still look at the errno of what failed. */
static void write_lines(const char *p, size_t n)
{
    int saved_errno = errno;
    int fd = atomic_load_explicit(&g_fd, memory_order_relaxed);
    pthread_mutex_lock(&g_write_mu);
    if (g_line_cut && write_all(fd, "\n", 1) == 1)
        g_line_cut = false;
    if (!g_line_cut) {
        size_t done = write_all(fd, p, n);
        if (done > 0)
            g_line_cut = p[done - 1] != '\n';
    }
    pthread_mutex_unlock(&g_write_mu);
    errno = saved_errno;
}

/* ---- JSON building --------------------------------------------------------------------------- */

/* Lines are built with json.h's builder over a caller's buffer (a stack line, or the free space of
 * a thread's batch); each keeps LOG_TAIL_RESERVE bytes past `soft` for finish(), so whatever was
 * cut, the line can always be closed. */
static void line_init(struct json_buf *b, char *p, size_t cap)
{
    json_buf_init(b, p, cap, LOG_TAIL_RESERVE);
}

/* Per-thread cache of the formatted seconds ("2026-11-23T08:43:00"), so gmtime_r and the
 * formatting run once per second per thread instead of once per line. */
#define TIME_TEXT_BYTES 28 /* a year of up to 12 characters, "-" and all */
struct time_cache {
    time_t sec;
    size_t len; /* 0: empty */
    char text[TIME_TEXT_BYTES];
};
static_assert(sizeof(",\"time\":\"") - 1 + TIME_TEXT_BYTES - 1 + sizeof(".123456Z\"") - 1 <=
                  LOG_TIME_FIELD_BYTES,
              "any cached seconds fit the time field");
static _Thread_local struct time_cache t_time;

/* `,"time":"2026-11-23T08:43:00.123456Z"` (RFC 3339, UTC, microseconds). */
static void put_time(struct json_buf *b)
{
    struct timespec ts;
    struct time_cache *tc = &t_time;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (tc->len == 0 || tc->sec != ts.tv_sec) {
        struct tm tm;
        int n = -1;
        if (gmtime_r(&ts.tv_sec, &tm))
            n = snprintf(tc->text, sizeof tc->text, "%04d-%02d-%02dT%02d:%02d:%02d",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                         tm.tm_sec);
        if (n <= 0 || (size_t)n >= sizeof tc->text)
            n = snprintf(tc->text, sizeof tc->text, "1970-01-01T00:00:00");
        tc->sec = ts.tv_sec;
        tc->len = (size_t)n;
    }
    char field[LOG_TIME_FIELD_BYTES];
    size_t n = sizeof(",\"time\":\"") - 1;
    memcpy(field, ",\"time\":\"", n);
    memcpy(field + n, tc->text, tc->len);
    n += tc->len;
    field[n++] = '.';
    unsigned long us = (unsigned long)ts.tv_nsec / 1000;
    for (int i = 5; i >= 0; i--, us /= 10)
        field[n + (size_t)i] = (char)('0' + us % 10); /* six digits, zero-padded */
    n += 6;
    field[n++] = 'Z';
    field[n++] = '"';
    json_raw(b, field, n);
}

/* `{"severity":"...","message":"...","time":"..."`: the message gets whatever room the time field
 * leaves, so the three fields Cloud Logging needs are always there. */
static void put_head(struct json_buf *b, enum log_level level, const char *msg, size_t msg_len,
                     size_t msg_max)
{
    const char *sev = log_level_name(level);
    JSON_LIT(b, "{\"severity\":\"");
    json_raw(b, sev, strlen(sev));
    JSON_LIT(b, "\",\"message\":");
    size_t room = b->full ? 0 : b->soft - b->len;
    size_t max = room > LOG_TIME_FIELD_BYTES + 2 ? room - LOG_TIME_FIELD_BYTES - 2 : 0;
    json_str(b, msg, msg_len, msg_max < max ? msg_max : max);
    put_time(b);
}

/* Closes the line with `}\n`, in the reserve kept for it. Returns its length. */
static size_t finish(struct json_buf *b)
{
    static const char tail[] = ",\"truncated\":true";
    if (b->truncated) {
        memcpy(b->p + b->len, tail, sizeof tail - 1);
        b->len += sizeof tail - 1;
    }
    b->p[b->len++] = '}';
    b->p[b->len++] = '\n';
    return b->len;
}

/* ---- public API ------------------------------------------------------------------------------ */

/* Set once before serving starts; read by every thread afterwards. */
static char g_project[101];

void log_set_project(const char *project)
{
    snprintf(g_project, sizeof g_project, "%s", project ? project : "");
}

void log_init(enum log_level min_level, int fd)
{
    atomic_store_explicit(&g_min_level, (int)min_level, memory_order_relaxed);
    atomic_store_explicit(&g_fd, fd, memory_order_relaxed);
    /* A new fd has no half-written line to finish. */
    pthread_mutex_lock(&g_write_mu);
    g_line_cut = false;
    pthread_mutex_unlock(&g_write_mu);
}

bool log_enabled(enum log_level level)
{
    return (int)level >= atomic_load_explicit(&g_min_level, memory_order_relaxed);
}

/* "warn" after "warning": an alias, accepted but not listed in help and messages. */
const struct opt_choice log_level_choices[] = {
    {"debug", LOG_DEBUG},  {"info", LOG_INFO},   {"warning", LOG_WARNING},
    {"warn", LOG_WARNING}, {"error", LOG_ERROR}, {NULL, 0},
};

int log_level_parse(const char *s, enum log_level *out)
{
    int level;
    if (opt_choice_find(log_level_choices, s, &level) != 0)
        return BOOKS_EINVAL;
    *out = (enum log_level)level;
    return 0;
}

const char *log_level_name(enum log_level level)
{
    switch (level) {
    case LOG_DEBUG:
        return "DEBUG";
    case LOG_INFO:
        return "INFO";
    case LOG_WARNING:
        return "WARNING";
    case LOG_ERROR:
        return "ERROR";
    }
    return "DEFAULT"; /* Cloud Logging's severity for "no level" */
}

/* One log_msg()/log_event() line, built on the stack and written at once. */
static void write_event(enum log_level level, const char *msg, size_t msg_len, bool msg_cut,
                        const struct log_field *fields, size_t n)
{
    char line[LOG_LINE_BYTES];
    struct json_buf b;
    line_init(&b, line, sizeof line);
    put_head(&b, level, msg, msg_len, SIZE_MAX);
    if (msg_cut)
        b.truncated = true;
    for (size_t i = 0; i < n; i++) {
        const struct log_field *f = &fields[i];
        if (f->key == NULL)
            continue;
        if (f->str != NULL)
            json_field_str(&b, f->key, f->str, strlen(f->str), SIZE_MAX);
        else
            json_field_num(&b, f->key, f->num);
    }
    if (b.full)
        b.truncated = true;
    write_lines(line, finish(&b));
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    int saved_errno = errno; /* so that "%m" and the caller both see the caller's errno */
    char text[LOG_LINE_BYTES];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0) {
        /* Only an invalid format gets here; log the format itself rather than nothing. */
        write_event(level, fmt, strlen(fmt), true, NULL, 0);
    } else {
        bool cut = (size_t)n >= sizeof text;
        write_event(level, text, cut ? sizeof text - 1 : (size_t)n, cut, NULL, 0);
    }
    errno = saved_errno;
}

void log_event(enum log_level level, const char *message, const struct log_field *fields, size_t n)
{
    if (!log_enabled(level))
        return;
    if (message == NULL)
        message = "";
    write_event(level, message, strlen(message), false, fields, n);
}

/* ---- per-RPC lines --------------------------------------------------------------------------- */

struct rpc_buf {
    size_t len;
    uint64_t oldest_us; /* log_now_us() when the first buffered line was added */
    bool exit_hook;     /* this thread's buffer is flushed when the thread exits */
    char data[LOG_RPC_BUF_BYTES];
};
static _Thread_local struct rpc_buf t_rpc;

static pthread_once_t g_exit_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t g_exit_key;
static bool g_exit_key_ok;

static void rpc_flush(struct rpc_buf *t)
{
    if (t->len == 0)
        return;
    write_lines(t->data, t->len);
    t->len = 0;
}

/* A thread that ends with lines still buffered (one that forgot log_thread_flush()) does not lose
 * them: the key's destructor runs at pthread_exit() or return from the thread function. The main
 * thread leaving through exit() does not run it, so main flushes itself. */
static void rpc_flush_at_exit(void *p)
{
    rpc_flush(p);
}

static void exit_key_create(void)
{
    g_exit_key_ok = pthread_key_create(&g_exit_key, rpc_flush_at_exit) == 0;
}

/* Formats the line for r into dst (at most cap bytes) and returns its length. *cut tells whether
 * something was left out, i.e. whether more room would have given a longer line. */
static size_t format_rpc(char *dst, size_t cap, const struct log_rpc *r, bool *cut)
{
    const char *method = r->method != NULL ? r->method : "";
    size_t method_len = r->method != NULL ? r->method_len : 0;
    const char *code = r->code != NULL ? r->code : "UNKNOWN";
    size_t code_len = strlen(code);
    struct json_buf b;
    line_init(&b, dst, cap);

    /* The message is "<method> <code>": escape both halves into one JSON string. */
    JSON_LIT(&b, "{\"severity\":\"INFO\",\"message\":\"");
    if (!b.full && b.soft - b.len >= LOG_RPC_CODE_MAX + 3) {
        /* The method gets its budget or what is left after the code, the space and the quote. */
        size_t avail = b.soft - b.len - LOG_RPC_CODE_MAX - 2;
        size_t limit = b.len + (avail < LOG_RPC_METHOD_MAX ? avail : LOG_RPC_METHOD_MAX);
        if (!json_escape_append(b.p, &b.len, limit, method, method_len))
            b.truncated = true;
        b.p[b.len++] = ' ';
        limit = b.len + LOG_RPC_CODE_MAX;
        if (!json_escape_append(b.p, &b.len, limit, code, code_len))
            b.truncated = true;
        b.p[b.len++] = '"';
    } else {
        b.full = true;
    }
    put_time(&b);
    json_field_str(&b, "method", method, method_len, LOG_RPC_METHOD_MAX);
    json_field_str(&b, "code", code, code_len, LOG_RPC_CODE_MAX);
    json_field_num(&b, "latency_us",
                   r->latency_us > INT64_MAX ? INT64_MAX : (long long)r->latency_us);
    if (r->peer != NULL)
        json_field_str(&b, "peer", r->peer, strlen(r->peer), LOG_RPC_PEER_MAX);
    if (r->message != NULL)
        json_field_str(&b, "status_message", r->message, strlen(r->message), SIZE_MAX);
    if (r->trace != NULL && g_project[0] != '\0') {
        /* Cloud Logging's special fields tie the line to its trace in Cloud Trace. */
        char trace[sizeof g_project + sizeof r->trace->trace_id + 24];
        int n = snprintf(trace, sizeof trace, "projects/%s/traces/%s", g_project,
                         r->trace->trace_id);
        json_field_str(&b, "logging.googleapis.com/trace", trace, (size_t)n, SIZE_MAX);
        if (r->trace->span_id[0] != '\0')
            json_field_str(&b, "logging.googleapis.com/spanId", r->trace->span_id,
                           strlen(r->trace->span_id), SIZE_MAX);
        json_field_bool(&b, "logging.googleapis.com/trace_sampled", r->trace->sampled);
    }
    *cut = b.full || b.truncated;
    if (b.full)
        b.truncated = true;
    return finish(&b);
}

void log_rpc(const struct log_rpc *r)
{
    if (!log_enabled(LOG_INFO))
        return;
    struct rpc_buf *t = &t_rpc;
    if (!t->exit_hook) {
        pthread_once(&g_exit_key_once, exit_key_create);
        if (g_exit_key_ok)
            pthread_setspecific(g_exit_key, t);
        t->exit_hook = true;
    }

    /* Format straight into the free space behind the lines already buffered. When the line does
     * not fit there, write out what is buffered and format again at the front, where a line has
     * all of LOG_LINE_BYTES: this costs a second formatting once per buffer, never a split line. */
    size_t room = sizeof t->data - t->len;
    if (room > LOG_LINE_BYTES)
        room = LOG_LINE_BYTES;
    bool cut = true;
    size_t n = 0;
    if (room >= LOG_RPC_MIN_ROOM)
        n = format_rpc(t->data + t->len, room, r, &cut);
    if (cut && room < LOG_LINE_BYTES) {
        rpc_flush(t);
        n = format_rpc(t->data, LOG_LINE_BYTES, r, &cut);
    }

    uint64_t now = log_now_us();
    if (t->len == 0)
        t->oldest_us = now;
    t->len += n;
    if (now - t->oldest_us >= (uint64_t)LOG_FLUSH_MS * 1000)
        rpc_flush(t);
}

void log_thread_flush(void)
{
    rpc_flush(&t_rpc);
}

bool log_thread_pending(void)
{
    return t_rpc.len > 0;
}

uint64_t log_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
