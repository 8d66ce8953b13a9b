/* cli.c: running a `books` command: one client, one arena for the call's messages and error, the
 * call (or, for `list --all`, one call per page), the result printed for people or as JSON
 * (print.c), and on failure the error and a hint at the likely fix. Parsing and help are args.c's.
 */
#include "books/cli.h"

#include <errno.h>
#include <grpc/grpc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <uuid/uuid.h>

#include "books/codec.h"
#include "books/error.h"
#include "books/json.h"
#include "books/status.h"
#include "print.h"

#define USER_AGENT "books-cli/" BOOKS_VERSION

/* ---- commands ---------------------------------------------------------------------------- */

static int out_of_memory(struct client_error *err)
{
    err->status = GRPC_STATUS_RESOURCE_EXHAUSTED;
    books_error_set(&err->detail, BOOKS_ENOMEM, NULL, "out of memory");
    return BOOKS_ENOMEM;
}

static int run_get(struct client *c, const struct cli_args *a, struct arena *arena, FILE *out,
                   struct client_error *err)
{
    Books__V1__Book *book = NULL;
    int rc = client_get_book(c, a->name, arena, &book, err);
    if (rc)
        return rc;
    rc = cli_print_book(out, book, a->json);
    codec_free_request(&book->base, arena);
    return rc ? out_of_memory(err) : 0;
}

/* A create may be retried with its request_id after these: the server did not answer (UNAVAILABLE,
 * DEADLINE_EXCEEDED), could not tell whether it committed (UNKNOWN), or its store rolled the
 * create back in a conflict with another and asks for a retry (ABORTED, STORE_ABORTED). */
static bool retryable(grpc_status_code s)
{
    return s == GRPC_STATUS_UNAVAILABLE || s == GRPC_STATUS_DEADLINE_EXCEEDED ||
           s == GRPC_STATUS_UNKNOWN || s == GRPC_STATUS_ABORTED;
}

/* Waits 100 ms * 2^attempt (at most 2 s), minus up to a quarter at random (so many clients that
 * failed together do not retry together). */
static void backoff(int attempt)
{
    unsigned char r = 0;
    long ms = attempt >= 5 ? 2000 : 100L << attempt;
    if (ms > 2000)
        ms = 2000;
    if (getrandom(&r, 1, 0) == 1)
        ms -= ms * r / 1024;
    nanosleep(&(struct timespec){ms / 1000, (ms % 1000) * 1000000L}, NULL);
}

static int run_create(struct client *c, const struct cli_args *a, struct arena *arena, FILE *out,
                      FILE *errf, struct client_error *err, char request_id[37])
{
    Books__V1__Book in = BOOKS__V1__BOOK__INIT, *book = NULL;
    in.display_name = (char *)(a->title ? a->title : "");
    in.n_authors = a->n_authors;
    in.authors = (char **)a->authors;
    in.publisher = (char *)(a->publisher ? a->publisher : "");
    if (a->request_id) {
        snprintf(request_id, 37, "%s", a->request_id);
    } else {
        uuid_t u;
        uuid_generate_random(u);
        uuid_unparse_lower(u, request_id);
    }
    int rc;
    for (int attempt = 0;; attempt++) {
        rc = client_create_book(c, &in, a->book_id, request_id, arena, &book, err);
        if (rc == 0 || !retryable(err->status) || attempt >= a->retries)
            break;
        if (!a->json)
            fprintf(errf, "books: %s (%s); retrying with request_id %s (attempt %d of %d)\n",
                    rpc_status_name(err->status), err->detail.message, request_id, attempt + 2,
                    a->retries + 1);
        books_error_clear(&err->detail);
        backoff(attempt);
    }
    if (rc)
        return rc;
    rc = cli_print_book(out, book, a->json);
    codec_free_request(&book->base, arena);
    return rc ? out_of_memory(err) : 0;
}

/* One page, or with --all every page, each page one call. Pages are printed as they arrive, so
 * memory stays one page whatever the size of the collection; the arena is reset between pages
 * (the next token is copied out first). */
static int run_list(struct client *c, const struct cli_args *a, struct arena *arena, FILE *out,
                    FILE *errf, struct client_error *err)
{
    struct json_buf b;
    char *token = NULL;
    size_t total = 0;
    int rc = 0;

    if (a->page_token && !(token = strdup(a->page_token)))
        return out_of_memory(err);
    json_buf_init_heap(&b);
    for (bool first = true;; first = false) {
        Books__V1__ListBooksResponse *resp = NULL;
        rc = client_list_books(c, a->page_size, token, arena, &resp, err);
        if (rc)
            break;
        const char *next = resp->next_page_token;
        bool last = !a->all || !*next;
        if (a->json) {
            if (first)
                JSON_LIT(&b, "{\"books\":[");
            for (size_t i = 0; i < resp->n_books; i++) {
                if (total + i)
                    JSON_LIT(&b, ",");
                cli_json_message(&b, &resp->books[i]->base);
            }
            if (last) {
                JSON_LIT(&b, "]");
                if (*next) {
                    JSON_LIT(&b, ",\"nextPageToken\":");
                    json_cstr(&b, next);
                }
                JSON_LIT(&b, "}\n");
            }
            rc = json_buf_write(&b, out);
        } else {
            for (size_t i = 0; i < resp->n_books; i++)
                cli_print_book_line(out, resp->books[i]);
        }
        total += resp->n_books;
        if (!rc && last && !a->json) {
            if (total == 0)
                fputs("no books\n", errf);
            if (*next) {
                /* Where people look, but not in the way of `books list | wc -l`. */
                fputs("next page: books list", errf);
                if (a->page_size)
                    fprintf(errf, " --page-size %d", (int)a->page_size);
                fputs(" --page-token ", errf);
                cli_put_text(errf, next, false);
                fputc('\n', errf);
            }
        }
        if (!rc && !last && token && strcmp(token, next) == 0) {
            /* A server that hands back the token it was given would keep --all going forever. */
            err->status = GRPC_STATUS_INTERNAL;
            books_error_set(&err->detail, BOOKS_EINTERNAL, NULL,
                            "the server returned the page token it was sent; stopping --all");
            rc = BOOKS_EINTERNAL;
        }
        char *copy = rc || last ? NULL : strdup(next);
        codec_free_request(&resp->base, arena);
        if (rc || last)
            break;
        if (!copy) {
            rc = out_of_memory(err);
            break;
        }
        free(token);
        token = copy;
        arena_reset(arena);
    }
    if (rc == BOOKS_ENOMEM && err->status == GRPC_STATUS_OK)
        rc = out_of_memory(err);
    free(token);
    json_buf_free(&b);
    return rc;
}

/* Next steps for the failures people meet first. Not with --json: stderr is then one JSON object.
 */
static void print_hint(FILE *f, const struct cli_args *a, const struct client_error *err)
{
    if (err->detail.reason)
        return; /* the server itself answered, and its message says what to fix */
    switch (err->status) {
    case GRPC_STATUS_UNAVAILABLE:
        fprintf(f,
                "hint: no server answered at %s (%s); check --addr%s and that the server is "
                "running\n",
                a->target, a->tls ? "TLS" : "plaintext", a->tls ? " and --tls" : "");
        break;
    case GRPC_STATUS_UNAUTHENTICATED:
    case GRPC_STATUS_PERMISSION_DENIED:
        if (!a->token)
            fputs("hint: a private Cloud Run service needs an identity token: --token "
                  "\"$(gcloud auth print-identity-token)\" (or BOOKS_TOKEN)\n",
                  f);
        break;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        fprintf(f, "hint: no answer within %.3g s; a longer --timeout may help\n",
                a->timeout_ms / 1000.0);
        break;
    default:
        break;
    }
}

int cli_run(const struct cli_args *args, FILE *out, FILE *errf)
{
    struct client_options opts = {
        .target = args->target,
        .tls = args->tls,
        .token = args->token,
        .timeout_ms = args->timeout_ms,
        .user_agent = USER_AGENT,
    };
    struct client *c = NULL;
    struct client_error err;
    struct arena arena;
    unsigned char arena_buf[16384];
    char request_id[37] = "";
    int rc, status = CLI_EXIT_OK;

    rc = client_new(&opts, &c);
    if (rc) {
        /* cli_parse() checked everything client_new() checks; only memory can be short. */
        fprintf(errf, "books: cannot set up a client for %s: %s\n", args->target,
                books_err_name(rc));
        return CLI_EXIT_FAILED;
    }
    arena_init(&arena, arena_buf, sizeof arena_buf);
    books_error_init(&err.detail, &arena);
    err.status = GRPC_STATUS_OK;
    switch (args->command) {
    case CLI_CREATE:
        rc = run_create(c, args, &arena, out, errf, &err, request_id);
        break;
    case CLI_GET:
        rc = run_get(c, args, &arena, out, &err);
        break;
    case CLI_LIST:
        rc = run_list(c, args, &arena, out, errf, &err);
        break;
    case CLI_NO_COMMAND:
        abort(); /* cli_parse() never returns CLI_RUN without a command */
    }
    if (rc) {
        /* Whatever the page(s) before printed goes out before the error. */
        fflush(out);
        if (cli_print_error(errf, &err, args->json) != 0)
            fprintf(errf, "%s: %s\n", rpc_status_name(err.status), err.detail.message);
        if (!args->json)
            print_hint(errf, args, &err);
        if (!args->json && args->command == CLI_CREATE && retryable(err.status))
            fprintf(errf,
                    "books: the book may or may not have been made: retry with --request-id %s "
                    "to get it, or have it made, exactly once\n",
                    request_id);
        status = CLI_EXIT_FAILED;
    }
    arena_cleanup(&arena);
    client_free(c);
    if (fflush(out) != 0 || ferror(out)) {
        fprintf(errf, "books: cannot write the output: %s\n", strerror(errno));
        status = CLI_EXIT_FAILED;
    }
    return status;
}
