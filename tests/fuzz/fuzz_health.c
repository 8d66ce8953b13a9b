/* fuzz_health: a grpc.health.v1 HealthCheckRequest off the wire, served as the server (src/rpc/)
 * serves a unary call (decode with the server's limits, health_check, encode, release), against the
 * services main.c hosts. The input is the request message. Watch is not driven: its handler needs a
 * struct rpc_stream, which only the server can make (rpc.h keeps it opaque). */
#include <string.h>

#include "books/health.h"
#include "books/reflection.h"
#include "books/service.h"
#include "fuzz_common.h"
#include "grpc/health/v1/health.pb-c.h"

static const char *const hosted[] = {SVC_SERVICE_NAME, HEALTH_SERVICE_NAME,
                                     REFLECTION_V1_SERVICE_NAME, REFLECTION_V1ALPHA_SERVICE_NAME,
                                     NULL};
static struct health *health;
static const struct rpc_method *method;

static void cleanup(void) { health_free(health); }

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct rpc_service desc;
    (void)argc;
    (void)argv;
    if (health_new(hosted, &health) != 0)
        abort();
    health_set_serving(health, true);
    health_describe(health, &desc);
    method = fuzz_find_method(&desc, "/" HEALTH_SERVICE_NAME "/Check");
    FUZZ_CHECK(method->handle == health_check);
    FUZZ_CHECK(method->request == &grpc__health__v1__health_check_request__descriptor);
    atexit(cleanup);
    return 0;
}

static void check(const ProtobufCMessage *request, const struct rpc_reply *reply, void *arg)
{
    const Grpc__Health__V1__HealthCheckRequest *req =
        (const Grpc__Health__V1__HealthCheckRequest *)request;
    bool known = req->service[0] == '\0';
    (void)arg;
    for (size_t i = 0; hosted[i]; i++)
        known |= strcmp(hosted[i], req->service) == 0;
    if (known) {
        FUZZ_CHECK(reply->error.code == 0);
        FUZZ_CHECK(((const Grpc__Health__V1__HealthCheckResponse *)reply->response)->status ==
                   GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    } else {
        FUZZ_CHECK(reply->error.code == BOOKS_ENOTFOUND);
        FUZZ_CHECK(reply->error.meta_key != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_serve_opts opts = {
        .max_message_bytes = FUZZ_SERVER_MAX_MESSAGE_BYTES,
        .response_limit = FUZZ_SERVER_MAX_MESSAGE_BYTES,
        .check = check,
    };
    fuzz_serve_unary(method, health, data, size, &opts);
    return 0;
}
