/* fuzz_firestore_response: what the firestore: store reads from Firestore (src/firestore/), which
 * is outside data like any request. The first input byte picks the message, the rest are its
 * bytes, decoded as the store decodes a response (the codec, FS_MAX_RESPONSE_BYTES):
 *   0  a Document, read back as a book (fs_book_from_doc: GetBook, a retry's lookup)
 *   1  a RunQueryResponse, its document read back as a book (a ListBooks page)
 *   2  a BatchWriteResponse, its statuses read as the store reads them
 *   3  a request Document, its fields read as the create lookup reads them
 * for a store of project "p", database "(default)", collection "books".
 * Properties: a decoded document is a book only when its name is a book of that collection (one
 * segment after it), its title and publisher are strings and its authors an array of at most
 * STORE_MAX_AUTHORS strings; the book then says exactly what the document says, under the name
 * books/{id}; everything decoded is freed. */
#include <string.h>

#include "books/codec.h"
#include "books/error.h"
#include "books/v1/books.pb-c.h"
#include "fs.h"
#include "fuzz_common.h"

static struct fs_names names;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(names.database, sizeof names.database, "projects/p/databases/(default)");
    snprintf(names.documents, sizeof names.documents, "%s/documents", names.database);
    snprintf(names.collection, sizeof names.collection, "books");
    snprintf(names.requests, sizeof names.requests, "books_requests");
    snprintf(names.meta, sizeof names.meta, "books_meta");
    return 0;
}

/* A document is a book of this collection with every field of the Book typed as the proto says,
 * or it is named as damage; a book read is a Book a client decodes, whose fields are the
 * document's (the title, the publisher), and which the store writes back as the same document. */
static void check_book(const Google__Firestore__V1__Document *d)
{
    struct store_book *b = (struct store_book *)0x1;
    struct store_damage damage;
    memset(&damage, 0, sizeof damage);
    int rc = fs_book_from_doc(&names, d, &b, &damage);
    if (rc != 0) {
        FUZZ_CHECK(rc == BOOKS_ECORRUPT || rc == BOOKS_ENOMEM);
        FUZZ_CHECK(b == (struct store_book *)0x1);
        if (rc == BOOKS_ECORRUPT) /* named, and in one line */
            FUZZ_CHECK(damage.where[0] && !strchr(damage.where, '\n') && damage.why[0]);
        return;
    }
    const char *prefix = "projects/p/databases/(default)/documents/books/";
    FUZZ_CHECK(strncmp(d->name, prefix, strlen(prefix)) == 0);
    const char *id = d->name + strlen(prefix);
    FUZZ_CHECK(*id && !strchr(id, '/'));
    FUZZ_CHECK(strncmp(b->name, "books/", 6) == 0 && strcmp(b->name + 6, id) == 0);
    Books__V1__Book *m = books__v1__book__unpack(NULL, b->wire_len, b->wire);
    FUZZ_CHECK(m != NULL);
    FUZZ_CHECK(strcmp(m->name, b->name) == 0);
    FUZZ_CHECK(strcmp(m->display_name, fs_doc_string(d, "display_name")) == 0);
    FUZZ_CHECK(strcmp(m->publisher, fs_doc_string(d, "publisher")) == 0);
    FUZZ_CHECK(m->n_authors >= 1);
    books__v1__book__free_unpacked(m, NULL);
    /* Written back, it reads as the same book. */
    unsigned char buf[4096];
    struct arena a;
    arena_init(&a, buf, sizeof buf);
    struct commit_item it = {.book = b};
    struct fs_create_writes w;
    FUZZ_CHECK(fs_build_create(&names, &it, "00000000000000000000000000000000", 60, &a, &w) == 0);
    struct store_book *again = NULL;
    FUZZ_CHECK(fs_book_from_doc(&names, w.book->update, &again, NULL) == 0);
    FUZZ_CHECK(again->wire_len == b->wire_len && memcmp(again->wire, b->wire, b->wire_len) == 0);
    store_book_unref(again);
    arena_cleanup(&a);
    store_book_unref(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const ProtobufCMessageDescriptor *const kinds[] = {
        &google__firestore__v1__document__descriptor,
        &google__firestore__v1__run_query_response__descriptor,
        &google__firestore__v1__batch_write_response__descriptor,
        &google__firestore__v1__document__descriptor,
    };
    static const struct codec_limits limits = {.max_message_bytes = FS_MAX_RESPONSE_BYTES};
    unsigned char buf[4096];
    struct arena a;
    struct books_error e;
    ProtobufCMessage *m = NULL;

    if (size < 1 || data[0] >= sizeof kinds / sizeof kinds[0])
        return 0;
    arena_init(&a, buf, sizeof buf);
    books_error_init(&e, &a);
    if (codec_decode_bytes(data + 1, size - 1, kinds[data[0]], &limits, &a, &m, &e) == 0) {
        switch (data[0]) {
        case 0:
            check_book((const Google__Firestore__V1__Document *)m);
            break;
        case 1: {
            const Google__Firestore__V1__RunQueryResponse *r = (const void *)m;
            if (r->document)
                check_book(r->document);
            break;
        }
        case 2: {
            const Google__Firestore__V1__BatchWriteResponse *r = (const void *)m;
            for (size_t i = 0; i < r->n_status; i++)
                (void)fs_status_error((grpc_status_code)r->status[i]->code);
            break;
        }
        default: {
            const Google__Firestore__V1__Document *d = (const void *)m;
            const ProtobufCBinaryData *hash = fs_doc_bytes(d, "request_hash");
            const char *book = fs_doc_string(d, "book");
            char doc[FS_NAME_BYTES];
            if (hash)
                FUZZ_CHECK(hash->len == 0 || hash->data != NULL);
            if (book)
                (void)fs_book_doc(&names, book, doc, sizeof doc);
            break;
        }
        }
        codec_free_request(m, &a);
    }
    arena_cleanup(&a);
    return 0;
}
