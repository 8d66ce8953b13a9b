/* config.h: the server's settings as one declarative table (options.h: name, environment variable,
 * flag, setter, offset into struct books_config, default, bounds, help). The table drives parsing,
 * --help and the README's configuration table (--help-markdown), so they cannot drift apart.
 * Precedence: default < environment < command-line flag. Values are validated once, at start-up;
 * config never exits. Threads: config_load() parses argv with getopt_long(3), whose state is
 * global, so it runs in one thread at a time (main's, at start-up); the rest may run anywhere. */
#ifndef BOOKS_CONFIG_H
#define BOOKS_CONFIG_H

#include <stdio.h>

#include "books/log.h"

struct books_config {
    int port;                   /* PORT / --port: 0..65535; 0 = a free port the kernel picks (tests) */
    char *store;                /* BOOKS_STORE / --store: store URI (owned) */
    int threads;                /* BOOKS_THREADS / --threads: 0 = one per CPU in the affinity mask */
    int shutdown_grace_ms;      /* BOOKS_SHUTDOWN_GRACE_MS / --shutdown-grace-ms, milliseconds */
    int max_recv_bytes;         /* BOOKS_MAX_RECV_BYTES / --max-recv-bytes, bytes */
    int max_concurrent_streams; /* BOOKS_MAX_CONCURRENT_STREAMS / --max-concurrent-streams */
    int memory_limit_mb;        /* BOOKS_MEMORY_LIMIT_MB / --memory-limit-mb: 0 = the cgroup's */
    int max_connection_idle_ms; /* BOOKS_MAX_CONNECTION_IDLE_MS: 0 = never closed for idleness */
    int max_connection_age_ms;  /* BOOKS_MAX_CONNECTION_AGE_MS: 0 = no age limit */
    int max_metadata_bytes;     /* BOOKS_MAX_METADATA_BYTES: request header list size, bytes */
    int request_id_ttl_s;       /* BOOKS_REQUEST_ID_TTL_S: how long AIP-155 request ids are kept */
    int log_level;              /* BOOKS_LOG_LEVEL / --log-level: enum log_level */
    char *project;              /* GOOGLE_CLOUD_PROJECT / --project: "" or a project id (owned) */
};

enum config_action {
    CONFIG_RUN = 0,         /* serve */
    CONFIG_HELP,            /* --help: print config_print_help(), exit 0 */
    CONFIG_HELP_MARKDOWN,   /* --help-markdown: print the README table, exit 0 */
    CONFIG_VERSION,         /* --version: print the version, exit 0 */
};

#define CONFIG_ERR_BYTES 256

/* Fills `cfg` from the defaults, then `envp` (NULL-terminated "NAME=value" strings, like environ),
 * then the flags in argv[1..argc-1] ("--flag value" or "--flag=value"). On success returns 0 and
 * sets *action; the caller frees cfg with config_cleanup(). If argv holds --help, --help-markdown
 * or --version (or -h, -V) anywhere, the first of them sets *action, nothing else is validated,
 * and cfg holds the defaults. "--flag value" takes the next argument as the value unless it starts
 * with "--" (then the value was forgotten: "--store --port 80" is an error, "--store=--odd" is not).
 * On a bad value, an unknown flag, a missing flag value or any other argument returns BOOKS_EINVAL
 * with a message naming the setting and the accepted values in err (errlen bytes; the first
 * problem, the environment's before the flags'); *cfg is then zeroed (nothing to free) and *action
 * untouched. BOOKS_ENOMEM when out of memory. argv and envp are only read. */
int config_load(struct books_config *cfg, int argc, char *const argv[], char *const envp[],
                enum config_action *action, char *err, size_t errlen);

/* Frees what cfg owns. Safe on a zeroed struct. */
void config_cleanup(struct books_config *cfg);

/* Usage text: every setting with its flag, environment variable, default and meaning. */
void config_print_help(FILE *f, const char *argv0);

/* The same table as a Markdown table, as it appears in README.md. */
void config_print_markdown(FILE *f);

#endif
