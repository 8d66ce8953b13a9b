/* service.c: books.v1.BooksService over a store. Every API rule lives here, each next to the AIP it
 * follows. Handlers validate the whole request first and report every bad field in one error
 * (AIP-193 BadRequest), then touch the store.
 *
 * The store keeps a book as its resource name and its encoded Book (store.h): this file encodes a
 * created Book once (every field the proto has, with protobuf-c's descriptor: no field list here
 * but the ones an AIP rule names), and responses send the stored encodings as they are
 * (rpc_reply.embedded), holding the store's immutable, refcounted records until the server has
 * sent them: a concurrent insert never invalidates a book being sent, and a 1000-book page costs
 * no copies but the one into the response. */
#include "books/service.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <openssl/evp.h>
#include <uuid/uuid.h>

#include "books/codec.h"
#include "books/page_token.h"
#include "books/v1/books.pb-c.h"

#define NAME_PREFIX "books/"
#define NAME_PREFIX_LEN (sizeof NAME_PREFIX - 1)
/* AIP-158: a token is only good for the request kind that issued it. ListBooks has no parent or
 * filter, so the method itself is the whole "request" a token is bound to. */
#define LIST_TOKEN_PURPOSE RPC_PATH_LIST_BOOKS

struct svc {
    struct store *store;
    svc_id_fn id_fn;
    void *id_arg;
    unsigned books_field; /* ListBooksResponse.books' field number, from its descriptor */
};

/* The store references a reply holds until the server has encoded it. */
struct held_books {
    size_t n;
    struct store_book **books;
    size_t bytes; /* what holding them is charged to the call (rpc_reply_hold) */
};

/* Random bytes for ids, drawn from the kernel in batches. libuuid's uuid_generate_random() costs
 * four system calls per id (getrandom, then getpid, getuid and getppid for a fallback mixer it
 * runs every time), a large share of a CreateBook's CPU (docs/performance.md). getrandom(2) is the same source,
 * taken here 32 ids at a time; libuuid still formats the id. This process never forks, so a
 * per-thread pool is never shared with a child. */
#define ID_POOL_BYTES 512
static _Thread_local struct {
    unsigned char bytes[ID_POOL_BYTES];
    size_t used;
} id_pool = {.used = ID_POOL_BYTES};

static bool take_random16(unsigned char out[16])
{
    if (id_pool.used + 16 > ID_POOL_BYTES) {
        size_t got = 0;
        while (got < ID_POOL_BYTES) {
            ssize_t n = getrandom(id_pool.bytes + got, ID_POOL_BYTES - got, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return false;
            got += (size_t)n;
        }
        id_pool.used = 0;
    }
    memcpy(out, id_pool.bytes + id_pool.used, 16);
    id_pool.used += 16;
    return true;
}

/* A version 4 (random) UUID, RFC 4122 section 4.4, in canonical lowercase form. */
static void uuid4_id(void *arg, char out[SVC_NAME_BYTES])
{
    uuid_t u;
    (void)arg;
    if (take_random16(u)) {
        u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
        u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* variant 10xx */
    } else {
        uuid_generate_random(u); /* getrandom(2) failed: libuuid has its own fallbacks */
    }
    uuid_unparse_lower(u, out);
}

int svc_new(struct store *store, struct svc **out)
{
    struct svc *svc = calloc(1, sizeof *svc);
    if (!svc)
        return BOOKS_ENOMEM;
    svc->store = store;
    svc->id_fn = uuid4_id;
    svc->books_field = protobuf_c_message_descriptor_get_field_by_name(
                           &books__v1__list_books_response__descriptor, "books")
                           ->id;
    *out = svc;
    return 0;
}

void svc_set_id_generator(struct svc *svc, svc_id_fn fn, void *arg)
{
    svc->id_fn = fn ? fn : uuid4_id;
    svc->id_arg = fn ? arg : NULL;
}

void svc_free(struct svc *svc) { free(svc); }

/* AIP field limits that the codec enforces on the wire, before a request is decoded. */
static const struct rpc_field_limit create_limits[] = {
    {&books__v1__book__descriptor, "authors", SVC_MAX_AUTHORS},
};

static const struct rpc_method svc_methods[] = {
    {.path = RPC_PATH_GET_BOOK,
     .request = &books__v1__get_book_request__descriptor,
     .handle = svc_get_book},
    {.path = RPC_PATH_LIST_BOOKS,
     .request = &books__v1__list_books_request__descriptor,
     .handle = svc_list_books},
    {.path = RPC_PATH_CREATE_BOOK,
     .request = &books__v1__create_book_request__descriptor,
     .handle = svc_create_book,
     .limits = create_limits,
     .n_limits = sizeof create_limits / sizeof create_limits[0]},
};

void svc_describe(struct svc *svc, struct rpc_service *out)
{
    out->name = SVC_SERVICE_NAME;
    out->methods = svc_methods;
    out->n_methods = sizeof svc_methods / sizeof svc_methods[0];
    out->self = svc;
}

/* ---- AIP-122 resource names ------------------------------------------------------------------ */

static bool is_uuid4(const char *s, size_t n)
{
    if (n != 36)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return s[14] == '4' && (s[19] == '8' || s[19] == '9' || s[19] == 'a' || s[19] == 'b');
}

bool svc_valid_book_id(const char *id, size_t len)
{
    if (is_uuid4(id, len))
        return true;
    if (len < 1 || len > 63 || id[0] < 'a' || id[0] > 'z' || id[len - 1] == '-')
        return false;
    for (size_t i = 1; i < len; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

#define ID_RULE                                                                                    \
    "1-63 lowercase letters, digits or hyphens, starting with a letter and not ending with a "     \
    "hyphen, or a lowercase UUID4"

/* Checks a GetBook-style name field; adds a violation and returns false when it is not usable. */
static bool check_book_name(const char *name, const char *field, struct books_error *e)
{
    char q[64];
    size_t len = strlen(name);
    if (len == 0) {
        books_error_add_violation(e, field,
                                  "required: the book's resource name, e.g. \"books/my-book\"");
        return false;
    }
    if (len <= NAME_PREFIX_LEN || memcmp(name, NAME_PREFIX, NAME_PREFIX_LEN) != 0 ||
        !svc_valid_book_id(name + NAME_PREFIX_LEN, len - NAME_PREFIX_LEN)) {
        books_error_add_violation(e, field,
                                  "\"%s\" is not a book resource name: use books/{book}, where "
                                  "{book} is " ID_RULE,
                                  books_error_quote(q, sizeof q, name));
        return false;
    }
    return true;
}

/* A store failure as the caller sees it (AIP-193: a reason and what to do): retryable ones say
 * so, and those worth retrying soon carry a RetryInfo delay (ms; AIP-194: a client waits at
 * least that long, with its own backoff beyond). Codes not listed are INTERNAL. */
#define RETRY_UNAVAILABLE_MS 1000 /* a store reconnecting, a database failing over */
#define RETRY_THROTTLED_MS 1000   /* Firestore's documented ramp-up and quota back-off start */
#define RETRY_OVERLOADED_MS 200   /* calls in flight end within their deadlines */
static const struct {
    int rc;
    const char *reason;
    const char *message;
    unsigned retry_ms;
} store_errors[] = {
    {BOOKS_EIO, "STORE_UNAVAILABLE", "the book store is temporarily unavailable; retry with backoff",
     RETRY_UNAVAILABLE_MS},
    {BOOKS_EUNAVAIL, "STORE_UNAVAILABLE",
     "the book store is temporarily unavailable; retry with backoff", RETRY_UNAVAILABLE_MS},
    {BOOKS_ETHROTTLED, "STORE_THROTTLED",
     "the book store is throttling requests (a quota, or a new database ramping up its "
     "capacity); nothing was done: retry after the RetryInfo delay, with backoff",
     RETRY_THROTTLED_MS},
    {BOOKS_ENOSPC, "STORE_FULL", "the book store is out of space; retry after space has been freed",
     0},
    {BOOKS_ENOMEM, "OUT_OF_MEMORY", "the server is out of memory; retry later", 0},
    {BOOKS_ECORRUPT, "STORE_CORRUPT", "the book store holds damaged data", 0},
    {BOOKS_EDEADLINE, "DEADLINE_EXCEEDED",
     "the call's deadline passed while the book store was answering", 0},
    {BOOKS_EUNKNOWN, "COMMIT_OUTCOME_UNKNOWN",
     "the create reached the book store but its answer was lost (a broken connection, a "
     "failover): it may or may not have been stored; retry with the same request_id to get the "
     "book exactly once (AIP-155)", 0},
    {BOOKS_EABORTED, "STORE_ABORTED",
     "the book store aborted the operation (a conflict with another); retry it", 0},
    {BOOKS_EREFUSED, "STORE_REFUSED",
     "the book store refuses this operation (its permissions or its own rules); retrying will "
     "not help until its operator fixes the store", 0},
    {BOOKS_EBUSY, "OVERLOADED",
     "the server holds as much work in flight as it allows (a queue's cap or the memory budget of "
     "BOOKS_MEMORY_LIMIT_MB); nothing was done: retry with backoff", RETRY_OVERLOADED_MS},
};

/* Sets the error for store failure rc. `damage` (may be NULL) names the record a BOOKS_ECORRUPT
 * could not read (store.h): the message and the ErrorInfo metadata `record` say which. */
static void store_error(struct books_error *e, int rc, const struct store_damage *damage)
{
    if (rc == BOOKS_ECORRUPT && damage && damage->where[0]) {
        books_error_set(e, rc, "STORE_CORRUPT",
                        "the book store holds a record that is not a book: %s (%s); its operator "
                        "must repair or remove it",
                        damage->where, damage->why[0] ? damage->why : "unreadable");
        books_error_set_meta(e, "record", damage->where);
        return;
    }
    for (size_t i = 0; i < sizeof store_errors / sizeof store_errors[0]; i++)
        if (store_errors[i].rc == rc) {
            books_error_set(e, rc, store_errors[i].reason, "%s", store_errors[i].message);
            books_error_set_retry(e, store_errors[i].retry_ms);
            return;
        }
    books_error_set(e, BOOKS_EINTERNAL, "INTERNAL", "internal error in the book store");
}

/* ---- responses: the stored encodings, sent as they are ------------------------------------------ */

static void release_held(struct rpc_reply *reply)
{
    struct held_books *h = reply->release_arg;
    for (size_t i = 0; h && i < h->n; i++)
        store_book_unref(h->books[i]);
    if (h)
        rpc_reply_unhold(reply, h->bytes); /* the encoded response holds what they said */
}

/* What a reply that sends one book needs (the call's arena): the record it holds, its bytes. */
struct one_book {
    struct held_books held;
    struct store_book *book;
    struct codec_bytes part;
};

/* Makes `reply` answer with `b` (a Book response: the record's encoding, rpc.h's embedded form
 * with field 0), taking over the caller's reference. */
static void reply_with_book(struct rpc_reply *reply, struct store_book *b)
{
    struct one_book *o = arena_alloc(reply->arena, sizeof *o);
    if (!o) {
        store_book_unref(b);
        store_error(&reply->error, BOOKS_ENOMEM, NULL);
        return;
    }
    o->book = b;
    o->held = (struct held_books){1, &o->book, 0};
    o->part = (struct codec_bytes){b->wire, b->wire_len};
    reply->release = release_held;
    reply->release_arg = &o->held;
    reply->embedded = &o->part;
    reply->n_embedded = 1;
    reply->embed_field = 0; /* the response is the Book itself */
}

/* ---- GetBook (AIP-131) ------------------------------------------------------------------------- */

/* What a read needs again when the store answers (in the call's arena). */
struct read_ctx {
    struct svc *svc;
    struct rpc_reply *reply;
    const char *name;          /* GetBook: the name asked for (the request outlives the reply) */
    struct store_book **found; /* ListBooks: limit + 1 slots */
    size_t limit;
    size_t page_bytes; /* ListBooks: the page's byte budget (SVC_MAX_PAGE_BYTES or less) */
};

static void get_done(void *arg, int rc, struct store_book *b, const struct store_damage *damage)
{
    struct read_ctx *ctx = arg;
    struct rpc_reply *reply = ctx->reply;

    if (rc == BOOKS_ENOTFOUND) {
        books_error_set(&reply->error, BOOKS_ENOTFOUND, "BOOK_NOT_FOUND",
                        "book \"%s\" does not exist; check the name, or create it with CreateBook",
                        ctx->name);
        books_error_set_meta(&reply->error, "name", ctx->name);
        books_error_set_resource(&reply->error, SVC_RESOURCE_TYPE, ctx->name);
    } else if (rc) {
        store_error(&reply->error, rc, damage);
    } else {
        reply_with_book(reply, b);
    }
    rpc_reply_done(reply);
}

void svc_get_book(void *self, const ProtobufCMessage *request, struct rpc_reply *reply)
{
    struct svc *svc = self;
    const Books__V1__GetBookRequest *req = (const Books__V1__GetBookRequest *)request;
    struct read_ctx *ctx;

    if (!check_book_name(req->name, "name", &reply->error)) {
        books_error_finish_fields(&reply->error, "GetBookRequest");
        rpc_reply_done(reply);
        return;
    }
    /* Admission reserves what the answer may hold (the largest Book, SVC_MAX_RECORD_BYTES) before
     * the store is asked, so that calls waiting on a slow store at once cannot all count on the
     * same room; the reservation becomes the response's real size when it is sent (rpc.h). */
    if (!rpc_reply_reserve(reply, SVC_MAX_RECORD_BYTES)) {
        store_error(&reply->error, BOOKS_EBUSY, NULL);
        rpc_reply_done(reply);
        return;
    }
    ctx = arena_alloc(reply->arena, sizeof *ctx);
    if (!ctx) {
        store_error(&reply->error, BOOKS_ENOMEM, NULL);
        rpc_reply_done(reply);
        return;
    }
    ctx->reply = reply;
    ctx->name = req->name;
    /* get_done answers: inline for a local store or a cached book, later for a database. */
    store_get_async(svc->store, req->name, reply->deadline_ns, get_done, ctx);
}

/* ---- ListBooks (AIP-132, AIP-158) ------------------------------------------------------------- */

/* Gives the server the page's records as their wire forms (rpc_reply.embedded), each one
 * occurrence of ListBooksResponse.books, followed by the response's other fields. */
static int embed_books(const struct svc *svc, struct rpc_reply *reply,
                       struct store_book *const *books, size_t n)
{
    struct codec_bytes *parts = n ? arena_alloc(reply->arena, n * sizeof *parts) : NULL;
    if (n && !parts)
        return BOOKS_ENOMEM;
    for (size_t i = 0; i < n; i++)
        parts[i] = (struct codec_bytes){books[i]->wire, books[i]->wire_len};
    reply->embedded = parts;
    reply->n_embedded = n;
    reply->embed_field = svc->books_field;
    return 0;
}

static void list_done(void *arg, int rc, size_t n, const struct store_damage *damage)
{
    struct read_ctx *ctx = arg;
    struct rpc_reply *reply = ctx->reply;
    struct books_error *e = &reply->error;
    struct store_book **found = ctx->found;
    Books__V1__ListBooksResponse *resp;
    struct held_books *h;
    size_t keep, bytes = 0, i;
    bool more;

    if (rc) {
        store_error(e, rc, damage);
        goto done;
    }
    more = n > ctx->limit;
    keep = more ? ctx->limit : n;
    /* A page also stops before it would outgrow what a default client accepts (4 MiB), or the
     * room the memory budget gave it; the store stopped reading there too (store.h). */
    for (i = 0; i < keep; i++) {
        bytes += store_book_page_bytes(found[i]);
        if (i > 0 && bytes > ctx->page_bytes) {
            keep = i;
            more = true;
            break;
        }
    }
    for (i = keep; i < n; i++)
        store_book_unref(found[i]);
    /* The page's records are held until the response is encoded: charged to the call out of the
     * reservation made at admission (rpc_reply_hold), and given back once it is (release_held). */
    size_t held = 0;
    for (i = 0; i < keep; i++)
        held += found[i]->size_bytes;
    rpc_reply_hold(reply, held);
    h = arena_alloc(reply->arena, sizeof *h);
    resp = arena_alloc(reply->arena, sizeof *resp);
    if (!h || !resp) {
        for (i = 0; i < keep; i++)
            store_book_unref(found[i]);
        rpc_reply_unhold(reply, held);
        store_error(e, BOOKS_ENOMEM, NULL);
        goto done;
    }
    h->n = keep;
    h->books = found;
    h->bytes = held;
    reply->release = release_held;
    reply->release_arg = h;

    books__v1__list_books_response__init(resp);
    resp->next_page_token = (char *)"";
    if (more && keep) {
        char *token = arena_alloc(reply->arena, PAGE_TOKEN_MAX_CHARS);
        if (!token) {
            store_error(e, BOOKS_ENOMEM, NULL);
            goto done;
        }
        rc = page_token_encode(ctx->svc->store->dataset_key, LIST_TOKEN_PURPOSE,
                               found[keep - 1]->name + NAME_PREFIX_LEN, token,
                               PAGE_TOKEN_MAX_CHARS);
        if (rc) {
            books_error_set(e, BOOKS_EINTERNAL, "INTERNAL", "could not create the page token");
            goto done;
        }
        resp->next_page_token = token;
    }
    /* The books go as their stored encodings; the response struct holds the rest. */
    if (embed_books(ctx->svc, reply, found, keep) != 0) {
        store_error(e, BOOKS_ENOMEM, NULL);
        goto done;
    }
    reply->response = &resp->base;
done:
    rpc_reply_done(reply);
}

void svc_list_books(void *self, const ProtobufCMessage *request, struct rpc_reply *reply)
{
    struct svc *svc = self;
    const Books__V1__ListBooksRequest *req = (const Books__V1__ListBooksRequest *)request;
    struct books_error *e = &reply->error;
    char cursor[PAGE_TOKEN_MAX_CURSOR_BYTES + 1];
    char after[NAME_PREFIX_LEN + PAGE_TOKEN_MAX_CURSOR_BYTES + 1];
    struct read_ctx *ctx;
    size_t limit;

    after[0] = '\0';
    if (req->page_size < 0)
        books_error_add_violation(e, "page_size",
                                  "must not be negative (got %d); send 0 for the default of %d, "
                                  "at most %d",
                                  req->page_size, SVC_DEFAULT_PAGE_SIZE, SVC_MAX_PAGE_SIZE);
    if (req->page_token[0]) {
        if (page_token_decode(svc->store->dataset_key, LIST_TOKEN_PURPOSE, req->page_token, cursor,
                              sizeof cursor) != 0)
            books_error_add_violation(e, "page_token",
                                      "is not a page token this server issued for ListBooks (it "
                                      "was altered, truncated, or comes from another data set); "
                                      "send an empty page_token to start from the first page");
        else
            snprintf(after, sizeof after, NAME_PREFIX "%s", cursor);
    }
    if (e->n_violations) {
        books_error_finish_fields(e, "ListBooksRequest");
        rpc_reply_done(reply);
        return;
    }

    limit = req->page_size == 0 ? SVC_DEFAULT_PAGE_SIZE
            : req->page_size > SVC_MAX_PAGE_SIZE ? SVC_MAX_PAGE_SIZE
                                                  : (size_t)req->page_size;
    /* A smaller page under memory pressure is still a page (AIP-158 lets a page hold fewer than
     * page_size); none at all only when not even one book of the largest size would fit.
     * Admission reserves the page's memory (its records and its response, SVC_PAGE_RESERVE times
     * its bytes) before the store is asked, so calls admitted at once each size their page from
     * what the others left, not from the same snapshot; the reservation becomes what the page
     * really holds when it is sent (rpc.h). */
    size_t page_bytes = rpc_reply_headroom(reply) / SVC_PAGE_MEMORY_FACTOR;
    if (page_bytes > SVC_MAX_PAGE_BYTES)
        page_bytes = SVC_MAX_PAGE_BYTES;
    if (page_bytes < SVC_MIN_PAGE_BYTES ||
        !rpc_reply_reserve(reply, page_bytes * SVC_PAGE_RESERVE)) {
        store_error(e, BOOKS_EBUSY, NULL);
        rpc_reply_done(reply);
        return;
    }
    /* One extra book tells whether a next page exists, so next_page_token is empty exactly on the
     * last page (AIP-158) without a second query. */
    ctx = arena_alloc(reply->arena, sizeof *ctx);
    if (ctx)
        ctx->found = arena_alloc(reply->arena, (limit + 1) * sizeof *ctx->found);
    if (!ctx || !ctx->found) {
        store_error(e, BOOKS_ENOMEM, NULL);
        rpc_reply_done(reply);
        return;
    }
    ctx->svc = svc;
    ctx->reply = reply;
    ctx->limit = limit;
    ctx->page_bytes = page_bytes;
    /* list_done answers: inline for a local store, later for a database. `after` is copied by
     * the store, which stops reading once the page's bytes are there. */
    store_list_async(svc->store, after, limit + 1, page_bytes, ctx->found, reply->deadline_ns,
                     list_done, ctx);
}

/* ---- CreateBook (AIP-133) ---------------------------------------------------------------------- */

/* Validates one REQUIRED string field (AIP-203) of at most max bytes. (UTF-8 validity and the
 * absence of NUL are wire-level rules that the codec enforces for every string field.) */
static void check_text(struct books_error *e, const char *field, const char *value, size_t max,
                       const char *what)
{
    size_t len = strlen(value);
    if (len == 0)
        books_error_add_violation(e, field, "required: %s", what);
    else if (len > max)
        books_error_add_violation(e, field, "is %zu bytes long; at most %zu bytes are allowed", len,
                                  max);
}

/* AIP-155: a request_id is a UUID4 (canonical 8-4-4-4-12 hexadecimal, either case), kept in
 * lowercase. Writes it to out and returns true, or false when it is not one. */
static bool normal_request_id(const char *s, char out[STORE_REQUEST_ID_CHARS + 1])
{
    if (strlen(s) != STORE_REQUEST_ID_CHARS)
        return false;
    for (size_t i = 0; i < STORE_REQUEST_ID_CHARS; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[STORE_REQUEST_ID_CHARS] = '\0';
    return is_uuid4(out, STORE_REQUEST_ID_CHARS);
}

/* SHA-256 of n bytes at p (out: STORE_FINGERPRINT_BYTES). libcrypto out of memory: all 0xff, a
 * value no retry will ever match. */
static void sha256(const void *p, size_t n, uint8_t out[STORE_FINGERPRINT_BYTES])
{
    unsigned int len = 0;
    if (!EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) || len != STORE_FINGERPRINT_BYTES)
        memset(out, 0xff, STORE_FINGERPRINT_BYTES);
}

/* The request's fingerprint (store.h): SHA-256 of its deterministic encoding with the fields that
 * do not define the create cleared: request_id itself, and book.name, which is OUTPUT_ONLY
 * (ignored: AIP-203). The whole request otherwise, every field the proto has now or gets later; a
 * field left unset is not encoded at all (proto3), so a server that knows a new field and one that
 * does not fingerprint a request without it alike. protobuf-c packs fields in field-number order,
 * the same bytes for the same message. */
static void request_fingerprint(const Books__V1__CreateBookRequest *req, uint8_t *scratch,
                                size_t scratch_len, uint8_t out[STORE_FINGERPRINT_BYTES])
{
    Books__V1__CreateBookRequest r = *req;
    Books__V1__Book book;
    if (req->book) {
        book = *req->book;
        book.name = (char *)"";
        r.book = &book;
    }
    r.request_id = (char *)"";
    size_t n = codec_pack(&r.base, NULL);
    uint8_t *buf = n <= scratch_len ? scratch : malloc(n);
    if (!buf) {
        memset(out, 0xff, STORE_FINGERPRINT_BYTES);
        return;
    }
    codec_pack(&r.base, buf);
    sha256(buf, n, out);
    if (buf != scratch)
        free(buf);
}

/* The fingerprint 363d47a kept with the request ids it stored: SHA-256 over book_id, display_name,
 * publisher, the author count and each author, each string as its 8-byte length and its bytes. A
 * retry of a request made before the upgrade carries no field newer than those four, so this is
 * all it takes to recognise it (store_request_matches); and stores that servers of that version
 * may still share (postgresql: before it is contracted, firestore:) keep it beside the new one so
 * those servers recognise retries of requests made here. Frozen: it never gains a field. */
static void legacy_fingerprint(const Books__V1__CreateBookRequest *req,
                               uint8_t out[STORE_FINGERPRINT_BYTES])
{
    const Books__V1__Book *b = req->book;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int len = 0;
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL);

#define FEED_COUNT(n)                                                                              \
    do {                                                                                           \
        uint64_t n_ = (uint64_t)(n);                                                               \
        ok = ok && EVP_DigestUpdate(md, &n_, sizeof n_);                                           \
    } while (0)
#define FEED(s)                                                                                    \
    do {                                                                                           \
        size_t len_ = strlen(s);                                                                   \
        FEED_COUNT(len_);                                                                          \
        ok = ok && EVP_DigestUpdate(md, (s), len_);                                                \
    } while (0)
    FEED(req->book_id);
    FEED(b->display_name);
    FEED(b->publisher);
    FEED_COUNT(b->n_authors);
    for (size_t i = 0; i < b->n_authors; i++)
        FEED(b->authors[i]);
#undef FEED
#undef FEED_COUNT
    ok = ok && EVP_DigestFinal_ex(md, out, &len) && len == STORE_FINGERPRINT_BYTES;
    EVP_MD_CTX_free(md);
    if (!ok)
        memset(out, 0xff, STORE_FINGERPRINT_BYTES);
}

struct create_ctx {
    struct rpc_reply *reply;
    struct store_book *book;
    char request_id[STORE_REQUEST_ID_CHARS + 1];
};

static void create_done(void *arg, int rc, struct store_book *made)
{
    struct create_ctx *ctx = arg;
    struct rpc_reply *reply = ctx->reply;
    if (rc == 0) {
        /* The book the request made: this one, or for a retried request_id the first's. */
        reply_with_book(reply, made ? made : store_book_ref(ctx->book));
        store_book_unref(ctx->book);
    } else {
        if (rc == BOOKS_EEXIST) {
            books_error_set(&reply->error, BOOKS_EEXIST, "BOOK_ALREADY_EXISTS",
                            "book \"%s\" already exists; choose another book_id, or leave "
                            "book_id empty for a server-assigned id",
                            ctx->book->name);
            books_error_set_meta(&reply->error, "name", ctx->book->name);
            books_error_set_resource(&reply->error, SVC_RESOURCE_TYPE, ctx->book->name);
        } else if (rc == BOOKS_EREUSED) {
            books_error_set(&reply->error, BOOKS_EREUSED, "REQUEST_ID_REUSED",
                            "request_id %s was used before for a different CreateBook request; "
                            "send a new UUID4 with each new request, and the same one only when "
                            "retrying that same request (AIP-155)",
                            ctx->request_id);
            books_error_set_meta(&reply->error, "request_id", ctx->request_id);
        } else {
            store_error(&reply->error, rc, NULL);
        }
        store_book_unref(made);
        store_book_unref(ctx->book);
    }
    rpc_reply_done(reply);
}

/* Scratch for encoding a small Book or request on the stack; larger ones are malloc'ed. */
#define ENCODE_ON_STACK 2048

void svc_create_book(void *self, const ProtobufCMessage *request, struct rpc_reply *reply)
{
    struct svc *svc = self;
    const Books__V1__CreateBookRequest *req = (const Books__V1__CreateBookRequest *)request;
    const Books__V1__Book *in = req->book;
    struct books_error *e = &reply->error;
    char id[SVC_NAME_BYTES], name[SVC_NAME_BYTES + NAME_PREFIX_LEN], q[64];
    char field[BOOKS_ERROR_FIELD_BYTES];
    uint8_t scratch[ENCODE_ON_STACK];
    struct create_ctx *ctx;
    struct store_book *b = NULL;
    size_t id_len = strlen(req->book_id), i;
    int rc;

    /* Request shape and field values first, every problem at once; existence last (AIP-133). */
    char request_id[STORE_REQUEST_ID_CHARS + 1] = "";
    if (req->request_id[0] && !normal_request_id(req->request_id, request_id))
        books_error_add_violation(e, "request_id",
                                  "\"%s\" is not a UUID4; send a random UUID4 in its canonical "
                                  "form, e.g. 5a8b0f4e-2f3c-4b5d-9e6f-7a8b9c0d1e2f, or leave "
                                  "request_id empty (AIP-155)",
                                  books_error_quote(q, sizeof q, req->request_id));
    if (id_len && !svc_valid_book_id(req->book_id, id_len))
        books_error_add_violation(e, "book_id",
                                  "\"%s\" is not a valid book id: use " ID_RULE
                                  ", or leave book_id empty for a server-assigned id",
                                  books_error_quote(q, sizeof q, req->book_id));
    /* The Book as the store keeps it: every field it carries but the name, which is OUTPUT_ONLY
     * (AIP-203: ignored on input, never an error) and assigned below. */
    Books__V1__Book stored = BOOKS__V1__BOOK__INIT;
    size_t body_len = 0;
    if (!in) {
        books_error_add_violation(e, "book",
                                  "required: the book to create, with display_name, authors and "
                                  "publisher");
    } else {
        /* AIP-203 REQUIRED fields and this API's lengths; every other field of the Book (one the
         * proto gains later) only meets the codec's checks (UTF-8, no NUL) and the size below. */
        check_text(e, "book.display_name", in->display_name, SVC_MAX_DISPLAY_NAME_BYTES,
                   "the book's title");
        if (in->n_authors == 0)
            books_error_add_violation(e, "book.authors", "required: list at least one author");
        else if (in->n_authors > SVC_MAX_AUTHORS)
            books_error_add_violation(e, "book.authors",
                                      "lists %zu authors; at most %d are allowed", in->n_authors,
                                      SVC_MAX_AUTHORS);
        else
            for (i = 0; i < in->n_authors; i++) {
                size_t len = strlen(in->authors[i]);
                if (len > 0 && len <= SVC_MAX_AUTHOR_BYTES)
                    continue; /* the field's path is only written for a violation */
                snprintf(field, sizeof field, "book.authors[%zu]", i);
                check_text(e, field, in->authors[i], SVC_MAX_AUTHOR_BYTES,
                           "an author's name (remove empty entries)");
            }
        check_text(e, "book.publisher", in->publisher, SVC_MAX_PUBLISHER_BYTES,
                   "the book's publisher");
        stored = *in;
        stored.name = (char *)"";
        body_len = codec_pack(&stored.base, NULL);
        /* The generic bound, once every field's own rule is met (a field too long is reported
         * as that field, not again as the whole book). */
        if (!e->n_violations && body_len > SVC_MAX_BOOK_BYTES)
            books_error_add_violation(e, "book",
                                      "takes %zu bytes encoded; a book's fields may take at most "
                                      "%u bytes: shorten them",
                                      body_len, (unsigned)SVC_MAX_BOOK_BYTES);
    }
    if (e->n_violations) {
        books_error_finish_fields(e, "CreateBookRequest");
        rpc_reply_done(reply);
        return;
    }

    if (id_len) {
        memcpy(id, req->book_id, id_len + 1);
    } else {
        svc->id_fn(svc->id_arg, id);
    }
    /* id: at most SVC_NAME_BYTES with its NUL; name has room for the prefix and all of it */
    memcpy(name, NAME_PREFIX, NAME_PREFIX_LEN);
    memcpy(name + NAME_PREFIX_LEN, id, strlen(id) + 1);
    ctx = arena_alloc(reply->arena, sizeof *ctx);
    uint8_t *body = body_len <= sizeof scratch ? scratch : malloc(body_len);
    rc = ctx && body ? 0 : BOOKS_ENOMEM;
    if (rc == 0) {
        codec_pack(&stored.base, body);
        rc = store_book_new(name, strlen(name), body, body_len, &b);
    }
    if (body != scratch)
        free(body);
    if (rc) {
        store_error(e, rc, NULL);
        rpc_reply_done(reply);
        return;
    }
    /* The record is held until the store answers (a durable store's queue): charged to the call,
     * and refused when the budget of calls in flight has no room for it. */
    if (!rpc_reply_charge(reply, b->size_bytes)) {
        store_book_unref(b);
        store_error(e, BOOKS_EBUSY, NULL);
        rpc_reply_done(reply);
        return;
    }
    ctx->reply = reply;
    ctx->book = b;
    memcpy(ctx->request_id, request_id, sizeof ctx->request_id);
    /* create_done answers, now or when the store has made the book durable. */
    struct store_create_req create = {.book = b, .deadline_ns = reply->deadline_ns};
    memcpy(create.request_id, request_id, sizeof create.request_id);
    if (request_id[0]) {
        request_fingerprint(req, scratch, sizeof scratch, create.fingerprint);
        legacy_fingerprint(req, create.legacy_fingerprint);
    }
    store_create(svc->store, &create, create_done, ctx);
}
