/* status.c: books_err <-> gRPC status codes (status.h). Both directions are here, side by side, so
 * that they cannot drift apart. */
#include "books/status.h"

#include "books/error.h"

grpc_status_code rpc_status_of(int err)
{
    switch (err) {
    case BOOKS_OK:
        return GRPC_STATUS_OK;
    case BOOKS_EINVAL:
    case BOOKS_EBADMSG:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case BOOKS_ENOTFOUND:
        return GRPC_STATUS_NOT_FOUND;
    case BOOKS_EEXIST:
        return GRPC_STATUS_ALREADY_EXISTS;
    case BOOKS_ENOMEM:
    case BOOKS_ENOSPC:
    case BOOKS_E2BIG:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case BOOKS_EIO:
    case BOOKS_EUNAVAIL:
    case BOOKS_EBUSY:
    case BOOKS_ETHROTTLED:
        return GRPC_STATUS_UNAVAILABLE;
    case BOOKS_EUNIMPL:
        return GRPC_STATUS_UNIMPLEMENTED;
    case BOOKS_EDEADLINE:
        return GRPC_STATUS_DEADLINE_EXCEEDED;
    case BOOKS_ECORRUPT:
        return GRPC_STATUS_DATA_LOSS;
    case BOOKS_EUNKNOWN:
        return GRPC_STATUS_UNKNOWN;
    case BOOKS_EABORTED:
        return GRPC_STATUS_ABORTED;
    case BOOKS_EREFUSED:
    case BOOKS_EREUSED:
        return GRPC_STATUS_FAILED_PRECONDITION;
    default:
        return GRPC_STATUS_INTERNAL;
    }
}

const char *rpc_status_name(grpc_status_code code)
{
    /* Names from google.rpc.Code / gRPC doc/statuscodes.md, indexed by code. */
    static const char *const names[] = {
        "OK",        "CANCELLED",         "UNKNOWN",        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL",      "UNAVAILABLE",    "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if ((unsigned)code < sizeof names / sizeof names[0])
        return names[code];
    return "UNKNOWN";
}

int rpc_status_to_err(grpc_status_code status)
{
    switch (status) {
    case GRPC_STATUS_OK:
        return 0;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_OUT_OF_RANGE:
        return BOOKS_EINVAL;
    case GRPC_STATUS_NOT_FOUND:
        return BOOKS_ENOTFOUND;
    case GRPC_STATUS_ALREADY_EXISTS:
        return BOOKS_EEXIST;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return BOOKS_ENOSPC;
    case GRPC_STATUS_UNAVAILABLE:
        return BOOKS_EUNAVAIL;
    case GRPC_STATUS_UNIMPLEMENTED:
        return BOOKS_EUNIMPL;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return BOOKS_EDEADLINE;
    case GRPC_STATUS_DATA_LOSS:
        return BOOKS_ECORRUPT;
    case GRPC_STATUS_UNKNOWN:
        return BOOKS_EUNKNOWN;
    case GRPC_STATUS_ABORTED:
        return BOOKS_EABORTED;
    case GRPC_STATUS_FAILED_PRECONDITION:
        return BOOKS_EREFUSED;
    default:
        return BOOKS_EINTERNAL;
    }
}
