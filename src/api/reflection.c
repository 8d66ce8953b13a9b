/* reflection.c: server reflection over an embedded FileDescriptorSet.
 *
 * At start-up the set is split into its files (each kept as the exact bytes protoc wrote, which is
 * what the protocol sends back) and every symbol a client may ask about is indexed by its fully
 * qualified name: packages' messages (nested too), their fields, enums and their values, services
 * and their methods, and extensions. Lookups are binary searches over a sorted array. Answers point
 * into the kept bytes, so a response copies nothing. */
#include "books/reflection.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "google/protobuf/descriptor.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

#define ERROR_INVALID_ARGUMENT 3 /* google.rpc.Code values, as the protocol's ErrorResponse uses */
#define ERROR_NOT_FOUND 5

struct file {
    const uint8_t *raw;
    size_t len;
    Google__Protobuf__FileDescriptorProto *fd;
};

struct symbol {
    char *name;
    size_t file;
    bool message; /* a message type: what all_extension_numbers_of_type may name */
};

struct extension {
    char *extendee; /* fully qualified, no leading dot */
    int32_t number;
    size_t file;
};

struct reflection {
    const char *const *services;
    size_t n_services;
    struct file *files;
    size_t n_files;
    struct symbol *symbols;
    size_t n_symbols, cap_symbols;
    struct extension *extensions;
    size_t n_extensions, cap_extensions;
};

/* ---- building the index ------------------------------------------------------------------------ */

static char *join(const char *scope, const char *name)
{
    size_t a = strlen(scope), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s)
        return NULL;
    if (a) {
        memcpy(s, scope, a);
        s[a++] = '.';
    }
    memcpy(s + a, name, b + 1);
    return s;
}

/* Adds scope.name; returns the new full name (owned by the index) or NULL when out of memory. */
static const char *add_symbol(struct reflection *r, const char *scope, const char *name,
                              size_t file, bool message)
{
    if (r->n_symbols == r->cap_symbols) {
        size_t cap = r->cap_symbols ? 2 * r->cap_symbols : 256;
        struct symbol *more = realloc(r->symbols, cap * sizeof *more);
        if (!more)
            return NULL;
        r->symbols = more;
        r->cap_symbols = cap;
    }
    char *full = join(scope, name);
    if (!full)
        return NULL;
    r->symbols[r->n_symbols].name = full;
    r->symbols[r->n_symbols].file = file;
    r->symbols[r->n_symbols].message = message;
    r->n_symbols++;
    return full;
}

static int add_extension(struct reflection *r, const Google__Protobuf__FieldDescriptorProto *f,
                         size_t file)
{
    if (!f->extendee)
        return 0;
    if (r->n_extensions == r->cap_extensions) {
        size_t cap = r->cap_extensions ? 2 * r->cap_extensions : 32;
        struct extension *more = realloc(r->extensions, cap * sizeof *more);
        if (!more)
            return BOOKS_ENOMEM;
        r->extensions = more;
        r->cap_extensions = cap;
    }
    const char *e = f->extendee[0] == '.' ? f->extendee + 1 : f->extendee;
    r->extensions[r->n_extensions].extendee = strdup(e);
    if (!r->extensions[r->n_extensions].extendee)
        return BOOKS_ENOMEM;
    r->extensions[r->n_extensions].number = f->number;
    r->extensions[r->n_extensions].file = file;
    r->n_extensions++;
    return 0;
}

/* An enum and its values; values live in the enum's enclosing scope (protobuf's C++ scoping). */
static int index_enum(struct reflection *r, const char *scope,
                      const Google__Protobuf__EnumDescriptorProto *e, size_t file)
{
    if (!add_symbol(r, scope, e->name, file, false))
        return BOOKS_ENOMEM;
    for (size_t i = 0; i < e->n_value; i++)
        if (!add_symbol(r, scope, e->value[i]->name, file, false))
            return BOOKS_ENOMEM;
    return 0;
}

static int index_message(struct reflection *r, const char *scope,
                         const Google__Protobuf__DescriptorProto *m, size_t file)
{
    const char *full = add_symbol(r, scope, m->name, file, true);
    size_t i;
    if (!full)
        return BOOKS_ENOMEM;
    for (i = 0; i < m->n_field; i++)
        if (!add_symbol(r, full, m->field[i]->name, file, false))
            return BOOKS_ENOMEM;
    for (i = 0; i < m->n_nested_type; i++)
        if (index_message(r, full, m->nested_type[i], file))
            return BOOKS_ENOMEM;
    for (i = 0; i < m->n_enum_type; i++)
        if (index_enum(r, full, m->enum_type[i], file))
            return BOOKS_ENOMEM;
    for (i = 0; i < m->n_extension; i++)
        if (!add_symbol(r, full, m->extension[i]->name, file, false) ||
            add_extension(r, m->extension[i], file))
            return BOOKS_ENOMEM;
    return 0;
}

static int index_file(struct reflection *r, size_t file)
{
    const Google__Protobuf__FileDescriptorProto *fd = r->files[file].fd;
    const char *pkg = fd->package ? fd->package : "";
    size_t i, j;
    for (i = 0; i < fd->n_message_type; i++)
        if (index_message(r, pkg, fd->message_type[i], file))
            return BOOKS_ENOMEM;
    for (i = 0; i < fd->n_enum_type; i++)
        if (index_enum(r, pkg, fd->enum_type[i], file))
            return BOOKS_ENOMEM;
    for (i = 0; i < fd->n_service; i++) {
        const char *svc = add_symbol(r, pkg, fd->service[i]->name, file, false);
        if (!svc)
            return BOOKS_ENOMEM;
        for (j = 0; j < fd->service[i]->n_method; j++)
            if (!add_symbol(r, svc, fd->service[i]->method[j]->name, file, false))
                return BOOKS_ENOMEM;
    }
    for (i = 0; i < fd->n_extension; i++)
        if (!add_symbol(r, pkg, fd->extension[i]->name, file, false) ||
            add_extension(r, fd->extension[i], file))
            return BOOKS_ENOMEM;
    return 0;
}

static int symbol_cmp(const void *a, const void *b)
{
    return strcmp(((const struct symbol *)a)->name, ((const struct symbol *)b)->name);
}

/* Splits a serialized FileDescriptorSet (field 1: repeated FileDescriptorProto) into its files
 * without copying. Returns the count, or -1 when the bytes are not a well-formed set. */
static long split_set(const uint8_t *p, size_t len, struct file *files, size_t cap)
{
    const uint8_t *end = p + len;
    size_t n = 0;
    while (p < end) {
        uint64_t v = 0, size = 0;
        int shift = 0;
        if (*p++ != 0x0a) /* field 1, length-delimited */
            return -1;
        do {
            if (p >= end || shift > 63)
                return -1;
            v = *p & 0x7f;
            size |= v << shift;
            shift += 7;
        } while (*p++ & 0x80);
        if (size > (uint64_t)(end - p))
            return -1;
        if (files && n < cap) {
            files[n].raw = p;
            files[n].len = (size_t)size;
        }
        n++;
        p += size;
    }
    return (long)n;
}

void reflection_free(struct reflection *r)
{
    size_t i;
    if (!r)
        return;
    for (i = 0; i < r->n_files; i++)
        if (r->files[i].fd)
            google__protobuf__file_descriptor_proto__free_unpacked(r->files[i].fd, NULL);
    for (i = 0; i < r->n_symbols; i++)
        free(r->symbols[i].name);
    for (i = 0; i < r->n_extensions; i++)
        free(r->extensions[i].extendee);
    free(r->files);
    free(r->symbols);
    free(r->extensions);
    free(r);
}

int reflection_new(const uint8_t *set, size_t len, const char *const *services,
                   struct reflection **out, char *err, size_t errlen)
{
    struct reflection *r = calloc(1, sizeof *r);
    long n;
    size_t i;
    if (!r)
        return BOOKS_ENOMEM;
    r->services = services;
    while (services[r->n_services])
        r->n_services++;
    n = split_set(set, len, NULL, 0);
    if (n <= 0) {
        snprintf(err, errlen, "the embedded descriptor set is not a FileDescriptorSet");
        reflection_free(r);
        return BOOKS_EINVAL;
    }
    r->files = calloc((size_t)n, sizeof *r->files);
    if (!r->files)
        goto nomem;
    r->n_files = (size_t)n;
    split_set(set, len, r->files, r->n_files);
    for (i = 0; i < r->n_files; i++) {
        r->files[i].fd =
            google__protobuf__file_descriptor_proto__unpack(NULL, r->files[i].len, r->files[i].raw);
        if (!r->files[i].fd || !r->files[i].fd->name) {
            snprintf(err, errlen, "file %zu of the embedded descriptor set does not parse", i);
            reflection_free(r);
            return BOOKS_EINVAL;
        }
        if (index_file(r, i))
            goto nomem;
    }
    qsort(r->symbols, r->n_symbols, sizeof *r->symbols, symbol_cmp);
    *out = r;
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    reflection_free(r);
    return BOOKS_ENOMEM;
}

static const struct rpc_method v1_methods[] = {
    {.path = RPC_PATH_REFLECTION_V1_INFO,
     .request = &grpc__reflection__v1__server_reflection_request__descriptor,
     .kind = RPC_BIDI_STREAM,
     .handle = reflection_handle},
};

/* v1alpha's messages have the same fields and numbers as v1's, so v1's descriptors decode and
 * encode them byte for byte. */
static const struct rpc_method v1alpha_methods[] = {
    {.path = RPC_PATH_REFLECTION_V1ALPHA_INFO,
     .request = &grpc__reflection__v1__server_reflection_request__descriptor,
     .kind = RPC_BIDI_STREAM,
     .handle = reflection_handle},
};

void reflection_describe_v1(struct reflection *r, struct rpc_service *out)
{
    out->name = REFLECTION_V1_SERVICE_NAME;
    out->methods = v1_methods;
    out->n_methods = 1;
    out->self = r;
}

void reflection_describe_v1alpha(struct reflection *r, struct rpc_service *out)
{
    out->name = REFLECTION_V1ALPHA_SERVICE_NAME;
    out->methods = v1alpha_methods;
    out->n_methods = 1;
    out->self = r;
}

/* ---- answering --------------------------------------------------------------------------------- */

static long find_file(const struct reflection *r, const char *name)
{
    for (size_t i = 0; i < r->n_files; i++)
        if (strcmp(r->files[i].fd->name, name) == 0)
            return (long)i;
    return -1;
}

static const struct symbol *lookup(const struct reflection *r, const char *name)
{
    struct symbol key = {.name = (char *)(name[0] == '.' ? name + 1 : name)};
    return bsearch(&key, r->symbols, r->n_symbols, sizeof *r->symbols, symbol_cmp);
}

static long find_symbol(const struct reflection *r, const char *name)
{
    const struct symbol *hit = lookup(r, name);
    return hit ? (long)hit->file : -1;
}

/* Appends `file` and, depth first, everything it imports, each once. */
static void collect(const struct reflection *r, size_t file, bool *seen, size_t *order, size_t *n)
{
    if (seen[file])
        return;
    seen[file] = true;
    order[(*n)++] = file;
    const Google__Protobuf__FileDescriptorProto *fd = r->files[file].fd;
    for (size_t i = 0; i < fd->n_dependency; i++) {
        long dep = find_file(r, fd->dependency[i]);
        if (dep >= 0)
            collect(r, (size_t)dep, seen, order, n);
    }
}

static bool answer_files(const struct reflection *r, size_t file, struct arena *a,
                         Grpc__Reflection__V1__ServerReflectionResponse *resp)
{
    bool *seen = arena_alloc(a, r->n_files * sizeof *seen);
    size_t *order = arena_alloc(a, r->n_files * sizeof *order), n = 0;
    Grpc__Reflection__V1__FileDescriptorResponse *fdr = arena_alloc(a, sizeof *fdr);
    ProtobufCBinaryData *bytes = arena_alloc(a, r->n_files * sizeof *bytes);
    if (!seen || !order || !fdr || !bytes)
        return false;
    memset(seen, 0, r->n_files * sizeof *seen);
    collect(r, file, seen, order, &n);
    for (size_t i = 0; i < n; i++) {
        bytes[i].data = (uint8_t *)r->files[order[i]].raw;
        bytes[i].len = r->files[order[i]].len;
    }
    grpc__reflection__v1__file_descriptor_response__init(fdr);
    fdr->n_file_descriptor_proto = n;
    fdr->file_descriptor_proto = bytes;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
    resp->file_descriptor_response = fdr;
    return true;
}

/* An ErrorResponse: "no <kind> named "<name>" ..." or, with no name, `kind` as the message. */
static bool answer_error(struct arena *a, int code, const char *kind, const char *name,
                         Grpc__Reflection__V1__ServerReflectionResponse *resp)
{
    Grpc__Reflection__V1__ErrorResponse *er = arena_alloc(a, sizeof *er);
    char *msg = arena_alloc(a, 256), q[64];
    if (!er || !msg)
        return false;
    grpc__reflection__v1__error_response__init(er);
    er->error_code = code;
    if (name)
        snprintf(msg, 256, "no %s named \"%s\" is known to this server", kind,
                 books_error_quote(q, sizeof q, name));
    else
        snprintf(msg, 256, "%s", kind);
    er->error_message = msg;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    resp->error_response = er;
    return true;
}

static bool answer_services(const struct reflection *r, struct arena *a,
                            Grpc__Reflection__V1__ServerReflectionResponse *resp)
{
    Grpc__Reflection__V1__ListServiceResponse *ls = arena_alloc(a, sizeof *ls);
    Grpc__Reflection__V1__ServiceResponse *items = arena_alloc(a, r->n_services * sizeof *items);
    Grpc__Reflection__V1__ServiceResponse **ptrs = arena_alloc(a, r->n_services * sizeof *ptrs);
    if (!ls || !items || !ptrs)
        return false;
    grpc__reflection__v1__list_service_response__init(ls);
    for (size_t i = 0; i < r->n_services; i++) {
        grpc__reflection__v1__service_response__init(&items[i]);
        items[i].name = (char *)r->services[i];
        ptrs[i] = &items[i];
    }
    ls->n_service = r->n_services;
    ls->service = ptrs;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
    resp->list_services_response = ls;
    return true;
}

static bool answer_extension_numbers(const struct reflection *r, const char *type, struct arena *a,
                                     Grpc__Reflection__V1__ServerReflectionResponse *resp)
{
    const char *t = type[0] == '.' ? type + 1 : type;
    Grpc__Reflection__V1__ExtensionNumberResponse *en;
    int32_t *numbers;
    size_t n = 0;
    const struct symbol *hit = lookup(r, t);
    /* Only a message type has extension numbers; any other symbol is not one (as gRPC C++). */
    if (!hit || !hit->message)
        return answer_error(a, ERROR_NOT_FOUND, "message type", type, resp);
    en = arena_alloc(a, sizeof *en);
    numbers = arena_alloc(a, (r->n_extensions ? r->n_extensions : 1) * sizeof *numbers);
    if (!en || !numbers)
        return false;
    for (size_t i = 0; i < r->n_extensions; i++)
        if (strcmp(r->extensions[i].extendee, t) == 0)
            numbers[n++] = r->extensions[i].number;
    grpc__reflection__v1__extension_number_response__init(en);
    en->base_type_name = (char *)t;
    en->n_extension_number = n;
    en->extension_number = numbers;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
    resp->all_extension_numbers_response = en;
    return true;
}

void reflection_handle(void *self, const ProtobufCMessage *request, struct rpc_reply *reply)
{
    const struct reflection *r = self;
    const Grpc__Reflection__V1__ServerReflectionRequest *req =
        (const Grpc__Reflection__V1__ServerReflectionRequest *)request;
    Grpc__Reflection__V1__ServerReflectionResponse *resp =
        arena_alloc(reply->arena, sizeof *resp);
    struct arena *a = reply->arena;
    bool ok = false;
    long file;

    if (!resp)
        goto nomem;
    grpc__reflection__v1__server_reflection_response__init(resp);
    resp->valid_host = req->host;
    resp->original_request = (Grpc__Reflection__V1__ServerReflectionRequest *)req;
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        file = find_file(r, req->file_by_filename);
        ok = file >= 0 ? answer_files(r, (size_t)file, a, resp)
                       : answer_error(a, ERROR_NOT_FOUND, "file", req->file_by_filename, resp);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        file = find_symbol(r, req->file_containing_symbol);
        ok = file >= 0 ? answer_files(r, (size_t)file, a, resp)
                       : answer_error(a, ERROR_NOT_FOUND, "symbol", req->file_containing_symbol,
                                      resp);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION: {
        const Grpc__Reflection__V1__ExtensionRequest *x = req->file_containing_extension;
        const char *t = x->containing_type[0] == '.' ? x->containing_type + 1 : x->containing_type;
        file = -1;
        for (size_t i = 0; i < r->n_extensions && file < 0; i++)
            if (r->extensions[i].number == x->extension_number &&
                strcmp(r->extensions[i].extendee, t) == 0)
                file = (long)r->extensions[i].file;
        ok = file >= 0 ? answer_files(r, (size_t)file, a, resp)
                       : answer_error(a, ERROR_NOT_FOUND, "extension of the type",
                                      x->containing_type, resp);
        break;
    }
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        ok = answer_extension_numbers(r, req->all_extension_numbers_of_type, a, resp);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        ok = answer_services(r, a, resp);
        break;
    default:
        ok = answer_error(a, ERROR_INVALID_ARGUMENT,
                          "the request asks nothing: set one of file_by_filename, "
                          "file_containing_symbol, file_containing_extension, "
                          "all_extension_numbers_of_type, list_services",
                          NULL, resp);
        break;
    }
    if (!ok)
        goto nomem;
    reply->response = &resp->base;
    rpc_reply_done(reply);
    return;
nomem:
    books_error_set(&reply->error, BOOKS_ENOMEM, "OUT_OF_MEMORY", "the server is out of memory");
    rpc_reply_done(reply);
}
