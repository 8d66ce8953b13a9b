/* codec.c: the one place where grpc_byte_buffer meets protobuf-c. Requests are unpacked straight
 * from the received slice when the message arrived in one piece (the common case), else from one
 * flattened copy; responses are packed once into a slice that the byte buffer then owns. The error
 * detail blob of AIP-193 (google.rpc.Status with ErrorInfo, BadRequest, ResourceInfo) is built here
 * and nowhere else.
 *
 * Before protobuf-c sees a request, its bytes are walked once, guided by the message descriptor
 * (scan_message): protobuf-c neither checks UTF-8 nor embedded NULs in string fields, nor bounds
 * what it allocates (scratch per field occurrence, every repeated entry, every unknown field), so
 * the walk checks the strings where their lengths are still known and refuses a request that
 * carries more fields, or more entries of a capped repeated field, than the API allows, before any
 * of it is decoded. Compressed requests are inflated here, never past the receive limit. */
#include "books/codec.h"
#include "books/status.h"

#include "books/utf8.h"
#include "books/varint.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/compression.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"

/* protobuf-c's allocator interface over a call's arena: unpacking allocates from the arena, and
 * freeing through it is a no-op (the arena frees everything on reset). */
static void *arena_pb_alloc(void *data, size_t size) { return arena_alloc(data, size); }

static void arena_pb_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr;
}

static ProtobufCAllocator arena_allocator(struct arena *a)
{
    ProtobufCAllocator pb = {.alloc = arena_pb_alloc, .free = arena_pb_free, .allocator_data = a};
    return pb;
}

static int too_big(const struct codec_limits *limits, struct books_error *err)
{
    books_error_set(err, BOOKS_E2BIG, "MESSAGE_TOO_LARGE",
                    "the request message is larger than %zu bytes once decompressed, this "
                    "server's limit (BOOKS_MAX_RECV_BYTES); send a smaller request",
                    limits ? limits->max_message_bytes : (size_t)0);
    return BOOKS_E2BIG;
}

/* Counted fields per message: each field's index in its descriptor, for repeated-field limits and
 * for the "[i]" of violation paths. Descriptors of the requests this server reads have fewer. */
#define MAX_COUNTED_FIELDS 32

struct scan {
    const struct codec_limits *limits;
    struct books_error *err;
    char path[BOOKS_ERROR_FIELD_BYTES];
    bool malformed; /* the bytes are not a protobuf message: MALFORMED_REQUEST */
    bool over;      /* a limit was exceeded: stop walking */
    bool unknown;   /* a field this server's descriptors do not know, at any depth */
};

/* The API's cap on how often field `f` of `desc` may occur, or 0 for none. */
static size_t field_cap(const struct codec_limits *limits, const ProtobufCMessageDescriptor *desc,
                        const ProtobufCFieldDescriptor *f)
{
    for (size_t i = 0; limits && i < limits->n_fields; i++)
        if (limits->fields[i].message == desc && strcmp(limits->fields[i].field, f->name) == 0)
            return limits->fields[i].max_count;
    return 0;
}

/* Appends ".name" (just "name" at the start) and, for a repeated field, "[index]" to the path
 * whose first `at` bytes are used; keeps it NUL-terminated within BOOKS_ERROR_FIELD_BYTES,
 * truncating. Returns the new length. Runs for every string and message field of every request,
 * so it copies instead of calling snprintf (measurably cheaper: docs/performance.md). */
static size_t path_append(char path[BOOKS_ERROR_FIELD_BYTES], size_t at, const char *name,
                          bool repeated, unsigned index)
{
    const size_t last = BOOKS_ERROR_FIELD_BYTES - 1; /* room for the NUL */
    char digits[16];
    size_t nd = 0, n = strlen(name);

    if (at > 0 && at < last)
        path[at++] = '.';
    if (n > last - at)
        n = last - at;
    memcpy(path + at, name, n);
    at += n;
    if (repeated) {
        do
            digits[sizeof digits - ++nd] = (char)('0' + index % 10);
        while ((index /= 10) != 0);
        if (at < last)
            path[at++] = '[';
        n = nd < last - at ? nd : last - at;
        memcpy(path + at, digits + sizeof digits - nd, n);
        at += n;
        if (at < last)
            path[at++] = ']';
    }
    path[at] = '\0';
    return at;
}

/* Walks one message's wire bytes before protobuf-c sees them (protobuf_c_message_unpack costs
 * about 32 bytes of scratch per field occurrence and keeps every unknown field, so what it is fed
 * must be bounded first). Checks, in one pass and without allocating:
 *   - the framing: every key, varint and length inside the bytes (else s->malformed);
 *   - at most CODEC_MAX_FIELDS_PER_MESSAGE field occurrences in this message (else s->malformed,
 *     s->over), and for repeated fields the API's cap from s->limits (else one violation, s->over);
 *   - every string field: no NUL, valid UTF-8 (RFC 3629): one violation per bad field.
 * Recurses into known message fields, at most CODEC_MAX_DEPTH deep. `len` is the length of
 * s->path used by this message's own path. */
static void scan_message(struct scan *s, const uint8_t *p, size_t n,
                         const ProtobufCMessageDescriptor *desc, size_t len, int depth)
{
    const uint8_t *end = p + n;
    unsigned seen[MAX_COUNTED_FIELDS] = {0};
    size_t fields = 0;

    while (p < end && !s->over) {
        uint64_t key, size = 0;
        size_t k = varint_read(p, end, &key);
        if (!k || (key >> 3) == 0 || (key >> 3) > 0x1fffffff) {
            s->malformed = true;
            return;
        }
        p += k;
        if (++fields > CODEC_MAX_FIELDS_PER_MESSAGE) {
            books_error_set(s->err, BOOKS_EINVAL, "MALFORMED_REQUEST",
                            "%s%s holds more than %d fields; no message of this API needs that "
                            "many",
                            len ? "field " : "the request", len ? s->path : "",
                            CODEC_MAX_FIELDS_PER_MESSAGE);
            s->over = true;
            return;
        }
        if ((key & 7) != 2 && !protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3)))
            s->unknown = true;
        switch (key & 7) {
        case 0:
            k = varint_read(p, end, &size);
            if (!k) {
                s->malformed = true;
                return;
            }
            p += k;
            continue;
        case 1:
        case 5: {
            size_t w = (key & 7) == 1 ? 8 : 4;
            if ((size_t)(end - p) < w) {
                s->malformed = true;
                return;
            }
            p += w;
            continue;
        }
        case 2:
            break;
        default: /* groups (3, 4) are not proto3; 6 and 7 do not exist */
            s->malformed = true;
            return;
        }
        k = varint_read(p, end, &size);
        if (!k || size > (uint64_t)(end - p - k)) {
            s->malformed = true;
            return;
        }
        p += k;
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3));
        if (!f)
            s->unknown = true;
        if (f && (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)) {
            size_t idx = (size_t)(f - desc->fields), at = len;
            unsigned count = idx < MAX_COUNTED_FIELDS ? seen[idx] : 0u;
            if (idx < MAX_COUNTED_FIELDS)
                seen[idx]++;
            at = path_append(s->path, at, f->name, f->label == PROTOBUF_C_LABEL_REPEATED, count);
            size_t max = f->label == PROTOBUF_C_LABEL_REPEATED ? field_cap(s->limits, desc, f) : 0;
            if (max && count >= max) {
                /* Name the field, not the entry: "book.authors". */
                path_append(s->path, len, f->name, false, 0);
                books_error_add_violation(s->err, s->path,
                                          "has more than %zu entries; at most %zu are allowed",
                                          max, max);
                s->path[len] = '\0';
                s->over = true;
                return;
            }
            if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                if (depth >= CODEC_MAX_DEPTH) {
                    s->malformed = true;
                    return;
                }
                scan_message(s, p, (size_t)size, f->descriptor, at, depth + 1);
                if (s->malformed || s->over)
                    return;
            } else if (memchr(p, '\0', (size_t)size)) {
                books_error_add_violation(s->err, s->path,
                                          "contains a NUL character (U+0000), which this API does "
                                          "not accept in text; remove it");
            } else if (!utf8_valid((const char *)p, (size_t)size)) {
                books_error_add_violation(s->err, s->path,
                                          "is not valid UTF-8; proto3 string fields must hold "
                                          "UTF-8 text");
            }
            s->path[len] = '\0';
        }
        p += size;
    }
}

/* ---- unknown fields ----------------------------------------------------------------------------
 * protobuf-c keeps every unknown field it meets, copied into the message (here: the call's arena)
 * until the call ends. A request padded with megabytes of fields this API does not have would hold
 * them for as long as its call waits (a create queued behind a slow database). The server has no
 * use for them, so a request that has any is rewritten without them before it is unpacked: known
 * fields keep their bytes, nested messages their known fields, with their lengths recomputed. The
 * bytes were walked by scan_message already: framing is known to be sound here. */

/* One field of well-formed bytes at p: its key, where its payload starts and how long it is (for
 * a varint or a fixed-width value, the value's bytes), and where the field ends. */
static const uint8_t *next_field(const uint8_t *p, const uint8_t *end, uint64_t *key,
                                 const uint8_t **payload, uint64_t *len)
{
    uint64_t v = 0;
    p += varint_read(p, end, key);
    switch (*key & 7) {
    case 0:
        *payload = p;
        *len = varint_read(p, end, &v);
        break;
    case 1:
        *payload = p;
        *len = 8;
        break;
    case 5:
        *payload = p;
        *len = 4;
        break;
    default: /* 2: scan_message refused every other wire type */
        p += varint_read(p, end, len);
        *payload = p;
        break;
    }
    return *payload + *len;
}

/* Writes p[0..n) (a message of type desc) without its unknown fields, at any depth, to out, and
 * returns how many bytes that is; with out NULL only returns the size. */
static size_t copy_known(const uint8_t *p, size_t n, const ProtobufCMessageDescriptor *desc,
                         uint8_t *out)
{
    const uint8_t *end = p + n, *payload = NULL;
    size_t total = 0;
    uint64_t key = 0, len = 0;
    while (p < end) {
        const uint8_t *field = p;
        p = next_field(p, end, &key, &payload, &len);
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3));
        if (!f)
            continue;
        if ((key & 7) == 2 && f->type == PROTOBUF_C_TYPE_MESSAGE) {
            size_t inner = copy_known(payload, (size_t)len, f->descriptor, NULL);
            size_t head = varint_size(key) + varint_size(inner);
            if (out) {
                varint_write(varint_write(out + total, key), inner);
                copy_known(payload, (size_t)len, f->descriptor, out + total + head);
            }
            total += head + inner;
        } else {
            if (out)
                memcpy(out + total, field, (size_t)(p - field));
            total += (size_t)(p - field);
        }
    }
    return total;
}

static int malformed(const ProtobufCMessageDescriptor *desc, struct books_error *err)
{
    books_error_set(err, BOOKS_EBADMSG, "MALFORMED_REQUEST",
                    "the request is not a valid %s message; encode it with the service's .proto",
                    desc->name);
    return BOOKS_EBADMSG;
}

int codec_decode_bytes(const uint8_t *data, size_t len, const ProtobufCMessageDescriptor *desc,
                       const struct codec_limits *limits, struct arena *arena,
                       ProtobufCMessage **out, struct books_error *err)
{
    struct scan s = {.limits = limits, .err = err};
    ProtobufCMessage *msg;

    if (limits && len > limits->max_message_bytes)
        return too_big(limits, err);
    scan_message(&s, data ? data : (const uint8_t *)"", data ? len : 0, desc, 0, 0);
    if (s.malformed)
        return malformed(desc, err);
    if (err->code) /* a message-level limit (books_error_set above) */
        return err->code;
    if (err->n_violations || err->n_dropped) {
        books_error_finish_fields(err, desc->name);
        return BOOKS_EINVAL;
    }
    /* Zero bytes are a valid message with every field at its default. protobuf-c returns NULL for
     * malformed bytes and for allocation failure alike; the arena fails only when malloc does. */
    ProtobufCAllocator pb = arena_allocator(arena);
    if (s.unknown) {
        size_t known = copy_known(data, len, desc, NULL);
        uint8_t *copy = malloc(known ? known : 1);
        if (!copy) {
            books_error_set(err, BOOKS_ENOMEM, "OUT_OF_MEMORY",
                            "the server is out of memory; retry later");
            return BOOKS_ENOMEM;
        }
        copy_known(data, len, desc, copy);
        msg = protobuf_c_message_unpack(desc, &pb, known, copy);
        free(copy);
    } else {
        msg = protobuf_c_message_unpack(desc, &pb, len, data ? data : (const uint8_t *)"");
    }
    if (!msg)
        return malformed(desc, err);
    *out = msg;
    return 0;
}

/* Inflates a gzip (RFC 1952) or zlib/deflate (RFC 1950) request into a buffer of its own, never
 * past limits->max_message_bytes: a small compressed message that would inflate to gigabytes costs
 * at most the limit plus zlib's fixed state (about 40 KiB). gRPC's "deflate" is the zlib format,
 * its "gzip" the gzip format (grpc doc/compression.md). *out is malloc'ed; the caller frees it. */
static int inflate_bounded(grpc_byte_buffer *bb, const struct codec_limits *limits,
                           uint8_t **out, size_t *out_len, const ProtobufCMessageDescriptor *desc,
                           struct books_error *err)
{
    const grpc_slice_buffer *in = &bb->data.raw.slice_buffer;
    const size_t max = limits ? limits->max_message_bytes : (size_t)1 << 30;
    size_t cap, next = 0;
    uint8_t *buf = NULL;
    z_stream zs;
    int zr = Z_OK, rc;

    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + (bb->data.raw.compression == GRPC_COMPRESS_GZIP ? 16 : 0)) != Z_OK)
        return BOOKS_ENOMEM;
    /* A first guess at the size, then doubling, never past max + 1 bytes: one byte more than the
     * limit is how "larger than the limit" shows. */
    cap = in->length < max / 4 ? in->length * 4 + 64 : max + 1;
    if (cap > max + 1)
        cap = max + 1;
    buf = malloc(cap);
    if (!buf) {
        rc = BOOKS_ENOMEM;
        goto out;
    }
    zs.next_out = buf;
    zs.avail_out = (uInt)cap;
    while (zr != Z_STREAM_END) {
        if (zs.avail_in == 0 && next < in->count) {
            zs.next_in = (Bytef *)GRPC_SLICE_START_PTR(in->slices[next]);
            zs.avail_in = (uInt)GRPC_SLICE_LENGTH(in->slices[next]);
            next++;
            continue;
        }
        if (zs.avail_out == 0) {
            size_t used = cap;
            if (cap > max) {
                rc = too_big(limits, err);
                goto out;
            }
            cap = cap > max / 2 ? max + 1 : cap * 2;
            uint8_t *grown = realloc(buf, cap);
            if (!grown) {
                rc = BOOKS_ENOMEM;
                goto out;
            }
            buf = grown;
            zs.next_out = buf + used;
            zs.avail_out = (uInt)(cap - used);
        }
        zr = inflate(&zs, Z_NO_FLUSH);
        if (zr == Z_BUF_ERROR && zs.avail_in == 0 && next == in->count && zs.avail_out > 0) {
            rc = malformed(desc, err); /* the compressed stream stops before its end */
            goto out;
        }
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
            rc = zr == Z_MEM_ERROR ? BOOKS_ENOMEM : malformed(desc, err);
            goto out;
        }
    }
    /* Bytes after the end of the compressed stream belong to no message. */
    if (zs.avail_in > 0 || next < in->count) {
        rc = malformed(desc, err);
        goto out;
    }
    if (zs.total_out > max) {
        rc = too_big(limits, err);
        goto out;
    }
    *out = buf;
    *out_len = zs.total_out;
    buf = NULL;
    rc = 0;
out:
    inflateEnd(&zs);
    free(buf);
    return rc;
}

int codec_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
                 const struct codec_limits *limits, struct arena *arena, ProtobufCMessage **out,
                 struct books_error *err)
{
    grpc_byte_buffer_reader reader;
    grpc_slice *first = NULL, *second = NULL, flat = grpc_empty_slice();
    const uint8_t *data = NULL;
    size_t len = 0;
    int rc;

    if (!bb) {
        books_error_set(err, BOOKS_EBADMSG, "MALFORMED_REQUEST",
                        "the call carried no %s message; a unary call needs exactly one",
                        desc->name);
        return BOOKS_EBADMSG;
    }
    if (bb->type != GRPC_BB_RAW)
        return malformed(desc, err);
    if (bb->data.raw.compression != GRPC_COMPRESS_NONE) {
        /* The server turns gRPC core's own decompression off (it inflates a message whole before
         * checking its size), so compressed requests arrive here as they were sent. */
        uint8_t *inflated = NULL;
        if (bb->data.raw.compression != GRPC_COMPRESS_GZIP &&
            bb->data.raw.compression != GRPC_COMPRESS_DEFLATE) {
            books_error_set(err, BOOKS_EUNIMPL, "UNSUPPORTED_COMPRESSION",
                            "the request is compressed with an algorithm this server does not "
                            "support; use gzip, deflate or none");
            return BOOKS_EUNIMPL;
        }
        rc = inflate_bounded(bb, limits, &inflated, &len, desc, err);
        if (rc == BOOKS_ENOMEM)
            books_error_set(err, BOOKS_ENOMEM, "OUT_OF_MEMORY",
                            "the server is out of memory; retry later");
        if (rc)
            return rc;
        rc = codec_decode_bytes(inflated, len, desc, limits, arena, out, err);
        free(inflated);
        return rc;
    }
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return malformed(desc, err);
    if (grpc_byte_buffer_reader_peek(&reader, &first)) {
        if (!grpc_byte_buffer_reader_peek(&reader, &second)) {
            data = GRPC_SLICE_START_PTR(*first);
            len = GRPC_SLICE_LENGTH(*first);
        } else {
            /* Split across slices: flatten once. readall starts from the beginning. */
            grpc_byte_buffer_reader_destroy(&reader);
            if (!grpc_byte_buffer_reader_init(&reader, bb))
                return malformed(desc, err);
            flat = grpc_byte_buffer_reader_readall(&reader);
            data = GRPC_SLICE_START_PTR(flat);
            len = GRPC_SLICE_LENGTH(flat);
        }
    }
    rc = codec_decode_bytes(data, len, desc, limits, arena, out, err);
    grpc_slice_unref(flat);
    grpc_byte_buffer_reader_destroy(&reader);
    return rc;
}

void codec_free_request(ProtobufCMessage *msg, struct arena *arena)
{
    if (msg) {
        ProtobufCAllocator pb = arena_allocator(arena);
        protobuf_c_message_free_unpacked(msg, &pb);
    }
}

void codec_encode(const ProtobufCMessage *msg, grpc_byte_buffer **out)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    /* grpc_slice_malloc aborts the process when malloc fails, as all of gRPC core does. */
    grpc_slice slice = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
    *out = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
}

size_t codec_pack(const ProtobufCMessage *msg, uint8_t *out)
{
    return out ? protobuf_c_message_pack(msg, out) : protobuf_c_message_get_packed_size(msg);
}

/* Largest message struct codec_embedded_write copies to skip a field (ListBooksResponse: 48). */
#define EMBED_COPY_BYTES 256


size_t codec_embedded_write(const ProtobufCMessage *msg, unsigned field,
                            const struct codec_bytes *parts, size_t n, uint8_t *out)
{
    union {
        max_align_t align;
        unsigned char bytes[EMBED_COPY_BYTES];
    } copy;
    const ProtobufCMessage *rest = NULL;
    size_t total = 0;

    if (field != 0) {
        const ProtobufCFieldDescriptor *f =
            msg ? protobuf_c_message_descriptor_get_field(msg->descriptor, field) : NULL;
        if (!f || f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE ||
            msg->descriptor->sizeof_message > sizeof copy.bytes)
            return msg ? codec_pack(msg, out) : 0;
        /* A shallow copy of msg with no entries of `field`: protobuf-c packs the rest. */
        memcpy(copy.bytes, msg, msg->descriptor->sizeof_message);
        memset(copy.bytes + f->quantifier_offset, 0, sizeof(size_t));
        rest = (const ProtobufCMessage *)(const void *)copy.bytes;
    }
    const uint64_t key = (uint64_t)field << 3 | 2; /* wire type 2: length-delimited */
    for (size_t i = 0; i < n; i++) {
        if (field != 0) {
            if (out)
                out = varint_write(varint_write(out, key), parts[i].len);
            total += varint_size(key) + varint_size(parts[i].len);
        }
        if (out && parts[i].len) {
            memcpy(out, parts[i].data, parts[i].len);
            out += parts[i].len;
        }
        total += parts[i].len;
    }
    if (rest)
        total += codec_pack(rest, out);
    return total;
}

void codec_encode_embedded(const ProtobufCMessage *msg, unsigned field,
                           const struct codec_bytes *parts, size_t n, grpc_byte_buffer **out)
{
    size_t len = codec_embedded_write(msg, field, parts, n, NULL);
    grpc_slice slice = grpc_slice_malloc(len);
    size_t wrote = codec_embedded_write(msg, field, parts, n, GRPC_SLICE_START_PTR(slice));
    if (wrote != len) /* cannot happen: the same inputs give the same size */
        abort();
    *out = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
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
    Google__Rpc__RetryInfo retry = GOOGLE__RPC__RETRY_INFO__INIT;
    Google__Protobuf__Duration delay = GOOGLE__PROTOBUF__DURATION__INIT;
    Google__Protobuf__Any any[4];
    Google__Protobuf__Any *any_list[4];
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

    if (e->retry_delay_ms) {
        delay.seconds = e->retry_delay_ms / 1000;
        delay.nanos = (int32_t)(e->retry_delay_ms % 1000) * 1000000;
        retry.retry_delay = &delay;
        google__protobuf__any__init(&any[n_any]);
        rc = pack_any(&retry.base, &any[n_any], "type.googleapis.com/google.rpc.RetryInfo");
        if (rc)
            goto out;
        n_any++;
    }

    for (i = 0; i < n_any; i++)
        any_list[i] = &any[i];
    status.code = (int32_t)rpc_status_of(e->code);
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

/* ---- walking a message by its descriptor ------------------------------------------------------- */

size_t codec_field_value_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default: /* the 32-bit integers and enums */
        return 4;
    }
}

bool codec_field_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    const char *m = (const char *)msg;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return true;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(m + f->quantifier_offset) == f->id;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return *(void *const *)(m + f->offset) != NULL;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type == PROTOBUF_C_TYPE_STRING)
        return *(char *const *)(m + f->offset) != f->default_value;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL)
        return *(const protobuf_c_boolean *)(m + f->quantifier_offset);
    return true;
}

/* ---- field behaviors, from the embedded descriptor set ------------------------------------------ */

/* google.api.field_behavior (google/api/field_behavior.proto): FieldOptions extension 1052, a
 * repeated enum in which REQUIRED is 2. protobuf-c keeps extensions as unknown fields. */
#define FIELD_BEHAVIOR_EXTENSION 1052
#define FIELD_BEHAVIOR_REQUIRED 2

/* "package.Message.field" of every REQUIRED field of the set, sorted for bsearch. */
static struct {
    char **names;
    size_t n;
} required_fields;
static pthread_once_t required_once = PTHREAD_ONCE_INIT;

static bool options_say_required(const Google__Protobuf__FieldOptions *o)
{
    for (unsigned i = 0; o && i < o->base.n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *u = &o->base.unknown_fields[i];
        if (u->tag != FIELD_BEHAVIOR_EXTENSION)
            continue;
        const uint8_t *p = u->data, *end = u->data + u->len;
        if (u->wire_type == PROTOBUF_C_WIRE_TYPE_VARINT) {
            uint64_t v = 0;
            if (varint_read(p, end, &v) && v == FIELD_BEHAVIOR_REQUIRED)
                return true;
        } else if (u->wire_type == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) {
            while (p < end) { /* packed: the varints one after another */
                uint64_t v = 0;
                size_t k = varint_read(p, end, &v);
                if (!k)
                    break;
                if (v == FIELD_BEHAVIOR_REQUIRED)
                    return true;
                p += k;
            }
        }
    }
    return false;
}

/* Collects the REQUIRED fields of message `m` (full name prefix.m.name) and its nested ones. */
static void collect_required(const Google__Protobuf__DescriptorProto *m, const char *prefix,
                             char ***names, size_t *n, size_t *cap)
{
    char full[512];
    snprintf(full, sizeof full, "%s%s%s", prefix, *prefix ? "." : "", m->name);
    for (size_t i = 0; i < m->n_field; i++) {
        if (!options_say_required(m->field[i]->options))
            continue;
        if (*n == *cap) {
            size_t c = *cap ? *cap * 2 : 16;
            char **more = realloc(*names, c * sizeof *more);
            if (!more)
                return;
            *names = more;
            *cap = c;
        }
        if (asprintf(&(*names)[*n], "%s.%s", full, m->field[i]->name) >= 0)
            (*n)++;
    }
    for (size_t i = 0; i < m->n_nested_type; i++)
        collect_required(m->nested_type[i], full, names, n, cap);
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_required(void)
{
    Google__Protobuf__FileDescriptorSet *set =
        google__protobuf__file_descriptor_set__unpack(NULL, books_descriptor_set_len,
                                                      books_descriptor_set);
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (size_t f = 0; set && f < set->n_file; f++) {
        const Google__Protobuf__FileDescriptorProto *file = set->file[f];
        for (size_t i = 0; i < file->n_message_type; i++)
            collect_required(file->message_type[i], file->package ? file->package : "", &names,
                             &n, &cap);
    }
    if (set)
        google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
    if (n)
        qsort(names, n, sizeof *names, cmp_cstr);
    required_fields.names = names;
    required_fields.n = n;
}

bool codec_field_required(const ProtobufCMessageDescriptor *desc,
                          const ProtobufCFieldDescriptor *f)
{
    char full[512];
    const char *key = full;
    pthread_once(&required_once, load_required);
    snprintf(full, sizeof full, "%s.%s", desc->name, f->name);
    return required_fields.n &&
           bsearch(&key, required_fields.names, required_fields.n, sizeof *required_fields.names,
                   cmp_cstr) != NULL;
}
