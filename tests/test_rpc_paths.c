/* test_rpc_paths.c: the method paths of rpc_paths.h are what the protos say. Each constant must be
 * "/" + the service's full name + "/" + the method's name, as protoc-c's service descriptors give
 * them and as the descriptor set that reflection serves declares them (the only place that has
 * grpc.reflection.v1alpha); every method the hosted protos declare must have a constant; and the
 * method tables the api layer serves must use exactly those paths, with the request type the proto
 * names. A renamed method, a new one without a constant, or a typo fails here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "books/health.h"
#include "books/reflection.h"
#include "books/rpc.h"
#include "books/rpc_paths.h"
#include "books/service.h"
#include "books/v1/books.pb-c.h"
#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

/* Every constant of rpc_paths.h, with its service and the protoc-c descriptor of that service
 * (NULL for v1alpha, which this build generates no C for). */
static const struct expected {
    const char *path;
    const char *service;
    const ProtobufCServiceDescriptor *desc;
} EXPECTED[] = {
    {RPC_PATH_GET_BOOK, RPC_BOOKS_SERVICE, &books__v1__books_service__descriptor},
    {RPC_PATH_LIST_BOOKS, RPC_BOOKS_SERVICE, &books__v1__books_service__descriptor},
    {RPC_PATH_CREATE_BOOK, RPC_BOOKS_SERVICE, &books__v1__books_service__descriptor},
    {RPC_PATH_HEALTH_CHECK, RPC_HEALTH_SERVICE, &grpc__health__v1__health__descriptor},
    {RPC_PATH_HEALTH_WATCH, RPC_HEALTH_SERVICE, &grpc__health__v1__health__descriptor},
    {RPC_PATH_REFLECTION_V1_INFO, RPC_REFLECTION_V1_SERVICE,
     &grpc__reflection__v1__server_reflection__descriptor},
    {RPC_PATH_REFLECTION_V1ALPHA_INFO, RPC_REFLECTION_V1ALPHA_SERVICE, NULL},
};
#define N_EXPECTED (sizeof EXPECTED / sizeof EXPECTED[0])

static const ProtobufCServiceDescriptor *const GENERATED[] = {
    &books__v1__books_service__descriptor,
    &grpc__health__v1__health__descriptor,
    &grpc__reflection__v1__server_reflection__descriptor,
};

static void build_path(char *out, size_t len, const char *service, const char *method)
{
    int n = snprintf(out, len, "/%s/%s", service, method);
    assert_true(n > 0 && (size_t)n < len);
}

static const struct expected *find_expected(const char *path)
{
    for (size_t i = 0; i < N_EXPECTED; i++)
        if (strcmp(EXPECTED[i].path, path) == 0)
            return &EXPECTED[i];
    return NULL;
}

/* Each path is "/" service "/" method, with the service constant as its prefix. */
static void test_paths_are_service_slash_method(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_EXPECTED; i++) {
        size_t n = strlen(EXPECTED[i].service);
        const char *p = EXPECTED[i].path;
        assert_int_equal(p[0], '/');
        assert_memory_equal(p + 1, EXPECTED[i].service, n);
        assert_int_equal(p[1 + n], '/');
        assert_true(p[2 + n] != '\0');
        assert_null(strchr(p + 2 + n, '/'));
    }
}

/* Against protoc-c's service descriptors: same service names, a constant per method, both ways. */
static void test_paths_match_generated_descriptors(void **state)
{
    (void)state;
    char path[256];
    for (size_t d = 0; d < sizeof GENERATED / sizeof GENERATED[0]; d++) {
        const ProtobufCServiceDescriptor *desc = GENERATED[d];
        size_t constants = 0;
        for (size_t i = 0; i < N_EXPECTED; i++)
            if (EXPECTED[i].desc == desc) {
                assert_string_equal(EXPECTED[i].service, desc->name);
                constants++;
            }
        assert_int_equal(constants, desc->n_methods);
        for (unsigned m = 0; m < desc->n_methods; m++) {
            build_path(path, sizeof path, desc->name, desc->methods[m].name);
            const struct expected *e = find_expected(path);
            if (!e || e->desc != desc)
                fail_msg("%s (from %s) has no constant in rpc_paths.h", path, desc->c_name);
        }
    }
}

/* Against the FileDescriptorSet reflection serves (every hosted proto, v1alpha included): the
 * methods it declares are exactly the constants. */
static void test_paths_match_descriptor_set(void **state)
{
    (void)state;
    char path[256], service[200];
    bool seen[N_EXPECTED] = {false};
    size_t declared = 0;
    Google__Protobuf__FileDescriptorSet *set = google__protobuf__file_descriptor_set__unpack(
        NULL, books_descriptor_set_len, books_descriptor_set);
    assert_non_null(set);
    for (size_t f = 0; f < set->n_file; f++) {
        const Google__Protobuf__FileDescriptorProto *file = set->file[f];
        for (size_t s = 0; s < file->n_service; s++) {
            const Google__Protobuf__ServiceDescriptorProto *svc = file->service[s];
            int n = snprintf(service, sizeof service, "%s%s%s", file->package ? file->package : "",
                             file->package ? "." : "", svc->name);
            assert_true(n > 0 && (size_t)n < sizeof service);
            for (size_t m = 0; m < svc->n_method; m++) {
                build_path(path, sizeof path, service, svc->method[m]->name);
                const struct expected *e = find_expected(path);
                if (!e)
                    fail_msg("%s (declared in %s) has no constant in rpc_paths.h", path,
                             file->name);
                assert_string_equal(e->service, service);
                seen[e - EXPECTED] = true;
                declared++;
            }
        }
    }
    assert_int_equal(declared, N_EXPECTED);
    for (size_t i = 0; i < N_EXPECTED; i++)
        if (!seen[i])
            fail_msg("%s is in rpc_paths.h but no hosted proto declares it", EXPECTED[i].path);
    google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
}

/* The method in `desc` whose path is `path`, or NULL. */
static const ProtobufCMethodDescriptor *generated_method(const ProtobufCServiceDescriptor *desc,
                                                         const char *path)
{
    char p[256];
    for (unsigned m = 0; m < desc->n_methods; m++) {
        build_path(p, sizeof p, desc->name, desc->methods[m].name);
        if (strcmp(p, path) == 0)
            return &desc->methods[m];
    }
    return NULL;
}

/* One api-layer table: its name is the service constant, it has a method for every constant of
 * that service, each path is one of those constants, and each request type is the proto's (for
 * v1alpha: v1's, whose messages are the same, as reflection.c says). */
static void check_table(const struct rpc_service *svc, const char *service,
                        const ProtobufCServiceDescriptor *desc)
{
    size_t constants = 0;
    assert_string_equal(svc->name, service);
    for (size_t i = 0; i < N_EXPECTED; i++)
        constants += strcmp(EXPECTED[i].service, service) == 0;
    assert_int_equal(svc->n_methods, constants);
    for (size_t i = 0; i < svc->n_methods; i++) {
        const struct rpc_method *m = &svc->methods[i];
        const struct expected *e = find_expected(m->path);
        if (!e || strcmp(e->service, service) != 0)
            fail_msg("%s serves %s, which is not one of its rpc_paths.h constants", service,
                     m->path);
        const char *method = m->path + strlen(service) + 2;
        const ProtobufCMethodDescriptor *g = NULL;
        if (desc) {
            g = generated_method(desc, m->path);
        } else { /* v1alpha: the v1 method of the same name */
            char v1[256];
            build_path(v1, sizeof v1, RPC_REFLECTION_V1_SERVICE, method);
            g = generated_method(&grpc__reflection__v1__server_reflection__descriptor, v1);
        }
        assert_non_null(g);
        assert_string_equal(g->name, method);
        assert_ptr_equal(m->request, g->input);
    }
}

static void test_api_tables_use_the_constants(void **state)
{
    (void)state;
    struct rpc_service svc;
    svc_describe(NULL, &svc);
    check_table(&svc, RPC_BOOKS_SERVICE, &books__v1__books_service__descriptor);
    health_describe(NULL, &svc);
    check_table(&svc, RPC_HEALTH_SERVICE, &grpc__health__v1__health__descriptor);
    reflection_describe_v1(NULL, &svc);
    check_table(&svc, RPC_REFLECTION_V1_SERVICE,
                &grpc__reflection__v1__server_reflection__descriptor);
    reflection_describe_v1alpha(NULL, &svc);
    check_table(&svc, RPC_REFLECTION_V1ALPHA_SERVICE, NULL);
}

/* The api headers' service names are the same constants (main.c hands them to health and
 * reflection as the hosted services). */
static void test_service_names(void **state)
{
    (void)state;
    assert_string_equal(SVC_SERVICE_NAME, books__v1__books_service__descriptor.name);
    assert_string_equal(HEALTH_SERVICE_NAME, grpc__health__v1__health__descriptor.name);
    assert_string_equal(REFLECTION_V1_SERVICE_NAME,
                        grpc__reflection__v1__server_reflection__descriptor.name);
    assert_string_equal(REFLECTION_V1ALPHA_SERVICE_NAME, RPC_REFLECTION_V1ALPHA_SERVICE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_are_service_slash_method),
        cmocka_unit_test(test_paths_match_generated_descriptors),
        cmocka_unit_test(test_paths_match_descriptor_set),
        cmocka_unit_test(test_api_tables_use_the_constants),
        cmocka_unit_test(test_service_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
