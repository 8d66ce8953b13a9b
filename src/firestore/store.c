/* store.c: the firestore: store (store_firestore.h): its URI, its start-up (the page-token key
 * document), its reads and its state. Reads never wait on a caller's thread: GetDocument and
 * RunQuery are started here and answered from the client's thread (client.c). */
#include "books/store_firestore.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "books/error.h"
#include "books/log.h"
#include "books/options.h"
#include "books/status.h"
#include "fs.h"

/* ---- the URI ----------------------------------------------------------------------------------- */

#define PARAM(f) offsetof(struct fs_params, f)
static const struct opt_choice on_off[] = {{"on", 1}, {"off", 0}, {NULL, 0}};
static const struct opt uri_params[] = {
    {.name = "collection", .set = opt_set_string, .free = opt_free_string,
     .offset = PARAM(collection), .min = 1, .max = 100, .def = "books"},
    {.name = "cache_mb", .set = opt_set_int, .offset = PARAM(cache_mb), .min = 0, .max = 65536,
     .def = "16"},
    {.name = "group_commit", .set = opt_set_choice, .offset = PARAM(group_commit),
     .choices = on_off, .def = "on"},
    {.name = "timeout_ms", .set = opt_set_int, .offset = PARAM(timeout_ms), .min = 1,
     .max = 600000, .def = "10000"},
    {.name = "startup_timeout_s", .set = opt_set_int, .offset = PARAM(startup_timeout_s),
     .min = 0, .max = 3600, .def = "600"},
    {.name = "max_request_bytes", .set = opt_set_int, .offset = PARAM(max_request_bytes),
     .min = FS_MAX_REQUEST_BYTES_MIN, .max = FS_MAX_REQUEST_BYTES_MAX,
     .def = NULL}, /* not given: 0, and open() picks the default for the emulator or production */
};
#define N_PARAMS (sizeof uri_params / sizeof uri_params[0])

static void report_param(struct opt_parser *p, const struct opt_problem *pr)
{
    char accepted[96];
    if (pr->kind == OPT_UNKNOWN || pr->kind == OPT_POSITIONAL) {
        opt_fail(p, BOOKS_EINVAL,
                 "store URI firestore:...: unknown parameter \"%.*s\"; it takes collection, "
                 "cache_mb, group_commit, timeout_ms, startup_timeout_s, max_request_bytes",
                 (int)(pr->name && pr->name_len < 40 ? pr->name_len : 0), pr->name ? pr->name : "");
        return;
    }
    opt_fail(p, BOOKS_EINVAL, "store URI firestore:...: parameter %s %s; it takes %s", pr->o->name,
             pr->kind == OPT_REPEATED        ? "is given twice"
             : pr->kind == OPT_MISSING_VALUE ? "has no value"
                                             : "has a bad value",
             opt_describe(pr->o, accepted, sizeof accepted));
}

/* Firestore's collection ids may be more; ours are a safe subset, never "_"-wrapped. */
static bool good_collection(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 100 || (s[0] == '_' && s[1] == '_'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* A project id (6-30 of [a-z0-9-], or a domain-scoped "example.com:id"): lower-case letters,
 * digits, '-', '.', ':', 1..100 bytes. */
static bool good_project(const char *s, size_t n)
{
    if (n == 0 || n > 100)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
              s[i] == '.' || s[i] == ':'))
            return false;
    return true;
}

/* "(default)" or 1..63 of [a-z0-9-], starting with a letter. */
static bool good_database(const char *s, size_t n)
{
    if (n == 9 && memcmp(s, "(default)", 9) == 0)
        return true;
    if (n == 0 || n > 63 || !(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

/* The project from Google Cloud's metadata server ($GCE_METADATA_HOST, as Google's libraries
 * honour, else metadata.google.internal): one HTTP/1.0 GET with "Metadata-Flavor: Google", 2 s in
 * all, at most 4 KiB read. 0 with the id in out, or BOOKS_EUNAVAIL. */
static int project_from_metadata(char *out, size_t len)
{
    const char *host = getenv("GCE_METADATA_HOST");
    char name[256], port[8] = "80", req[512], resp[4096];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    size_t got = 0;
    int fd = -1, rc = BOOKS_EUNAVAIL;
    uint64_t until = fs_now_ns() + 2000000000u;

    snprintf(name, sizeof name, "%s", host && *host ? host : "metadata.google.internal");
    char *colon = strrchr(name, ':');
    if (colon && !strchr(name, ']') && strchr(name, ':') == colon) { /* host:port */
        snprintf(port, sizeof port, "%.6s", colon + 1);
        *colon = '\0';
    }
    if (getaddrinfo(name, port, &hints, &ai) != 0 || !ai)
        return rc;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        goto out;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)
        goto out;
    int n = snprintf(req, sizeof req,
                     "GET /computeMetadata/v1/project/project-id HTTP/1.0\r\nHost: %s\r\n"
                     "Metadata-Flavor: Google\r\n\r\n",
                     name);
    size_t sent = 0;
    while (sent < (size_t)n) {
        struct pollfd p = {fd, POLLOUT, 0};
        uint64_t now = fs_now_ns();
        if (now >= until || poll(&p, 1, (int)((until - now) / 1000000u) + 1) <= 0)
            goto out;
        ssize_t w = send(fd, req + sent, (size_t)n - sent, MSG_NOSIGNAL);
        if (w <= 0 && errno != EAGAIN)
            goto out;
        if (w > 0)
            sent += (size_t)w;
    }
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        uint64_t now = fs_now_ns();
        if (got == sizeof resp - 1 || now >= until ||
            poll(&p, 1, (int)((until - now) / 1000000u) + 1) <= 0)
            break;
        ssize_t r = recv(fd, resp + got, sizeof resp - 1 - got, 0);
        if (r == 0)
            break;
        if (r < 0 && errno != EAGAIN)
            goto out;
        if (r > 0)
            got += (size_t)r;
    }
    resp[got] = '\0';
    const char *body = strstr(resp, "\r\n\r\n");
    if (strncmp(resp, "HTTP/1.", 7) != 0 || strncmp(resp + 8, " 200", 4) != 0 || !body)
        goto out;
    body += 4;
    size_t blen = strcspn(body, "\r\n");
    if (good_project(body, blen) && blen < len) {
        memcpy(out, body, blen);
        out[blen] = '\0';
        rc = 0;
    }
out:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return rc;
}

int fs_parse_uri(const char *rest, char project[FS_PROJECT_BYTES],
                 char database[FS_DATABASE_BYTES], struct fs_params *prm, char *err, size_t errlen)
{
    const char *q = strchr(rest, '?');
    size_t path = q ? (size_t)(q - rest) : strlen(rest);
    struct opt_parser p = {.opts = uri_params, .n_opts = N_PARAMS, .base = prm,
                           .report = report_param, .err = err, .errlen = errlen};

    memset(prm, 0, sizeof *prm);
    if (opt_load_defaults(&p) == 0 && q && q[1])
        opt_parse_query(&p, q + 1);
    if (p.rc != 0)
        return p.rc;
    if (!good_collection(prm->collection)) {
        books_format_err(err, errlen,
                         "store URI firestore:...: collection \"%.100s\" must be 1 to 100 of "
                         "A-Z, a-z, 0-9, '_' and '-', not starting with \"__\"",
                         prm->collection);
        return BOOKS_EINVAL;
    }
    snprintf(database, FS_DATABASE_BYTES, "(default)");
    if (path == 0) {
        const char *env = getenv("GOOGLE_CLOUD_PROJECT");
        if (env && *env) {
            if (!good_project(env, strlen(env))) {
                books_format_err(err, errlen,
                                 "store URI firestore:: GOOGLE_CLOUD_PROJECT \"%.100s\" is not a "
                                 "project id",
                                 env);
                return BOOKS_EINVAL;
            }
            snprintf(project, FS_PROJECT_BYTES, "%s", env);
        } else if (project_from_metadata(project, FS_PROJECT_BYTES) != 0) {
            books_format_err(err, errlen,
                             "store URI firestore:: no project: write firestore://PROJECT, or set "
                             "GOOGLE_CLOUD_PROJECT (the metadata server of Google Cloud did not "
                             "answer either)");
            return BOOKS_EINVAL;
        }
        return 0;
    }
    if (path < 2 || rest[0] != '/' || rest[1] != '/') {
        books_format_err(err, errlen,
                         "store URI firestore:...: write firestore://PROJECT or "
                         "firestore://PROJECT/DATABASE_ID (or firestore: alone)");
        return BOOKS_EINVAL;
    }
    const char *pr = rest + 2, *slash = memchr(pr, '/', path - 2);
    size_t plen = slash ? (size_t)(slash - pr) : path - 2;
    if (!good_project(pr, plen)) {
        books_format_err(err, errlen,
                         "store URI firestore:...: \"%.*s\" is not a project id (lower-case "
                         "letters, digits, '-', '.', ':')",
                         (int)(plen > 100 ? 100 : plen), pr);
        return BOOKS_EINVAL;
    }
    memcpy(project, pr, plen);
    project[plen] = '\0';
    if (slash) {
        size_t dlen = path - 2 - plen - 1;
        if (!good_database(slash + 1, dlen)) {
            books_format_err(err, errlen,
                             "store URI firestore:...: \"%.*s\" is not a database id "
                             "(\"(default)\", or 1 to 63 of a-z, 0-9 and '-', starting with a "
                             "letter)",
                             (int)(dlen > 63 ? 63 : dlen), slash + 1);
            return BOOKS_EINVAL;
        }
        memcpy(database, slash + 1, dlen);
        database[dlen] = '\0';
    }
    return 0;
}

/* ---- state ------------------------------------------------------------------------------------- */

void fs_set_reachable(struct fs_store *st, bool reachable)
{
    atomic_store(&st->reachable, reachable);
    pthread_mutex_lock(&st->state_mu);
    if (reachable != st->told_reachable) {
        st->told_reachable = reachable;
        log_msg(reachable ? LOG_INFO : LOG_WARNING, "Firestore %s: %s", st->shown,
                reachable ? "reachable again" : "unreachable; calls get UNAVAILABLE");
        if (st->state_fn)
            st->state_fn(st->state_arg, reachable);
    }
    pthread_mutex_unlock(&st->state_mu);
}

static void on_reachable(void *arg, bool reachable)
{
    fs_set_reachable(arg, reachable);
}

static void fs_watch(struct store *s, store_state_fn fn, void *arg)
{
    struct fs_store *st = (struct fs_store *)s;
    pthread_mutex_lock(&st->state_mu);
    st->state_fn = fn;
    st->state_arg = arg;
    fn(arg, st->told_reachable); /* the state now: a change before this is not missed */
    pthread_mutex_unlock(&st->state_mu);
}

/* ---- reads ------------------------------------------------------------------------------------- */

/* Takes a place among the reads in flight: false (refused) when max_queued are. */
static bool read_begin(struct fs_store *st)
{
    long n = atomic_fetch_add(&st->reads_in_flight, 1) + 1;
    if (st->max_queued && (size_t)n > st->max_queued) {
        atomic_fetch_sub(&st->reads_in_flight, 1);
        return false;
    }
    return true;
}

static int read_refusal(struct fs_store *st)
{
    if (atomic_load(&st->draining))
        return BOOKS_EUNAVAIL;
    if (!atomic_load(&st->reachable))
        return BOOKS_EUNAVAIL;
    return read_begin(st) ? 0 : BOOKS_EBUSY;
}

static int read_error(struct fs_store *st, const char *what, const struct fs_status *s,
                      unsigned attempts)
{
    int rc = fs_status_error(s->code);
    if (rc != BOOKS_ENOTFOUND && rc != BOOKS_EDEADLINE && s->code != GRPC_STATUS_CANCELLED)
        log_msg(LOG_WARNING, "Firestore %s: %s failed after %u attempt%s: %s (%s)", st->shown,
                what, attempts, attempts == 1 ? "" : "s", rpc_status_name(s->code), s->message);
    return rc;
}

/* A read's deadline for all its attempts: the caller's, else timeout_ms from its first (each
 * attempt's own is fs_attempt_deadline()). */
static uint64_t read_deadline(const struct fs_store *st, uint64_t deadline_ns)
{
    return deadline_ns ? deadline_ns : fs_now_ns() + (uint64_t)st->timeout_ms * 1000000u;
}

/* Whether a read of method m that ended with status s goes again (retry.c's policy), after a
 * wait that still leaves it time before its deadline; then the wait is scheduled (again() runs
 * after it) and true is returned. */
static bool read_again(struct fs_store *st, enum fs_method m, const struct fs_status *s,
                       struct fs_backoff *backoff, uint64_t deadline_ns,
                       void (*again)(void *arg, bool cancelled), void *arg)
{
    if (!fs_retry_code(m, s->code) || atomic_load(&st->draining))
        return false;
    uint64_t now = fs_now_ns(), delay = fs_backoff_next_ns(backoff);
    if (!fs_retry_fits(now, delay, deadline_ns))
        return false;
    atomic_fetch_add_explicit(&st->read_retries, 1, memory_order_relaxed);
    fs_client_later(st->client, now + delay, again, arg);
    return true;
}

struct get_ctx {
    struct fs_store *st;
    store_get_done_fn done;
    void *arg;
    uint64_t deadline_ns; /* of every attempt (read_deadline) */
    struct fs_backoff backoff;
    unsigned attempts;
    char doc[FS_NAME_BYTES]; /* the document's name */
    char name[];             /* the book's resource name */
};

static void get_answered(void *arg, const struct fs_status *s, grpc_byte_buffer *response);

static void get_send(struct get_ctx *g)
{
    Google__Firestore__V1__GetDocumentRequest req = GOOGLE__FIRESTORE__V1__GET_DOCUMENT_REQUEST__INIT;
    req.name = g->doc;
    g->attempts++;
    fs_unary(g->st->client, FS_GET_DOCUMENT, &req.base,
             fs_attempt_deadline(fs_now_ns(), g->deadline_ns, g->st->timeout_ms), get_answered, g);
}

static void get_again(void *arg, bool cancelled)
{
    struct get_ctx *g = arg;
    if (!cancelled) {
        get_send(g);
        return;
    }
    atomic_fetch_sub(&g->st->reads_in_flight, 1);
    g->done(g->arg, BOOKS_EUNAVAIL, NULL, NULL);
    free(g);
}

static void get_answered(void *arg, const struct fs_status *s, grpc_byte_buffer *response)
{
    struct get_ctx *g = arg;
    struct fs_store *st = g->st;
    struct store_book *b = NULL;
    struct store_damage damage = {{0}, {0}};
    int rc;
    if (s->code != GRPC_STATUS_OK &&
        read_again(st, FS_GET_DOCUMENT, s, &g->backoff, g->deadline_ns, get_again, g))
        return;
    if (s->code == GRPC_STATUS_OK) {
        unsigned char buf[2048];
        struct arena a;
        ProtobufCMessage *m = NULL;
        arena_init(&a, buf, sizeof buf);
        rc = fs_decode(response, &google__firestore__v1__document__descriptor, &a, &m);
        if (rc == 0)
            rc = fs_book_from_doc(&st->names, (void *)m, &b, &damage);
        else if (rc != BOOKS_ENOMEM) {
            snprintf(damage.where, sizeof damage.where, "the document of %s", g->name);
            snprintf(damage.why, sizeof damage.why, "GetDocument's answer does not decode");
            rc = BOOKS_ECORRUPT;
        }
        if (rc == BOOKS_ECORRUPT)
            log_msg(LOG_ERROR, "Firestore %s: document %s is not a book: %s", st->shown,
                    damage.where, damage.why);
        arena_cleanup(&a);
    } else {
        rc = read_error(st, "GetDocument", s, g->attempts);
    }
    atomic_fetch_sub(&st->reads_in_flight, 1);
    g->done(g->arg, rc, rc == 0 ? b : NULL, rc == BOOKS_ECORRUPT ? &damage : NULL);
    free(g);
}

static void fs_get_async(struct store *s, const char *name, uint64_t deadline_ns,
                         store_get_done_fn done, void *arg)
{
    struct fs_store *st = (struct fs_store *)s;
    int rc = read_refusal(st);
    if (rc != 0) {
        done(arg, rc, NULL, NULL);
        return;
    }
    size_t len = strlen(name);
    struct get_ctx *g = malloc(sizeof *g + len + 1);
    if (!g || !fs_book_doc(&st->names, name, g->doc, sizeof g->doc)) {
        /* No memory, or not a name of the form books/{id}: no such book. */
        rc = g ? BOOKS_ENOTFOUND : BOOKS_ENOMEM;
        atomic_fetch_sub(&st->reads_in_flight, 1);
        free(g);
        done(arg, rc, NULL, NULL);
        return;
    }
    g->st = st;
    g->done = done;
    g->arg = arg;
    g->deadline_ns = read_deadline(st, deadline_ns);
    g->attempts = 0;
    fs_backoff_init(&g->backoff);
    memcpy(g->name, name, len + 1);
    get_send(g);
}

struct list_ctx {
    struct fs_store *st;
    store_list_done_fn done;
    void *arg;
    struct store_book **out;
    size_t limit, max_bytes, n, bytes;
    char *after; /* skip names up to this one (a key that is not a book's name), or NULL */
    int rc;      /* a message that did not decode or is not a book */
    bool full; /* the page is complete: the stream was stopped on purpose */
    struct store_damage damage; /* with rc BOOKS_ECORRUPT */
    uint64_t deadline_ns;       /* of every attempt (read_deadline) */
    struct fs_backoff backoff;
    unsigned attempts;
    bool cursor;                   /* start just after after_doc */
    char after_doc[FS_NAME_BYTES]; /* the document the page starts after */
};

static void list_send(struct list_ctx *l);

static void list_again(void *arg, bool cancelled)
{
    struct list_ctx *l = arg;
    if (!cancelled) {
        list_send(l);
        return;
    }
    atomic_fetch_sub(&l->st->reads_in_flight, 1);
    l->done(l->arg, BOOKS_EUNAVAIL, 0, NULL);
    free(l);
}

static bool list_message(void *arg, grpc_byte_buffer *msg)
{
    struct list_ctx *l = arg;
    unsigned char buf[2048];
    struct arena a;
    ProtobufCMessage *m = NULL;
    arena_init(&a, buf, sizeof buf);
    int rc = fs_decode(msg, &google__firestore__v1__run_query_response__descriptor, &a, &m);
    const Google__Firestore__V1__RunQueryResponse *r = (void *)m;
    if (rc != 0 && rc != BOOKS_ENOMEM) {
        snprintf(l->damage.where, sizeof l->damage.where, "a document of collection %s",
                 l->st->names.collection);
        snprintf(l->damage.why, sizeof l->damage.why, "RunQuery's answer does not decode");
        rc = BOOKS_ECORRUPT;
    }
    if (rc == 0 && r->document) {
        struct store_book *b = NULL;
        rc = fs_book_from_doc(&l->st->names, r->document, &b, &l->damage);
        if (rc == 0 && l->after && strcmp(b->name, l->after) <= 0) {
            store_book_unref(b);
        } else if (rc == 0) {
            l->out[l->n++] = b;
            if (l->n == l->limit || store_page_full(l->out, l->n, l->max_bytes, &l->bytes))
                l->full = true;
        }
    }
    arena_cleanup(&a);
    if (rc != 0) {
        l->rc = rc;
        return false;
    }
    return !l->full;
}

static void list_end(void *arg, const struct fs_status *s)
{
    struct list_ctx *l = arg;
    struct fs_store *st = l->st;
    int rc = l->rc;
    if (rc == 0 && !l->full && s->code != GRPC_STATUS_OK) {
        /* The whole query goes again (what this attempt received is dropped): a read changes
         * nothing, and the next attempt sees the collection as it is then. */
        for (size_t i = 0; i < l->n; i++)
            store_book_unref(l->out[i]);
        l->n = 0;
        l->bytes = 0;
        if (read_again(st, FS_RUN_QUERY, s, &l->backoff, l->deadline_ns, list_again, l))
            return;
        rc = read_error(st, "RunQuery", s, l->attempts);
    }
    if (rc != 0) {
        if (rc == BOOKS_ECORRUPT)
            log_msg(LOG_ERROR, "Firestore %s: document %s is not a book: %s", st->shown,
                    l->damage.where, l->damage.why);
        for (size_t i = 0; i < l->n; i++)
            store_book_unref(l->out[i]);
        l->n = 0;
    }
    atomic_fetch_sub(&st->reads_in_flight, 1);
    l->done(l->arg, rc, l->n, rc == BOOKS_ECORRUPT ? &l->damage : NULL);
    free(l);
}

static void fs_list_async(struct store *s, const char *after_name, size_t limit,
                          size_t max_bytes, struct store_book **out, uint64_t deadline_ns,
                          store_list_done_fn done, void *arg)
{
    struct fs_store *st = (struct fs_store *)s;
    if (limit == 0) {
        done(arg, 0, 0, NULL);
        return;
    }
    int rc = read_refusal(st);
    if (rc != 0) {
        done(arg, rc, 0, NULL);
        return;
    }
    /* Every name is "books/{id}" with an id of one segment. A key before "books/" starts at the
     * first book, one past every "books/..." name ends the list; a key "books/{id}/more" (never a
     * book's name) starts at {id} and what it passes is skipped below. */
    bool cursor = false;
    const char *after_id = "";
    if (after_name && *after_name) {
        if (strncmp(after_name, "books/", 6) != 0) {
            if (strcmp(after_name, "books/") > 0) {
                atomic_fetch_sub(&st->reads_in_flight, 1);
                done(arg, 0, 0, NULL);
                return;
            }
        } else if (after_name[6]) {
            after_id = after_name + 6;
            cursor = true;
        }
    }
    struct list_ctx *l = calloc(1, sizeof *l + (cursor ? strlen(after_name) + 1 : 0));
    if (!l) {
        atomic_fetch_sub(&st->reads_in_flight, 1);
        done(arg, BOOKS_ENOMEM, 0, NULL);
        return;
    }
    *l = (struct list_ctx){.st = st, .done = done, .arg = arg, .out = out, .limit = limit,
                           .max_bytes = max_bytes, .cursor = cursor,
                           .deadline_ns = read_deadline(st, deadline_ns)};
    fs_backoff_init(&l->backoff);
    if (cursor) {
        size_t idlen = strcspn(after_id, "/");
        int w = snprintf(l->after_doc, sizeof l->after_doc, "%s/%s/%.*s", st->names.documents,
                         st->names.collection, (int)idlen, after_id);
        if (w < 0 || (size_t)w >= sizeof l->after_doc) {
            atomic_fetch_sub(&st->reads_in_flight, 1);
            free(l);
            done(arg, BOOKS_EINVAL, 0, NULL);
            return;
        }
        if (after_id[idlen]) { /* skip what lies between {id} and the key */
            l->after = (char *)(l + 1);
            strcpy(l->after, after_name);
        }
    }
    list_send(l);
}

/* One attempt of the page's query: from C order by __name__ [start after {after}] limit N. */
static void list_send(struct list_ctx *l)
{
    struct fs_store *st = l->st;
    Google__Firestore__V1__StructuredQuery__CollectionSelector from =
        GOOGLE__FIRESTORE__V1__STRUCTURED_QUERY__COLLECTION_SELECTOR__INIT;
    Google__Firestore__V1__StructuredQuery__CollectionSelector *froms[1] = {&from};
    Google__Firestore__V1__StructuredQuery__FieldReference by_name =
        GOOGLE__FIRESTORE__V1__STRUCTURED_QUERY__FIELD_REFERENCE__INIT;
    Google__Firestore__V1__StructuredQuery__Order order =
        GOOGLE__FIRESTORE__V1__STRUCTURED_QUERY__ORDER__INIT;
    Google__Firestore__V1__StructuredQuery__Order *orders[1] = {&order};
    Google__Protobuf__Int32Value lim = GOOGLE__PROTOBUF__INT32_VALUE__INIT;
    Google__Firestore__V1__Value after = GOOGLE__FIRESTORE__V1__VALUE__INIT;
    Google__Firestore__V1__Value *afters[1] = {&after};
    Google__Firestore__V1__Cursor start = GOOGLE__FIRESTORE__V1__CURSOR__INIT;
    Google__Firestore__V1__StructuredQuery q = GOOGLE__FIRESTORE__V1__STRUCTURED_QUERY__INIT;
    Google__Firestore__V1__RunQueryRequest req = GOOGLE__FIRESTORE__V1__RUN_QUERY_REQUEST__INIT;

    from.collection_id = st->names.collection;
    by_name.field_path = "__name__";
    order.field = &by_name;
    order.direction = GOOGLE__FIRESTORE__V1__STRUCTURED_QUERY__DIRECTION__ASCENDING;
    lim.value = l->limit > INT32_MAX ? INT32_MAX : (int32_t)l->limit;
    q.n_from = 1;
    q.from = froms;
    q.n_order_by = 1;
    q.order_by = orders;
    q.limit = &lim;
    if (l->cursor) {
        after.value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_REFERENCE_VALUE;
        after.reference_value = l->after_doc;
        start.n_values = 1;
        start.values = afters;
        start.before = 0; /* just after it */
        q.start_at = &start;
    }
    req.parent = st->names.documents;
    req.query_type_case = GOOGLE__FIRESTORE__V1__RUN_QUERY_REQUEST__QUERY_TYPE_STRUCTURED_QUERY;
    req.structured_query = &q;
    l->attempts++;
    fs_stream(st->client, FS_RUN_QUERY, &req.base,
              fs_attempt_deadline(fs_now_ns(), l->deadline_ns, st->timeout_ms), list_message,
              list_end, l);
}

/* ---- writes, drain, close ---------------------------------------------------------------------- */

static void fs_create(struct store *s, const struct store_create_req *req,
                      store_create_done_fn done, void *arg)
{
    struct fs_store *st = (struct fs_store *)s;
    if (atomic_load(&st->draining) || !atomic_load(&st->reachable)) {
        done(arg, BOOKS_EUNAVAIL, NULL);
        return;
    }
    commit_pipeline_submit(st->pipeline, req, done, arg);
}

static void fs_drain(struct store *s)
{
    struct fs_store *st = (struct fs_store *)s;
    atomic_store(&st->draining, true);
    commit_pipeline_drain(st->pipeline);
    fs_client_cancel_all(st->client);
}

static void destroy(struct fs_store *st)
{
    fs_client_free(st->client);
    pthread_mutex_destroy(&st->state_mu);
    free(st);
}

static void fs_close(struct store *s)
{
    struct fs_store *st = (struct fs_store *)s;
    struct commit_pipeline_stats ps = {0};
    commit_pipeline_stop(st->pipeline, &ps); /* writes what is queued (or answers it, drained) */
    log_msg(LOG_INFO,
            "Firestore store %s: closing; %llu books written in %llu batches (largest %llu); "
            "%llu reads and %llu write requests went again (retry.c)",
            st->shown, (unsigned long long)ps.books_written, (unsigned long long)ps.transactions,
            (unsigned long long)ps.largest_batch,
            (unsigned long long)atomic_load(&st->read_retries),
            (unsigned long long)atomic_load(&st->write_retries));
    destroy(st);
}

static const struct store_ops fs_ops = {
    .scheme = "firestore",
    .get = store_get_waiting,
    .list = store_list_waiting,
    .create = fs_create,
    .close = fs_close,
    .get_async = fs_get_async,
    .list_async = fs_list_async,
    .watch = fs_watch,
    .drain = fs_drain,
};

/* ---- start-up: the page-token key --------------------------------------------------------------- */

/* Reads the key document, or creates it (exists: false: of instances starting together, one
 * creates it and the others read it). 0, or the last status's error with *st filled. */
static int load_key(struct fs_store *st, uint64_t deadline_ns, struct fs_status *s)
{
    char doc[FS_NAME_BYTES];
    unsigned char buf[2048];
    struct arena a;
    ProtobufCMessage *m = NULL;
    Google__Firestore__V1__GetDocumentRequest get = GOOGLE__FIRESTORE__V1__GET_DOCUMENT_REQUEST__INIT;

    snprintf(doc, sizeof doc, "%s/%s/dataset", st->names.documents, st->names.meta);
    get.name = doc;
    for (int attempt = 0; attempt < 3; attempt++) {
        arena_init(&a, buf, sizeof buf);
        grpc_status_code code =
            fs_unary_wait(st->client, FS_GET_DOCUMENT, &get.base, deadline_ns,
                          &google__firestore__v1__document__descriptor, &a, &m, s);
        if (code == GRPC_STATUS_OK) {
            const ProtobufCBinaryData *key = fs_doc_bytes((void *)m, "page_token_key");
            int rc = BOOKS_ECORRUPT;
            if (key && key->len == STORE_DATASET_KEY_BYTES) {
                memcpy(st->base.dataset_key, key->data, STORE_DATASET_KEY_BYTES);
                rc = 0;
            }
            arena_cleanup(&a);
            return rc;
        }
        arena_cleanup(&a);
        if (code != GRPC_STATUS_NOT_FOUND)
            return fs_status_error(code);
        /* None yet: create one. */
        uint8_t key[STORE_DATASET_KEY_BYTES];
        if (store_new_dataset_key(key) != 0)
            return BOOKS_EIO;
        Google__Firestore__V1__Value v = GOOGLE__FIRESTORE__V1__VALUE__INIT;
        v.value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_BYTES_VALUE;
        v.bytes_value.data = key;
        v.bytes_value.len = sizeof key;
        Google__Firestore__V1__Document__FieldsEntry e =
            GOOGLE__FIRESTORE__V1__DOCUMENT__FIELDS_ENTRY__INIT;
        Google__Firestore__V1__Document__FieldsEntry *fields[1] = {&e};
        e.key = "page_token_key";
        e.value = &v;
        Google__Firestore__V1__Document d = GOOGLE__FIRESTORE__V1__DOCUMENT__INIT;
        d.name = doc;
        d.n_fields = 1;
        d.fields = fields;
        Google__Firestore__V1__Precondition pre = GOOGLE__FIRESTORE__V1__PRECONDITION__INIT;
        pre.condition_type_case = GOOGLE__FIRESTORE__V1__PRECONDITION__CONDITION_TYPE_EXISTS;
        pre.exists = 0;
        Google__Firestore__V1__Write w = GOOGLE__FIRESTORE__V1__WRITE__INIT;
        Google__Firestore__V1__Write *writes[1] = {&w};
        w.operation_case = GOOGLE__FIRESTORE__V1__WRITE__OPERATION_UPDATE;
        w.update = &d;
        w.current_document = &pre;
        Google__Firestore__V1__CommitRequest c = GOOGLE__FIRESTORE__V1__COMMIT_REQUEST__INIT;
        c.database = st->names.database;
        c.n_writes = 1;
        c.writes = writes;
        arena_init(&a, buf, sizeof buf);
        code = fs_unary_wait(st->client, FS_COMMIT, &c.base, deadline_ns,
                             &google__firestore__v1__commit_response__descriptor, &a, &m, s);
        arena_cleanup(&a);
        if (code == GRPC_STATUS_OK) {
            memcpy(st->base.dataset_key, key, sizeof key);
            return 0;
        }
        if (code != GRPC_STATUS_ALREADY_EXISTS && code != GRPC_STATUS_FAILED_PRECONDITION)
            return fs_status_error(code);
        /* Another instance made it first: read theirs. */
    }
    return BOOKS_EUNAVAIL;
}

/* Start-up's attempts: 0.5 s apart at first, growing by half each time to 5 s apart. */
#define STARTUP_FIRST_WAIT_MS 500
#define STARTUP_MAX_WAIT_MS 5000

/* Start-up: reads (or makes) the key document, trying again for startup_timeout_s while
 * Firestore cannot be reached, throttles, or refuses the credentials: IAM grants take minutes to
 * propagate after a first deploy (Google documents about 2, sometimes 7 or more), so a refusal at
 * start-up is waited out, one WARNING line per attempt naming the role to grant. *s gets the last
 * status. 0 or load_key()'s error. */
static int wait_for_firestore(struct fs_store *st, const struct fs_params *prm,
                              struct fs_status *s)
{
    uint64_t start = fs_now_ns(), until = start + (uint64_t)prm->startup_timeout_s * 1000000000u;
    long wait_ms = STARTUP_FIRST_WAIT_MS;
    for (long long attempt = 1;; attempt++) {
        uint64_t now = fs_now_ns(), deadline = now + (uint64_t)prm->timeout_ms * 1000000u;
        if (until > now && deadline > until)
            deadline = until;
        int rc = load_key(st, prm->startup_timeout_s ? deadline : 0, s);
        bool refused = rc == BOOKS_EREFUSED;
        if (rc == 0 ||
            (!refused && rc != BOOKS_EUNAVAIL && rc != BOOKS_EDEADLINE && rc != BOOKS_EABORTED &&
             rc != BOOKS_EIO && rc != BOOKS_ETHROTTLED))
            return rc;
        now = fs_now_ns();
        long long waited_ms = (long long)((now - start) / 1000000u);
        const struct log_field fields[] = {
            {.key = "code", .str = rpc_status_name(s->code)},
            {.key = "status_message", .str = s->message},
            {.key = "attempt", .num = attempt},
            {.key = "waited_ms", .num = waited_ms},
            {.key = "startup_timeout_s", .num = prm->startup_timeout_s},
        };
        char msg[STORE_DISPLAY_BYTES + 192];
        if (refused)
            snprintf(msg, sizeof msg,
                     "Firestore %s refuses the credentials; waiting for IAM to grant the service "
                     "account roles/datastore.user",
                     st->shown);
        else
            snprintf(msg, sizeof msg, "Firestore %s not reached yet; trying again", st->shown);
        log_event(LOG_WARNING, msg, fields, sizeof fields / sizeof fields[0]);
        if (now >= until)
            return rc; /* that was the last attempt startup_timeout_s allows */
        /* The last wait ends at startup_timeout_s, for one more attempt then. */
        uint64_t sleep_ns = (uint64_t)wait_ms * 1000000u;
        if (sleep_ns > until - now)
            sleep_ns = until - now;
        nanosleep(&(struct timespec){(time_t)(sleep_ns / 1000000000u),
                                     (long)(sleep_ns % 1000000000u)},
                  NULL);
        wait_ms = wait_ms * 3 / 2 > STARTUP_MAX_WAIT_MS ? STARTUP_MAX_WAIT_MS : wait_ms * 3 / 2;
    }
}

int store_firestore_open(const char *rest, const struct store_limits *limits, struct store **out,
                         char *err, size_t errlen)
{
    char project[FS_PROJECT_BYTES], database[FS_DATABASE_BYTES];
    struct fs_params prm;
    const char *emulator = getenv("FIRESTORE_EMULATOR_HOST");
    int rc = fs_parse_uri(rest, project, database, &prm, err, errlen);
    struct fs_store *st = NULL;

    if (rc != 0)
        goto fail;
    st = calloc(1, sizeof *st);
    if (!st) {
        rc = BOOKS_ENOMEM;
        goto fail;
    }
    st->base.ops = &fs_ops;
    st->timeout_ms = prm.timeout_ms;
    st->max_request_bytes = prm.max_request_bytes ? (size_t)prm.max_request_bytes
                            : emulator && *emulator ? FS_MAX_REQUEST_BYTES_EMULATOR
                                                    : FS_MAX_REQUEST_BYTES_DEFAULT;
    st->request_ttl_s = limits->request_ttl_s ? limits->request_ttl_s : STORE_REQUEST_TTL_DEFAULT_S;
    st->max_queued = limits->max_queued;
    atomic_init(&st->reads_in_flight, 0);
    atomic_init(&st->reachable, true);
    atomic_init(&st->draining, false);
    st->told_reachable = true;
    pthread_mutex_init(&st->state_mu, NULL);
    snprintf(st->names.database, sizeof st->names.database, "projects/%s/databases/%s", project,
             database);
    snprintf(st->names.documents, sizeof st->names.documents, "%s/documents", st->names.database);
    snprintf(st->names.collection, sizeof st->names.collection, "%s", prm.collection);
    snprintf(st->names.requests, sizeof st->names.requests, "%s_requests", prm.collection);
    snprintf(st->names.meta, sizeof st->names.meta, "%s_meta", prm.collection);
    snprintf(st->shown, sizeof st->shown, "firestore://%s/%s (collection %s%s%s)", project,
             database, prm.collection, emulator && *emulator ? ", emulator at " : "",
             emulator && *emulator ? emulator : "");
    snprintf(st->base.display, sizeof st->base.display, "firestore://%s/%s?collection=%s",
             project, database, prm.collection);

    st->base.cache_bytes = (size_t)prm.cache_mb << 20; /* the layer above (record_cache.h) */
    rc = fs_client_new(emulator && *emulator ? emulator : "firestore.googleapis.com:443",
                       emulator && *emulator, project, database, on_reachable, st, &st->client,
                       err, errlen);
    if (rc != 0)
        goto fail;
    fs_client_set_timeout(st->client, prm.timeout_ms);

    struct fs_status s = {0};
    rc = wait_for_firestore(st, &prm, &s);
    if (rc != 0) {
        if (rc == BOOKS_EREFUSED)
            books_format_err(err, errlen,
                             "store %s: Firestore refused the credentials for %d s (%s: %s): "
                             "give the service account the role roles/datastore.user (IAM "
                             "grants take minutes to propagate; startup_timeout_s waits them "
                             "out)",
                             st->shown, prm.startup_timeout_s, rpc_status_name(s.code),
                             s.message);
        else if (rc == BOOKS_ECORRUPT)
            books_format_err(err, errlen,
                             "store %s: %s/dataset is not a page-token key document of this "
                             "store's; choose another collection",
                             st->shown, st->names.meta);
        else {
            books_format_err(err, errlen, "store %s: Firestore not reached within %d s (%s: %s)",
                             st->shown, prm.startup_timeout_s, rpc_status_name(s.code),
                             s.message);
            rc = BOOKS_EUNAVAIL;
        }
        goto fail;
    }
    struct commit_backend backend = {.self = st, .write_batch = fs_write_batch};
    rc = commit_pipeline_start(&backend, prm.group_commit ? FS_MAX_WRITES : 1, limits->max_queued,
                               "books-fs", st->shown, &st->pipeline);
    if (rc != 0) {
        books_format_err(err, errlen, "store %s: cannot start the commit pipeline", st->shown);
        goto fail;
    }
    fs_params_free(&prm);
    *out = &st->base;
    return 0;
fail:
    if (st)
        destroy(st);
    fs_params_free(&prm);
    return rc;
}

void fs_params_free(struct fs_params *prm)
{
    opt_cleanup(uri_params, N_PARAMS, prm);
}

int store_firestore_register(void)
{
    return store_register_backend("firestore", "firestore://PROJECT[/DATABASE]",
                                  store_firestore_open);
}
