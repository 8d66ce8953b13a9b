/* fuzz_reflection: a grpc.reflection ServerReflectionRequest off the wire, answered by
 * reflection_handle over the descriptor set embedded in the binary (books_descriptor_set, as main.c
 * uses it), once through the v1 method table and once through the v1alpha one, each served as the
 * server (src/rpc/) serves one message of the bidi stream (decode with the server's limits, handle,
 * encode, release). The two protocols share messages and handler, so the two answers must be the
 * same bytes. The input is the request message. */
#include <string.h>

#include "books/health.h"
#include "books/reflection.h"
#include "books/service.h"
#include "fuzz_common.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

static const char *const hosted[] = {SVC_SERVICE_NAME, HEALTH_SERVICE_NAME,
                                     REFLECTION_V1_SERVICE_NAME, REFLECTION_V1ALPHA_SERVICE_NAME,
                                     NULL};
static struct reflection *refl;
static const struct rpc_method *v1, *v1alpha;

static void cleanup(void) { reflection_free(refl); }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct rpc_service d1, d2;
    char err[256];
    (void)argc;
    (void)argv;
    if (reflection_new(books_descriptor_set, books_descriptor_set_len, hosted, &refl, err,
                       sizeof err) != 0) {
        fprintf(stderr, "fuzz: reflection_new: %s\n", err);
        abort();
    }
    reflection_describe_v1(refl, &d1);
    reflection_describe_v1alpha(refl, &d2);
    v1 = fuzz_find_method(&d1, "/" REFLECTION_V1_SERVICE_NAME "/ServerReflectionInfo");
    v1alpha = fuzz_find_method(&d2, "/" REFLECTION_V1ALPHA_SERVICE_NAME "/ServerReflectionInfo");
    FUZZ_CHECK(v1->kind == RPC_BIDI_STREAM && v1alpha->kind == RPC_BIDI_STREAM);
    atexit(cleanup);
    return 0;
}

static void check(const ProtobufCMessage *request, const struct rpc_reply *reply, void *arg)
{
    const Grpc__Reflection__V1__ServerReflectionRequest *req =
        (const Grpc__Reflection__V1__ServerReflectionRequest *)request;
    const Grpc__Reflection__V1__ServerReflectionResponse *resp =
        (const Grpc__Reflection__V1__ServerReflectionResponse *)reply->response;
    uint8_t **packed = arg;
    size_t n;

    /* Reflection reports "not found" inside the stream; the call itself only fails on OOM. */
    FUZZ_CHECK(reply->error.code == 0);
    FUZZ_CHECK(resp->message_response_case !=
               GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET);
    FUZZ_CHECK(strcmp(resp->valid_host, req->host) == 0);
    if (resp->message_response_case ==
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE)
        FUZZ_CHECK(resp->file_descriptor_response->n_file_descriptor_proto >= 1);
    n = protobuf_c_message_get_packed_size(&resp->base);
    *packed = malloc(n + 8);
    if (!*packed)
        abort();
    memcpy(*packed, &n, sizeof n);
    FUZZ_CHECK(protobuf_c_message_pack(&resp->base, *packed + 8) == n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *a = NULL, *b = NULL;
    struct fuzz_serve_opts opts = {
        .max_message_bytes = FUZZ_SERVER_MAX_MESSAGE_BYTES,
        .response_limit = 0, /* grpcurl and buf accept any size; no client limit to apply */
        .check = check,
    };
    opts.check_arg = &a;
    struct fuzz_outcome o1 = fuzz_serve_unary(v1, refl, data, size, &opts);
    opts.check_arg = &b;
    struct fuzz_outcome o2 = fuzz_serve_unary(v1alpha, refl, data, size, &opts);
    FUZZ_CHECK(o1.decode_rc == o2.decode_rc && o1.error_code == o2.error_code);
    FUZZ_CHECK((a == NULL) == (b == NULL));
    if (a) {
        size_t na, nb;
        memcpy(&na, a, sizeof na);
        memcpy(&nb, b, sizeof nb);
        FUZZ_CHECK(na == nb && memcmp(a + 8, b + 8, na) == 0);
    }
    free(a);
    free(b);
    return 0;
}
