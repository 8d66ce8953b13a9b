/* print.c: the `books` output, for people and for scripts. For people: one line per book, with
 * control characters escaped so that a title cannot break the one-book-per-line layout or send
 * escape sequences to the terminal, and errors as "STATUS: message" plus one line per field
 * violation. For scripts (--json): the proto3 JSON mapping of a Book, and the AIP-193 JSON error
 * object, built with json.h's builder (every string escaped by json_escape_append()). */
#include "print.h"

#include "books/error.h"
#include "books/status.h"

#include <string.h>

/* Every field is written, even when empty, so scripts can rely on the keys; proto3 JSON parsers
 * accept fields at their default values. */
void cli_json_book(struct json_buf *b, const Books__V1__Book *book)
{
    JSON_LIT(b, "{\"name\":");
    json_cstr(b, book->name);
    JSON_LIT(b, ",\"displayName\":");
    json_cstr(b, book->display_name);
    JSON_LIT(b, ",\"authors\":[");
    for (size_t i = 0; i < book->n_authors; i++) {
        if (i)
            JSON_LIT(b, ",");
        json_cstr(b, book->authors[i]);
    }
    JSON_LIT(b, "],\"publisher\":");
    json_cstr(b, book->publisher);
    JSON_LIT(b, "}");
}

/* Strings reached us through codec_decode(), which accepts only valid UTF-8, so the only
 * multi-byte sequences to look at are the C1 controls (U+0080..U+009F, "\xc2\x80".."\xc2\x9f"). */
void cli_put_text(FILE *f, const char *s, bool quoted)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '\\' || (quoted && c == '"')) {
            fputc('\\', f);
            fputc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c == '\t') {
            fputs("\\t", f);
        } else if (c == '\r') {
            fputs("\\r", f);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\x%02x", c);
        } else if (c == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            fprintf(f, "\\u%04x", p[1]);
            p++;
        } else {
            fputc(c, f);
        }
    }
}

void cli_print_book_line(FILE *f, const Books__V1__Book *book)
{
    cli_put_text(f, book->name, false);
    fputs("  \"", f);
    cli_put_text(f, book->display_name, true);
    fputc('"', f);
    if (book->n_authors) {
        fputs("  by ", f);
        for (size_t i = 0; i < book->n_authors; i++) {
            if (i)
                fputs(", ", f);
            cli_put_text(f, book->authors[i], false);
        }
    }
    if (*book->publisher) {
        fputs("  (", f);
        cli_put_text(f, book->publisher, false);
        fputc(')', f);
    }
    fputc('\n', f);
}

int cli_print_book(FILE *f, const Books__V1__Book *book, bool json)
{
    struct json_buf b;
    int rc;
    if (!json) {
        cli_print_book_line(f, book);
        return 0;
    }
    json_buf_init_heap(&b);
    cli_json_book(&b, book);
    JSON_LIT(&b, "\n");
    rc = json_buf_write(&b, f);
    json_buf_free(&b);
    return rc;
}

/* The AIP-193 JSON error: google.rpc.Status in the shape Google's HTTP APIs return it. */
static void json_error(struct json_buf *b, const struct client_error *err)
{
    const struct books_error *d = &err->detail;
    bool first = true;
    JSON_LIT(b, "{\"error\":{\"code\":");
    json_num(b, (long)err->status);
    JSON_LIT(b, ",\"status\":");
    json_cstr(b, rpc_status_name(err->status));
    JSON_LIT(b, ",\"message\":");
    json_cstr(b, d->message);
    JSON_LIT(b, ",\"details\":[");
    if (d->reason) {
        JSON_LIT(b, "{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":");
        json_cstr(b, d->reason);
        JSON_LIT(b, ",\"domain\":");
        json_cstr(b, BOOKS_ERROR_DOMAIN);
        JSON_LIT(b, ",\"metadata\":{");
        if (d->meta_key) {
            json_cstr(b, d->meta_key);
            JSON_LIT(b, ":");
            json_cstr(b, d->meta_value);
        }
        JSON_LIT(b, "}}");
        first = false;
    }
    if (d->n_violations) {
        if (!first)
            JSON_LIT(b, ",");
        JSON_LIT(b, "{\"@type\":\"type.googleapis.com/google.rpc.BadRequest\","
                    "\"fieldViolations\":[");
        for (size_t i = 0; i < d->n_violations; i++) {
            if (i)
                JSON_LIT(b, ",");
            JSON_LIT(b, "{\"field\":");
            json_cstr(b, d->violations[i].field);
            JSON_LIT(b, ",\"description\":");
            json_cstr(b, d->violations[i].description);
            JSON_LIT(b, "}");
        }
        JSON_LIT(b, "]}");
        first = false;
    }
    if (d->resource_type) {
        if (!first)
            JSON_LIT(b, ",");
        JSON_LIT(b, "{\"@type\":\"type.googleapis.com/google.rpc.ResourceInfo\","
                    "\"resourceType\":");
        json_cstr(b, d->resource_type);
        JSON_LIT(b, ",\"resourceName\":");
        json_cstr(b, d->resource_name);
        JSON_LIT(b, "}");
    }
    JSON_LIT(b, "]}}\n");
}

int cli_print_error(FILE *f, const struct client_error *err, bool json)
{
    const struct books_error *d = &err->detail;
    if (json) {
        struct json_buf b;
        json_buf_init_heap(&b);
        json_error(&b, err);
        int rc = json_buf_write(&b, f);
        json_buf_free(&b);
        return rc;
    }
    fputs(rpc_status_name(err->status), f);
    if (d->message[0]) {
        fputs(": ", f);
        cli_put_text(f, d->message, false);
    }
    fputc('\n', f);
    for (size_t i = 0; i < d->n_violations; i++) {
        fputs("  ", f);
        cli_put_text(f, d->violations[i].field, false);
        fputs(": ", f);
        cli_put_text(f, d->violations[i].description, false);
        fputc('\n', f);
    }
    if (d->n_dropped)
        fprintf(f, "  (%zu more field violations not shown)\n", d->n_dropped);
    return 0;
}
