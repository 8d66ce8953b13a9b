/* docs.c: books as Firestore documents and back (fs.h, store_firestore.h). The mapping is the
 * Book's descriptor's (protobuf-c), field by field, never a list of its own: a proto field is the
 * document field of the same name (display_name, authors, publisher, and whatever books.proto
 * gains), its value the Firestore value of its type:
 *   string -> stringValue          bytes -> bytesValue            bool -> booleanValue
 *   every integer type and enum (its number) -> integerValue (uint64 as its two's-complement
 *   int64)                         float, double -> doubleValue
 *   google.protobuf.Timestamp -> timestampValue                  another message -> mapValue
 *   (its fields the same way)      repeated -> arrayValue of the above
 * A field with implicit presence (proto3) is written even at its default, so every document of a
 * book has the same keys; one with explicit presence (optional, a oneof member, a message) only
 * when set. Reading is the inverse: a document field the Book does not define (write_id, or a
 * field of a newer books.proto) is skipped, a field it defines but the document lacks (or holds
 * null) is at its default, so documents of an older or newer version read unchanged; a field of
 * the wrong type, or a REQUIRED field (books.proto's field_behavior, codec_field_required())
 * missing or empty, makes the document not a book, named with the field in its store_damage.
 * Strings of a document are UTF-8 without NUL: the codec checked every string of the response. */
#include "fs.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "books/codec.h"
#include "books/error.h"
#include "books/v1/books.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"

/* The message a book document holds. */
#define BOOK_DESC (&books__v1__book__descriptor)
/* Messages nest at most this deep in a document (Firestore's own limit on maps is 20). */
#define MAX_NESTING 16

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

static const Google__Firestore__V1__Value *
map_field(Google__Firestore__V1__Document__FieldsEntry *const *fields, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (fields[i]->key && strcmp(fields[i]->key, key) == 0)
            return fields[i]->value;
    return NULL;
}

static const Google__Firestore__V1__Value *field(const Google__Firestore__V1__Document *d,
                                                const char *key)
{
    return map_field(d->fields, d->n_fields, key);
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

static void *alloc(struct arena *a, size_t n)
{
    void *p = arena_alloc(a, n ? n : 1);
    if (p)
        memset(p, 0, n ? n : 1);
    return p;
}

/* ---- a field's members in a protobuf-c message ---------------------------------------------- */

static bool is_timestamp(const ProtobufCFieldDescriptor *f)
{
    return f->type == PROTOBUF_C_TYPE_MESSAGE &&
           strcmp(((const ProtobufCMessageDescriptor *)f->descriptor)->name,
                  "google.protobuf.Timestamp") == 0;
}

/* ---- message -> document fields ---------------------------------------------------------------- */

static Google__Firestore__V1__Value *new_value(struct arena *a, unsigned type_case)
{
    Google__Firestore__V1__Value *v = alloc(a, sizeof *v);
    if (v) {
        google__firestore__v1__value__init(v);
        v->value_type_case = type_case;
    }
    return v;
}

static Google__Firestore__V1__MapValue *map_of(const ProtobufCMessage *msg, struct arena *a,
                                               int depth);

/* The Firestore value of one value of f's type at p. */
static Google__Firestore__V1__Value *value_of(const ProtobufCFieldDescriptor *f, const void *p,
                                             struct arena *a, int depth)
{
    Google__Firestore__V1__Value *v;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        if ((v = new_value(a, GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_STRING_VALUE))) {
            /* protobuf-c leaves out a oneof string that is its field's default pointer
             * (protobuf_c_empty_string, which an unset proto3 string also holds), and a Value
             * without its string is a Value of no type, which Firestore refuses: an empty string
             * goes out as a "" of its own, which is encoded. */
            static char empty_string[] = "";
            char *s = *(char *const *)p;
            v->string_value = s && *s ? s : empty_string;
        }
        return v;
    case PROTOBUF_C_TYPE_BYTES:
        if ((v = new_value(a, GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_BYTES_VALUE)))
            v->bytes_value = *(const ProtobufCBinaryData *)p;
        return v;
    case PROTOBUF_C_TYPE_BOOL:
        if ((v = new_value(a, GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_BOOLEAN_VALUE)))
            v->boolean_value = *(const protobuf_c_boolean *)p;
        return v;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        if ((v = new_value(a, GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_DOUBLE_VALUE)))
            v->double_value = f->type == PROTOBUF_C_TYPE_FLOAT ? *(const float *)p
                                                               : *(const double *)p;
        return v;
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        if (is_timestamp(f)) {
            if ((v = new_value(a, GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_TIMESTAMP_VALUE)))
                v->timestamp_value = (Google__Protobuf__Timestamp *)m;
            return v;
        }
        if (depth >= MAX_NESTING)
            return NULL;
        if ((v = new_value(a, GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_MAP_VALUE)))
            v->map_value = map_of(m, a, depth + 1);
        return v && v->map_value ? v : NULL;
    }
    default: { /* the integer types and enums */
        int64_t i;
        switch (codec_field_value_size(f)) {
        case 4:
            i = f->type == PROTOBUF_C_TYPE_UINT32 || f->type == PROTOBUF_C_TYPE_FIXED32
                    ? (int64_t)*(const uint32_t *)p
                    : (int64_t)*(const int32_t *)p;
            break;
        default:
            i = (int64_t)*(const uint64_t *)p;
            break;
        }
        if ((v = new_value(a, GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_INTEGER_VALUE)))
            v->integer_value = i;
        return v;
    }
    }
}

/* The value of field f of msg: an array for a repeated field. */
static Google__Firestore__V1__Value *field_value(const ProtobufCMessage *msg,
                                                const ProtobufCFieldDescriptor *f,
                                                struct arena *a, int depth)
{
    const char *m = (const char *)msg;
    if (f->label != PROTOBUF_C_LABEL_REPEATED)
        return value_of(f, m + f->offset, a, depth);
    size_t n = *(const size_t *)(m + f->quantifier_offset), size = codec_field_value_size(f);
    const char *items = *(const char *const *)(m + f->offset);
    Google__Firestore__V1__Value *v =
        new_value(a, GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_ARRAY_VALUE);
    Google__Firestore__V1__ArrayValue *array = alloc(a, sizeof *array);
    Google__Firestore__V1__Value **values = alloc(a, n * sizeof *values);
    if (!v || !array || !values)
        return NULL;
    google__firestore__v1__array_value__init(array);
    for (size_t i = 0; i < n; i++)
        if (!(values[i] = value_of(f, items + i * size, a, depth)))
            return NULL;
    array->n_values = n;
    array->values = values;
    v->array_value = array;
    return v;
}

/* msg's fields (but `skip`, a field of the top message) as document fields into *out. */
static int fields_of(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *skip,
                     struct arena *a, int depth, size_t extra,
                     Google__Firestore__V1__Document__FieldsEntry ***out, size_t *n_out)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    Google__Firestore__V1__Document__FieldsEntry **e = alloc(a, (d->n_fields + extra) * sizeof *e);
    size_t n = 0;
    if (!e)
        return BOOKS_ENOMEM;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f == skip || !codec_field_present(msg, f))
            continue;
        Google__Firestore__V1__Document__FieldsEntry *entry = alloc(a, sizeof *entry);
        if (!entry)
            return BOOKS_ENOMEM;
        google__firestore__v1__document__fields_entry__init(entry);
        entry->key = (char *)f->name;
        entry->value = field_value(msg, f, a, depth);
        if (!entry->value)
            return BOOKS_ENOMEM;
        e[n++] = entry;
    }
    *out = e;
    *n_out = n;
    return 0;
}

static Google__Firestore__V1__MapValue *map_of(const ProtobufCMessage *msg, struct arena *a,
                                               int depth)
{
    Google__Firestore__V1__MapValue *mv = alloc(a, sizeof *mv);
    if (!mv)
        return NULL;
    google__firestore__v1__map_value__init(mv);
    if (fields_of(msg, NULL, a, depth, 0, (Google__Firestore__V1__Document__FieldsEntry ***)&mv->fields,
                  &mv->n_fields) != 0)
        return NULL;
    return mv;
}

/* ---- document fields -> message --------------------------------------------------------------- */

/* What went wrong reading a document, for its store_damage. */
struct reading {
    struct arena *a;
    char why[STORE_DAMAGE_BYTES];
};

static const char *type_name(unsigned value_type_case)
{
    switch (value_type_case) {
    case GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_NULL_VALUE: return "null";
    case GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_BOOLEAN_VALUE: return "a boolean";
    case GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_INTEGER_VALUE: return "an integer";
    case GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_DOUBLE_VALUE: return "a double";
    case GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_TIMESTAMP_VALUE: return "a timestamp";
    case GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_STRING_VALUE: return "a string";
    case GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_BYTES_VALUE: return "bytes";
    case GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_REFERENCE_VALUE: return "a reference";
    case GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_ARRAY_VALUE: return "an array";
    case GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_MAP_VALUE: return "a map";
    default: return "a value of a type this store does not read";
    }
}

static const char *wanted(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: return "a string";
    case PROTOBUF_C_TYPE_BYTES: return "bytes";
    case PROTOBUF_C_TYPE_BOOL: return "a boolean";
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: return "a number";
    case PROTOBUF_C_TYPE_MESSAGE: return is_timestamp(f) ? "a timestamp" : "a map";
    default: return "an integer";
    }
}

static int fill_message(ProtobufCMessage *msg, Google__Firestore__V1__Document__FieldsEntry *const *e,
                        size_t n, const ProtobufCFieldDescriptor *skip, const char *path,
                        struct reading *r, int depth);

/* Stores one Firestore value into the member at p for field f. `path` names the field. */
static int value_into(const ProtobufCFieldDescriptor *f, const Google__Firestore__V1__Value *v,
                      void *p, const char *path, struct reading *r, int depth)
{
    unsigned c = v->value_type_case;
    bool ok = false;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        if ((ok = c == GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_STRING_VALUE))
            *(char **)p = v->string_value;
        break;
    case PROTOBUF_C_TYPE_BYTES:
        if ((ok = c == GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_BYTES_VALUE))
            *(ProtobufCBinaryData *)p = v->bytes_value;
        break;
    case PROTOBUF_C_TYPE_BOOL:
        if ((ok = c == GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_BOOLEAN_VALUE))
            *(protobuf_c_boolean *)p = v->boolean_value;
        break;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        /* Other writers (a JavaScript SDK) store whole numbers as integers. */
        double d = 0;
        if (c == GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_DOUBLE_VALUE)
            d = v->double_value, ok = true;
        else if (c == GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_INTEGER_VALUE)
            d = (double)v->integer_value, ok = true;
        if (ok && f->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)p = (float)d;
        else if (ok)
            *(double *)p = d;
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessageDescriptor *md = f->descriptor;
        if (is_timestamp(f)) {
            if ((ok = c == GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_TIMESTAMP_VALUE &&
                      v->timestamp_value))
                *(ProtobufCMessage **)p = &v->timestamp_value->base;
            break;
        }
        if (!(ok = c == GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_MAP_VALUE && v->map_value))
            break;
        if (depth >= MAX_NESTING) {
            snprintf(r->why, sizeof r->why, "field %s nests deeper than %d maps", path,
                     MAX_NESTING);
            return BOOKS_ECORRUPT;
        }
        ProtobufCMessage *sub = alloc(r->a, md->sizeof_message);
        if (!sub)
            return BOOKS_ENOMEM;
        protobuf_c_message_init(md, sub);
        /* A MapValue's entries are laid out as a Document's (key, value): one reader for both. */
        int rc = fill_message(sub, (Google__Firestore__V1__Document__FieldsEntry *const *)
                                       v->map_value->fields,
                              v->map_value->n_fields, NULL, path, r, depth + 1);
        if (rc != 0)
            return rc;
        *(ProtobufCMessage **)p = sub;
        break;
    }
    default: { /* integers and enums */
        if (!(ok = c == GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_INTEGER_VALUE))
            break;
        int64_t i = v->integer_value;
        bool fits = true;
        switch (f->type) {
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
            fits = i >= 0 && i <= (int64_t)UINT32_MAX;
            *(uint32_t *)p = (uint32_t)i;
            break;
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_ENUM:
            fits = i >= INT32_MIN && i <= INT32_MAX;
            *(int32_t *)p = (int32_t)i;
            break;
        default:
            *(uint64_t *)p = (uint64_t)i;
            break;
        }
        if (!fits) {
            snprintf(r->why, sizeof r->why, "field %s holds %" PRId64 ", out of its type's range",
                     path, i);
            return BOOKS_ECORRUPT;
        }
        break;
    }
    }
    if (!ok) {
        snprintf(r->why, sizeof r->why, "field %s is %s, not %s", path, type_name(c), wanted(f));
        return BOOKS_ECORRUPT;
    }
    return 0;
}

/* Sets field f of msg from document value v (an array for a repeated field). */
static int field_into(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                      const Google__Firestore__V1__Value *v, const char *path, struct reading *r,
                      int depth)
{
    char *m = (char *)msg;
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
        int rc = value_into(f, v, m + f->offset, path, r, depth);
        if (rc != 0)
            return rc;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
            *(uint32_t *)(m + f->quantifier_offset) = f->id;
        else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
                 f->type != PROTOBUF_C_TYPE_MESSAGE)
            *(protobuf_c_boolean *)(m + f->quantifier_offset) = 1;
        return 0;
    }
    if (v->value_type_case != GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_ARRAY_VALUE ||
        !v->array_value) {
        snprintf(r->why, sizeof r->why, "field %s is %s, not an array of %s", path,
                 type_name(v->value_type_case), wanted(f));
        return BOOKS_ECORRUPT;
    }
    size_t n = v->array_value->n_values, size = codec_field_value_size(f);
    char *items = alloc(r->a, n * size);
    if (!items)
        return BOOKS_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char at[STORE_DAMAGE_BYTES];
        if (snprintf(at, sizeof at, "%.200s[%zu]", path, i) < 0)
            at[0] = '\0';
        int rc = value_into(f, v->array_value->values[i], items + i * size, at, r, depth);
        if (rc != 0)
            return rc;
    }
    *(size_t *)(m + f->quantifier_offset) = n;
    *(char **)(m + f->offset) = items;
    return 0;
}

/* Fills msg (initialised) from document fields e[0..n): each field the message defines (but
 * `skip`), by name; then checks its REQUIRED fields. `path` prefixes field names in messages. */
static int fill_message(ProtobufCMessage *msg, Google__Firestore__V1__Document__FieldsEntry *const *e,
                        size_t n, const ProtobufCFieldDescriptor *skip, const char *path,
                        struct reading *r, int depth)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        char at[STORE_DAMAGE_BYTES];
        if (f == skip)
            continue;
        if (snprintf(at, sizeof at, "%.200s%s%.100s", path, *path ? "." : "", f->name) < 0)
            at[0] = '\0';
        const Google__Firestore__V1__Value *v = map_field(e, n, f->name);
        bool absent = !v || v->value_type_case == GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE__NOT_SET ||
                      v->value_type_case == GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_NULL_VALUE;
        if (!absent) {
            int rc = field_into(msg, f, v, at, r, depth);
            if (rc != 0)
                return rc;
        }
        if (!codec_field_required(d, f))
            continue;
        /* AIP-203 REQUIRED: a book always has it (the service refuses a create without it). */
        bool empty = absent ||
                     (f->label == PROTOBUF_C_LABEL_REPEATED &&
                      *(const size_t *)((const char *)msg + f->quantifier_offset) == 0) ||
                     (f->type == PROTOBUF_C_TYPE_STRING && f->label != PROTOBUF_C_LABEL_REPEATED &&
                      **(char *const *)((const char *)msg + f->offset) == '\0');
        if (empty) {
            snprintf(r->why, sizeof r->why, "the REQUIRED field %s is %s", at,
                     absent ? "missing" : "empty");
            return BOOKS_ECORRUPT;
        }
    }
    return 0;
}

/* The field `name` of the Book: the resource name, which is the document's path, not a field. */
static const ProtobufCFieldDescriptor *name_field(void)
{
    return protobuf_c_message_descriptor_get_field_by_name(BOOK_DESC, "name");
}

/* Names the document (its path, control characters shown as '?') and what is wrong with it. */
static int damaged(struct store_damage *damage, const char *doc, const char *why)
{
    if (damage) {
        size_t k = 0;
        for (const char *p = doc && *doc ? doc : "a document with no name";
             *p && k < sizeof damage->where - 1; p++)
            damage->where[k++] = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
        damage->where[k] = '\0';
        snprintf(damage->why, sizeof damage->why, "%s", why);
    }
    return BOOKS_ECORRUPT;
}

int fs_book_from_doc(const struct fs_names *n, const Google__Firestore__V1__Document *d,
                     struct store_book **out, struct store_damage *damage)
{
    size_t dl = strlen(n->documents), cl = strlen(n->collection);
    const char *name = d->name;
    /* {documents}/{collection}/{id}, the id one segment */
    if (!name || strncmp(name, n->documents, dl) != 0 || name[dl] != '/' ||
        strncmp(name + dl + 1, n->collection, cl) != 0 || name[dl + 1 + cl] != '/')
        return damaged(damage, name, "not a document of this store's collection");
    const char *id = name + dl + 1 + cl + 1;
    if (!*id || strchr(id, '/'))
        return damaged(damage, name, "not a document of this store's collection");

    unsigned char buf[4096];
    struct arena a;
    struct reading r = {.a = &a};
    Books__V1__Book book = BOOKS__V1__BOOK__INIT;
    arena_init(&a, buf, sizeof buf);
    int rc = fill_message(&book.base, d->fields, d->n_fields, name_field(), "", &r, 0);
    if (rc == 0) {
        char book_name[FS_NAME_BYTES];
        int w = snprintf(book_name, sizeof book_name, "books/%s", id);
        size_t len = codec_pack(&book.base, NULL);
        uint8_t *body = w > 0 && (size_t)w < sizeof book_name ? arena_alloc(&a, len ? len : 1)
                                                              : NULL;
        if (!body) {
            rc = w > 0 && (size_t)w < sizeof book_name ? BOOKS_ENOMEM : BOOKS_ECORRUPT;
            snprintf(r.why, sizeof r.why, "its id is too long");
        } else {
            codec_pack(&book.base, body);
            rc = store_book_new(book_name, (size_t)w, body, len, out);
            if (rc == BOOKS_ECORRUPT)
                snprintf(r.why, sizeof r.why, "its id or its book is larger than a store keeps");
        }
    }
    arena_cleanup(&a);
    if (rc == BOOKS_ECORRUPT)
        return damaged(damage, name, r.why);
    return rc;
}

/* ---- building writes, in an arena --------------------------------------------------------------- */

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
    Google__Firestore__V1__Value *v =
        new_value(a, GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_STRING_VALUE);
    if (v)
        v->string_value = (char *)s;
    return v;
}

static Google__Firestore__V1__Value *bytes_value(struct arena *a, const uint8_t *p, size_t n)
{
    Google__Firestore__V1__Value *v =
        new_value(a, GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_BYTES_VALUE);
    if (v) {
        v->bytes_value.data = (uint8_t *)p;
        v->bytes_value.len = n;
    }
    return v;
}

static Google__Firestore__V1__Value *expiry_value(struct arena *a, uint32_t ttl_s)
{
    Google__Firestore__V1__Value *v =
        new_value(a, GOOGLE__FIRESTORE__V1__VALUE__VALUE_TYPE_TIMESTAMP_VALUE);
    Google__Protobuf__Timestamp *t = alloc(a, sizeof *t);
    struct timespec now;
    if (!v || !t)
        return NULL;
    clock_gettime(CLOCK_REALTIME, &now);
    google__protobuf__timestamp__init(t);
    t->seconds = (int64_t)now.tv_sec + ttl_s;
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
    char *name = arena_strndup(a, doc_name, strlen(doc_name));
    if (!w || !d || !pre || !name)
        return NULL;
    for (size_t i = 0; i < n_fields; i++)
        if (!f[i])
            return NULL;
    google__firestore__v1__document__init(d);
    d->name = name;
    d->n_fields = n_fields;
    d->fields = f;
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
    Google__Firestore__V1__Document__FieldsEntry **f = NULL, *rf[5];
    size_t nf = 0, len;
    const uint8_t *body = store_book_body(b, &len);

    out->book = out->request = NULL;
    if (!fs_book_doc(n, b->name, doc, sizeof doc))
        return BOOKS_EINVAL;
    /* The body as the Book it is (the service encoded it), then each field by the descriptor. */
    ProtobufCMessage *book = NULL;
    struct books_error e;
    books_error_init(&e, arena);
    int drc = codec_decode_bytes(body, len, BOOK_DESC, NULL, arena, &book, &e);
    if (drc != 0) /* the service's own encoding always decodes: only memory fails */
        return drc == BOOKS_ENOMEM ? BOOKS_ENOMEM : BOOKS_EINTERNAL;
    int rc = fields_of(book, name_field(), arena, 0, 1, &f, &nf);
    if (rc != 0)
        return rc;
    f[nf++] = entry(arena, "write_id", string_value(arena, write_id));
    if (!(out->book = create_write(arena, doc, f, nf)))
        return BOOKS_ENOMEM;
    if (!it->request_id[0])
        return 0;
    if (!fs_request_doc(n, it->request_id, doc, sizeof doc))
        return BOOKS_EINVAL;
    /* store.h's request id model: the book it made, both fingerprints (request_hash is the legacy
     * one, which servers of 363d47a compare), the write, its expiry (a TTL policy deletes it). */
    nf = 0;
    rf[nf++] = entry(arena, "book", string_value(arena, b->name));
    rf[nf++] = entry(arena, "request_hash",
                     bytes_value(arena, it->legacy_fingerprint, STORE_FINGERPRINT_BYTES));
    rf[nf++] = entry(arena, "request_fingerprint",
                     bytes_value(arena, it->fingerprint, STORE_FINGERPRINT_BYTES));
    rf[nf++] = entry(arena, "write_id", string_value(arena, write_id));
    rf[nf++] = entry(arena, "expire_at", expiry_value(arena, request_ttl_s));
    Google__Firestore__V1__Document__FieldsEntry **fields = alloc(arena, sizeof rf);
    if (!fields)
        return BOOKS_ENOMEM;
    memcpy(fields, rf, sizeof rf);
    if (!(out->request = create_write(arena, doc, fields, nf)))
        return BOOKS_ENOMEM;
    return 0;
}
