/* docs.c: books as Firestore documents and back (fs.h, store_firestore.h say which fields). A
 * document read back is checked like any outside data: its name must be a book of this
 * collection, each field of its type, the authors within STORE_MAX_AUTHORS; the codec has already
 * checked every string is UTF-8 without NUL. */
#include "fs.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "books/error.h"
#include "google/protobuf/timestamp.pb-c.h"

bool fs_book_doc(const struct fs_names *n, const char *name, char *out, size_t len)
{
    const char *id = strchr(name, '/'); /* "books/{id}": the service checked the form */
    if (!id)
        return false;
    int w = snprintf(out, len, "%s/%s/%s", n->documents, n->collection, id + 1);
    return w > 0 && (size_t)w < len;
}

bool fs_request_doc(const struct fs_names *n, const char *request_id, char *out, size_t len)
{
    int w = snprintf(out, len, "%s/%s/%s", n->documents, n->requests, request_id);
    return w > 0 && (size_t)w < len;
}

static const Google__Firestore__V1__Value *field(const Google__Firestore__V1__Document *d,
                                                const char *key)
{
    for (size_t i = 0; i < d->n_fields; i++)
        if (d->fields[i]->key && strcmp(d->fields[i]->key, key) == 0)
            return d->fields[i]->value;
    return NULL;
}

const char *fs_doc_string(const Google__Firestore__V1__Document *d, const char *key)
{
    const Google__Firestore__V1__Value *v = field(d, key);
    return v && v->value_type_case == GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_STRING_VALUE
               ? v->string_value
               : NULL;
}

const ProtobufCBinaryData *fs_doc_bytes(const Google__Firestore__V1__Document *d, const char *key)
{
    const Google__Firestore__V1__Value *v = field(d, key);
    return v && v->value_type_case == GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_BYTES_VALUE
               ? &v->bytes_value
               : NULL;
}

int fs_book_from_doc(const struct fs_names *n, const Google__Firestore__V1__Document *d,
                     struct store_book **out)
{
    size_t dl = strlen(n->documents), cl = strlen(n->collection);
    const char *name = d->name;
    /* {documents}/{collection}/{id}, the id one segment */
    if (!name || strncmp(name, n->documents, dl) != 0 || name[dl] != '/' ||
        strncmp(name + dl + 1, n->collection, cl) != 0 || name[dl + 1 + cl] != '/')
        return BOOKS_ECORRUPT;
    const char *id = name + dl + 1 + cl + 1;
    if (!*id || strchr(id, '/'))
        return BOOKS_ECORRUPT;
    const char *title = fs_doc_string(d, "display_name"), *publisher = fs_doc_string(d, "publisher");
    const Google__Firestore__V1__Value *authors = field(d, "authors");
    if (!title || !publisher || !authors ||
        authors->value_type_case != GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_ARRAY_VALUE ||
        !authors->array_value || authors->array_value->n_values > STORE_MAX_AUTHORS)
        return BOOKS_ECORRUPT;
    const Google__Firestore__V1__ArrayValue *a = authors->array_value;
    struct store_text texts[STORE_MAX_AUTHORS];
    for (size_t i = 0; i < a->n_values; i++) {
        const Google__Firestore__V1__Value *v = a->values[i];
        if (!v || v->value_type_case != GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_STRING_VALUE)
            return BOOKS_ECORRUPT;
        texts[i] = (struct store_text){v->string_value, strlen(v->string_value)};
    }
    char book_name[FS_NAME_BYTES];
    int w = snprintf(book_name, sizeof book_name, "books/%s", id);
    if (w < 0 || (size_t)w >= sizeof book_name)
        return BOOKS_ECORRUPT;
    return store_book_new_counted((struct store_text){book_name, (size_t)w},
                                  (struct store_text){title, strlen(title)}, texts, a->n_values,
                                  (struct store_text){publisher, strlen(publisher)}, out);
}

/* ---- building writes, in an arena --------------------------------------------------------------- */

static void *alloc(struct arena *a, size_t n)
{
    void *p = arena_alloc(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

static Google__Firestore__V1__Document__FieldsEntry *
entry(struct arena *a, const char *key, Google__Firestore__V1__Value *v)
{
    Google__Firestore__V1__Document__FieldsEntry *e = alloc(a, sizeof *e);
    if (!e || !v)
        return NULL;
    google__firestore__v1__document__fields_entry__init(e);
    e->key = (char *)key;
    e->value = v;
    return e;
}

static Google__Firestore__V1__Value *string_value(struct arena *a, const char *s)
{
    Google__Firestore__V1__Value *v = alloc(a, sizeof *v);
    if (!v)
        return NULL;
    google__firestore__v1__value__init(v);
    v->value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_STRING_VALUE;
    v->string_value = (char *)s;
    return v;
}

static Google__Firestore__V1__Value *bytes_value(struct arena *a, const uint8_t *p, size_t n)
{
    Google__Firestore__V1__Value *v = alloc(a, sizeof *v);
    if (!v)
        return NULL;
    google__firestore__v1__value__init(v);
    v->value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_BYTES_VALUE;
    v->bytes_value.data = (uint8_t *)p;
    v->bytes_value.len = n;
    return v;
}

static Google__Firestore__V1__Value *expiry_value(struct arena *a, uint32_t ttl_s)
{
    Google__Firestore__V1__Value *v = alloc(a, sizeof *v);
    Google__Protobuf__Timestamp *t = alloc(a, sizeof *t);
    struct timespec now;
    if (!v || !t)
        return NULL;
    clock_gettime(CLOCK_REALTIME, &now);
    google__protobuf__timestamp__init(t);
    t->seconds = (int64_t)now.tv_sec + ttl_s;
    google__firestore__v1__value__init(v);
    v->value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_TIMESTAMP_VALUE;
    v->timestamp_value = t;
    return v;
}

static Google__Firestore__V1__Write *create_write(struct arena *a, const char *doc_name,
                                                  Google__Firestore__V1__Document__FieldsEntry **f,
                                                  size_t n_fields)
{
    Google__Firestore__V1__Write *w = alloc(a, sizeof *w);
    Google__Firestore__V1__Document *d = alloc(a, sizeof *d);
    Google__Firestore__V1__Precondition *pre = alloc(a, sizeof *pre);
    Google__Firestore__V1__Document__FieldsEntry **fields = alloc(a, n_fields * sizeof *fields);
    char *name = arena_strndup(a, doc_name, strlen(doc_name));
    if (!w || !d || !pre || !fields || !name)
        return NULL;
    for (size_t i = 0; i < n_fields; i++)
        if (!(fields[i] = f[i]))
            return NULL;
    google__firestore__v1__document__init(d);
    d->name = name;
    d->n_fields = n_fields;
    d->fields = fields;
    google__firestore__v1__precondition__init(pre);
    pre->condition_type_case = GOOGLE__FIRESTORE__V1__PRECONDITION__CONDITION_TYPE_EXISTS;
    pre->exists = 0; /* create: the document must not exist */
    google__firestore__v1__write__init(w);
    w->operation_case = GOOGLE__FIRESTORE__V1__WRITE__OPERATION_UPDATE;
    w->update = d;
    w->current_document = pre;
    return w;
}

int fs_build_create(const struct fs_names *n, const struct commit_item *it, const char *write_id,
                    uint32_t request_ttl_s, struct arena *arena, struct fs_create_writes *out)
{
    const struct store_book *b = it->book;
    char doc[FS_NAME_BYTES];
    Google__Firestore__V1__Document__FieldsEntry *f[6];
    size_t nf = 0;

    out->book = out->request = NULL;
    if (!fs_book_doc(n, b->name, doc, sizeof doc))
        return BOOKS_EINVAL;
    Google__Firestore__V1__Value *authors = alloc(arena, sizeof *authors);
    Google__Firestore__V1__ArrayValue *array = alloc(arena, sizeof *array);
    Google__Firestore__V1__Value **values = alloc(arena, (b->n_authors + 1) * sizeof *values);
    if (!authors || !array || !values)
        return BOOKS_ENOMEM;
    for (size_t i = 0; i < b->n_authors; i++)
        if (!(values[i] = string_value(arena, b->authors[i])))
            return BOOKS_ENOMEM;
    google__firestore__v1__array_value__init(array);
    array->n_values = b->n_authors;
    array->values = values;
    google__firestore__v1__value__init(authors);
    authors->value_type_case = GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_ARRAY_VALUE;
    authors->array_value = array;

    f[nf++] = entry(arena, "display_name", string_value(arena, b->display_name));
    f[nf++] = entry(arena, "publisher", string_value(arena, b->publisher));
    f[nf++] = entry(arena, "authors", authors);
    f[nf++] = entry(arena, "write_id", string_value(arena, write_id));
    if (it->request_id[0]) {
        f[nf++] = entry(arena, "request_id", string_value(arena, it->request_id));
        f[nf++] = entry(arena, "request_hash",
                        bytes_value(arena, it->request_hash, STORE_REQUEST_HASH_BYTES));
    }
    if (!(out->book = create_write(arena, doc, f, nf)))
        return BOOKS_ENOMEM;
    if (!it->request_id[0])
        return 0;
    if (!fs_request_doc(n, it->request_id, doc, sizeof doc))
        return BOOKS_EINVAL;
    nf = 0;
    f[nf++] = entry(arena, "book", string_value(arena, b->name));
    f[nf++] = entry(arena, "request_hash",
                    bytes_value(arena, it->request_hash, STORE_REQUEST_HASH_BYTES));
    f[nf++] = entry(arena, "write_id", string_value(arena, write_id));
    f[nf++] = entry(arena, "expire_at", expiry_value(arena, request_ttl_s));
    if (!(out->request = create_write(arena, doc, f, nf)))
        return BOOKS_ENOMEM;
    return 0;
}
