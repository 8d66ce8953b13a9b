/* watch.c: the watchdog of the postgresql: store (pg.h): one thread with a connection of its own to
 * the primary, made from the same URI (the same hosts, proxies and network as every other
 * connection of the store), that tells a database which stopped answering from a query that waits
 * in it, within silence_timeout_ms.
 *
 * A silent connection proves nothing by itself: a query waiting on a lock (LOCK TABLE, a long
 * transaction) or a COMMIT waiting for a synchronous standby is silent for as long as it waits,
 * and so is a connection behind a proxy that stopped forwarding (Cloud SQL's connector, any TCP
 * front: both sockets stay open, so TCP keepalives never fire) or a network that drops packets.
 * So once a connection of the store has waited silent for a third of silence_timeout_ms, the
 * watchdog asks the database, on its own connection, what the server process behind each such
 * connection is doing (pg_stat_activity, visible to the same role):
 *   - working for it (state active, and not waiting on its client): the query waits in the
 *     database, which is alive; nothing is done (the call ends at its deadline, or by
 *     statement_timeout), and the question is asked again a third of the bound later;
 *   - idle, idle in a transaction, waiting to read from or write to its client, or gone (or the
 *     watchdog reached another host, a new primary): the server works on nothing for it, so its
 *     query or the answer was lost on the way. Its plug is pulled (pg_link_kill): the calls on it
 *     fail at once (a read BOOKS_EUNAVAIL; a create that may have committed is looked up by its
 *     request id on a new connection, else BOOKS_EUNKNOWN) and its owner reconnects; a server
 *     process left inside a transaction (its COMMIT never arrived) is ended, so that its locks do
 *     not hold up the creates that go again;
 *   - no answer by silence_timeout_ms after the silence began (the watchdog's own connection is
 *     silent too, and a new one, tried after half of the time left, is not made or does not
 *     answer): the database cannot be reached along this path. Every connection's plug is pulled
 *     and the store is unreachable (pg_reach): creates and reads fail fast with BOOKS_EUNAVAIL,
 *     health says NOT_SERVING.
 * Without silent connections it probes every silence_timeout_ms anyway (a trivial query), so that
 * an idle server notices too. While the store is unreachable it looks for a primary with a new
 * connection, at once, then with backoff (50 ms doubling to 500 ms, with jitter), until one
 * answers; so do the readers, each on its own.
 *
 * The watchdog's connection holds the shared layout lock, as every connection of this version
 * does (schema.c: a contract counts the sessions of this application that do not). */
#include "pg.h"

#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "books/error.h"
#include "books/log.h"

/* How often the watchdog looks at the store's connections (atomic loads only). */
#define LOOK_NS (50ull * 1000000u)
/* Its waits on the network end at least this often, so that pg_watch_stop() is not held up. */
#define STOP_CHECK_MS 100
#define SEARCH_MIN_MS 50
#define SEARCH_MAX_MS 500
/* After an answer that calls a connection stuck, how long the watchdog waits before it pulls the
 * plug, in case the connection's own answer was on its way meanwhile (at most a tenth of the
 * bound). */
#define KICK_GRACE_NS (100ull * 1000000u)

/* Of the server processes $1 whose plugs were pulled, those of this application (database, role,
 * application_name) left inside a transaction waiting for their client: ended, so that the locks
 * of a transaction that never got its COMMIT (the rows of its creates) are released now, not when
 * the server notices the lost client, and the lookup of the lost creates finds the truth. */
static const char end_sql[] =
    "SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid)) FROM pg_stat_activity a WHERE "
    "a.pid = ANY($1::int[]) AND a.datname = current_database() AND a.usename = current_user AND "
    "a.application_name = current_setting('application_name') AND (a.state LIKE 'idle in "
    "transaction%' OR (a.state = 'active' AND a.wait_event_type = 'Client'))";

/* Of the server processes $1, those that work on nothing for their client (see the top). */
static const char stuck_sql[] =
    "SELECT p FROM unnest($1::int[]) AS p WHERE NOT EXISTS (SELECT 1 FROM pg_stat_activity a "
    "WHERE a.pid = p AND coalesce(a.state, '') NOT IN ('idle', 'idle in transaction', "
    "'idle in transaction (aborted)') AND coalesce(a.wait_event_type, '') <> 'Client')";

static bool stopping(struct pg_watch *w)
{
    pthread_mutex_lock(&w->mu);
    bool stop = w->stop;
    pthread_mutex_unlock(&w->mu);
    return stop;
}

static void drop_conn(struct pg_watch *w)
{
    PQfinish(w->conn);
    w->conn = NULL;
    w->locked = false;
}

static void nap(uint64_t ns)
{
    nanosleep(&(struct timespec){(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)}, NULL);
}

/* Sends sql (with $1 = param when not NULL) on the watchdog's connection (non-blocking) and waits
 * for its result until until_ns. Returns the first result (PQclear it), or NULL: no answer by
 * then, the connection broke, or the watchdog stops; the connection is then unusable. */
static PGresult *ask(struct pg_watch *w, const char *sql, const char *param, uint64_t until_ns)
{
    PGconn *c = w->conn;
    PGresult *first = NULL, *r;
    const char *values[1] = {param};
    int f;

    if (!PQsendQueryParams(c, sql, param ? 1 : 0, NULL, param ? values : NULL, NULL, NULL, 0))
        return NULL;
    f = PQflush(c);
    for (;;) {
        while (f == 1 || PQisBusy(c)) {
            uint64_t now = pg_now_ns();
            if (f < 0 || now >= until_ns || stopping(w)) {
                PQclear(first);
                return NULL;
            }
            uint64_t ms = (until_ns - now + 999999) / 1000000;
            struct pollfd p = {PQsocket(c), (short)(POLLIN | (f == 1 ? POLLOUT : 0)), 0};
            int n = poll(&p, 1, ms > STOP_CHECK_MS ? STOP_CHECK_MS : (int)ms);
            if (n > 0 && !PQconsumeInput(c)) {
                PQclear(first);
                return NULL;
            }
            if (f == 1)
                f = PQflush(c);
        }
        if ((r = PQgetResult(c)) == NULL)
            break;
        if (!first)
            first = r;
        else
            PQclear(r);
    }
    if (PQstatus(c) != CONNECTION_OK) {
        PQclear(first);
        return NULL;
    }
    return first;
}

/* Asks sql on the watchdog's connection, making one to the primary when it has none, until
 * until_ns: the result (any: an error is an answer too), or NULL when no primary answered by then
 * (why says what happened; *refused: a server did answer, refusing the connection, so the path
 * is not dead). A connection of earlier that stays silent for half of the time left is replaced
 * by a new one, which gets the rest. */
static PGresult *probe(struct pg_store *st, const char *sql, const char *param, uint64_t until_ns,
                       char *why, size_t whylen, bool *refused)
{
    struct pg_watch *w = &st->watch;
    char lock[96];
    snprintf(lock, sizeof lock, "SELECT pg_advisory_lock_shared(%lld, %d)", PG_SCHEMA_LOCK_KEY,
             PG_LAYOUT_CURRENT);
    snprintf(why, whylen, "no answer");
    *refused = false;
    for (;;) {
        uint64_t now = pg_now_ns();
        if (now >= until_ns || stopping(w))
            return NULL;
        bool fresh = false;
        if (!w->conn) {
            w->conn = pg_connect_any(st->plan, until_ns, why, whylen);
            if (!w->conn && pg_refused_by_server(why)) {
                *refused = true;
                return NULL;
            }
            if (!w->conn) {
                /* Not reached, or no primary yet: again after the backoff (it goes on growing
                 * from one probe to the next until a connection is made), while there is time. */
                w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : SEARCH_MIN_MS;
                if (w->backoff_ms > SEARCH_MAX_MS)
                    w->backoff_ms = SEARCH_MAX_MS;
                w->rng ^= w->rng << 13;
                w->rng ^= w->rng >> 17;
                w->rng ^= w->rng << 5;
                uint64_t pause = (uint64_t)(w->backoff_ms / 2 +
                                            (long)(w->rng % (uint32_t)(w->backoff_ms / 2 + 1))) *
                                 1000000u;
                now = pg_now_ns();
                if (now < until_ns)
                    nap(until_ns - now < pause ? until_ns - now : pause);
                continue;
            }
            w->backoff_ms = 0;
            fresh = true;
            (void)PQsetnonblocking(w->conn, 1);
        }
        uint64_t by = fresh ? until_ns : now + (until_ns - now) / 2;
        if (!w->locked) {
            PGresult *res = ask(w, lock, NULL, by);
            if (res && PQresultStatus(res) == PGRES_TUPLES_OK)
                w->locked = true;
            PQclear(res);
            if (!res) {
                snprintf(why, whylen, "the watchdog's connection to %s:%s did not answer",
                         PQhost(w->conn), PQport(w->conn));
                drop_conn(w);
                continue;
            }
        }
        PGresult *res = ask(w, sql, param, by);
        if (res)
            return res;
        snprintf(why, whylen, "the watchdog's connection to %s:%s did not answer",
                 PQhost(w->conn), PQport(w->conn));
        drop_conn(w);
    }
}

/* Every connection of the store, the writer's first. */
static size_t all_links(struct pg_store *st, struct link **out)
{
    size_t n = 0;
    out[n++] = &st->writer;
    for (size_t i = 0; i < st->n_readers; i++)
        out[n++] = &st->readers[i].link;
    return n;
}

/* The database did not answer within the bound: pull every plug, the store is unreachable. */
static void give_up(struct pg_store *st, const char *why)
{
    struct link *links[1 + 64];
    char reason[400];
    snprintf(reason, sizeof reason,
             "answered within silence_timeout_ms (%d ms): %s; every connection is dropped",
             st->prm.silence_timeout_ms, why);
    pg_reach(st, false, true, reason);
    size_t n = all_links(st, links);
    for (size_t i = 0; i < n; i++)
        pg_link_kill(st, links[i]);
    if (st->watch.conn)
        drop_conn(&st->watch);
}

/* A connection is silent past a third of the bound: ask what its server process does, and pull
 * the plug of those it is not working for; no answer in time: give_up(). */
static void check_quiet(struct pg_store *st, struct link **links, const uint64_t *since, size_t n,
                        uint64_t oldest)
{
    struct pg_watch *w = &st->watch;
    uint64_t now = pg_now_ns(), bound = pg_silence_bound_ns(st);
    char param[16 * (1 + 64) + 4], why[512];
    size_t at = 0;
    int pids[1 + 64];

    param[at++] = '{';
    for (size_t i = 0; i < n; i++) {
        pids[i] = atomic_load(&links[i]->pid);
        at += (size_t)snprintf(param + at, sizeof param - at, "%s%d", i ? "," : "", pids[i]);
    }
    snprintf(param + at, sizeof param - at, "}");
    uint64_t until = oldest + bound > now + bound / 3 ? oldest + bound : now + bound / 3;
    bool refused;
    PGresult *res = probe(st, stuck_sql, param, until, why, sizeof why, &refused);
    if (!res) {
        if (!stopping(w) && !refused)
            give_up(st, why);
        return; /* refused: the database is there; its connections go on, bounded as ever */
    }
    w->probed_ns = pg_now_ns();
    bool stuck[1 + 64] = {false}, any = false;
    for (size_t i = 0; i < n; i++) {
        /* Listed: its server process works on nothing for it, or is not there (gone, or on
         * another server than the watchdog reached: the primary moved). */
        for (int r = 0; PQresultStatus(res) == PGRES_TUPLES_OK && r < PQntuples(res); r++)
            if (atoi(PQgetvalue(res, r, 0)) == pids[i])
                stuck[i] = true;
        any |= stuck[i];
    }
    PQclear(res);
    if (!any)
        return;
    nap(KICK_GRACE_NS < bound / 10 ? KICK_GRACE_NS : bound / 10);
    at = 0;
    param[at++] = '{';
    for (size_t i = 0; i < n; i++) {
        /* Only while it still waits in the same silence: an answer that came meanwhile ends it. */
        if (!stuck[i] || atomic_load(&links[i]->quiet_since_ns) != since[i])
            continue;
        log_msg(LOG_WARNING, "PostgreSQL at %s: a %s connection has waited %llu ms without an "
                "answer while its server process works on nothing for it (its query or the "
                "answer was lost on the way); it is dropped", st->shown,
                links[i] == &st->writer ? "write" : "read",
                (unsigned long long)((pg_now_ns() - since[i]) / 1000000u));
        pg_link_kill(st, links[i]);
        at += (size_t)snprintf(param + at, sizeof param - at, "%s%d", at > 1 ? "," : "", pids[i]);
    }
    if (at == 1)
        return;
    snprintf(param + at, sizeof param - at, "}");
    /* A short bound: the database just answered; without an answer the server ends them when it
     * notices their clients gone. */
    res = w->conn ? ask(w, end_sql, param, pg_now_ns() + bound / 3) : NULL;
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && atoi(PQgetvalue(res, 0, 0)) > 0)
        log_msg(LOG_WARNING, "PostgreSQL at %s: %s of their server processes were left in a "
                "transaction and are ended (pg_terminate_backend), releasing its locks",
                st->shown, PQgetvalue(res, 0, 0));
    if (!res && w->conn)
        drop_conn(w);
    PQclear(res);
}

/* One look; returns when the next is due. */
static uint64_t look(struct pg_store *st)
{
    struct pg_watch *w = &st->watch;
    uint64_t now = pg_now_ns(), bound = pg_silence_bound_ns(st);
    char why[512];

    if (atomic_load(&st->unreachable)) {
        /* Looking for a primary: with a new connection, since the old one proves nothing about a
         * new one (a proxy that refuses them, a node that died). */
        if (!w->searching && w->conn)
            drop_conn(w);
        w->searching = true;
        bool refused;
        PGresult *res =
            probe(st, "SELECT 1", NULL, now + pg_attempt_ns(st), why, sizeof why, &refused);
        if (!res && refused) { /* no session for us there now: again after a pause */
            w->backoff_ms = SEARCH_MAX_MS;
            return pg_now_ns() + (uint64_t)SEARCH_MAX_MS * 1000000u;
        }
        if (!res)
            return pg_now_ns(); /* probe() paces the attempts (its backoff) */
        PQclear(res);
        w->searching = false;
        w->probed_ns = pg_now_ns();
        pg_reach(st, true, false, NULL);
        return pg_now_ns() + LOOK_NS;
    }
    w->searching = false;

    struct link *links[1 + 64], *quiet[1 + 64];
    uint64_t since[1 + 64], oldest = 0;
    size_t n = all_links(st, links), m = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t q = atomic_load_explicit(&links[i]->quiet_since_ns, memory_order_relaxed);
        if (!q || now - q < bound / 3)
            continue;
        quiet[m] = links[i];
        since[m++] = q;
        if (!oldest || q < oldest)
            oldest = q;
    }
    if (m && now >= w->next_quiet_probe_ns) {
        check_quiet(st, quiet, since, m, oldest);
        w->next_quiet_probe_ns = pg_now_ns() + bound / 3;
        return pg_now_ns() + LOOK_NS;
    }
    if (now - w->probed_ns >= bound) { /* nobody waits: a heartbeat */
        bool refused;
        PGresult *res = probe(st, "SELECT 1", NULL, now + bound * 2 / 3, why, sizeof why,
                              &refused);
        if (res || refused) {
            PQclear(res);
            w->probed_ns = pg_now_ns();
        } else if (!stopping(w)) {
            give_up(st, why);
        }
    }
    return pg_now_ns() + LOOK_NS;
}

static void *watch_main(void *arg)
{
    struct pg_store *st = arg;
    struct pg_watch *w = &st->watch;
    uint64_t next = pg_now_ns() + LOOK_NS;

    pthread_setname_np(pthread_self(), "books-pg-watch");
    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        if (!w->look && pg_now_ns() < next) {
            struct timespec until = {(time_t)(next / 1000000000u), (long)(next % 1000000000u)};
            pthread_cond_timedwait(&w->cv, &w->mu, &until);
            continue;
        }
        w->look = false;
        pthread_mutex_unlock(&w->mu);
        next = look(st);
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    if (w->conn)
        drop_conn(w);
    return NULL;
}

int pg_watch_start(struct pg_store *st)
{
    struct pg_watch *w = &st->watch;
    w->probed_ns = pg_now_ns();
    w->rng = (uint32_t)(uintptr_t)st ^ (uint32_t)pg_now_ns() ^ 0x85ebca6bu;
    if (!w->rng)
        w->rng = 1;
    if (pthread_create(&w->thread, NULL, watch_main, st) != 0)
        return BOOKS_EIO;
    w->started = true;
    return 0;
}

void pg_watch_look(struct pg_store *st)
{
    struct pg_watch *w = &st->watch;
    pthread_mutex_lock(&w->mu);
    w->look = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void pg_watch_stop(struct pg_store *st)
{
    struct pg_watch *w = &st->watch;
    if (!w->started)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (pthread_join(w->thread, NULL) != 0)
        abort();
    w->started = false;
}
