/* fuzz_compressed: a compressed CreateBookRequest as a client sends it with grpc-encoding gzip or
 * deflate, through codec_decode()'s bounded inflate (the server turns gRPC core's own
 * decompression off and inflates in the codec, never past max_message_bytes).
 *
 * Input: byte 0 picks the algorithm and the slicing; the rest is the compressed payload.
 *   bit 0       0: GRPC_COMPRESS_GZIP (RFC 1952), 1: GRPC_COMPRESS_DEFLATE (zlib, RFC 1950)
 *   bits 1-2    the payload is cut into 1 + this many slices of (nearly) equal length (never an
 *               empty one), as a message that arrived in several HTTP/2 frames
 * Limits: max_message_bytes 64 KiB (small, so the limit is reached often and quickly) and
 * CreateBook's rpc_field_limits from svc_describe().
 *
 * Oracle: the payload is also inflated here, independently (zlib, the same window bits, at most
 * 64 KiB + 1 bytes). When that gives a whole message within the limit, codec_decode() must give
 * what codec_decode_bytes() gives for those bytes; when the stream inflates past the limit it must
 * be RESOURCE_EXHAUSTED (BOOKS_E2BIG); a broken, cut or over-long stream BOOKS_EBADMSG. */
#include <string.h>
#include <zlib.h>

#include "books/service.h"
#include "books/v1/books.pb-c.h"
#include "fuzz_common.h"

#define MAX_BYTES (64u * 1024u)

static const struct rpc_method *method;
static struct svc *svc;

static void cleanup(void) { svc_free(svc); }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct rpc_service desc;
    (void)argc;
    (void)argv;
    /* Only the method table is needed; svc_describe() wants a svc, which wants a store pointer
     * it does not touch until a handler runs. */
    if (svc_new(NULL, &svc) != 0)
        abort();
    svc_describe(svc, &desc);
    method = fuzz_find_method(&desc, "/" SVC_SERVICE_NAME "/CreateBook");
    FUZZ_CHECK(method->n_limits >= 1);
    atexit(cleanup);
    return 0;
}

/* REF_EITHER: the stream is too big and malformed at once, so either answer is right: it ends
 * (or its trailer is found broken) right at 64 KiB + 1 bytes of output, with bytes after it or
 * with a bad checksum. */
enum ref { REF_OK, REF_TOO_BIG, REF_BROKEN, REF_EITHER };

/* The oracle's inflate: into out (MAX_BYTES + 1 bytes), the same stream rules as gRPC's. */
static enum ref reference_inflate(const uint8_t *in, size_t n, bool gzip, uint8_t *out,
                                  size_t *out_len)
{
    z_stream zs;
    int zr;
    enum ref r;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 15 + (gzip ? 16 : 0)) != Z_OK)
        abort();
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = MAX_BYTES + 1;
    zr = inflate(&zs, Z_FINISH);
    if (zr == Z_STREAM_END)
        r = zs.total_out > MAX_BYTES ? (zs.avail_in ? REF_EITHER : REF_TOO_BIG)
            : zs.avail_in            ? REF_BROKEN
                                     : REF_OK;
    else if (zs.avail_out == 0) /* more than the limit came out before the stream ended or broke */
        /* ... unless it broke in the same call, past the output (a bad gzip CRC or zlib Adler-32
         * after exactly 64 KiB + 1 bytes): too big and malformed at once. */
        r = zr == Z_OK || zr == Z_BUF_ERROR ? REF_TOO_BIG : REF_EITHER;
    else
        r = REF_BROKEN; /* Z_DATA_ERROR, Z_NEED_DICT, or Z_BUF_ERROR: the stream stops short */
    *out_len = zs.total_out;
    inflateEnd(&zs);
    return r;
}

static bool same_message(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t na = protobuf_c_message_get_packed_size(a), nb = protobuf_c_message_get_packed_size(b);
    uint8_t *pa, *pb;
    bool same;
    if (na != nb)
        return false;
    pa = malloc(na ? na : 1);
    pb = malloc(nb ? nb : 1);
    if (!pa || !pb)
        abort();
    protobuf_c_message_pack(a, pa);
    protobuf_c_message_pack(b, pb);
    same = memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct codec_limits limits = {
        .max_message_bytes = MAX_BYTES,
        .fields = method->limits,
        .n_fields = method->n_limits,
    };
    unsigned char *abuf1, *abuf2;
    uint8_t *inflated;
    struct arena a1, a2;
    struct books_error e1, e2;
    ProtobufCMessage *m1 = NULL, *m2 = NULL;
    grpc_slice slices[4];
    grpc_byte_buffer *bb;
    size_t n, parts, off = 0, inflated_len = 0;
    bool gzip;
    int rc1, rc2;
    enum ref ref;

    if (size < 1)
        return 0;
    gzip = (data[0] & 1) == 0;
    parts = 1 + ((data[0] >> 1) & 3);
    data++;
    n = size - 1;
    if (parts > n)
        parts = n ? n : 1;
    for (size_t i = 0; i < parts; i++) {
        size_t k = i + 1 == parts ? n - off : n / parts;
        slices[i] = grpc_slice_from_copied_buffer((const char *)data + off, k);
        off += k;
    }
    bb = grpc_raw_compressed_byte_buffer_create(slices, parts,
                                                gzip ? GRPC_COMPRESS_GZIP : GRPC_COMPRESS_DEFLATE);
    for (size_t i = 0; i < parts; i++)
        grpc_slice_unref(slices[i]);

    abuf1 = malloc(FUZZ_CALL_ARENA_BYTES);
    abuf2 = malloc(FUZZ_CALL_ARENA_BYTES);
    inflated = malloc(MAX_BYTES + 1);
    if (!abuf1 || !abuf2 || !inflated)
        abort();
    arena_init(&a1, abuf1, FUZZ_CALL_ARENA_BYTES);
    arena_init(&a2, abuf2, FUZZ_CALL_ARENA_BYTES);
    books_error_init(&e1, &a1);
    books_error_init(&e2, &a2);

    rc1 = codec_decode(bb, method->request, &limits, &a1, &m1, &e1);
    grpc_byte_buffer_destroy(bb);

    ref = reference_inflate(data, n, gzip, inflated, &inflated_len);
    if (fuzz_verbose())
        fprintf(stderr, "fuzz: %s, %zu slice(s): %s (%s); reference: %s, %zu bytes out\n",
                gzip ? "gzip" : "deflate", parts, rc1 ? books_err_name(rc1) : "OK",
                rc1 ? e1.reason : "", (const char *[]){"ok", "too big", "broken", "either"}[ref],
                inflated_len);
    switch (ref) {
    case REF_OK:
        rc2 = codec_decode_bytes(inflated, inflated_len, method->request, &limits, &a2, &m2, &e2);
        if (rc1 != rc2)
            fprintf(stderr, "fuzz: compressed %s, plain %s (%zu bytes inflated)\n",
                    books_err_name(rc1), books_err_name(rc2), inflated_len);
        FUZZ_CHECK(rc1 == rc2);
        if (rc1 == 0)
            FUZZ_CHECK(same_message(m1, m2));
        else
            FUZZ_CHECK(strcmp(e1.reason, e2.reason) == 0);
        break;
    case REF_TOO_BIG:
        if (rc1 != BOOKS_E2BIG)
            fprintf(stderr, "fuzz: inflates past %u bytes, but codec_decode says %s\n", MAX_BYTES,
                    books_err_name(rc1));
        FUZZ_CHECK(rc1 == BOOKS_E2BIG);
        break;
    case REF_EITHER:
        FUZZ_CHECK(rc1 == BOOKS_E2BIG || rc1 == BOOKS_EBADMSG);
        break;
    case REF_BROKEN:
        if (rc1 != BOOKS_EBADMSG)
            fprintf(stderr, "fuzz: a broken stream (%zu bytes out), but codec_decode says %s\n",
                    inflated_len, books_err_name(rc1));
        FUZZ_CHECK(rc1 == BOOKS_EBADMSG);
        break;
    }
    if (rc1 == 0) {
        FUZZ_CHECK(m1 != NULL);
        FUZZ_CHECK(protobuf_c_message_get_packed_size(m1) <= MAX_BYTES);
    } else {
        FUZZ_CHECK(e1.code == rc1 && e1.reason != NULL);
    }
    codec_free_request(m1, &a1);
    codec_free_request(m2, &a2);
    arena_cleanup(&a1);
    arena_cleanup(&a2);
    free(abuf1);
    free(abuf2);
    free(inflated);
    return 0;
}
