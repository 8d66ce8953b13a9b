/* conn.c: connecting to PostgreSQL and reading its errors (pg.h). The password reaches libpq and
 * nothing else: messages name a server by pg_describe() or pg_plan_describe(), which name the
 * user, the hosts, the ports and the database only.
 *
 * A URI may name several hosts (libpq's multi-host form: host=a,b,c or postgresql://a:1,b:2/db),
 * as a client of a failover manager does (Patroni: every node; the writer finds the one that takes
 * writes). libpq alone tries them one after another, each for up to connect_timeout; the store
 * instead starts one non-blocking connection per host at once (pg_connect_any) and takes the first
 * that reaches CONNECTION_OK as the session it asked for, so a new primary is found in one round
 * trip, whichever host it is, and a host that does not answer costs nothing while another does. */
#include "pg.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "books/error.h"
#include "books/log.h"

void pg_describe(const PGconn *conn, char *out, size_t len)
{
    const char *user = conn ? PQuser(conn) : NULL, *host = conn ? PQhost(conn) : NULL;
    const char *port = conn ? PQport(conn) : NULL, *db = conn ? PQdb(conn) : NULL;

    snprintf(out, len, "postgresql://%s@%s:%s/%s", user && *user ? user : "?",
             host && *host ? host : "localhost", port && *port ? port : "5432",
             db && *db ? db : "?");
}

/* libpq's messages end with a newline, and some have a second line (a hint): keep one line. */
static void one_line(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    size_t n = strlen(s), k = 0;
    for (size_t i = 0; i < n; i++) /* runs of spaces: one */
        if (s[i] != ' ' || (k && s[k - 1] != ' '))
            s[k++] = s[i];
    while (k && s[k - 1] == ' ')
        k--;
    s[k] = '\0';
}

/* ---- the plan: the hosts, and the parameters of every connection ------------------------------- */

/* The parameters the store gives every connection unless the URI sets them (pg.h says why). */
enum { DEF_APP, DEF_KEEPALIVES, DEF_IDLE, DEF_INTERVAL, DEF_COUNT, DEF_USER_TIMEOUT, N_DEFAULTS };
static const char *const default_keys[N_DEFAULTS] = {
    "fallback_application_name", "keepalives",       "keepalives_idle",
    "keepalives_interval",       "keepalives_count", "tcp_user_timeout"};

struct pg_plan {
    PQconninfoOption *opts; /* libpq's reading of the URI; its values are zeroed when freed */
    size_t n_hosts, n_keys;
    const char **keys; /* n_keys + 1: the same keywords for every host, then NULL */
    const char **vals; /* n_hosts rows of n_keys + 1 values, each row ending with NULL */
    char *lists;       /* the host, hostaddr and port lists, copied and cut at their commas */
    size_t lists_len;
    char defaults[N_DEFAULTS][16];
    const char *attrs; /* target_session_attrs in force */
    bool attrs_default;
    int connect_timeout_s; /* the URI's connect_timeout, 0 when it sets none */
    char shown[256];       /* postgresql://USER@HOST:PORT[,HOST:PORT...]/DB */
};

static const char *opt_val(const PQconninfoOption *opts, const char *key)
{
    for (const PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, key) == 0)
            return o->val;
    return NULL;
}

/* The number of entries of a comma-separated list (libpq's multi-host form); 0 for none. */
static size_t list_count(const char *s)
{
    size_t n = 1;
    if (!s || !*s)
        return 0;
    for (; *s; s++)
        n += *s == ',';
    return n;
}

/* Entry i of a list copied into `at` (commas already NUL), or NULL when the list is absent. A list
 * of one entry serves every host (libpq: one port for all hosts). */
static const char *list_entry(const char *copy, size_t count, size_t i)
{
    if (!copy)
        return NULL;
    if (count <= 1)
        return copy;
    for (; i > 0; i--)
        copy += strlen(copy) + 1;
    return copy;
}

static char *copy_list(char **at, const char *s)
{
    if (!s || !*s)
        return NULL;
    char *start = *at;
    size_t n = strlen(s);
    memcpy(start, s, n + 1);
    for (size_t i = 0; i < n; i++)
        if (start[i] == ',')
            start[i] = '\0';
    *at += n + 1;
    return start;
}

void pg_plan_free(struct pg_plan *p)
{
    if (!p)
        return;
    for (PQconninfoOption *o = p->opts; o && o->keyword; o++)
        if (o->val) /* the password among them: not left in freed memory */
            memset(o->val, 0, strlen(o->val));
    PQconninfoFree(p->opts);
    if (p->lists)
        memset(p->lists, 0, p->lists_len);
    free(p->lists);
    free(p->keys);
    free(p->vals);
    free(p);
}

/* libpq's message about a URI it cannot read, unless it would show the URI (a few quote it whole,
 * password included). */
static void parse_error(char *err, size_t errlen, char *msg)
{
    if (msg && !strstr(msg, "postgres")) {
        one_line(msg);
        books_format_err(err, errlen, "store URI postgresql:...: libpq cannot read it: %s", msg);
    } else {
        books_format_err(err, errlen, "store URI postgresql:...: libpq cannot read it (a "
                         "malformed host list, address or percent-encoding)");
    }
    if (msg) {
        memset(msg, 0, strlen(msg));
        PQfreemem(msg);
    }
}

int pg_plan_new(const char *conninfo, int silence_ms, struct pg_plan **out, char *err,
                size_t errlen)
{
    char *msg = NULL;
    struct pg_plan *p = calloc(1, sizeof *p);
    if (!p)
        return BOOKS_ENOMEM;
    p->opts = PQconninfoParse(conninfo, &msg);
    if (!p->opts) {
        free(p);
        if (!msg)
            return BOOKS_ENOMEM;
        parse_error(err, errlen, msg);
        return BOOKS_EINVAL;
    }
    const char *host = opt_val(p->opts, "host"), *hostaddr = opt_val(p->opts, "hostaddr");
    const char *port = opt_val(p->opts, "port"), *attrs = opt_val(p->opts, "target_session_attrs");
    const char *timeout = opt_val(p->opts, "connect_timeout");

    /* The writer may only ever write to a primary: read-write (libpq checks that the session
     * takes writes) or primary (that the server is not in recovery); any, read-only, standby and
     * prefer-standby would hand it a standby. */
    if (attrs && *attrs && strcmp(attrs, "read-write") != 0 && strcmp(attrs, "primary") != 0) {
        books_format_err(err, errlen,
                         "store URI postgresql:...: target_session_attrs=%.32s would let the store "
                         "connect to a standby, which cannot take its writes; give read-write (the "
                         "store's default when the URI sets none) or primary",
                         attrs);
        pg_plan_free(p);
        return BOOKS_EINVAL;
    }
    p->attrs_default = !attrs || !*attrs;
    p->attrs = p->attrs_default ? "read-write" : attrs;
    p->connect_timeout_s = timeout ? atoi(timeout) : 0;

    /* One attempt per host when the lists line up as libpq requires (hostaddr as many as host,
     * port one or as many); otherwise one attempt with the lists as they are, and libpq's own
     * message for them. */
    size_t nh = list_count(host), na = list_count(hostaddr), np = list_count(port);
    size_t n = nh ? nh : na ? na : 1;
    if (n > 1 && ((nh && na && nh != na) || (np > 1 && np != n)))
        n = 1;
    p->n_hosts = n;
    p->lists_len = (host ? strlen(host) + 1 : 0) + (hostaddr ? strlen(hostaddr) + 1 : 0) +
                   (port ? strlen(port) + 1 : 0) + 1;
    p->lists = malloc(p->lists_len);
    size_t n_opts = 0;
    for (const PQconninfoOption *o = p->opts; o->keyword; o++)
        n_opts++;
    size_t cap = n_opts + N_DEFAULTS + 1;
    p->keys = malloc(cap * sizeof *p->keys);
    p->vals = malloc(n * cap * sizeof *p->vals);
    if (!p->lists || !p->keys || !p->vals) {
        pg_plan_free(p);
        return BOOKS_ENOMEM;
    }
    char *at = p->lists;
    const char *hosts = n > 1 ? copy_list(&at, host) : host;
    const char *addrs = n > 1 ? copy_list(&at, hostaddr) : hostaddr;
    const char *ports = n > 1 ? copy_list(&at, port) : port;
    if (n == 1)
        nh = na = np = 1;

    /* Keywords: the URI's (but target_session_attrs, which is ours), then the store's defaults
     * for what it leaves unset, then target_session_attrs. */
    size_t k = 0;
    for (const PQconninfoOption *o = p->opts; o->keyword; o++)
        if (o->val && strcmp(o->keyword, "target_session_attrs") != 0)
            p->keys[k++] = o->keyword;
    size_t uri_keys = k;
    int idle = silence_ms / 2000, interval = silence_ms / 6000;
    snprintf(p->defaults[DEF_APP], sizeof p->defaults[0], "books-server");
    snprintf(p->defaults[DEF_KEEPALIVES], sizeof p->defaults[0], "1");
    snprintf(p->defaults[DEF_IDLE], sizeof p->defaults[0], "%d", idle > 0 ? idle : 1);
    snprintf(p->defaults[DEF_INTERVAL], sizeof p->defaults[0], "%d", interval > 0 ? interval : 1);
    snprintf(p->defaults[DEF_COUNT], sizeof p->defaults[0], "3");
    snprintf(p->defaults[DEF_USER_TIMEOUT], sizeof p->defaults[0], "%d", silence_ms);
    size_t first_default = k;
    for (int d = 0; d < N_DEFAULTS; d++)
        if (!opt_val(p->opts, default_keys[d]))
            p->keys[k++] = default_keys[d];
    p->keys[k++] = "target_session_attrs";
    p->keys[k] = NULL;
    p->n_keys = k;
    for (size_t h = 0; h < n; h++) {
        const char **row = p->vals + h * (k + 1);
        for (size_t i = 0; i < uri_keys; i++) {
            const char *key = p->keys[i];
            row[i] = strcmp(key, "host") == 0       ? list_entry(hosts, nh, h)
                     : strcmp(key, "hostaddr") == 0 ? list_entry(addrs, na, h)
                     : strcmp(key, "port") == 0     ? list_entry(ports, np, h)
                                                    : opt_val(p->opts, key);
        }
        for (size_t i = first_default; i < k - 1; i++)
            for (int d = 0; d < N_DEFAULTS; d++)
                if (strcmp(p->keys[i], default_keys[d]) == 0)
                    row[i] = p->defaults[d];
        row[k - 1] = p->attrs;
        row[k] = NULL;
    }

    /* What messages name: the hosts as the URI gives them, never the password. */
    const char *user = opt_val(p->opts, "user"), *db = opt_val(p->opts, "dbname");
    size_t len = (size_t)snprintf(p->shown, sizeof p->shown, "postgresql://%s@",
                                  user && *user ? user : "?");
    for (size_t h = 0; h < n && len < sizeof p->shown; h++) {
        const char *hh = pg_plan_value(p, h, "host"), *ha = pg_plan_value(p, h, "hostaddr");
        const char *pp = pg_plan_value(p, h, "port");
        len += (size_t)snprintf(p->shown + len, sizeof p->shown - len, "%s%s:%s", h ? "," : "",
                                hh && *hh ? hh : ha && *ha ? ha : "localhost",
                                pp && *pp ? pp : "5432");
    }
    if (len < sizeof p->shown)
        snprintf(p->shown + len, sizeof p->shown - len, "/%s",
                 db && *db ? db : user && *user ? user : "?");
    *out = p;
    return 0;
}

size_t pg_plan_hosts(const struct pg_plan *p) { return p->n_hosts; }

const char *pg_plan_value(const struct pg_plan *p, size_t host, const char *keyword)
{
    if (host >= p->n_hosts)
        return NULL;
    for (size_t i = 0; i < p->n_keys; i++)
        if (strcmp(p->keys[i], keyword) == 0)
            return p->vals[host * (p->n_keys + 1) + i];
    return NULL;
}

const char *pg_plan_session_attrs(const struct pg_plan *p, bool *from_uri)
{
    if (from_uri)
        *from_uri = !p->attrs_default;
    return p->attrs;
}

int pg_plan_connect_timeout_s(const struct pg_plan *p) { return p->connect_timeout_s; }

void pg_plan_describe(const struct pg_plan *p, const PGconn *conn, char *out, size_t len)
{
    if (p->n_hosts == 1 && conn) {
        pg_describe(conn, out, len);
        return;
    }
    snprintf(out, len, "%s", p->shown);
}

/* ---- connecting: every host at once ---------------------------------------------------------- */

/* Appends "; " and the reason connection c failed to why (len bytes). */
static void add_reason(char *why, size_t len, const PGconn *c, const char *instead)
{
    char one[384];
    size_t at = strlen(why);
    if (instead) {
        const char *host = c ? PQhost(c) : NULL, *port = c ? PQport(c) : NULL;
        snprintf(one, sizeof one, "connection to server at \"%s\", port %s: %s",
                 host && *host ? host : "localhost", port && *port ? port : "5432", instead);
    } else {
        snprintf(one, sizeof one, "%s", c ? PQerrorMessage(c) : "out of memory");
        one_line(one);
    }
    if (at + 3 < len)
        snprintf(why + at, len - at, "%s%s", at ? "; " : "", one);
}

PGconn *pg_connect_any(const struct pg_plan *p, uint64_t until_ns, char *err, size_t errlen)
{
    size_t n = p->n_hosts, live = 0;
    PGconn **c = calloc(n, sizeof *c);
    PostgresPollingStatusType *want = calloc(n, sizeof *want);
    struct pollfd *fds = calloc(n, sizeof *fds);
    size_t *which = calloc(n, sizeof *which);
    PGconn *won = NULL;
    char why[512] = "";

    if (!c || !want || !fds || !which) {
        books_format_err(err, errlen, "out of memory");
        goto out;
    }
    for (size_t h = 0; h < n; h++) {
        c[h] = PQconnectStartParams(p->keys, p->vals + h * (p->n_keys + 1), 0);
        if (!c[h] || PQstatus(c[h]) == CONNECTION_BAD) {
            add_reason(why, sizeof why, c[h], NULL);
            PQfinish(c[h]);
            c[h] = NULL;
            continue;
        }
        want[h] = PGRES_POLLING_WRITING; /* libpq: as if PQconnectPoll had said so */
        live++;
    }
    /* libpq ignores connect_timeout in this non-blocking form: until_ns bounds the attempt. Its
     * steps: each connection's socket (which libpq may replace, trying a host's next address) is
     * awaited for what PQconnectPoll last asked, then PQconnectPoll again; the first OK wins. */
    while (live && !won) {
        uint64_t now = pg_now_ns();
        if (now >= until_ns)
            break;
        size_t m = 0;
        bool at_once = false; /* a connection without a socket yet: PQconnectPoll now */
        for (size_t h = 0; h < n; h++) {
            if (!c[h])
                continue;
            fds[m] = (struct pollfd){PQsocket(c[h]),
                                     want[h] == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
            at_once |= fds[m].fd < 0;
            which[m++] = h;
        }
        uint64_t ms = at_once ? 0 : (until_ns - now + 999999) / 1000000;
        int ready = poll(fds, m, ms > INT_MAX ? INT_MAX : (int)ms);
        if (ready < 0 && errno != EINTR)
            break;
        for (size_t i = 0; i < m && !won; i++) {
            size_t h = which[i];
            if (fds[i].fd >= 0 && !fds[i].revents)
                continue;
            want[h] = PQconnectPoll(c[h]);
            if (want[h] == PGRES_POLLING_OK) {
                won = c[h];
                c[h] = NULL;
            } else if (want[h] == PGRES_POLLING_FAILED) {
                add_reason(why, sizeof why, c[h], NULL);
                PQfinish(c[h]);
                c[h] = NULL;
                live--;
            }
        }
    }
    if (!won) {
        for (size_t h = 0; h < n; h++)
            if (c[h])
                add_reason(why, sizeof why, c[h], "no answer in time");
        books_format_err(err, errlen, "%s", why[0] ? why : "no host to connect to");
    }
out:
    for (size_t h = 0; c && h < n; h++)
        PQfinish(c[h]); /* the others: a second primary, a slower one, a standby */
    free(c);
    free(want);
    free(fds);
    free(which);
    return won;
}

bool pg_refused_by_server(const char *why)
{
    /* libpq quotes the server's ErrorResponse with its severity, in the server's language;
     * PostgreSQL's translations keep "FATAL" in most. */
    return strstr(why, "FATAL") != NULL;
}

PGconn *pg_connect(const struct pg_plan *p, int attempt_ms, int retry_ms, char *err,
                   size_t errlen)
{
    char why[STORE_ERR_BYTES];
    uint64_t start = pg_now_ns();
    long backoff_ms = 100, waited_ms = 0;

    for (int attempt = 1;; attempt++) {
        PGconn *conn = pg_connect_any(p, pg_now_ns() + (uint64_t)attempt_ms * 1000000u, why,
                                      sizeof why);
        if (conn)
            return conn;
        waited_ms = (long)((pg_now_ns() - start) / 1000000u);
        if (waited_ms + backoff_ms > retry_ms) {
            books_format_err(err, errlen,
                             "cannot connect to PostgreSQL at %s (target_session_attrs=%s) after "
                             "%d attempt%s in %ld ms: %s",
                             p->shown, p->attrs, attempt, attempt == 1 ? "" : "s", waited_ms, why);
            return NULL;
        }
        log_msg(LOG_WARNING, "PostgreSQL at %s: %s; retrying in %ld ms", p->shown, why,
                backoff_ms);
        nanosleep(&(struct timespec){backoff_ms / 1000, (backoff_ms % 1000) * 1000000L}, NULL);
        backoff_ms = backoff_ms * 2 > 2000 ? 2000 : backoff_ms * 2;
    }
}
int pg_sqlstate_error(const char *state)
{
    if (!state || strlen(state) != 5)
        return BOOKS_EUNAVAIL;
    /* 08: connection exceptions; 57P01-57P05: the server shutting down or restarting */
    if (strncmp(state, "08", 2) == 0 || strncmp(state, "57P0", 4) == 0)
        return BOOKS_EUNAVAIL;
    if (strcmp(state, "57014") == 0) /* query_canceled: a statement_timeout, or a cancel */
        return BOOKS_EDEADLINE;
    if (strcmp(state, "53100") == 0) /* disk_full: stays so until someone frees space */
        return BOOKS_ENOSPC;
    /* the rest of insufficient resources (53000, 53200 out_of_memory, 53300 too_many_connections,
     * 53400 configuration_limit_exceeded): the server turns work away for now */
    if (strncmp(state, "53", 2) == 0)
        return BOOKS_ETHROTTLED;
    /* read_only_sql_transaction: the session does not take writes (a standby, or a primary whose
     * default_transaction_read_only is on): the store drops the connection and looks for the
     * primary again (pg_read_only) */
    if (strcmp(state, "25006") == 0)
        return BOOKS_EUNAVAIL;
    if (strncmp(state, "40", 2) == 0) /* transaction rollback: serialization failure, deadlock */
        return BOOKS_EABORTED;
    /* 42: syntax or access rule (42501 insufficient_privilege, 42P01 undefined_table: the role or
     * the schema is wrong); 22 data exception, 23 integrity (a CHECK, a trigger: the unique ones
     * never reach here, ON CONFLICT takes them), 54 program limits (a row too big): the database
     * refuses, and will go on refusing until someone changes it */
    if (strncmp(state, "42", 2) == 0 || strncmp(state, "22", 2) == 0 ||
        strncmp(state, "23", 2) == 0 || strncmp(state, "54", 2) == 0)
        return BOOKS_EREFUSED;
    return BOOKS_EINTERNAL; /* XX internal error, the rest of 25 invalid transaction state, ... */
}

bool pg_read_only(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state && strcmp(state, "25006") == 0;
}

int pg_error(const PGconn *conn, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    if (!conn || PQstatus(conn) != CONNECTION_OK || !state)
        return BOOKS_EUNAVAIL;
    return pg_sqlstate_error(state);
}

bool pg_row_refused(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state && (strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0 ||
                     strncmp(state, "54", 2) == 0);
}

bool pg_layout_gone(const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state && (strcmp(state, "42703") == 0 || strcmp(state, "42P01") == 0 ||
                     strcmp(state, "0A000") == 0);
}

int pg_exec(PGconn *conn, const char *sql, ExecStatusType want, PGresult **out)
{
    PGresult *res = PQexec(conn, sql);
    int rc = res && PQresultStatus(res) == want ? 0 : pg_error(conn, res);

    if (out && rc == 0) {
        *out = res;
        return 0;
    }
    if (out)
        *out = NULL;
    PQclear(res);
    return rc;
}
