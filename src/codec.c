/* codec.c: the one place where grpc_byte_buffer meets protobuf-c. Requests are unpacked straight
 * from the received slice when the message arrived in one piece (the common case), else from one
 * flattened copy; responses are packed once into a slice that the byte buffer then owns. The error
 * detail blob of AIP-193 (google.rpc.Status with ErrorInfo, BadRequest, ResourceInfo) is built here
 * and nowhere else.
 *
 * protobuf-c hands string fields over as NUL-terminated char*, and checks neither UTF-8 nor embedded
 * NULs, so after a successful unpack the same bytes are walked once more, guided by the message
 * descriptor, to check each string field where its length is still known. */
#include "books/codec.h"

#include "books/utf8.h"

#include <grpc/byte_buffer_reader.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

/* Reads a base-128 varint; returns its length in bytes, 0 when malformed or cut short. */
static size_t read_varint(const uint8_t *p, const uint8_t *end, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < 10 && p + i < end; i++) {
        x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *v = x;
            return i + 1;
        }
    }
    return 0;
}

#define MAX_NESTING 16
#define MAX_COUNTED_FIELDS 32

/* Walks one message's bytes (already accepted by protobuf-c) and adds a violation for each string
 * field that holds a NUL or invalid UTF-8. `path` holds the field path of this message (len bytes
 * used of cap). Unknown fields are skipped: their type is not known. */
static void check_strings(const uint8_t *p, size_t n, const ProtobufCMessageDescriptor *desc,
                          char *path, size_t len, size_t cap, int depth, struct books_error *err)
{
    const uint8_t *end = p + n;
    unsigned seen[MAX_COUNTED_FIELDS] = {0};

    while (p < end) {
        uint64_t key, size = 0;
        size_t k = read_varint(p, end, &key);
        if (!k)
            return;
        p += k;
        switch (key & 7) {
        case 0:
            k = read_varint(p, end, &size);
            if (!k)
                return;
            p += k;
            continue;
        case 1:
            p += 8;
            continue;
        case 5:
            p += 4;
            continue;
        case 2:
            break;
        default: /* groups: not in proto3 */
            return;
        }
        k = read_varint(p, end, &size);
        if (!k || size > (uint64_t)(end - p - k))
            return;
        p += k;
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3));
        if (f && (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)) {
            size_t idx = (size_t)(f - desc->fields), at = len;
            int w;
            if (f->label == PROTOBUF_C_LABEL_REPEATED)
                w = snprintf(path + at, cap - at, "%s%s[%u]", at ? "." : "", f->name,
                             idx < MAX_COUNTED_FIELDS ? seen[idx] : 0u);
            else
                w = snprintf(path + at, cap - at, "%s%s", at ? "." : "", f->name);
            if (idx < MAX_COUNTED_FIELDS)
                seen[idx]++;
            at = w > 0 && (size_t)w < cap - at ? at + (size_t)w : cap - 1;
            if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (depth < MAX_NESTING)
                    check_strings(p, (size_t)size, f->descriptor, path, at, cap, depth + 1, err);
            } else if (memchr(p, '\0', (size_t)size)) {
                books_error_add_violation(err, path,
                                          "contains a NUL character (U+0000), which this API does "
                                          "not accept in text; remove it");
            } else if (!utf8_valid((const char *)p, (size_t)size)) {
                books_error_add_violation(err, path,
                                          "is not valid UTF-8; proto3 string fields must hold "
                                          "UTF-8 text");
            }
            path[len] = '\0';
        }
        p += size;
    }
}

int codec_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc, struct arena *arena,
                 ProtobufCMessage **out, struct books_error *err)
{
    grpc_byte_buffer_reader reader;
    grpc_slice *first = NULL, *second = NULL, flat = grpc_empty_slice();
    const uint8_t *data = (const uint8_t *)"";
    size_t len = 0;
    ProtobufCMessage *msg = NULL;
    char path[BOOKS_ERROR_FIELD_BYTES];

    if (!bb) {
        books_error_set(err, BOOKS_EBADMSG, "MALFORMED_REQUEST",
                        "the call carried no %s message; a unary call needs exactly one",
                        desc->name);
        return BOOKS_EBADMSG;
    }
    /* Fails only when the payload is compressed with an algorithm core cannot undo. */
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        goto malformed;
    if (grpc_byte_buffer_reader_peek(&reader, &first)) {
        if (!grpc_byte_buffer_reader_peek(&reader, &second)) {
            data = GRPC_SLICE_START_PTR(*first);
            len = GRPC_SLICE_LENGTH(*first);
        } else {
            /* Split across slices: flatten once. readall starts from the beginning. */
            grpc_byte_buffer_reader_destroy(&reader);
            if (!grpc_byte_buffer_reader_init(&reader, bb))
                goto malformed;
            flat = grpc_byte_buffer_reader_readall(&reader);
            data = GRPC_SLICE_START_PTR(flat);
            len = GRPC_SLICE_LENGTH(flat);
        }
    }
    /* Zero bytes are a valid message with every field at its default. protobuf-c returns NULL for
     * malformed bytes and for allocation failure alike; the arena fails only when malloc does. */
    msg = protobuf_c_message_unpack(desc, arena_pb_allocator(arena), len, data);
    if (msg) {
        path[0] = '\0';
        check_strings(data, len, desc, path, 0, sizeof path, 0, err);
    }
    grpc_slice_unref(flat);
    grpc_byte_buffer_reader_destroy(&reader);
    if (!msg)
        goto malformed;
    if (err->n_violations || err->n_dropped) {
        protobuf_c_message_free_unpacked(msg, arena_pb_allocator(arena));
        books_error_finish_fields(err, desc->name);
        return BOOKS_EINVAL;
    }
    *out = msg;
    return 0;

malformed:
    books_error_set(err, BOOKS_EBADMSG, "MALFORMED_REQUEST",
                    "the request is not a valid %s message; encode it with the service's .proto",
                    desc->name);
    return BOOKS_EBADMSG;
}

void codec_free_request(ProtobufCMessage *msg, struct arena *arena)
{
    if (msg)
        protobuf_c_message_free_unpacked(msg, arena_pb_allocator(arena));
}

int codec_encode(const ProtobufCMessage *msg, grpc_byte_buffer **out)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice slice = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    *out = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return 0;
}

/* Packs `msg` into a new heap buffer wrapped as google.protobuf.Any. */
static int pack_any(const ProtobufCMessage *msg, Google__Protobuf__Any *any, const char *type_url)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return BOOKS_ENOMEM;
    protobuf_c_message_pack(msg, buf);
    any->type_url = (char *)type_url;
    any->value.data = buf;
    any->value.len = n;
    return 0;
}

int codec_encode_status_details(const struct books_error *e, grpc_slice *out)
{
    Google__Rpc__Status status = GOOGLE__RPC__STATUS__INIT;
    Google__Rpc__ErrorInfo info = GOOGLE__RPC__ERROR_INFO__INIT;
    Google__Rpc__ErrorInfo__MetadataEntry meta = GOOGLE__RPC__ERROR_INFO__METADATA_ENTRY__INIT;
    Google__Rpc__ErrorInfo__MetadataEntry *meta_list[1] = {&meta};
    Google__Rpc__BadRequest bad = GOOGLE__RPC__BAD_REQUEST__INIT;
    Google__Rpc__BadRequest__FieldViolation *fv = NULL, **fv_list = NULL;
    Google__Rpc__ResourceInfo res = GOOGLE__RPC__RESOURCE_INFO__INIT;
    Google__Protobuf__Any any[3];
    Google__Protobuf__Any *any_list[3];
    size_t n_any = 0, i, n;
    int rc = 0;

    info.reason = (char *)(e->reason ? e->reason : "UNKNOWN");
    info.domain = (char *)BOOKS_ERROR_DOMAIN;
    if (e->meta_key) {
        meta.key = (char *)e->meta_key;
        meta.value = (char *)e->meta_value;
        info.n_metadata = 1;
        info.metadata = meta_list;
    }
    google__protobuf__any__init(&any[n_any]);
    rc = pack_any(&info.base, &any[n_any], "type.googleapis.com/google.rpc.ErrorInfo");
    if (rc)
        goto out;
    n_any++;

    if (e->n_violations) {
        fv = malloc(e->n_violations * sizeof *fv);
        fv_list = malloc(e->n_violations * sizeof *fv_list);
        if (!fv || !fv_list) {
            rc = BOOKS_ENOMEM;
            goto out;
        }
        for (i = 0; i < e->n_violations; i++) {
            google__rpc__bad_request__field_violation__init(&fv[i]);
            fv[i].field = (char *)e->violations[i].field;
            fv[i].description = (char *)e->violations[i].description;
            fv_list[i] = &fv[i];
        }
        bad.n_field_violations = e->n_violations;
        bad.field_violations = fv_list;
        google__protobuf__any__init(&any[n_any]);
        rc = pack_any(&bad.base, &any[n_any], "type.googleapis.com/google.rpc.BadRequest");
        if (rc)
            goto out;
        n_any++;
    }

    if (e->resource_type) {
        res.resource_type = (char *)e->resource_type;
        res.resource_name = (char *)e->resource_name;
        google__protobuf__any__init(&any[n_any]);
        rc = pack_any(&res.base, &any[n_any], "type.googleapis.com/google.rpc.ResourceInfo");
        if (rc)
            goto out;
        n_any++;
    }

    for (i = 0; i < n_any; i++)
        any_list[i] = &any[i];
    status.code = (int32_t)books_err_to_grpc_status(e->code);
    status.message = (char *)e->message;
    status.n_details = n_any;
    status.details = any_list;
    n = protobuf_c_message_get_packed_size(&status.base);
    *out = grpc_slice_malloc(n);
    protobuf_c_message_pack(&status.base, GRPC_SLICE_START_PTR(*out));
out:
    for (i = 0; i < n_any; i++)
        free(any[i].value.data);
    free(fv);
    free(fv_list);
    return rc;
}

/* The detail types a client of this API reads; others (DebugInfo, RetryInfo, ...) are skipped. */
static const ProtobufCMessageDescriptor *detail_descriptor(const char *type_url)
{
    /* A type URL is "<host>/<full type name>"; only the name identifies the type. */
    const char *slash = strrchr(type_url, '/');
    const char *name = slash ? slash + 1 : type_url;
    if (strcmp(name, "google.rpc.ErrorInfo") == 0)
        return &google__rpc__error_info__descriptor;
    if (strcmp(name, "google.rpc.BadRequest") == 0)
        return &google__rpc__bad_request__descriptor;
    if (strcmp(name, "google.rpc.ResourceInfo") == 0)
        return &google__rpc__resource_info__descriptor;
    return NULL;
}

int codec_decode_status_details(const grpc_slice *bin, struct books_error *out)
{
    Google__Rpc__Status *st = NULL;
    ProtobufCMessage **parts = NULL; /* the unpacked details, NULL where the type is skipped */
    const Google__Rpc__ErrorInfo *info = NULL;
    const Google__Rpc__ResourceInfo *res = NULL;
    char *reason = NULL, *meta_key = NULL, *resource_type = NULL;
    size_t i, j;
    int rc = BOOKS_EBADMSG;

    if (!out->arena)
        return BOOKS_EINVAL;
    /* protobuf-c reports malformed bytes and a failed malloc alike; the bytes are the likelier. */
    st = google__rpc__status__unpack(NULL, GRPC_SLICE_LENGTH(*bin), GRPC_SLICE_START_PTR(*bin));
    if (!st)
        return BOOKS_EBADMSG;
    parts = calloc(st->n_details ? st->n_details : 1, sizeof *parts);
    if (!parts) {
        rc = BOOKS_ENOMEM;
        goto free_status;
    }
    /* Unpack every known detail before touching `out`, so a bad one leaves it as it was. */
    for (i = 0; i < st->n_details; i++) {
        const Google__Protobuf__Any *any = st->details[i];
        const ProtobufCMessageDescriptor *desc = detail_descriptor(any->type_url);
        if (!desc)
            continue;
        parts[i] = protobuf_c_message_unpack(desc, NULL, any->value.len, any->value.data);
        if (!parts[i])
            goto free_parts;
        if (desc == &google__rpc__error_info__descriptor && !info &&
            strcmp(((Google__Rpc__ErrorInfo *)parts[i])->domain, BOOKS_ERROR_DOMAIN) == 0)
            info = (const Google__Rpc__ErrorInfo *)parts[i];
        else if (desc == &google__rpc__resource_info__descriptor && !res)
            res = (const Google__Rpc__ResourceInfo *)parts[i];
    }

    /* struct books_error keeps reason and the keys as pointers (static strings on the server);
     * here they point into the caller's arena. */
    if (info) {
        reason = arena_strndup(out->arena, info->reason, strlen(info->reason));
        if (info->n_metadata)
            meta_key =
                arena_strndup(out->arena, info->metadata[0]->key, strlen(info->metadata[0]->key));
    }
    if (res)
        resource_type = arena_strndup(out->arena, res->resource_type, strlen(res->resource_type));
    if ((info && !reason) || (info && info->n_metadata && !meta_key) || (res && !resource_type)) {
        rc = BOOKS_ENOMEM;
        goto free_parts;
    }

    if (info) {
        out->reason = reason;
        if (meta_key)
            books_error_set_meta(out, meta_key, info->metadata[0]->value);
    }
    if (res)
        books_error_set_resource(out, resource_type, res->resource_name);
    for (i = 0; i < st->n_details; i++) {
        if (!parts[i] || parts[i]->descriptor != &google__rpc__bad_request__descriptor)
            continue;
        const Google__Rpc__BadRequest *bad = (const Google__Rpc__BadRequest *)parts[i];
        for (j = 0; j < bad->n_field_violations; j++)
            books_error_add_violation(out, bad->field_violations[j]->field, "%s",
                                      bad->field_violations[j]->description);
    }
    rc = 0;

free_parts:
    for (i = 0; i < st->n_details; i++)
        if (parts[i])
            protobuf_c_message_free_unpacked(parts[i], NULL);
    free(parts);
free_status:
    google__rpc__status__free_unpacked(st, NULL);
    return rc;
}
