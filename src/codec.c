/* codec.c: the one place where grpc_byte_buffer meets protobuf-c. Requests are unpacked straight
 * from the received slice when the message arrived in one piece (the common case), else from one
 * flattened copy; responses are packed once into a slice that the byte buffer then owns. The error
 * detail blob of AIP-193 (google.rpc.Status with ErrorInfo, BadRequest, ResourceInfo) is built here
 * and nowhere else. */
#include "books/codec.h"

#include <grpc/byte_buffer_reader.h>
#include <stdlib.h>
#include <string.h>

#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

int codec_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc, struct arena *arena,
                 ProtobufCMessage **out)
{
    grpc_byte_buffer_reader reader;
    grpc_slice *first = NULL, *second = NULL, flat;
    ProtobufCMessage *msg;

    if (!bb)
        return BOOKS_EBADMSG;
    /* Fails only when the payload is compressed with an algorithm core cannot undo. */
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return BOOKS_EBADMSG;
    if (!grpc_byte_buffer_reader_peek(&reader, &first)) {
        /* Zero-length message: a valid encoding of a message with every field at its default. */
        msg = protobuf_c_message_unpack(desc, arena_pb_allocator(arena), 0, (const uint8_t *)"");
    } else if (!grpc_byte_buffer_reader_peek(&reader, &second)) {
        msg = protobuf_c_message_unpack(desc, arena_pb_allocator(arena), GRPC_SLICE_LENGTH(*first),
                                        GRPC_SLICE_START_PTR(*first));
    } else {
        /* Split across slices: flatten once. readall starts from the beginning of the buffer. */
        grpc_byte_buffer_reader_destroy(&reader);
        if (!grpc_byte_buffer_reader_init(&reader, bb))
            return BOOKS_EBADMSG;
        flat = grpc_byte_buffer_reader_readall(&reader);
        msg = protobuf_c_message_unpack(desc, arena_pb_allocator(arena), GRPC_SLICE_LENGTH(flat),
                                        GRPC_SLICE_START_PTR(flat));
        grpc_slice_unref(flat);
    }
    grpc_byte_buffer_reader_destroy(&reader);
    /* protobuf-c returns NULL both for malformed bytes and for allocation failure; the arena only
     * fails when malloc does, which the server reports the same way (the request is dropped). */
    if (!msg)
        return BOOKS_EBADMSG;
    *out = msg;
    return 0;
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
    Google__Rpc__BadRequest__FieldViolation fv[BOOKS_ERROR_MAX_VIOLATIONS];
    Google__Rpc__BadRequest__FieldViolation *fv_list[BOOKS_ERROR_MAX_VIOLATIONS];
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
    return rc;
}
