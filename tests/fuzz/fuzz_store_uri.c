/* fuzz_store_uri: store_open() of a store URI (BOOKS_STORE / --store). The input, up to its first
 * NUL, is the URI, with safety rules, so that fuzzing never creates a file or opens a connection:
 *   - sqlite: and file: (schemes matched as store_open matches them: up to the first ':',
 *     case-insensitively): the path part, up to the first '?', is rewritten to lie under
 *     /nonexistent-books-fuzz/, a directory that does not exist; the parameters after '?' are left
 *     as they are, so their parser is fuzzed in full. Two paths are kept as they are because
 *     store_open refuses them before any file system access: the empty path and ":memory:".
 *   - postgresql: and postgres: go to pg_parse_uri() (src/store/postgres/pg.h), the parser
 *     store_open() runs before it connects: the store's own parameters are parsed and checked, the
 *     rest is the connection string libpq would get. Nothing connects: opening would reach any
 *     host the input names and retry for startup_timeout_s.
 *   - firestore: goes to fs_parse_uri() (src/firestore/fs.h), the parser store_open() runs before
 *     it makes a channel; nothing connects (opening would reach Firestore or an emulator).
 *     GOOGLE_CLOUD_PROJECT is set at start-up, so "firestore:" alone never asks the metadata
 *     server.
 *   - Any other scheme store_open knows aborts the target at start-up (it reads the accepted forms
 *     from store_open's own message), so a new backend is looked at before it is fuzzed.
 * A memory: store that opens is closed.
 * Properties: failures leave *out alone and say why in a NUL-terminated message; a sqlite: store
 * never opens (its directory does not exist); pg_parse_uri's connection string is never longer
 * than the URI and is the URI's part before '?' (parameters are only taken out), and its
 * parameters are in their documented ranges (store_postgres.h); fs_parse_uri's project and
 * database ids and parameters are what store_firestore.h allows. */
#include <string.h>
#include <strings.h>

#include <stdlib.h>

#include "books/store.h"
#include "books/store_firestore.h"
#include "fs.h"
#include "fuzz_common.h"
#include "pg.h"

#define JAIL "/nonexistent-books-fuzz/"

static bool scheme_is(const char *uri, const char *colon, const char *scheme)
{
    return (size_t)(colon - uri) == strlen(scheme) && strncasecmp(uri, scheme, strlen(scheme)) == 0;
}

/* The schemes this target knows what to do with (see the top). */
static const char *const known[] = {"memory", "sqlite", "file", "postgresql", "postgres",
                                    "firestore"};

/* fs_parse_uri's ids: the characters store_firestore.h allows. */
static bool only(const char *s, const char *allowed)
{
    return *s && strspn(s, allowed) == strlen(s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[STORE_ERR_BYTES];
    struct store *s = NULL;
    const char *forms;
    (void)argc;
    (void)argv;
    setenv("GOOGLE_CLOUD_PROJECT", "books-fuzz", 1);
    FUZZ_CHECK(store_firestore_register() == 0);
    /* "...; accepted forms: memory:, sqlite:PATH, ..." */
    FUZZ_CHECK(store_open("books-fuzz-probe:", NULL, &s, err, sizeof err) == BOOKS_EINVAL);
    forms = strstr(err, "accepted forms: ");
    FUZZ_CHECK(forms != NULL);
    for (forms += strlen("accepted forms: "); *forms;) {
        size_t n = strcspn(forms, ":"), i;
        for (i = 0; i < sizeof known / sizeof known[0]; i++)
            if (strlen(known[i]) == n && strncmp(forms, known[i], n) == 0)
                break;
        if (i == sizeof known / sizeof known[0]) {
            fprintf(stderr,
                    "fuzz_store_uri: store_open() accepts \"%.*s:\", which this target does not "
                    "know: decide whether opening it is safe (no network, no file outside "
                    "/nonexistent-books-fuzz/) and teach tests/fuzz/fuzz_store_uri.c\n",
                    (int)n, forms);
            abort();
        }
        forms = strstr(forms, ", ");
        if (!forms)
            break;
        forms += 2;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_copy(data, size, true), *uri = in;
    const char *colon = strchr(in, ':');
    struct store *s = (struct store *)0x1;
    char err[STORE_ERR_BYTES];
    bool durable = false;
    int rc;

    if (colon && scheme_is(in, colon, "firestore")) {
        char project[FS_PROJECT_BYTES], database[FS_DATABASE_BYTES];
        struct fs_params prm;
        memset(err, 0x5a, sizeof err);
        rc = fs_parse_uri(colon + 1, project, database, &prm, err, sizeof err);
        if (rc == 0) {
            FUZZ_CHECK(only(project, "abcdefghijklmnopqrstuvwxyz0123456789-.:"));
            FUZZ_CHECK(strcmp(database, "(default)") == 0 ||
                       only(database, "abcdefghijklmnopqrstuvwxyz0123456789-"));
            FUZZ_CHECK(prm.collection && strlen(prm.collection) <= 100 &&
                       only(prm.collection, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                            "0123456789_-"));
            FUZZ_CHECK(prm.cache_mb >= 0 && prm.cache_mb <= 65536);
            FUZZ_CHECK(prm.timeout_ms >= 1 && prm.timeout_ms <= 600000);
            FUZZ_CHECK(prm.startup_timeout_s >= 0 && prm.startup_timeout_s <= 3600);
            FUZZ_CHECK(prm.group_commit == 0 || prm.group_commit == 1);
        } else {
            FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
            FUZZ_CHECK(rc == BOOKS_EINVAL || rc == BOOKS_ENOMEM);
        }
        fs_params_free(&prm);
        free(in);
        return 0;
    }
    if (colon && (scheme_is(in, colon, "postgresql") || scheme_is(in, colon, "postgres"))) {
        struct params prm;
        char *conninfo = NULL;
        memset(err, 0x5a, sizeof err);
        rc = pg_parse_uri(in, &prm, &conninfo, err, sizeof err);
        if (rc == 0) {
            size_t path = strcspn(in, "?");
            FUZZ_CHECK(conninfo != NULL && strlen(conninfo) <= strlen(in));
            FUZZ_CHECK(strncmp(conninfo, in, path) == 0);
            FUZZ_CHECK(prm.pool >= 1 && prm.pool <= 64);
            FUZZ_CHECK(prm.statement_timeout_ms >= 0 && prm.statement_timeout_ms <= 3600000);
            FUZZ_CHECK(prm.startup_timeout_s >= 0 && prm.startup_timeout_s <= 3600);
            FUZZ_CHECK(prm.cache_mb >= 0 && (prm.group_commit == 0 || prm.group_commit == 1));
            free(conninfo);
        } else {
            FUZZ_CHECK(conninfo == NULL);
            FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
            FUZZ_CHECK(rc == BOOKS_EINVAL || rc == BOOKS_ENOMEM);
        }
        free(in);
        return 0;
    }
    if (colon && (scheme_is(in, colon, "sqlite") || scheme_is(in, colon, "file"))) {
        const char *rest = colon + 1;
        size_t path_len = strcspn(rest, "?");
        durable = true;
        if (path_len != 0 && !(path_len == 8 && memcmp(rest, ":memory:", 8) == 0)) {
            size_t scheme = (size_t)(rest - in), n = strlen(in) + sizeof JAIL;
            uri = malloc(n);
            if (!uri)
                abort();
            snprintf(uri, n, "%.*s" JAIL "%s", (int)scheme, in, rest);
        }
    }
    memset(err, 0x5a, sizeof err);
    rc = store_open(uri, NULL, &s, err, sizeof err);
    if (rc == 0) {
        FUZZ_CHECK(!durable);
        FUZZ_CHECK(s != NULL && s != (struct store *)0x1);
        store_close(s);
    } else {
        FUZZ_CHECK(s == (struct store *)0x1);
        FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
        FUZZ_CHECK(rc == BOOKS_EINVAL || rc == BOOKS_EIO || rc == BOOKS_ECORRUPT);
    }
    if (uri != in)
        free(uri);
    free(in);
    return 0;
}
