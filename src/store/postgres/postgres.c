/* postgres.c: the `postgresql://` backend (store_postgres.h), on Debian's libpq.
 *
 * The promise: a create whose done() reported 0 is in a committed transaction (with PostgreSQL's
 * synchronous_commit=on, on the database's disk) before done() runs; one that reported an error is
 * not acknowledged, and whether it was stored is for a retry to find out (ALREADY_EXISTS), because
 * a connection can break after COMMIT was sent and before its answer came back.
 *
 * No gRPC worker thread ever waits on the network. Every call into this store returns at once:
 *  - Reads (get_async, list_async) go to a queue served by `pool` reader threads, each owning one
 *    connection in libpq's pipeline mode: a reader takes everything queued (at most
 *    READ_BATCH_MAX), sends it as prepared statements with binary results, one Sync, and reads the
 *    answers in order: many calls in flight share few connections and one round trip per batch.
 *    The record cache above the store (record_cache.h) answers a GetBook of a book it holds
 *    inline, without reaching this store.
 *  - Creates go through the commit pipeline (commit_pipeline.h): its committer thread owns the
 *    write connection and writes everything queued in as few transactions as it can, each one
 *    BEGIN, one multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING name, COMMIT, in one
 *    pipelined round trip, every create settled from its own row (writes.c says how). Its
 *    answerer thread calls the done()s.
 * Deadlines: a read whose deadline passes is answered BOOKS_EDEADLINE then, and when every read
 * of a reader's batch has been answered that way, the reader cancels the query in the database
 * (PQcancel). statement_timeout bounds every query in any case.
 * Every connection, the readers' too, goes to a primary: a standby could answer NOT_FOUND for a
 * book already acknowledged. The URI may name several hosts (a failover manager's nodes); each
 * attempt tries them all at once and takes the first that takes writes (conn.c).
 * Faults: a connection that breaks fails the calls caught in it with BOOKS_EUNAVAIL, which callers
 * retry; its thread reconnects at once, then with backoff (50 ms doubling to 500 ms, with jitter:
 * a new primary is found within about half a second of its promotion), answering BOOKS_EUNAVAIL at
 * once meanwhile, and the store reports itself unavailable (store_watch) while the writer or every
 * reader is down, available again once they are back. When the writer finds no primary, or the
 * watchdog (watch.c) gets no answer from one within silence_timeout_ms, the store is unreachable
 * (pg_reach): creates and reads are answered BOOKS_EUNAVAIL at once, none queues to its deadline,
 * until any connection finds a primary again. */
#include "books/store_postgres.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "books/commit_pipeline.h"
#include "books/error.h"
#include "books/log.h"
#include "books/options.h"
#include "pg.h"

/* Reconnection backoff bounds, milliseconds: low, so that a promoted standby is found within
 * about RECONNECT_MAX_MS of its promotion; each delay is drawn from its upper half (jitter), so
 * that many instances do not all knock at once. */
#define RECONNECT_MIN_MS 50
#define RECONNECT_MAX_MS 500
/* How long one attempt to connect (every host at once) may take while serving, when the URI
 * sets no connect_timeout (and never more than silence_timeout_ms): a call waits at most this
 * long for a database that went away before it is told UNAVAILABLE. */
#define RECONNECT_TIMEOUT_S 2
#define STARTUP_CONNECT_TIMEOUT_S 5

static const struct store_ops pg_ops;

/* How long a connection may stay silent while a query runs before it is taken for dead: longer
 * than any query may run (statement_timeout) plus 5 s; 0 (wait for ever) without a timeout. */
uint64_t pg_silence_ns(const struct pg_store *st)
{
    return st->prm.statement_timeout_ms
               ? ((uint64_t)st->prm.statement_timeout_ms + 5000u) * 1000000u
               : 0;
}

uint64_t pg_silence_bound_ns(const struct pg_store *st)
{
    return (uint64_t)st->prm.silence_timeout_ms * 1000000u;
}

uint64_t pg_attempt_ns(const struct pg_store *st)
{
    int s = pg_plan_connect_timeout_s(st->plan);
    uint64_t ns = (uint64_t)(s > 0 ? s : RECONNECT_TIMEOUT_S) * 1000000000u;
    return ns < pg_silence_bound_ns(st) ? ns : pg_silence_bound_ns(st);
}

/* ---- availability -------------------------------------------------------------------------- */

/* Records that a connection went up or down and tells the listener when the store as a whole
 * changed: available while the writer and at least one reader are connected. */
void pg_link_state(struct pg_store *st, struct link *l, bool writer, bool up)
{
    pthread_mutex_lock(&st->state_mu);
    if (l->up != up) {
        l->up = up;
        if (writer)
            st->writer_up = up;
        else if (up)
            st->readers_up++;
        else
            st->readers_up--;
        atomic_store_explicit(&st->readers_up_now, st->readers_up, memory_order_relaxed);
        bool available = st->writer_up && st->readers_up > 0 && !atomic_load(&st->unreachable);
        if (available != st->available) {
            st->available = available;
            if (st->opened) /* not for the connections of start-up */
                log_msg(available ? LOG_INFO : LOG_WARNING, "PostgreSQL at %s: %s", st->shown,
                        available ? "reachable again" : "unavailable; calls get UNAVAILABLE");
            if (st->state_fn)
                st->state_fn(st->state_arg, available);
        }
    }
    pthread_mutex_unlock(&st->state_mu);
}

void pg_reach(struct pg_store *st, bool reachable, bool silenced, const char *why)
{
    uint64_t now = pg_now_ns(), was_since = 0;
    bool changed;

    pthread_mutex_lock(&st->state_mu);
    changed = atomic_load(&st->unreachable) == reachable;
    if (reachable || silenced)
        atomic_store(&st->silenced, !reachable);
    if (changed) {
        atomic_store(&st->unreachable, !reachable);
        was_since = st->unreachable_since_ns;
        st->unreachable_since_ns = reachable ? 0 : now;
        bool available = reachable && st->writer_up && st->readers_up > 0;
        if (available != st->available) {
            st->available = available;
            if (st->state_fn)
                st->state_fn(st->state_arg, available);
        }
    }
    if (reachable) {
        atomic_fetch_add(&st->epoch, 1);
        if (!st->writer_up)
            commit_pipeline_poke(st->poke_pipeline); /* the writer connects before a create */
    }
    pthread_mutex_unlock(&st->state_mu);
    if (!changed) {
        if (reachable) { /* a reader backing off tries now (the epoch moved) */
            pthread_mutex_lock(&st->mu);
            pthread_cond_broadcast(&st->cv);
            pthread_mutex_unlock(&st->mu);
        }
        return;
    }
    if (reachable) {
        log_msg(LOG_INFO, "PostgreSQL at %s: a primary answers again after %llu ms", st->shown,
                (unsigned long long)((now - was_since) / 1000000u));
        pthread_mutex_lock(&st->mu);
        pthread_cond_broadcast(&st->cv);
        pthread_mutex_unlock(&st->mu);
    } else {
        log_msg(LOG_WARNING, "PostgreSQL at %s: no primary %s; creates and reads get UNAVAILABLE "
                "at once until one answers", st->shown, why);
        pg_reads_refuse_queued(st);
        pg_watch_look(st);
    }
}

static void pg_watch(struct store *s, store_state_fn fn, void *arg)
{
    struct pg_store *st = (struct pg_store *)s;
    pthread_mutex_lock(&st->state_mu);
    st->state_fn = fn;
    st->state_arg = arg;
    fn(arg, st->available); /* the state now, so no change before this is missed */
    pthread_mutex_unlock(&st->state_mu);
}

/* ---- connections ----------------------------------------------------------------------------- */

/* The readers' prepared statements, by layout (schema.c): [0] version 3, [1] expanded. */
static const char *const prepared[2][3][2] = {
    {{"get", STORE_POSTGRES_GET_SQL(STORE_POSTGRES_COLUMNS_V3)},
     {"list_first",
      STORE_POSTGRES_LIST_FIRST_SQL(STORE_POSTGRES_COLUMNS_V3, STORE_POSTGRES_ROW_BYTES_V3)},
     {"list_after",
      STORE_POSTGRES_LIST_AFTER_SQL(STORE_POSTGRES_COLUMNS_V3, STORE_POSTGRES_ROW_BYTES_V3)}},
    {{"get", STORE_POSTGRES_GET_SQL(STORE_POSTGRES_COLUMNS_EXPANDED)},
     {"list_first", STORE_POSTGRES_LIST_FIRST_SQL(STORE_POSTGRES_COLUMNS_EXPANDED,
                                                  STORE_POSTGRES_ROW_BYTES_EXPANDED)},
     {"list_after", STORE_POSTGRES_LIST_AFTER_SQL(STORE_POSTGRES_COLUMNS_EXPANDED,
                                                  STORE_POSTGRES_ROW_BYTES_EXPANDED)}},
};

/* Per-connection settings, the shared layout lock (schema.c: by it a contract tells this version's
 * sessions from older servers'), the layout (an expanded store asks whether another server has
 * contracted since: then it moves to version 3's statements, for good), statements (readers),
 * then pipeline mode; l->layout records the layout its statements are for. 0 or a books_err.
 * synchronous_commit and client_encoding are set on every connection, whatever the role, the
 * database or the URI's `options` say: a role-level synchronous_commit = off would otherwise
 * acknowledge creates before they are on disk, and a client_encoding other than UTF8 would
 * transcode the books' text. Only this store's own `synchronous_commit` parameter weakens the
 * first. */
static int setup(struct pg_store *st, struct link *l, bool reader)
{
    PGconn *conn = l->conn;
    char sql[160];
    int rc, layout = atomic_load(&st->layout);

    /* Blocking calls, one round trip each: the watchdog sees each wait (its silence counted from
     * the statement's start), and pulls the plug on a silent database. */
    pg_link_wait_begin(l, pg_now_ns());
    snprintf(sql, sizeof sql,
             "SET statement_timeout = %d; SET synchronous_commit = %s; "
             "SET client_encoding = 'UTF8'",
             st->prm.statement_timeout_ms,
             pg_synchronous_commit_values[st->prm.synchronous_commit]);
    rc = pg_exec(conn, sql, PGRES_COMMAND_OK, NULL);
    pg_link_wait_begin(l, pg_now_ns());
    if (rc == 0)
        rc = pg_hold_layout_lock(conn);
    pg_link_wait_begin(l, pg_now_ns());
    if (rc == 0 && layout == PG_LAYOUT_EXPANDED && (rc = pg_schema_layout(conn, &layout)) == 0 &&
        layout == PG_LAYOUT_CURRENT) {
        int was = PG_LAYOUT_EXPANDED;
        if (atomic_compare_exchange_strong(&st->layout, &was, PG_LAYOUT_CURRENT))
            log_msg(LOG_INFO, "PostgreSQL at %s: another server has contracted the schema to "
                    "version %d; this one now uses version %d's statements", st->shown,
                    PG_SCHEMA_VERSION, PG_SCHEMA_VERSION);
    }
    l->layout = layout;
    const char *const(*stmts)[2] = prepared[layout == PG_LAYOUT_EXPANDED];
    for (size_t i = 0; rc == 0 && reader && i < 3; i++) {
        pg_link_wait_begin(l, pg_now_ns());
        PGresult *res = PQprepare(conn, stmts[i][0], stmts[i][1], 0, NULL);
        rc = res && PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : pg_error(conn, res);
        PQclear(res);
    }
    if (rc == 0 && PQenterPipelineMode(conn) != 1)
        rc = BOOKS_EIO;
    pg_link_wait_end(l);
    return rc;
}

/* At open, on the first connection: what the store's settings make of the session (whatever the
 * role or the database set), logged once so an operator sees the durability in force. */
static int check_settings(struct pg_store *st, PGconn *conn, char *err, size_t errlen)
{
    char sql[96];
    PGresult *res = NULL;
    snprintf(sql, sizeof sql, "SET synchronous_commit = %s; SET client_encoding = 'UTF8'",
             pg_synchronous_commit_values[st->prm.synchronous_commit]);
    int rc = pg_exec(conn, sql, PGRES_COMMAND_OK, NULL);
    if (rc == 0)
        rc = pg_exec(conn,
                     "SELECT current_setting('synchronous_commit'), "
                     "current_setting('client_encoding'), current_setting('server_encoding')",
                     PGRES_TUPLES_OK, &res);
    if (rc != 0) {
        books_format_err(err, errlen, "PostgreSQL at %s: cannot set synchronous_commit: %s",
                         st->shown, PQerrorMessage(conn));
        return rc;
    }
    bool attrs_from_uri;
    const char *attrs = pg_plan_session_attrs(st->plan, &attrs_from_uri);
    char attrs_shown[96];
    snprintf(attrs_shown, sizeof attrs_shown, "%s (%s)", attrs,
             attrs_from_uri ? "the URI's" : "the store's default: the URI sets none");
    const struct log_field fields[] = {
        {.key = "synchronous_commit", .str = PQgetvalue(res, 0, 0)},
        {.key = "target_session_attrs", .str = attrs_shown},
        {.key = "hosts", .num = (long long)pg_plan_hosts(st->plan)},
        {.key = "silence_timeout_ms", .num = st->prm.silence_timeout_ms},
        {.key = "client_encoding", .str = PQgetvalue(res, 0, 1)},
        {.key = "server_encoding", .str = PQgetvalue(res, 0, 2)},
        {.key = "schema",
         .str = atomic_load(&st->layout) == PG_LAYOUT_EXPANDED
                    ? "version 2, expanded: shared with servers of the previous version until "
                      "contract=on"
                    : "version 3"},
    };
    char msg[320];
    snprintf(msg, sizeof msg, "PostgreSQL at %s: session settings", st->shown);
    log_event(LOG_INFO, msg, fields, sizeof fields / sizeof fields[0]);
    PQclear(res);
    return 0;
}

/* Gives `l` the new connection `conn`: the watchdog may now see it and pull its plug. */
static void link_attach(struct pg_store *st, struct link *l, PGconn *conn)
{
    l->conn = conn;
    atomic_store(&l->pid, PQbackendPID(conn));
    pthread_mutex_lock(&st->fd_mu);
    /* A file of our own on the same socket: libpq closes its descriptor when it meets an error,
     * and the number may then be reused; this one stays ours until link_detach(). */
    l->kill_fd = PQsocket(conn) >= 0 ? fcntl(PQsocket(conn), F_DUPFD_CLOEXEC, 0) : -1;
    pthread_mutex_unlock(&st->fd_mu);
}

static void link_detach(struct pg_store *st, struct link *l)
{
    pthread_mutex_lock(&st->fd_mu);
    if (l->kill_fd >= 0)
        close(l->kill_fd);
    l->kill_fd = -1;
    pthread_mutex_unlock(&st->fd_mu);
    atomic_store(&l->pid, 0);
    pg_link_wait_end(l);
    if (l->conn)
        PQfinish(l->conn);
    l->conn = NULL;
}

void pg_link_kill(struct pg_store *st, struct link *l)
{
    pthread_mutex_lock(&st->fd_mu);
    if (l->kill_fd >= 0)
        (void)shutdown(l->kill_fd, SHUT_RDWR);
    pthread_mutex_unlock(&st->fd_mu);
}

/* Drops a broken connection and schedules the next attempt. */
void pg_link_down(struct pg_store *st, struct link *l, bool writer)
{
    link_detach(st, l);
    if (!l->down_since_ns)
        l->down_since_ns = pg_now_ns();
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : RECONNECT_MIN_MS;
    if (l->backoff_ms > RECONNECT_MAX_MS)
        l->backoff_ms = RECONNECT_MAX_MS;
    /* The upper half of the backoff, at random (xorshift32: jitter needs no better). */
    if (!l->rng)
        l->rng = (uint32_t)(uintptr_t)l ^ (uint32_t)pg_now_ns() ^ 0x9e3779b9u;
    l->rng ^= l->rng << 13;
    l->rng ^= l->rng >> 17;
    l->rng ^= l->rng << 5;
    long delay_ms = l->backoff_ms / 2 + (long)(l->rng % (uint32_t)(l->backoff_ms / 2 + 1));
    l->retry_at_ns = pg_now_ns() + (uint64_t)delay_ms * 1000000u;
    l->epoch = atomic_load(&st->epoch);
    pg_link_state(st, l, writer, false);
}

/* An idle connection that the server has closed (pg_terminate_backend, a restart, an idle
 * timeout, a failover manager demoting its node) is readable: its FATAL message and end of stream
 * are waiting. Found before a query is sent, a create is not caught in a broken connection (which
 * only a lookup could settle). */
static bool closed_while_idle(struct pg_store *st, struct link *l)
{
    /* The FATAL message is read first (libpq passes it to the notice processor and stays
     * CONNECTION_OK), the end of stream on a later read: a few reads, while there is input. */
    for (int reads = 0;; reads++) {
        struct pollfd p = {PQsocket(l->conn), POLLIN, 0};
        if (reads == 4 || poll(&p, 1, 0) <= 0)
            return false;
        if (!PQconsumeInput(l->conn) || PQstatus(l->conn) != CONNECTION_OK)
            break;
    }
    log_msg(LOG_WARNING, "PostgreSQL at %s: the server closed an idle connection: %.200s",
            st->shown, PQerrorMessage(l->conn));
    return true;
}

/* One attempt (every host at once) and the setup of what it found; 0, or with the reason in err
 * BOOKS_EUNAVAIL (no primary answered) or BOOKS_EIO (one did; its setup failed). */
static int link_connect(struct pg_store *st, struct link *l, bool writer, uint64_t until_ns,
                        char *err, size_t errlen)
{
    uint64_t by = pg_now_ns() + pg_attempt_ns(st);
    if (until_ns && until_ns < by)
        by = until_ns;
    PGconn *conn = pg_connect_any(st->plan, by, err, errlen);
    if (!conn)
        return BOOKS_EUNAVAIL;
    link_attach(st, l, conn);
    if (setup(st, l, !writer) != 0) {
        books_format_err(err, errlen, "cannot set up the connection: %s", PQerrorMessage(conn));
        link_detach(st, l);
        return BOOKS_EIO;
    }
    return 0;
}

int pg_link_ensure_until(struct pg_store *st, struct link *l, bool writer, uint64_t until_ns)
{
    char err[512];

    if (l->conn && PQstatus(l->conn) == CONNECTION_OK && !closed_while_idle(st, l))
        return 0;
    if (l->conn) {
        bool was_working = l->backoff_ms == 0;
        pg_link_down(st, l, writer);
        if (was_working)
            l->retry_at_ns = 0;
    }
    /* Another connection found a primary since this one failed: no reason to wait. */
    if (pg_now_ns() < l->retry_at_ns && l->epoch == atomic_load(&st->epoch))
        return BOOKS_EUNAVAIL;
    /* No primary is known: the watchdog and the readers look for one; creates are not held up
     * behind an attempt of the writer's meanwhile. */
    if (writer && atomic_load(&st->unreachable))
        return BOOKS_EUNAVAIL;
    int rc = link_connect(st, l, writer, until_ns, err, sizeof err);
    if (rc != 0) {
        pg_link_down(st, l, writer);
        /* The writer has no primary: nothing can be written until one is found. (A server
         * that refused the session itself, too many connections say, or one that answered but
         * could not be set up, is not that: the writer tries it again after the backoff.) */
        if (writer && rc == BOOKS_EUNAVAIL && !pg_refused_by_server(err)) {
            char why[600];
            snprintf(why, sizeof why, "found: %s", err);
            pg_reach(st, false, false, why);
        }
        return BOOKS_EUNAVAIL;
    }
    atomic_fetch_add_explicit(&st->st_reconnects, 1, memory_order_relaxed);
    log_msg(LOG_INFO, "PostgreSQL at %s: the %s connection is back after %llu ms (%s:%s)",
            st->shown, writer ? "write" : "read",
            (unsigned long long)((pg_now_ns() - l->down_since_ns) / 1000000u),
            PQhost(l->conn), PQport(l->conn));
    l->backoff_ms = 0;
    l->down_since_ns = 0;
    pg_link_state(st, l, writer, true);
    pg_reach(st, true, false, NULL);
    return 0;
}

int pg_link_ensure(struct pg_store *st, struct link *l, bool writer)
{
    return pg_link_ensure_until(st, l, writer, 0);
}

int pg_link_replace(struct pg_store *st, struct link *l, bool writer)
{
    char err[512];
    link_detach(st, l);
    if (link_connect(st, l, writer, 0, err, sizeof err) != 0) {
        log_msg(LOG_WARNING, "PostgreSQL at %s: cannot replace the %s connection: %.200s",
                st->shown, writer ? "write" : "read", err);
        pg_link_down(st, l, writer);
        return BOOKS_EUNAVAIL;
    }
    return 0;
}

/* Sends what libpq has buffered, reading meanwhile so the server never blocks on us; a server that
 * takes nothing for as long as a query may run is taken for dead. */
bool pg_flush_all(struct pg_store *st, struct link *l)
{
    PGconn *conn = l->conn;
    uint64_t silence = pg_silence_ns(st), progress = pg_now_ns();
    int f;
    if (!silence)
        silence = 30ull * 1000000000u;
    while ((f = PQflush(conn)) == 1) {
        uint64_t now = pg_now_ns();
        if (now >= progress + silence)
            return false;
        uint64_t ms = (progress + silence - now + 999999) / 1000000;
        struct pollfd p = {PQsocket(conn), POLLIN | POLLOUT, 0};
        int n = poll(&p, 1, ms > INT_MAX ? INT_MAX : (int)ms);
        if (n < 0)
            continue;
        if (n > 0)
            progress = pg_now_ns();
        if (p.revents & POLLIN)
            pg_link_heard(l, progress);
        if ((p.revents & POLLIN) && !PQconsumeInput(conn))
            return false;
    }
    return f == 0;
}

/* ---- opening and closing --------------------------------------------------------------------- */

/* This store's own parameters in the URI's query (options.h), taken out of what libpq gets; every
 * other parameter is libpq's and passes through as written. */
#define PARAM(f) offsetof(struct params, f)
static const struct opt_choice on_off[] = {{"on", 1}, {"off", 0}, {NULL, 0}};
const char *const pg_synchronous_commit_values[] = {"on", "remote_apply", "remote_write", "local",
                                                    "off"};
static const struct opt_choice synchronous_commit_choices[] = {
    {"on", 0}, {"remote_apply", 1}, {"remote_write", 2}, {"local", 3}, {"off", 4}, {NULL, 0}};
static const struct opt uri_params[] = {
    {.name = "pool", .set = opt_set_int, .offset = PARAM(pool), .min = 1, .max = 64, .def = "2"},
    {.name = "statement_timeout_ms",
     .set = opt_set_int,
     .offset = PARAM(statement_timeout_ms),
     .min = 0,
     .max = 3600000,
     .def = "10000"},
    {.name = "startup_timeout_s",
     .set = opt_set_int,
     .offset = PARAM(startup_timeout_s),
     .min = 0,
     .max = 3600,
     .def = "30"},
    {.name = "cache_mb", .set = opt_set_int, .offset = PARAM(cache_mb), .min = 0, .max = 65536,
     .def = "16"},
    {.name = "silence_timeout_ms",
     .set = opt_set_int,
     .offset = PARAM(silence_timeout_ms),
     .min = 100,
     .max = 3600000,
     .def = "5000"},
    {.name = "group_commit",
     .set = opt_set_choice,
     .offset = PARAM(group_commit),
     .choices = on_off,
     .def = "on"},
    {.name = "synchronous_commit",
     .set = opt_set_choice,
     .offset = PARAM(synchronous_commit),
     .choices = synchronous_commit_choices,
     .def = "on"},
    {.name = "contract", .set = opt_set_choice, .offset = PARAM(contract), .choices = on_off,
     .def = "off"},
};

/* Appends a parameter that is libpq's to the conninfo being rebuilt (p->self). */
static void pass_to_libpq(struct opt_parser *p, const char *param)
{
    char *out = p->self;
    size_t at = strlen(out), n = strlen(param);
    out[at++] = strchr(out, '?') ? '&' : '?';
    memcpy(out + at, param, n + 1);
}

static void report_param(struct opt_parser *p, const struct opt_problem *pr)
{
    char accepted[96];
    if (pr->kind == OPT_UNKNOWN || pr->kind == OPT_POSITIONAL)
        return; /* cannot happen: the rest goes to libpq */
    opt_fail(p, BOOKS_EINVAL,
             "store URI postgresql:...: parameter %s %s; it takes %s", pr->o->name,
             pr->kind == OPT_REPEATED        ? "is given twice"
             : pr->kind == OPT_MISSING_VALUE ? "has no value"
                                             : "has a bad value",
             opt_describe(pr->o, accepted, sizeof accepted));
}

int pg_parse_uri(const char *uri, struct params *prm, char **conninfo, char *err, size_t errlen)
{
    const char *q = strchr(uri, '?');
    size_t len = strlen(uri), path = q ? (size_t)(q - uri) : len;
    /* The rebuilt URI is never longer than the original: parameters are only left out. */
    char *out = malloc(len + 1);
    struct opt_parser p = {
        .opts = uri_params,
        .n_opts = sizeof uri_params / sizeof uri_params[0],
        .base = prm,
        .report = report_param,
        .positional = pass_to_libpq,
        .self = out,
        .err = err,
        .errlen = errlen,
    };

    memset(prm, 0, sizeof *prm);
    if (!out)
        return BOOKS_ENOMEM;
    memcpy(out, uri, path);
    out[path] = '\0';
    if (opt_load_defaults(&p) == 0 && q && q[1])
        opt_parse_query(&p, q + 1);
    if (p.rc != 0) {
        if (p.rc == BOOKS_ENOMEM)
            books_format_err(err, errlen, "store URI postgresql:...: out of memory");
        memset(out, 0, len + 1);
        free(out);
        return p.rc;
    }
    *conninfo = out;
    return 0;
}

static void destroy(struct pg_store *st)
{
    pg_watch_stop(st);
    for (size_t i = 0; st->readers && i < st->n_readers; i++)
        link_detach(st, &st->readers[i].link);
    link_detach(st, &st->writer);
    free(st->readers);
    pg_writer_free(st->w);
    pg_plan_free(st->plan);
    if (st->conninfo) { /* it may hold a password: do not leave it in freed memory */
        memset(st->conninfo, 0, strlen(st->conninfo));
        free(st->conninfo);
    }
    pthread_cond_destroy(&st->cv);
    pthread_cond_destroy(&st->sweep_cv);
    pthread_mutex_destroy(&st->mu);
    pthread_mutex_destroy(&st->state_mu);
    pthread_mutex_destroy(&st->fd_mu);
    pthread_cond_destroy(&st->watch.cv);
    pthread_mutex_destroy(&st->watch.mu);
    free(st);
}

/* Stops the readers (what they run is answered; they finish with it, each wait bounded) and the
 * sweeper (which answers what is still queued). */
static void stop_readers(struct pg_store *st)
{
    atomic_store(&st->draining, true);
    pthread_mutex_lock(&st->mu);
    st->closing = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    for (size_t i = 0; i < st->n_readers; i++)
        if (st->readers[i].started && pthread_join(st->readers[i].thread, NULL) != 0)
            abort();
    pthread_mutex_lock(&st->mu);
    st->sweeper_stop = true;
    pthread_cond_signal(&st->sweep_cv);
    pthread_mutex_unlock(&st->mu);
    if (st->sweeper_started && pthread_join(st->sweeper, NULL) != 0)
        abort();
    st->sweeper_started = false;
}

/* store_ops.drain: every read queued or running is answered BOOKS_EUNAVAIL now, every create still
 * queued too; a create being written is answered when its transaction ends. */
static void pg_drain(struct store *s)
{
    struct pg_store *st = (struct pg_store *)s;
    atomic_store(&st->draining, true);
    pthread_mutex_lock(&st->mu);
    pthread_cond_broadcast(&st->cv);
    pthread_cond_signal(&st->sweep_cv);
    pthread_mutex_unlock(&st->mu);
    commit_pipeline_drain(st->pipeline);
}

static void pg_close(struct store *s)
{
    struct pg_store *st = (struct pg_store *)s;
    struct commit_pipeline_stats ps = {0};

    /* The watchdog first (it pulls plugs), then creates (everything queued is committed and
     * answered), then the reads queued. */
    pg_watch_stop(st);
    pthread_mutex_lock(&st->state_mu);
    st->poke_pipeline = NULL;
    pthread_mutex_unlock(&st->state_mu);
    commit_pipeline_stop(st->pipeline, &ps);
    st->pipeline = NULL;
    stop_readers(st);
    log_msg(LOG_INFO,
            "PostgreSQL store %s: closing; %llu books written in %llu batches (largest %llu); "
            "%llu reads in %llu round trips, %llu cancelled",
            st->shown, (unsigned long long)ps.books_written, (unsigned long long)ps.transactions,
            (unsigned long long)ps.largest_batch,
            (unsigned long long)atomic_load(&st->st_reads),
            (unsigned long long)atomic_load(&st->st_round_trips),
            (unsigned long long)atomic_load(&st->st_cancels));
    destroy(st);
}

/* While no primary is known a create is answered BOOKS_EUNAVAIL at once, as a read is while no
 * reader has a connection: it would only wait in the queue, and its caller is better told now
 * (UNAVAILABLE with RetryInfo) than at its deadline. */
static void pg_create(struct store *s, const struct store_create_req *req,
                      store_create_done_fn done, void *arg)
{
    struct pg_store *st = (struct pg_store *)s;
    if (atomic_load_explicit(&st->unreachable, memory_order_relaxed)) {
        done(arg, BOOKS_EUNAVAIL, NULL);
        return;
    }
    commit_pipeline_submit(st->pipeline, req, done, arg);
}

static const struct store_ops pg_ops = {
    .scheme = "postgresql",
    .get = store_get_waiting,
    .list = store_list_waiting,
    .create = pg_create,
    .close = pg_close,
    .get_async = pg_get_async,
    .list_async = pg_list_async,
    .watch = pg_watch,
    .drain = pg_drain,
};

int store_postgres_open(const char *uri, const struct store_limits *limits, struct store **out,
                        char *err, size_t errlen)
{
    struct pg_store *st;
    PGconn *conn;
    int rc;

    rc = pg_libpq_load(err, errlen);
    if (rc != 0)
        return rc;
    st = calloc(1, sizeof *st);
    if (!st)
        return BOOKS_ENOMEM;
    pthread_mutex_init(&st->mu, NULL);
    {
        /* Readers and the sweeper wait for deadlines, which are CLOCK_MONOTONIC times. */
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&st->cv, &ca);
        pthread_cond_init(&st->sweep_cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    pthread_mutex_init(&st->state_mu, NULL);
    pthread_mutex_init(&st->fd_mu, NULL);
    pthread_mutex_init(&st->watch.mu, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&st->watch.cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    st->writer.kill_fd = -1;
    st->max_queued = limits->max_queued;
    st->sweep_at_ns = UINT64_MAX;
    st->base.ops = &pg_ops;
    /* libpq wants the scheme back: "postgresql:" + what followed it. */
    {
        size_t n = sizeof "postgresql:" + strlen(uri);
        char *whole = malloc(n);
        if (!whole) {
            destroy(st);
            return BOOKS_ENOMEM;
        }
        snprintf(whole, n, "postgresql:%s", uri);
        rc = pg_parse_uri(whole, &st->prm, &st->conninfo, err, errlen);
        memset(whole, 0, n);
        free(whole);
    }
    if (rc != 0) {
        destroy(st);
        return rc;
    }
    st->base.cache_bytes = (size_t)st->prm.cache_mb << 20; /* the layer above (record_cache.h) */
    if ((rc = pg_plan_new(st->conninfo, st->prm.silence_timeout_ms, &st->plan, err, errlen)) != 0) {
        destroy(st);
        return rc;
    }
    if (pg_writer_new(st) != 0) {
        destroy(st);
        return BOOKS_ENOMEM;
    }

    /* The writer first: it also checks and migrates the schema and reads the data set's key. */
    int startup_attempt_ms = (pg_plan_connect_timeout_s(st->plan) > 0
                                  ? pg_plan_connect_timeout_s(st->plan)
                                  : STARTUP_CONNECT_TIMEOUT_S) * 1000;
    conn = pg_connect(st->plan, startup_attempt_ms, (int)st->prm.startup_timeout_s * 1000, err,
                      errlen);
    if (!conn) {
        destroy(st);
        return BOOKS_EUNAVAIL;
    }
    pg_plan_describe(st->plan, conn, st->shown, sizeof st->shown);
    snprintf(st->base.display, sizeof st->base.display, "%s", st->shown);
    /* Books are UTF-8; a database in another encoding would transcode them, or refuse some. */
    const char *encoding = PQparameterStatus(conn, "server_encoding");
    if (!encoding || strcmp(encoding, "UTF8") != 0) {
        books_format_err(err, errlen,
                         "PostgreSQL at %s: the database's encoding is %s; books-server needs a "
                         "UTF8 database (CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0)",
                         st->shown, encoding ? encoding : "unknown");
        PQfinish(conn);
        destroy(st);
        return BOOKS_ECORRUPT;
    }
    int layout = 0;
    rc = pg_schema_open(conn, st->shown, st->prm.contract, st->base.dataset_key, &layout, err,
                        errlen);
    atomic_init(&st->layout, layout);
    link_attach(st, &st->writer, conn);
    if (rc == 0 && (rc = check_settings(st, conn, err, errlen)) == 0 &&
        (rc = setup(st, &st->writer, false)) != 0)
        books_format_err(err, errlen, "PostgreSQL at %s: cannot set up the connection: %s",
                         st->shown, PQerrorMessage(conn));
    if (rc != 0) {
        destroy(st);
        return rc;
    }
    pg_link_state(st, &st->writer, true, true);

    st->n_readers = (size_t)st->prm.pool;
    st->readers = calloc(st->n_readers, sizeof *st->readers);
    if (!st->readers) {
        destroy(st);
        return BOOKS_ENOMEM;
    }
    for (size_t i = 0; i < st->n_readers; i++)
        st->readers[i].link.kill_fd = -1;
    for (size_t i = 0; i < st->n_readers; i++) {
        struct reader *rd = &st->readers[i];
        rd->st = st;
        conn = pg_connect(st->plan, startup_attempt_ms, 0, err, errlen);
        if (conn)
            link_attach(st, &rd->link, conn);
        rc = rd->link.conn ? setup(st, &rd->link, true) : BOOKS_EUNAVAIL;
        if (rc != 0) {
            if (rd->link.conn)
                books_format_err(err, errlen, "PostgreSQL at %s: cannot prepare the reads: %s",
                                 st->shown, PQerrorMessage(rd->link.conn));
            stop_readers(st);
            destroy(st);
            return rc;
        }
        pg_link_state(st, &rd->link, false, true);
        if (pthread_create(&rd->thread, NULL, pg_reader_main, rd) != 0) {
            books_format_err(err, errlen, "PostgreSQL at %s: cannot start a thread", st->shown);
            stop_readers(st);
            destroy(st);
            return BOOKS_EIO;
        }
        rd->started = true;
    }
    if (pthread_create(&st->sweeper, NULL, pg_sweeper_main, st) != 0) {
        books_format_err(err, errlen, "PostgreSQL at %s: cannot start a thread", st->shown);
        stop_readers(st);
        destroy(st);
        return BOOKS_EIO;
    }
    st->sweeper_started = true;
    st->request_ttl_s =
        limits->request_ttl_s ? limits->request_ttl_s : STORE_REQUEST_TTL_DEFAULT_S;
    st->purged_at_ns = pg_now_ns();
    const struct commit_backend backend = {
        .self = st, .write_batch = pg_write_batch, .idle = pg_writer_idle};
    rc = commit_pipeline_start(&backend, st->prm.group_commit ? PG_WRITE_BATCH_MAX : 1,
                               limits->max_queued, "books-pg", st->shown, &st->pipeline);
    if (rc != 0) {
        books_format_err(err, errlen, "PostgreSQL at %s: cannot start the commit threads",
                         st->shown);
        stop_readers(st);
        destroy(st);
        return rc;
    }
    pthread_mutex_lock(&st->state_mu);
    st->poke_pipeline = st->pipeline;
    pthread_mutex_unlock(&st->state_mu);
    if (pg_watch_start(st) != 0) {
        books_format_err(err, errlen, "PostgreSQL at %s: cannot start a thread", st->shown);
        pthread_mutex_lock(&st->state_mu);
        st->poke_pipeline = NULL;
        pthread_mutex_unlock(&st->state_mu);
        commit_pipeline_stop(st->pipeline, NULL);
        st->pipeline = NULL;
        stop_readers(st);
        destroy(st);
        return BOOKS_EIO;
    }
    pthread_mutex_lock(&st->state_mu);
    st->opened = true;
    pthread_mutex_unlock(&st->state_mu);
    *out = &st->base;
    return 0;
}
