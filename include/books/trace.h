/* trace.h: reads the trace context a caller sends, so log lines can be tied to the trace in Cloud
 * Logging (logging.googleapis.com/trace, /spanId, /trace_sampled). Understands W3C Trace Context
 * `traceparent` (https://www.w3.org/TR/trace-context/, version 00 and later versions' first four
 * fields) and Google's `x-cloud-trace-context` ("TRACE_ID/SPAN_ID;o=OPTIONS"). Anything malformed
 * is ignored, never echoed: what comes out is only lowercase hex. Pure functions: any thread. */
#ifndef BOOKS_TRACE_H
#define BOOKS_TRACE_H

#include <stdbool.h>
#include <stddef.h>

struct trace_context {
    char trace_id[33]; /* 32 lowercase hex digits, not all zero */
    char span_id[17];  /* 16 lowercase hex digits, not all zero; "" when the header had none */
    bool sampled;
};

/* Parses a traceparent value (len bytes, not NUL-terminated). Returns true and fills *out when it
 * is well-formed: version not "ff", trace-id and parent-id lowercase hex and not all zero. */
bool trace_parse_traceparent(const char *value, size_t len, struct trace_context *out);

/* Parses an x-cloud-trace-context value: a 32-hex-digit trace id (any case; stored lowercase),
 * optionally "/" and a decimal span id (converted to 16 hex digits), optionally ";o=0|1".
 * Returns true and fills *out when well-formed. */
bool trace_parse_cloud(const char *value, size_t len, struct trace_context *out);

#endif
