/* pg.h: what the files of the postgresql: backend share (private to src/store/postgres/).
 *   postgres.c  the store: its URI, open and close, connections (setup, reconnection with
 *             backoff, availability, whether a primary is known), drain
 *   reads.c   the reader threads with pipelined queries, the sweeper of deadlines, cancels
 *   writes.c  the writer behind the commit pipeline: batches, outcomes, lost replies
 *   watch.c   the watchdog: a probe of the primary while a connection is silent (and every
 *             silence_timeout_ms), which tells a silent database from a query that waits
 *   conn.c    the URI's hosts (the plan), connecting to all of them at once, naming a
 *             connection without its password, libpq errors to enum books_err
 *   schema.c  the schema: version table, create, expand and contract under an advisory lock, the
 *             data set's key
 *   rows.c    books as PostgreSQL values, binary array parameters (rows.h)
 *   libpq.c   libpq itself, loaded with dlopen() when a postgresql: store first opens */
#ifndef BOOKS_PG_H
#define BOOKS_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pthread.h>
#include <stdatomic.h>

#include "books/commit_pipeline.h"
#include "books/store.h"
#include "rows.h"

/* Loads libpq (libpq.c: dlopen of libpq.so.5 when the first postgresql: store opens, so that the
 * other stores never map it and its dependencies). Returns 0, or BOOKS_EIO with a message in err
 * (libpq5 not installed, or older than PostgreSQL 14). Any thread; once is enough. */
int pg_libpq_load(char *err, size_t errlen);

/* ---- the hosts, and connecting (conn.c) -------------------------------------------------------- */

/* What every connection of a store is made with, read once from its URI. Opaque. */
struct pg_plan;

/* Reads `conninfo` (the URI as pg_parse_uri() leaves it) with libpq's own parser, once: the hosts
 * it names (libpq's multi-host form: host, hostaddr and port lists; one port serves every host),
 * each to be tried with every other parameter exactly as written, plus what the store adds unless
 * the URI sets it:
 *   target_session_attrs=read-write  the store writes, so it only ever takes a session that takes
 *                                    writes; the URI may say read-write or primary, and any other
 *                                    value is refused (BOOKS_EINVAL naming the parameter)
 *   fallback_application_name=books-server
 *   keepalives=1, keepalives_idle=max(1, silence_ms / 2000) s, keepalives_interval=max(1,
 *   silence_ms / 6000) s, keepalives_count=3, tcp_user_timeout=silence_ms ms: a peer gone from
 *   the network (a partition, a machine that died) is noticed in about silence_ms by the kernel,
 *   idle connections included
 * PGTARGETSESSIONATTRS is not read: the value in force is always the URI's or read-write. Hosts
 * named only by a service file or PGHOST are one attempt (libpq tries them in turn).
 * Returns 0 with *out (pg_plan_free() it; it holds the password), BOOKS_EINVAL (a URI libpq cannot
 * read, or another target_session_attrs; err says which, never quoting the URI), BOOKS_ENOMEM. Any
 * thread (loads libpq when nobody has). */
int pg_plan_new(const char *conninfo, int silence_ms, struct pg_plan **out, char *err,
                size_t errlen);
/* Zeroes what the plan holds (a password) and frees it. NULL: no-op. */
void pg_plan_free(struct pg_plan *p);
/* How many hosts a connection attempt tries at once (1 when the URI names one, or lists libpq
 * cannot line up: then libpq's own message says why at connect). */
size_t pg_plan_hosts(const struct pg_plan *p);
/* The value `keyword` gets when host number `host` is tried (NULL: not set, libpq's default), as
 * the plan hands it to libpq: for tests and messages. */
const char *pg_plan_value(const struct pg_plan *p, size_t host, const char *keyword);
/* target_session_attrs in force; *from_uri (may be NULL) whether the URI gave it. */
const char *pg_plan_session_attrs(const struct pg_plan *p, bool *from_uri);
/* The URI's connect_timeout in seconds, 0 when it sets none. */
int pg_plan_connect_timeout_s(const struct pg_plan *p);
/* What messages name: pg_describe(conn) for a URI of one host (conn may be NULL: then from the
 * URI), else "postgresql://USER@HOST:PORT,HOST:PORT,.../DB" from the URI. No password, ever. */
void pg_plan_describe(const struct pg_plan *p, const PGconn *conn, char *out, size_t len);

/* One attempt at every host of the plan at once: starts a non-blocking connection to each
 * (PQconnectStartParams), drives them together (PQconnectPoll, poll(2)) and returns the first to
 * reach CONNECTION_OK, which libpq has checked against target_session_attrs (a standby, or a
 * primary that is read-only, fails that check). The others are closed. No later than until_ns (CLOCK_MONOTONIC; libpq's connect_timeout does not apply to
 * this form): NULL then, or when every host failed, with every host's reason in err (one line,
 * libpq's words, no password). A host name is resolved synchronously by libpq (as PQconnectdb
 * does); hostaddr avoids that. The caller PQfinish()es the connection. Any thread. */
PGconn *pg_connect_any(const struct pg_plan *p, uint64_t until_ns, char *err, size_t errlen);

/* True when pg_connect_any()'s reason `why` says a server refused the connection itself (FATAL:
 * too many connections, the role, the database, starting up): the path to it works, so the
 * database is not silent, whatever else is wrong. */
bool pg_refused_by_server(const char *why);

/* Start-up: pg_connect_any() of attempt_ms each, retried with backoff (100 ms doubling to 2 s)
 * for up to retry_ms milliseconds (0: one attempt), each failure logged as a warning. NULL on
 * failure, with a message in err naming the server (pg_plan_describe), target_session_attrs and
 * every host's reason, never the password. */
PGconn *pg_connect(const struct pg_plan *p, int attempt_ms, int retry_ms, char *err,
                   size_t errlen);

/* "postgresql://USER@HOST:PORT/DB" for `conn` (connected or not): what messages and logs name.
 * No password, ever. Writes to out (len bytes). */
void pg_describe(const PGconn *conn, char *out, size_t len);

/* The enum books_err of a SQLSTATE (PostgreSQL manual, Appendix A), each class on purpose:
 *   08xxx connection, 57P0x shutdown                     BOOKS_EUNAVAIL  (UNAVAILABLE: retry)
 *   25006 read_only_sql_transaction (a standby, a        BOOKS_EUNAVAIL  (the store drops the
 *         read-only primary)                                             connection, pg_read_only)
 *   57014 query_canceled (statement_timeout, a cancel)   BOOKS_EDEADLINE (DEADLINE_EXCEEDED)
 *   53100 disk_full                                      BOOKS_ENOSPC    (RESOURCE_EXHAUSTED)
 *   other 53xxx (out of memory, too many connections)    BOOKS_ETHROTTLED (UNAVAILABLE: retry
 *                                                        after RetryInfo's delay)
 *   40xxx serialization failure, deadlock                BOOKS_EABORTED  (ABORTED)
 *   42xxx access and syntax (42501 permission denied,
 *         42P01 undefined table), 22xxx data, 23xxx
 *         integrity, 54xxx program limits               BOOKS_EREFUSED  (FAILED_PRECONDITION)
 *   anything else (XX internal, other 25xxx)             BOOKS_EINTERNAL (INTERNAL)
 * NULL or not 5 characters: BOOKS_EUNAVAIL. Pure; any thread. */
int pg_sqlstate_error(const char *sqlstate);

/* pg_sqlstate_error() of a failed result, or BOOKS_EUNAVAIL when the connection is gone or there
 * is no result. `res` may be NULL. */
int pg_error(const PGconn *conn, const PGresult *res);

/* True when `res` failed with SQLSTATE 25006: the session does not take writes. The writer drops
 * such a connection and finds the primary again; it never writes through it. */
bool pg_read_only(const PGresult *res);

/* True when `res` failed because of one row's data (SQLSTATE classes 22, 23, 54): retrying the
 * other rows of a batch without it can succeed. */
bool pg_row_refused(const PGresult *res);

/* Runs one statement without parameters and waits for it (outside pipeline mode: start-up and
 * schema work only). Returns 0 when it reported `want` (PGRES_COMMAND_OK or PGRES_TUPLES_OK),
 * else pg_error(); *out gets the result when the caller wants it (PQclear it), else NULL. */
int pg_exec(PGconn *conn, const char *sql, ExecStatusType want, PGresult **out);

/* Most creates in one batch (the commit pipeline's batch_max with group_commit=on). */
#define PG_WRITE_BATCH_MAX 1024
/* Schema version this binary creates and reads (schema.c); it also serves version 2 expanded. */
#define PG_SCHEMA_VERSION 3
/* The layouts of books a database has (schema.c): version 3, or version 2 expanded. */
#define PG_LAYOUT_CURRENT 3
#define PG_LAYOUT_EXPANDED 2
/* Advisory lock key under which servers inspect and migrate the schema ("Book" in ASCII), and,
 * with PG_LAYOUT_CURRENT as its second half, the shared lock every connection of this version
 * holds, by which a contract tells older servers' sessions from this version's. */
#define PG_SCHEMA_LOCK_KEY 0x426f6f6bLL

/* Brings the database's schema to this binary's under the advisory lock (two servers starting at
 * once on an empty database: one creates, the other waits and finds it made): creates version 3
 * in an empty database, expands version 1 or 2, and contracts an expanded one to version 3 when
 * `contract_schema`; refuses a database whose schema is newer or that holds a `books` table this
 * program did not create; then reads the data set's key. *layout gets PG_LAYOUT_CURRENT or
 * PG_LAYOUT_EXPANDED. `shown` names the database in messages. Returns 0, BOOKS_ECORRUPT (newer
 * schema, another application's tables, a damaged key), BOOKS_EREFUSED (a contract while a server
 * of the previous version is connected), BOOKS_EUNAVAIL/BOOKS_EIO (the database failed), with a
 * message in err. Start-up thread only. */
int pg_schema_open(PGconn *conn, const char *shown, bool contract_schema,
                   uint8_t key[STORE_DATASET_KEY_BYTES], int *layout, char *err, size_t errlen);

/* 0 when no session of this database with this connection's application_name lacks the shared
 * layout lock (pg_hold_layout_lock): no server of an older version is connected. Else
 * BOOKS_EREFUSED with `why` (len bytes) saying how many and from where; or the query's error. */
int pg_contract_ready(PGconn *conn, char *why, size_t len);

/* Takes the shared layout lock for the life of the session (every connection of this version
 * does, at setup). 0 or pg_error(). */
int pg_hold_layout_lock(PGconn *conn);

/* The layout the database has now (PG_LAYOUT_CURRENT once books_schema says version 3, else
 * PG_LAYOUT_EXPANDED): a server that opened an expanded database asks on every new connection, so
 * that a contract made by another server while it runs moves it to version 3's statements. 0 or
 * pg_error(); outside pipeline mode. */
int pg_schema_layout(PGconn *conn, int *layout);

/* True when `res` failed because a column or table its statement names is not there (SQLSTATE
 * 42703 undefined_column, 42P01 undefined_table, 0A000 "cached plan must not change result
 * type"): what an expanded layout's statement meets once another server has contracted. */
bool pg_layout_gone(const PGresult *res);

/* ---- the store (postgres.c), shared with reads.c and writes.c ---------------------------------- */

/* The store's own URI parameters (store_postgres.h lists them). */
struct params {
    int pool, statement_timeout_ms, startup_timeout_s, cache_mb;
    int silence_timeout_ms; /* watch.c: the longest a call waits on a silent database */
    int group_commit;       /* 1: on */
    int synchronous_commit; /* an index into pg_synchronous_commit_values */
    int contract;           /* 1: contract an expanded schema at start-up (schema.c) */
};

/* The values of PostgreSQL's synchronous_commit this store sets on every connection, indexed by
 * params.synchronous_commit: 0 is "on", the durable default. */
extern const char *const pg_synchronous_commit_values[];

/* Splits `uri` ("postgresql:..." whole) into this store's parameters and the connection string
 * libpq gets (*conninfo: malloc'ed, the caller frees it, zeroed first: it may hold a password).
 * Returns 0, BOOKS_EINVAL (a bad value of one of our parameters; err names it, never echoing the
 * URI) or BOOKS_ENOMEM. Opens nothing: the fuzz target store_uri calls it. Any thread. */
int pg_parse_uri(const char *uri, struct params *prm, char **conninfo, char *err, size_t errlen);

struct read_req {
    struct read_req *next;
    bool list;
    bool answered; /* done() already ran (the deadline passed): its result is dropped */
    bool again;    /* its expanded statement met a contracted schema: it goes again, once, on a
                    * connection set up for version 3 */
    bool retried;  /* it already has */
    size_t limit;
    size_t max_bytes; /* list: the page's byte bound (store.h), 0: none */
    struct store_book **out;
    uint64_t deadline_ns;
    store_get_done_fn get_done;
    store_list_done_fn list_done;
    void *arg;
    char key[]; /* get: the name; list: after_name ("" for the first page) */
};

/* A connection and its reconnection schedule; owned by one thread (the "owner": a reader, or the
 * committer), watched by the watchdog (watch.c) through the atomic fields and kill_fd. */
struct link {
    PGconn *conn;
    bool up;                /* counted as available in the store's state */
    int layout;             /* the layout its statements were made for (PG_LAYOUT_*) */
    uint64_t retry_at_ns;   /* no new attempt before this ... */
    uint64_t epoch;         /* ... unless the store's epoch has moved past this since */
    uint64_t down_since_ns; /* when it went down (0: up) */
    long backoff_ms;
    uint32_t rng;           /* the backoff's jitter */
    /* While a query (or the setup) waits for the server: when it was sent or the last byte
     * arrived; 0 while nothing is outstanding. The owner writes, the watchdog reads. */
    _Atomic uint64_t quiet_since_ns;
    _Atomic int pid;        /* the server process of the connection (PQbackendPID), 0: none */
    int kill_fd;            /* st->fd_mu: a dup() of its socket, for pg_link_kill(); -1: none */
};

/* The owner marks a query outstanding (begin), a byte arriving (heard), and the round trip over
 * (end), so that the watchdog sees how long the connection has been silent. */
static inline void pg_link_wait_begin(struct link *l, uint64_t now_ns)
{
    atomic_store_explicit(&l->quiet_since_ns, now_ns, memory_order_relaxed);
}
static inline void pg_link_heard(struct link *l, uint64_t now_ns)
{
    if (atomic_load_explicit(&l->quiet_since_ns, memory_order_relaxed))
        atomic_store_explicit(&l->quiet_since_ns, now_ns, memory_order_relaxed);
}
static inline void pg_link_wait_end(struct link *l)
{
    atomic_store_explicit(&l->quiet_since_ns, 0, memory_order_relaxed);
}

/* The watchdog's own state (watch.c); its thread only, but for mu/cv/stop. */
struct pg_watch {
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC: stop, or look now (the store became unreachable) */
    bool stop, look;
    PGconn *conn;       /* the probe's connection, or NULL */
    bool locked;        /* it holds the shared layout lock (every connection of this version) */
    bool searching;     /* looking for a primary (the store is unreachable) */
    uint64_t probed_ns; /* the last probe that was answered */
    uint64_t next_quiet_probe_ns;
    long backoff_ms;
    uint32_t rng;
};

struct pg_store;

struct reader {
    struct pg_store *st;
    pthread_t thread;
    bool started;
    struct link link;
    /* A cancel request sent for this reader's connection (reads.c), or NULL: until it has reached
     * the server, no other query is sent on the connection, which it could cancel instead. */
    struct pg_cancel *cancel;
    bool contracted; /* a statement of its batch met a contracted schema (pg_layout_gone) */
};

struct pg_store {
    struct store base; /* first: a struct store * is a struct pg_store * */
    char *conninfo;    /* the URI as libpq gets it: may hold the password; never logged */
    struct pg_plan *plan; /* its hosts and every connection's parameters (conn.c) */
    char shown[256];   /* postgresql://user@host:port/db: what messages name */
    struct params prm;
    /* PG_LAYOUT_CURRENT or PG_LAYOUT_EXPANDED: what open found, moved to CURRENT once a new
     * connection finds the schema contracted (pg_schema_layout); each link keeps its own. */
    _Atomic int layout;

    /* Write side: the pipeline's committer thread only (writes.c). */
    struct commit_pipeline *pipeline;
    struct link writer;
    struct pg_writer *w; /* the writer's scratch: parameter arrays, the batch's state */
    uint32_t request_ttl_s;
    uint64_t purged_at_ns;        /* the last purge of old request ids (committer only) */

    /* Read side. mu guards the queue, `closing` and the sweeper's fields. Both condition variables
     * wait on CLOCK_MONOTONIC. */
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* readers: work queued, or closing */
    pthread_cond_t sweep_cv; /* the sweeper: an earlier deadline queued, or stop */
    struct read_req *head, *tail;
    size_t n_queued, max_queued; /* max_queued 0: no cap */
    bool closing;
    struct reader *readers;
    size_t n_readers;
    pthread_t sweeper;
    bool sweeper_started, sweeper_stop;
    uint64_t sweep_at_ns;    /* when the sweeper wakes next */
    _Atomic bool draining;   /* shutdown: answer every read now (store_ops.drain) */
    _Atomic size_t readers_up_now; /* readers with a connection (pg_link_state), for enqueue */

    /* Availability: state_mu guards these and serialises the listener's calls. */
    pthread_mutex_t state_mu;
    size_t readers_up;
    bool writer_up, available, opened;
    store_state_fn state_fn;
    void *state_arg;
    /* No primary is known (pg_reach): creates and reads are answered BOOKS_EUNAVAIL at once.
     * `silenced`: because the watchdog got no answer within silence_timeout_ms (lost creates are
     * then UNKNOWN at once). Written under state_mu, read anywhere. */
    _Atomic bool unreachable, silenced;
    uint64_t unreachable_since_ns; /* state_mu */
    /* Moves on every connection made to a primary: a link backing off tries again at once. */
    _Atomic uint64_t epoch;
    struct commit_pipeline *poke_pipeline; /* state_mu: the pipeline while it may be poked */

    pthread_mutex_t fd_mu; /* every link's kill_fd */
    struct pg_watch watch;

    _Atomic uint64_t st_round_trips, st_reads, st_cancels, st_reconnects;
};

/* CLOCK_MONOTONIC now, in nanoseconds (store_now_ns). */
#define pg_now_ns store_now_ns
/* How long one connection may stay silent while a query runs before it alone is taken for dead,
 * whatever the watchdog says (0: for ever, without a statement_timeout): statement_timeout + 5 s. */
uint64_t pg_silence_ns(const struct pg_store *st);
/* silence_timeout_ms in nanoseconds: the longest a call waits on a database that does not answer
 * (watch.c). */
uint64_t pg_silence_bound_ns(const struct pg_store *st);
/* The longest one attempt to connect (every host at once) may take while serving: the URI's
 * connect_timeout, else 2 s, and never more than silence_timeout_ms. */
uint64_t pg_attempt_ns(const struct pg_store *st);
/* Records that connection `l` (the writer's, or a reader's) went up or down; tells the store's
 * listener when the store as a whole became unavailable or available. Any store thread. */
void pg_link_state(struct pg_store *st, struct link *l, bool writer, bool up);
/* Drops a broken connection and schedules the next attempt (backoff: 50 ms doubling to 500 ms,
 * with jitter). The link's own thread. */
void pg_link_down(struct pg_store *st, struct link *l, bool writer);
/* Makes sure `l` has a working connection to a primary: 0, or BOOKS_EUNAVAIL while still down (no
 * attempt before the backoff has passed, unless another connection of the store has found a
 * primary since: then at once; the writer makes none while the store is unreachable, it waits for
 * the watchdog or a reader to find one). An idle connection the server has closed is noticed here,
 * before a query is sent, and replaced at once. An attempt tries every host at once
 * (pg_connect_any) for at most connect_timeout (2 s when the URI sets none) and silence_timeout_ms,
 * and no later than until_ns when that is not 0. A writer whose attempt finds no primary makes the
 * store unreachable (pg_reach). The link's own thread, between queries. */
int pg_link_ensure_until(struct pg_store *st, struct link *l, bool writer, uint64_t until_ns);
int pg_link_ensure(struct pg_store *st, struct link *l, bool writer);
/* Replaces a working connection by a new one at once, without the link counting as down unless
 * the new one fails (then as pg_link_down): a connection whose statements are for a layout the
 * database no longer has. 0 or BOOKS_EUNAVAIL. The link's own thread, between queries. */
int pg_link_replace(struct pg_store *st, struct link *l, bool writer);
/* Sends what libpq has buffered on l's connection, reading meanwhile (pg_link_heard). False: the
 * connection broke, or took no byte for as long as a query may run (pg_silence_ns, or 30 s
 * without a statement_timeout). */
bool pg_flush_all(struct pg_store *st, struct link *l);

/* Whether a primary is known. false: the store is unreachable: health NOT_SERVING, creates and
 * reads are answered BOOKS_EUNAVAIL at once, every read still queued is answered so now, and the
 * watchdog looks for a primary (with a new connection) until one answers; `silenced` says the
 * watchdog found the database silent (st->silenced). true: a connection to a primary was made, or
 * the watchdog's probe was answered: the epoch moves, readers backing off try at once, and the
 * pipeline is poked so the writer connects before the next create. `why` is logged on a change
 * to false. Any store thread, no lock held. */
void pg_reach(struct pg_store *st, bool reachable, bool silenced, const char *why);

/* Pulls the plug on l's connection: shutdown(2) of its socket (through kill_fd, so never another
 * file that took its number), which wakes its owner wherever it waits on it (a poll, a blocking
 * libpq call) with a broken connection. Any thread; takes fd_mu. */
void pg_link_kill(struct pg_store *st, struct link *l);

/* watch.c: the watchdog thread (one per store), started once the links are up, stopped first at
 * close (pg_watch_stop joins it and closes its connection). pg_watch_look() wakes it now. */
int pg_watch_start(struct pg_store *st);
void pg_watch_stop(struct pg_store *st);
void pg_watch_look(struct pg_store *st);

/* reads.c: the reader threads and the store's read operations. */
void *pg_reader_main(void *reader);
/* Answers every read still queued BOOKS_EUNAVAIL now (the store became unreachable). Any store
 * thread, st->mu not held. */
void pg_reads_refuse_queued(struct pg_store *st);
/* The sweeper thread (one per store): answers queued reads at their deadline. */
void *pg_sweeper_main(void *store);
void pg_get_async(struct store *s, const char *name, uint64_t deadline_ns,
                  store_get_done_fn done, void *arg);
void pg_list_async(struct store *s, const char *after_name, size_t limit, size_t max_bytes,
                   struct store_book **out, uint64_t deadline_ns, store_list_done_fn done,
                   void *arg);

/* writes.c: commit_backend.write_batch (commit_pipeline.h) for this store, and its idle hook (the
 * purge of request ids older than the retention). Committer only. pg_writer_new() makes the
 * writer's scratch at open (0 or BOOKS_ENOMEM); pg_writer_free() frees it (NULL: no-op). */
int pg_writer_new(struct pg_store *st);
void pg_writer_free(struct pg_writer *w);
int pg_write_batch(void *self, struct commit_item *items, size_t n);
void pg_writer_idle(void *self);

#endif
