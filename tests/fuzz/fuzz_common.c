/* fuzz_common.c: see fuzz_common.h. */
#include "fuzz_common.h"

#include <grpc/byte_buffer_reader.h>
#include <string.h>

#include "books/client.h"
#include "books/status.h"
#include "books/service.h"
#include "books/utf8.h"

const uint8_t fuzz_dataset_key[STORE_DATASET_KEY_BYTES] = "books-fuzz-fixed-dataset-key-32b";

void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "fuzz check failed at %s:%d: %s\n", file, line, what);
    fflush(stderr);
    abort();
}

const struct rpc_method *fuzz_find_method(const struct rpc_service *svc, const char *path)
{
    for (size_t i = 0; i < svc->n_methods; i++)
        if (strcmp(svc->methods[i].path, path) == 0)
            return &svc->methods[i];
    fprintf(stderr, "fuzz: service %s has no method %s\n", svc->name, path);
    abort();
}

char *fuzz_copy(const uint8_t *data, size_t size, bool nul)
{
    size_t n = size + (nul ? 1 : 0);
    char *p = malloc(n ? n : 1); /* exactly n bytes: ASan flags a read past them */
    if (!p)
        abort();
    if (size)
        memcpy(p, data, size);
    if (nul)
        p[size] = '\0';
    return p;
}

/* ---- the seeded store ------------------------------------------------------------------------ */

/* The books every service target starts from. make_corpus.py's BOOK_IDS lists the same ids (for
 * GetBook names and page-token cursors): keep the two in step. All text is what CreateBook would
 * accept (valid UTF-8, no NUL, within the AIP-203 limits), including the awkward kinds: escapes,
 * C0/C1 controls, 4-byte UTF-8, 100 authors, the longest title. */
struct seed_book {
    const char *id;
    const char *title;
    const char *publisher;
    const char *authors[3];
};

static const struct seed_book seed_books[] = {
    {"a", "A", "P", {"Anon"}},
    {"dune", "Dune", "Chilton Books", {"Frank Herbert"}},
    {"good-omens", "Good Omens", "Gollancz", {"Terry Pratchett", "Neil Gaiman"}},
    {"m1", "Middle one", "Pub", {"Author M"}},
    {"m2", "Middle two", "Pub", {"Author M"}},
    {"the-hobbit", "The Hobbit", "George Allen & Unwin", {"J. R. R. Tolkien"}},
    {"unicode", "\xc3\x86nima \xe2\x80\x94 \xc2\xab\xc3\xbc\xc2\xbb \xe6\x97\xa5\xe6\x9c\xac "
                "\xf0\x9f\x98\x80",
     "\xc3\x98rsted", {"Zo\xc3\xab"}},
    {"controls", "tab\there \"quoted\" back\\slash \xc2\x85 nel \x1b[31m",
     "del\x7f", {"line\nbreak", "cr\rhere"}},
    {"z", "Last", "Zed", {"Zed"}},
    {"3f2b8c1e-9d4a-4f6b-8c2d-1e5f7a9b0c3d", "A UUID-named book", "Pub", {"Someone"}},
};
#define N_SEED_BOOKS (sizeof seed_books / sizeof seed_books[0])
/* Plus two built below: "many-authors" (100 authors) and "long-title" (every field at its
 * limit). */
#define N_BUILT_BOOKS 2

size_t fuzz_seeded_book_count(void) { return N_SEED_BOOKS + N_BUILT_BOOKS; }

static void created(void *arg, int rc, struct store_book *made)
{
    store_book_unref(made);
    *(int *)arg = rc;
}

/* A book as the service stores one: its name and its encoded Book (store.h). */
static void put(struct store *s, const char *id, const char *title, const char *const *authors,
                size_t n_authors, const char *publisher)
{
    char name[SVC_NAME_BYTES + 8];
    Books__V1__Book m = BOOKS__V1__BOOK__INIT;
    struct store_book *b = NULL;
    int rc = -1;
    snprintf(name, sizeof name, "books/%s", id);
    m.display_name = (char *)title;
    m.publisher = (char *)publisher;
    m.authors = (char **)authors;
    m.n_authors = n_authors;
    size_t len = protobuf_c_message_get_packed_size(&m.base);
    uint8_t *body = malloc(len ? len : 1);
    if (!body)
        abort();
    protobuf_c_message_pack(&m.base, body);
    if (store_book_new(name, strlen(name), body, len, &b) != 0)
        abort();
    free(body);
    store_create_book(s, b, created, &rc);
    if (rc != 0) /* memory: answers before store_create_book() returns */
        abort();
    store_book_unref(b);
}

const struct rpc_method *fuzz_open_service(const char *path, struct store **store,
                                           struct svc **svc)
{
    char err[STORE_ERR_BYTES];
    struct store *s = NULL;
    struct rpc_service desc;
    if (store_open("memory:", NULL, &s, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz: %s\n", err);
        abort();
    }
    memcpy(s->dataset_key, fuzz_dataset_key, sizeof s->dataset_key);
    if (svc_new(s, svc) != 0)
        abort();
    for (size_t i = 0; i < N_SEED_BOOKS; i++) {
        const struct seed_book *sb = &seed_books[i];
        size_t n = 0;
        while (n < 3 && sb->authors[n])
            n++;
        put(s, sb->id, sb->title, sb->authors, n, sb->publisher);
    }
    {
        static char names[SVC_MAX_AUTHORS][16];
        const char *authors[SVC_MAX_AUTHORS];
        for (size_t i = 0; i < SVC_MAX_AUTHORS; i++) {
            snprintf(names[i], sizeof names[i], "Author %zu", i + 1);
            authors[i] = names[i];
        }
        put(s, "many-authors", "Many authors", authors, SVC_MAX_AUTHORS, "Pub");
    }
    {
        static char title[SVC_MAX_DISPLAY_NAME_BYTES + 1], author[SVC_MAX_AUTHOR_BYTES + 1],
            publisher[SVC_MAX_PUBLISHER_BYTES + 1];
        const char *authors[1] = {author};
        memset(title, 't', SVC_MAX_DISPLAY_NAME_BYTES);
        memset(author, 'a', SVC_MAX_AUTHOR_BYTES);
        memset(publisher, 'p', SVC_MAX_PUBLISHER_BYTES);
        put(s, "long-title", title, authors, 1, publisher);
    }
    *store = s;
    svc_describe(*svc, &desc);
    return fuzz_find_method(&desc, path);
}

void fuzz_counting_id(void *arg, char *out)
{
    unsigned *n = arg;
    snprintf(out, SVC_NAME_BYTES, "gen-%u", ++*n);
}

/* ---- one call, as the server makes it -------------------------------------------------------- */

static int done_calls;

bool fuzz_verbose(void)
{
    static int verbose = -1;
    if (verbose < 0) {
        const char *v = getenv("BOOKS_FUZZ_VERBOSE");
        verbose = v && *v && strcmp(v, "0") != 0;
    }
    return verbose;
}

static void on_done(struct rpc_reply *reply)
{
    (void)reply;
    done_calls++;
}

static bool same(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

/* A default gRPC client accepts trailers of at most this many bytes (gRPC core's
 * GRPC_ARG_MAX_METADATA_SIZE default), counted as HTTP/2 does (RFC 7540 6.5.2, HPACK's entry
 * size): name + value + 32 per field, values as they are on the wire. */
#define CLIENT_MAX_METADATA_BYTES 8192

/* The trailer the server sends with an error: grpc-status, grpc-message (percent-encoded: bytes
 * outside 0x20..0x7e and '%' take three, gRPC PROTOCOL-HTTP2) and grpc-status-details-bin (base64
 * without padding), each with HPACK's 32 bytes. error.h promises (BOOKS_ERROR_MAX_VIOLATION_BYTES)
 * that it always fits a default client, "so the caller always gets the error itself, never a
 * RESOURCE_EXHAUSTED about its size". */
static size_t trailer_bytes(const struct books_error *e, size_t details_len)
{
    char status[16];
    size_t message = 0;
    for (const unsigned char *p = (const unsigned char *)e->message; *p; p++)
        message += *p < 0x20 || *p > 0x7e || *p == '%' ? 3 : 1;
    snprintf(status, sizeof status, "%d", (int)rpc_status_of(e->code));
    return (sizeof "grpc-status" - 1 + strlen(status) + 32) +
           (sizeof "grpc-message" - 1 + message + 32) +
           (sizeof "grpc-status-details-bin" - 1 + (details_len * 4 + 2) / 3 + 32);
}

/* The CLI's view of an error, decoded from what the server would put in grpc-status-details-bin,
 * must say what the server's error said, and the trailer must fit a default client. */
static void check_error_details(const struct books_error *e)
{
    unsigned char *buf = malloc(FUZZ_CALL_ARENA_BYTES);
    struct arena arena;
    struct books_error seen;
    grpc_slice bin;

    FUZZ_CHECK(e->reason != NULL);
    FUZZ_CHECK(memchr(e->message, '\0', sizeof e->message) != NULL);
    FUZZ_CHECK(rpc_status_of(e->code) != GRPC_STATUS_OK);
    FUZZ_CHECK(codec_encode_status_details(e, &bin) == 0);
    if (!buf)
        abort();
    if (trailer_bytes(e, GRPC_SLICE_LENGTH(bin)) > CLIENT_MAX_METADATA_BYTES)
        fprintf(stderr,
                "fuzz: the error trailer is %zu bytes (message %zu bytes, details %zu bytes, "
                "%zu violations, %zu dropped); a default client accepts %d\n",
                trailer_bytes(e, GRPC_SLICE_LENGTH(bin)), strlen(e->message),
                (size_t)GRPC_SLICE_LENGTH(bin), e->n_violations, e->n_dropped,
                CLIENT_MAX_METADATA_BYTES);
    FUZZ_CHECK(trailer_bytes(e, GRPC_SLICE_LENGTH(bin)) <= CLIENT_MAX_METADATA_BYTES);
    arena_init(&arena, buf, FUZZ_CALL_ARENA_BYTES);
    books_error_init(&seen, &arena);
    FUZZ_CHECK(codec_decode_status_details(&bin, &seen) == 0);
    FUZZ_CHECK(same(seen.reason, e->reason));
    FUZZ_CHECK(same(seen.meta_key, e->meta_key));
    if (e->meta_key)
        FUZZ_CHECK(strcmp(seen.meta_value, e->meta_value) == 0);
    FUZZ_CHECK(same(seen.resource_type, e->resource_type));
    if (e->resource_type)
        FUZZ_CHECK(strcmp(seen.resource_name, e->resource_name) == 0);
    FUZZ_CHECK(seen.n_violations == e->n_violations);
    for (size_t i = 0; i < e->n_violations; i++) {
        FUZZ_CHECK(strcmp(seen.violations[i].field, e->violations[i].field) == 0);
        FUZZ_CHECK(strcmp(seen.violations[i].description, e->violations[i].description) == 0);
    }
    grpc_slice_unref(bin);
    arena_cleanup(&arena);
    free(buf);
}

/* What the client does with the response bytes: decode them (client.c, codec_decode with
 * CLIENT_MAX_RESPONSE_BYTES). A response the server sends (rpc.h: the message packed, or its
 * embedded parts, records' encodings, with the rest) must be one its clients accept. A reply whose
 * parts are the whole response (embed_field 0) is a Book: GetBook's and CreateBook's. */
static size_t check_response(const struct rpc_reply *reply, size_t limit)
{
    const ProtobufCMessageDescriptor *desc =
        reply->response && (reply->embed_field || !reply->n_embedded)
            ? reply->response->descriptor
            : &books__v1__book__descriptor;
    grpc_byte_buffer *bb = NULL;
    unsigned char *buf = malloc(FUZZ_CALL_ARENA_BYTES);
    struct arena arena;
    struct books_error err;
    ProtobufCMessage *again = NULL;
    struct codec_limits limits = {.max_message_bytes = limit};
    size_t len;
    int rc;

    if (!buf)
        abort();
    if (reply->n_embedded) {
        codec_encode_embedded(reply->response, reply->embed_field, reply->embedded,
                              reply->n_embedded, &bb);
        len = codec_embedded_write(reply->response, reply->embed_field, reply->embedded,
                                   reply->n_embedded, NULL);
    } else {
        codec_encode(reply->response, &bb);
        len = protobuf_c_message_get_packed_size(reply->response);
    }
    FUZZ_CHECK(bb != NULL);
    FUZZ_CHECK(grpc_byte_buffer_length(bb) == len);

    arena_init(&arena, buf, FUZZ_CALL_ARENA_BYTES);
    books_error_init(&err, &arena);
    rc = codec_decode(bb, desc, limit ? &limits : NULL, &arena, &again, &err);
    if (rc != 0)
        fprintf(stderr, "fuzz: the client cannot decode the server's %s: %s: %s\n", desc->name,
                books_err_name(rc), err.message);
    FUZZ_CHECK(rc == 0);
    codec_free_request(again, &arena);
    arena_cleanup(&arena);
    free(buf);
    grpc_byte_buffer_destroy(bb);
    return len;
}

struct fuzz_outcome fuzz_serve_unary(const struct rpc_method *m, void *self, const uint8_t *data,
                                     size_t size, const struct fuzz_serve_opts *opts)
{
    struct fuzz_outcome out = {0};
    unsigned char *buf = malloc(FUZZ_CALL_ARENA_BYTES);
    struct arena arena;
    struct rpc_reply reply;
    struct codec_limits limits = {
        .max_message_bytes = opts->max_message_bytes,
        .fields = m->limits,
        .n_fields = m->n_limits,
    };
    ProtobufCMessage *request = NULL;

    if (!buf)
        abort();
    arena_init(&arena, buf, FUZZ_CALL_ARENA_BYTES);
    memset(&reply, 0, sizeof reply);
    reply.arena = &arena;
    reply.response = NULL;
    books_error_init(&reply.error, &arena);
    reply.release = NULL;
    reply.release_arg = NULL;
    reply.done = on_done;

    out.decode_rc = codec_decode_bytes(data, size, m->request, &limits, &arena, &request,
                                       &reply.error);
    if (out.decode_rc == 0) {
        FUZZ_CHECK(request != NULL);
        FUZZ_CHECK(request->descriptor == m->request);
        FUZZ_CHECK(reply.error.code == 0);
        done_calls = 0;
        m->handle(self, request, &reply);
        /* Over a memory: store every handler answers before it returns, exactly once. */
        FUZZ_CHECK(done_calls == 1);
        if (reply.error.code == 0)
            FUZZ_CHECK(reply.response != NULL || reply.n_embedded);
        if (opts->check)
            opts->check(request, &reply, opts->check_arg);
    } else {
        /* A refused request is an error with a reason, like any other. */
        FUZZ_CHECK(reply.error.code == out.decode_rc);
    }
    out.error_code = reply.error.code;
    if (fuzz_verbose())
        fprintf(stderr, "fuzz: %s: %s%s%s%s\n", m->path,
                reply.error.code ? books_err_name(reply.error.code) : "OK",
                reply.error.code ? " (" : "", reply.error.code ? reply.error.reason : "",
                reply.error.code ? ")" : "");
    if (fuzz_verbose() && reply.error.code)
        fprintf(stderr, "fuzz:   %s\n", reply.error.message);
    if (reply.error.code == 0)
        out.response_len = check_response(&reply, opts->response_limit);
    else
        check_error_details(&reply.error);
    if (reply.release)
        reply.release(&reply);
    codec_free_request(request, &arena);
    arena_cleanup(&arena);
    free(buf);
    return out;
}

/* ---- a JSON checker -------------------------------------------------------------------------- */

struct jp {
    const unsigned char *p, *end;
    int depth;
};

static void ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool lit(struct jp *j, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, w, n) != 0)
        return false;
    j->p += n;
    return true;
}

static bool hex4(const unsigned char *p)
{
    for (int i = 0; i < 4; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f') ||
              (p[i] >= 'A' && p[i] <= 'F')))
            return false;
    return true;
}

static bool jstring(struct jp *j)
{
    if (j->p >= j->end || *j->p != '"')
        return false;
    j->p++;
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = *j->p;
        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (j->end - j->p < 2)
                return false;
            c = j->p[1];
            if (c == 'u') {
                if (j->end - j->p < 6 || !hex4(j->p + 2))
                    return false;
                j->p += 6;
            } else if (strchr("\"\\/bfnrt", c) && c) {
                j->p += 2;
            } else {
                return false;
            }
        } else if (c < 0x80) {
            j->p++;
        } else {
            size_t k = utf8_sequence_len(j->p, (size_t)(j->end - j->p));
            if (!k)
                return false;
            j->p += k;
        }
    }
    if (j->p >= j->end)
        return false;
    j->p++;
    return true;
}

static bool jnumber(struct jp *j)
{
    const unsigned char *start = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0')
        j->p++;
    else if (j->p < j->end && *j->p >= '1' && *j->p <= '9')
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    else
        return false;
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return false;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return false;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    return j->p > start;
}

static bool jvalue(struct jp *j)
{
    bool ok;
    ws(j);
    if (j->p >= j->end || ++j->depth > 64)
        return false;
    switch (*j->p) {
    case '{':
        j->p++;
        ws(j);
        ok = true;
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            break;
        }
        for (;;) {
            ws(j);
            if (!jstring(j))
                return false;
            ws(j);
            if (j->p >= j->end || *j->p++ != ':' || !jvalue(j))
                return false;
            ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == '}') {
                j->p++;
                break;
            }
            return false;
        }
        break;
    case '[':
        j->p++;
        ws(j);
        ok = true;
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            break;
        }
        for (;;) {
            if (!jvalue(j))
                return false;
            ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == ']') {
                j->p++;
                break;
            }
            return false;
        }
        break;
    case '"':
        ok = jstring(j);
        break;
    case 't':
        ok = lit(j, "true");
        break;
    case 'f':
        ok = lit(j, "false");
        break;
    case 'n':
        ok = lit(j, "null");
        break;
    default:
        ok = jnumber(j);
        break;
    }
    j->depth--;
    return ok;
}

bool fuzz_json_valid(const char *s, size_t n)
{
    struct jp j = {(const unsigned char *)s, (const unsigned char *)s + n, 0};
    if (!jvalue(&j))
        return false;
    ws(&j);
    return j.p == j.end;
}

/* ---- argv / envp ----------------------------------------------------------------------------- */

void fuzz_args_build(const uint8_t *data, size_t size, const char *argv0, struct fuzz_args *out)
{
    size_t n_strings = 0, n_argv, i, start, k;
    char **strings;

    memset(out, 0, sizeof *out);
    n_argv = size ? data[0] % 64 : 0;
    /* Count the strings in data[1..]: each NUL ends one; bytes after the last NUL are one more. */
    for (i = 1; i < size; i++)
        if (data[i] == '\0')
            n_strings++;
    if (size > 1 && data[size - 1] != '\0')
        n_strings++;
    strings = calloc(n_strings ? n_strings : 1, sizeof *strings);
    if (!strings)
        abort();
    for (i = 1, start = 1, k = 0; i <= size && k < n_strings; i++) {
        if (i == size || data[i] == '\0') {
            if (i == size && start == size)
                break;
            strings[k++] = fuzz_copy(data + start, i - start, true);
            start = i + 1;
        }
    }
    if (n_argv > n_strings)
        n_argv = n_strings;
    out->argc = (int)n_argv + 1;
    out->argv = calloc(n_argv + 2, sizeof *out->argv);
    out->envp = calloc(n_strings - n_argv + 1, sizeof *out->envp);
    if (!out->argv || !out->envp)
        abort();
    out->argv[0] = fuzz_copy((const uint8_t *)argv0, strlen(argv0), true);
    for (i = 0; i < n_argv; i++)
        out->argv[i + 1] = strings[i];
    for (i = n_argv; i < n_strings; i++)
        out->envp[i - n_argv] = strings[i];
    out->n_env = n_strings - n_argv;
    free(strings);
}

void fuzz_args_free(struct fuzz_args *a)
{
    for (int i = 0; a->argv && i < a->argc; i++)
        free(a->argv[i]);
    for (size_t i = 0; a->envp && i < a->n_env; i++)
        free(a->envp[i]);
    free(a->argv);
    free(a->envp);
    memset(a, 0, sizeof *a);
}

ProtobufCMessage *fuzz_reply_decode(const struct rpc_reply *reply,
                                    const ProtobufCMessageDescriptor *desc)
{
    size_t n = reply->n_embedded ? codec_embedded_write(reply->response, reply->embed_field,
                                                        reply->embedded, reply->n_embedded, NULL)
                                 : codec_pack(reply->response, NULL);
    uint8_t *sent = malloc(n + 1);
    if (!sent)
        abort();
    if (reply->n_embedded)
        codec_embedded_write(reply->response, reply->embed_field, reply->embedded,
                             reply->n_embedded, sent);
    else
        codec_pack(reply->response, sent);
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, n, sent);
    free(sent);
    FUZZ_CHECK(m != NULL);
    return m;
}

Books__V1__Book *fuzz_reply_book(const struct rpc_reply *reply)
{
    return (Books__V1__Book *)fuzz_reply_decode(reply, &books__v1__book__descriptor);
}
