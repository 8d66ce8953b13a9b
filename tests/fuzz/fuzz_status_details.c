/* fuzz_status_details: the CLI's reading of a grpc-status-details-bin trailer
 * (codec_decode_status_details into a books_error with an arena, as client.c does), then its
 * printing of the error (cli_print_error, plain and JSON), as `books` does after a failed call. The
 * input is the trailer's bytes (a google.rpc.Status), in a heap block of exactly its size.
 * Properties: a failure leaves the error untouched; printed plain, the error is lines without C0
 * control characters or DEL (cli.h: escaped), as JSON one line of valid JSON; and what was decoded
 * survives the server's encoder and a second decode unchanged (a fixed point). Not asserted: that
 * plain output is valid UTF-8 without C1 controls. codec_decode_status_details does not check
 * UTF-8, and cli_put_text() (src/cli/print.c) escapes C1 only in its UTF-8 form (c2 80 .. c2 9f),
 * so a raw 0x9b (CSI) or broken UTF-8 from the server reaches the terminal as it is (seed
 * raw-c1-bytes; see tests/fuzz/README.md, "Findings"). */
#include <string.h>

#include "books/cli.h"
#include "books/utf8.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* Prints err both ways into memory and checks the text. */
static void check_printed(const struct client_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    FUZZ_CHECK(cli_print_error(f, err, false) == 0);
    fclose(f);
    FUZZ_CHECK(len > 0 && text[len - 1] == '\n');
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        FUZZ_CHECK(c == '\n' || (c >= 0x20 && c != 0x7f));
    }
    free(text);

    text = NULL;
    len = 0;
    f = open_memstream(&text, &len);
    if (!f)
        abort();
    FUZZ_CHECK(cli_print_error(f, err, true) == 0);
    fclose(f);
    FUZZ_CHECK(len > 0 && text[len - 1] == '\n');
    FUZZ_CHECK(memchr(text, '\n', len) == text + len - 1);
    FUZZ_CHECK(utf8_valid(text, len));
    for (size_t i = 0; i + 1 < len; i++)
        FUZZ_CHECK((unsigned char)text[i] >= 0x20);
    FUZZ_CHECK(fuzz_json_valid(text, len));
    free(text);
}

static bool same(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

/* Encode what was decoded with the server's encoder and decode it again: same contents. */
static void check_fixed_point(const struct books_error *e)
{
    unsigned char *buf = malloc(FUZZ_CALL_ARENA_BYTES);
    struct arena arena;
    struct books_error again;
    grpc_slice bin;
    if (!buf)
        abort();
    FUZZ_CHECK(codec_encode_status_details(e, &bin) == 0);
    arena_init(&arena, buf, FUZZ_CALL_ARENA_BYTES);
    books_error_init(&again, &arena);
    FUZZ_CHECK(codec_decode_status_details(&bin, &again) == 0);
    if (e->reason) /* else the encoder writes its placeholder reason */
        FUZZ_CHECK(same(again.reason, e->reason));
    FUZZ_CHECK(same(again.meta_key, e->meta_key));
    FUZZ_CHECK(!e->meta_key || strcmp(again.meta_value, e->meta_value) == 0);
    FUZZ_CHECK(same(again.resource_type, e->resource_type));
    FUZZ_CHECK(!e->resource_type || strcmp(again.resource_name, e->resource_name) == 0);
    FUZZ_CHECK(again.n_violations == e->n_violations);
    for (size_t i = 0; i < e->n_violations; i++) {
        FUZZ_CHECK(strcmp(again.violations[i].field, e->violations[i].field) == 0);
        FUZZ_CHECK(strcmp(again.violations[i].description, e->violations[i].description) == 0);
    }
    grpc_slice_unref(bin);
    arena_cleanup(&arena);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = fuzz_copy(data, size, false);
    grpc_slice bin = grpc_slice_from_static_buffer(copy, size);
    unsigned char *buf = malloc(FUZZ_CALL_ARENA_BYTES);
    struct arena arena;
    struct client_error err;
    int rc;

    if (!buf)
        abort();
    arena_init(&arena, buf, FUZZ_CALL_ARENA_BYTES);
    books_error_init(&err.detail, &arena);
    err.status = GRPC_STATUS_INVALID_ARGUMENT;
    /* What client.c has set by the time it reads the trailer: the code and grpc-message. */
    err.detail.code = BOOKS_EINVAL;
    snprintf(err.detail.message, sizeof err.detail.message, "status message");

    rc = codec_decode_status_details(&bin, &err.detail);
    if (rc == 0) {
        check_fixed_point(&err.detail);
    } else {
        FUZZ_CHECK(rc == BOOKS_EBADMSG);
        FUZZ_CHECK(err.detail.reason == NULL && err.detail.n_violations == 0 &&
                   err.detail.meta_key == NULL && err.detail.resource_type == NULL);
    }
    check_printed(&err);
    arena_cleanup(&arena);
    free(buf);
    free(copy);
    return 0;
}
