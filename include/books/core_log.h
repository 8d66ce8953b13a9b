/* core_log.h: gRPC core's own log lines (gpr_log) into the server's JSON log (log.h), so that every
 * line the process writes is one Cloud Logging JSON object with a severity. Owns nothing but the
 * hook; it never decides what core logs (GRPC_VERBOSITY and GRPC_TRACE still do) and never writes
 * to stderr itself. */
#ifndef BOOKS_CORE_LOG_H
#define BOOKS_CORE_LOG_H

#include <grpc/support/log.h>

#include "books/log.h"

/* Routes every gpr_log() line of gRPC core through log_event(): {"severity", "message" (core's text,
 * JSON-escaped), "time", "logger":"grpc-core", "file" (core's source path), "line"}. Severity:
 * GPR_LOG_SEVERITY_DEBUG -> DEBUG, INFO -> INFO, ERROR -> ERROR; a line is written when core's own
 * filter passes it (GRPC_VERBOSITY: ERROR unless set; GRPC_TRACE output is INFO, so tracing needs
 * GRPC_VERBOSITY=INFO or DEBUG) and BOOKS_LOG_LEVEL admits its severity. Call once, after
 * log_init() and before grpc_init() (gpr_log is silent before grpc_init, which reads
 * GRPC_VERBOSITY). Idempotent; the hook stays until the process exits. Any thread may log
 * through it afterwards: log_event() is thread-safe. */
void core_log_install(void);

/* The log.h level of a gpr severity (an unknown value: LOG_ERROR). Pure; any thread. */
enum log_level core_log_level(gpr_log_severity severity);

#endif
