/* fuzz_cli_response: the client side of a response, as `books get`/`create` and `books list` see
 * it: codec_decode() with the client's limit (CLIENT_MAX_RESPONSE_BYTES, as client.c) of a Book and
 * of a ListBooksResponse, both from the same input (the Book as a byte buffer of one slice, the
 * ListBooksResponse of two, cut in the middle: both of codec_decode's paths), then the CLI's
 * printing of each book, plain and JSON (cli_print_book). Output goes to memory rather than
 * /dev/null so that it can be checked: plain, one line per book with no control characters (cli.h:
 * they are escaped); JSON, one line of valid UTF-8 with no control characters, and valid JSON
 * (fuzz_json_valid). run_list()'s own JSON wrapper and next-page line are static in cli.c and not
 * reached from here. */
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

static void check_book_output(const Books__V1__Book *book)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        abort();
    FUZZ_CHECK(cli_print_book(f, book, false) == 0);
    fclose(f);
    FUZZ_CHECK(len > 0 && memchr(text, '\n', len) == text + len - 1);
    for (size_t i = 0; i + 1 < len; i++) {
        unsigned char c = (unsigned char)text[i];
        FUZZ_CHECK(c >= 0x20 && c != 0x7f);
        /* C1 controls (U+0080..U+009F, UTF-8 c2 80..c2 9f) are escaped too */
        FUZZ_CHECK(!(c == 0xc2 && i + 2 < len && (unsigned char)text[i + 1] >= 0x80 &&
                     (unsigned char)text[i + 1] <= 0x9f));
    }
    free(text);

    text = NULL;
    len = 0;
    f = open_memstream(&text, &len);
    if (!f)
        abort();
    FUZZ_CHECK(cli_print_book(f, book, true) == 0);
    fclose(f);
    FUZZ_CHECK(len > 0 && memchr(text, '\n', len) == text + len - 1);
    FUZZ_CHECK(utf8_valid(text, len));
    for (size_t i = 0; i + 1 < len; i++)
        FUZZ_CHECK((unsigned char)text[i] >= 0x20);
    FUZZ_CHECK(text[0] == '{' && text[len - 2] == '}');
    FUZZ_CHECK(fuzz_json_valid(text, len));
    free(text);
}

static int decode(const uint8_t *data, size_t size, size_t parts,
                  const ProtobufCMessageDescriptor *desc, struct arena *arena,
                  ProtobufCMessage **out, struct books_error *err)
{
    static const struct codec_limits limits = {.max_message_bytes = CLIENT_MAX_RESPONSE_BYTES};
    grpc_slice slices[2];
    grpc_byte_buffer *bb;
    size_t cut = parts == 2 ? size / 2 : size;
    int rc;
    slices[0] = grpc_slice_from_copied_buffer((const char *)data, cut);
    slices[1] = grpc_slice_from_copied_buffer((const char *)data + cut, size - cut);
    bb = grpc_raw_byte_buffer_create(slices, parts);
    grpc_slice_unref(slices[0]);
    grpc_slice_unref(slices[1]);
    rc = codec_decode(bb, desc, &limits, arena, out, err);
    grpc_byte_buffer_destroy(bb);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *buf = malloc(FUZZ_CALL_ARENA_BYTES);
    struct arena arena;
    struct books_error err;
    ProtobufCMessage *msg = NULL;

    if (!buf)
        abort();
    arena_init(&arena, buf, FUZZ_CALL_ARENA_BYTES);

    books_error_init(&err, &arena);
    if (decode(data, size, 1, &books__v1__book__descriptor, &arena, &msg, &err) == 0) {
        check_book_output((const Books__V1__Book *)msg);
        codec_free_request(msg, &arena);
    }
    arena_reset(&arena);

    msg = NULL;
    books_error_init(&err, &arena);
    if (decode(data, size, 2, &books__v1__list_books_response__descriptor, &arena, &msg, &err) ==
        0) {
        const Books__V1__ListBooksResponse *resp = (const Books__V1__ListBooksResponse *)msg;
        for (size_t i = 0; i < resp->n_books; i++)
            check_book_output(resp->books[i]);
        FUZZ_CHECK(utf8_valid(resp->next_page_token, strlen(resp->next_page_token)));
        codec_free_request(msg, &arena);
    }
    arena_cleanup(&arena);
    free(buf);
    return 0;
}
