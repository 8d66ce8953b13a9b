/* core_log.c: gRPC core's gpr_log lines as JSON lines of log.h (core_log.h). Core's default log
 * function writes "E1203 13:35:59.368801748 20548 hpack_parser.cc:1218] ..." to stderr, which
 * Cloud Logging files as a plain text entry without our severity; a client that sends a bad
 * content-type is enough to produce one. */
#include "books/core_log.h"

#include <stddef.h>

enum log_level core_log_level(gpr_log_severity severity)
{
    switch (severity) {
    case GPR_LOG_SEVERITY_DEBUG:
        return LOG_DEBUG;
    case GPR_LOG_SEVERITY_INFO:
        return LOG_INFO;
    case GPR_LOG_SEVERITY_ERROR:
        return LOG_ERROR;
    }
    return LOG_ERROR;
}

/* Called by core on whichever thread logs, possibly with core's locks held: it only formats and
 * writes (log.h's write lock is never held while calling into core, so this cannot deadlock). */
static void core_log_line(gpr_log_func_args *args)
{
    enum log_level level = core_log_level(args->severity);
    if (!log_enabled(level))
        return;
    const struct log_field fields[] = {
        {.key = "logger", .str = "grpc-core"},
        {.key = "file", .str = args->file ? args->file : ""},
        {.key = "line", .num = args->line},
    };
    log_event(level, args->message ? args->message : "", fields,
              sizeof fields / sizeof fields[0]);
}

void core_log_install(void)
{
    gpr_set_log_function(core_log_line);
}
