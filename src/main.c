/* main.c: wiring only. Settings -> logs -> store -> services -> server -> wait for SIGTERM/SIGINT ->
 * graceful shutdown -> close the store. Exit codes: 0 after a clean shutdown (or --help/--version),
 * 2 for a bad setting, 1 when the store cannot be opened or the port cannot be bound. */
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "books/config.h"
#include "books/core_log.h"
#include "books/health.h"
#include "books/log.h"
#include "books/reflection.h"
#include "books/resources.h"
#include "books/server.h"
#include "books/service.h"
#include "books/store.h"
#include "books/store_firestore.h"

extern char **environ;

/* The store's availability (a database that went away) shows as BooksService's health, not as
 * the process's: Cloud Run's liveness probe asks for "", so it never restarts an instance for an
 * outage a restart cannot fix. */
static void on_store_state(void *health, bool available)
{
    (void)health_set_available(health, SVC_SERVICE_NAME, available);
}

/* At the end of the grace period: calls still waiting on the store (a stalled database) are
 * answered now instead of holding the shutdown up. */
static void drain_store(void *store) { store_drain(store); }

/* A start-up failure: one JSON line (like every line the server writes, for Cloud Logging) on
 * stderr, where a person and a supervisor look for why a process exited; nothing on stdout, so
 * the log does not carry it twice. The process exits next; no other thread logs by then. */
static int fail_with(int code, const char *what, const char *err)
{
    log_init(LOG_ERROR, 2);
    log_msg(LOG_ERROR, "%s: %s", what, err);
    return code;
}

static int fail(const char *what, const char *err)
{
    return fail_with(1, what, err);
}

int main(int argc, char **argv)
{
    static const char *const hosted[] = {SVC_SERVICE_NAME, HEALTH_SERVICE_NAME,
                                         REFLECTION_V1_SERVICE_NAME,
                                         REFLECTION_V1ALPHA_SERVICE_NAME, NULL};
    struct books_config cfg;
    enum config_action action;
    char err[CONFIG_ERR_BYTES > STORE_ERR_BYTES ? CONFIG_ERR_BYTES : STORE_ERR_BYTES];
    struct store *store = NULL;
    struct svc *svc = NULL;
    struct health *health = NULL;
    struct reflection *reflection = NULL;
    struct server *server = NULL;
    struct rpc_service services[4];
    sigset_t stop_signals;
    int sig = 0, rc = 1;

    /* Block the stop signals before any thread exists (gRPC core starts its own), so every thread
     * inherits the mask and only sigwait() below ever receives them: no handler, no async-signal
     * hazards. A write to a closed stdout must not kill the server either. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (config_load(&cfg, argc, argv, environ, &action, err, sizeof err) != 0)
        return fail_with(2, "bad settings", err);
    switch (action) {
    case CONFIG_HELP:
        config_print_help(stdout, argv[0]);
        config_cleanup(&cfg);
        return 0;
    case CONFIG_HELP_MARKDOWN:
        config_print_markdown(stdout);
        config_cleanup(&cfg);
        return 0;
    case CONFIG_VERSION:
        printf("books-server %s (gRPC core %s, protobuf-c %s)\n", BOOKS_VERSION,
               grpc_version_string(), protobuf_c_version());
        config_cleanup(&cfg);
        return 0;
    case CONFIG_RUN:
        break;
    }
    log_init((enum log_level)cfg.log_level, STDOUT_FILENO);
    log_set_project(cfg.project);
    /* Before grpc_init (server_start): core's own lines become JSON lines too, none on stderr. */
    core_log_install();

    /* The process's budgets: every client connection is a file descriptor, and memory is split
     * between gRPC core (connections and calls) and the store, leaving room for the rest. */
    uint64_t nofile_soft = 0, nofile_hard = 0;
    if (resources_raise_nofile(&nofile_soft, &nofile_hard) != 0)
        log_msg(LOG_WARNING, "cannot raise the open-files limit (soft %llu, hard %llu)",
                (unsigned long long)nofile_soft, (unsigned long long)nofile_hard);
    enum resources_memory_source memory_source;
    uint64_t memory = resources_memory_budget(cfg.memory_limit_mb, "/sys/fs/cgroup", &memory_source);
    struct memory_split split;
    resources_split_memory(memory, &split);
    const struct store_limits store_limits = {.memory_bytes = split.store_bytes,
                                              .max_queued = split.max_queued,
                                              .request_ttl_s = (uint32_t)cfg.request_id_ttl_s};

    store_firestore_register();
    if (store_open(cfg.store, &store_limits, &store, err, sizeof err) != 0) {
        rc = fail("cannot open the store", err);
        goto out_config;
    }
    if (svc_new(store, &svc) != 0 || health_new(hosted, &health) != 0) {
        rc = fail("cannot start", "out of memory");
        goto out_services;
    }
    if (reflection_new(books_descriptor_set, books_descriptor_set_len, hosted, &reflection, err,
                       sizeof err) != 0) {
        rc = fail("cannot start reflection", err);
        goto out_services;
    }
    svc_describe(svc, &services[0]);
    health_describe(health, &services[1]);
    reflection_describe_v1(reflection, &services[2]);
    reflection_describe_v1alpha(reflection, &services[3]);
    struct server_options opts = {
        .port = cfg.port,
        .threads = cfg.threads ? cfg.threads : server_default_threads(),
        .max_recv_bytes = cfg.max_recv_bytes,
        .max_concurrent_streams = cfg.max_concurrent_streams,
        .memory_quota_bytes = split.transport_bytes,
        .inflight_bytes = split.inflight_bytes,
        .max_connection_idle_ms = cfg.max_connection_idle_ms,
        .max_connection_age_ms = cfg.max_connection_age_ms,
        .max_metadata_bytes = cfg.max_metadata_bytes,
    };
    if (server_start(&opts, services, 4, &server, err, sizeof err) != 0) {
        rc = fail("cannot start the server", err);
        goto out_services;
    }
    health_set_serving(health, true);
    store_watch(store, on_store_state, health);
    const struct log_field fields[] = {
        {.key = "port", .num = server_port(server)},
        {.key = "threads", .num = opts.threads},
        {.key = "store", .str = store->display},
        {.key = "memory_limit_mb", .num = (long long)(memory >> 20)},
        {.key = "memory_limit_from", .str = resources_memory_source_name(memory_source)},
        {.key = "open_files", .num = (long long)nofile_soft},
        {.key = "version", .str = BOOKS_VERSION},
    };
    log_event(LOG_INFO, "listening", fields, sizeof fields / sizeof fields[0]);

    while (sigwait(&stop_signals, &sig) != 0)
        ;
    log_msg(LOG_INFO, "received %s: shutting down, calls in flight get %d ms",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", cfg.shutdown_grace_ms);
    health_shutdown(health);
    server_on_cancel(server, drain_store, store);
    if (server_shutdown(server, cfg.shutdown_grace_ms) != 0) {
        /* The store is stuck (server_shutdown logged what it left): closing it would block too.
         * Nothing unanswered was acknowledged, so leaving now loses nothing a client was told. */
        log_thread_flush();
        _exit(1);
    }
    rc = 0;
out_services:
    /* The store first: its threads (a database's readers) may still report availability to health
     * and finish reads that were answered at their deadline; once it is closed nothing calls into
     * the services (health.h: health_free last). */
    store_close(store);
    reflection_free(reflection);
    health_free(health);
    svc_free(svc);
    server_free(server);
    if (rc == 0)
        log_msg(LOG_INFO, "stopped");
out_config:
    config_cleanup(&cfg);
    return rc;
}
