/* fuzz_config: config_load() of the server's command line and environment, then config_cleanup().
 * The input is split into argv and envp as fuzz_common.h says (fuzz_args_build: byte 0 mod 64
 * strings are argv[1..], the rest envp; strings are NUL-separated; argv[0] is "books-server").
 * Properties: on success every setting is within its documented bounds and *action is one of the
 * four; on failure cfg is zeroed and err holds a NUL-terminated message. */
#include <string.h>

#include "books/config.h"
#include "books/error.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_args a;
    struct books_config cfg, zero;
    enum config_action action = (enum config_action)99;
    char err[CONFIG_ERR_BYTES];
    int rc;

    fuzz_args_build(data, size, "books-server", &a);
    memset(&cfg, 0x5a, sizeof cfg);
    memset(&zero, 0, sizeof zero);
    memset(err, 0x5a, sizeof err);
    rc = config_load(&cfg, a.argc, a.argv, a.envp, &action, err, sizeof err);
    FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
    if (rc == 0) {
        FUZZ_CHECK(action == CONFIG_RUN || action == CONFIG_HELP ||
                   action == CONFIG_HELP_MARKDOWN || action == CONFIG_VERSION);
        FUZZ_CHECK(cfg.port >= 0 && cfg.port <= 65535);
        FUZZ_CHECK(cfg.store != NULL && cfg.store[0] != '\0');
        FUZZ_CHECK(cfg.threads >= 0 && cfg.threads <= 1024);
        FUZZ_CHECK(cfg.shutdown_grace_ms >= 0 && cfg.shutdown_grace_ms <= 600000);
        FUZZ_CHECK(cfg.max_recv_bytes >= 1024 && cfg.max_recv_bytes <= 1073741824);
        FUZZ_CHECK(cfg.max_concurrent_streams >= 1 && cfg.max_concurrent_streams <= 65536);
        FUZZ_CHECK(cfg.project != NULL && strlen(cfg.project) <= 100);
        FUZZ_CHECK(cfg.log_level >= LOG_DEBUG && cfg.log_level <= LOG_ERROR);
    } else {
        FUZZ_CHECK(rc == BOOKS_EINVAL || rc == BOOKS_ENOMEM);
        FUZZ_CHECK(memcmp(&cfg, &zero, sizeof cfg) == 0);
        FUZZ_CHECK(action == (enum config_action)99);
        FUZZ_CHECK(err[0] != '\0');
    }
    config_cleanup(&cfg);
    fuzz_args_free(&a);
    return 0;
}
