/* status.h: the one mapping between this project's error codes (enum books_err, error.h) and gRPC
 * status codes (grpc/grpc doc/statuscodes.md), both ways, and the codes' canonical names. It lives
 * in the RPC layer so that the layers below (base, store) know nothing of gRPC. Pure functions:
 * any thread. */
#ifndef BOOKS_STATUS_H
#define BOOKS_STATUS_H

#include <grpc/status.h>

/* The status a server sends for `err`: 0 maps to GRPC_STATUS_OK, an unknown value to
 * GRPC_STATUS_INTERNAL. This is the one books_err -> status mapping (README, "Errors"). Any
 * thread. */
grpc_status_code rpc_status_of(int err);

/* The other direction, for a client: the enum books_err nearest to a status it received (OK -> 0,
 * UNKNOWN -> BOOKS_EUNKNOWN, FAILED_PRECONDITION -> BOOKS_EREFUSED, ...; CANCELLED and the other
 * codes this server never sends -> BOOKS_EINTERNAL). Any thread. */
int rpc_status_to_err(grpc_status_code status);

/* The canonical upper-case name of a status code ("NOT_FOUND"), as in logs and google.rpc.Code.
 * Returns a static string; "UNKNOWN" for values outside 0..16. Any thread. */
const char *rpc_status_name(grpc_status_code code);

#endif
