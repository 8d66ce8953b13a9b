/* print.c: the `books` output, for people and for scripts. For people: one line per book, with
 * control characters escaped so that a title cannot break the one-book-per-line layout or send
 * escape sequences to the terminal, and errors as "STATUS: message" plus one line per field
 * violation. For scripts (--json): the proto3 JSON mapping of a Book (of any message: its
 * descriptor drives it), and the AIP-193 JSON error object, built with json.h's builder (every
 * string escaped by json_escape_append()). */
#include "print.h"

#include "books/codec.h"
#include "books/error.h"
#include "books/status.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "google/protobuf/timestamp.pb-c.h"

/* ---- proto3 JSON, from the message's descriptor ------------------------------------------------
 * The proto3 JSON mapping (protobuf.dev, "ProtoJSON Format") of any message, by its protobuf-c
 * descriptor: a field added to books.proto prints with no change here. Keys are the fields'
 * lowerCamelCase JSON names; a field with implicit presence is written even at its default, so
 * scripts can rely on the keys (proto3 JSON parsers accept defaults), one with explicit presence
 * (optional, a oneof member, a message) only when set. 64-bit integers are strings, bytes base64,
 * enums their value's name, google.protobuf.Timestamp an RFC 3339 string. */

#define JSON_NESTING_MAX 32

/* The JSON name of a proto field (protoc's rule): underscores dropped, the letter after each
 * upper-cased. */
static void json_name(const char *name, char *out, size_t len)
{
    size_t o = 0;
    bool upper = false;
    for (const char *p = name; *p && o + 1 < len; p++) {
        if (*p == '_') {
            upper = true;
            continue;
        }
        out[o++] = upper && *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
        upper = false;
    }
    out[o] = '\0';
}

static void json_base64(struct json_buf *b, const ProtobufCBinaryData *d)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    JSON_LIT(b, "\"");
    for (size_t i = 0; i < d->len; i += 3) {
        uint32_t v = (uint32_t)d->data[i] << 16;
        size_t n = d->len - i < 3 ? d->len - i : 3;
        if (n > 1)
            v |= (uint32_t)d->data[i + 1] << 8;
        if (n > 2)
            v |= d->data[i + 2];
        char q[4] = {abc[v >> 18 & 63], abc[v >> 12 & 63], n > 1 ? abc[v >> 6 & 63] : '=',
                     n > 2 ? abc[v & 63] : '='};
        json_raw(b, q, 4);
    }
    JSON_LIT(b, "\"");
}

static void json_double(struct json_buf *b, double d, int digits)
{
    char num[40];
    if (isnan(d))
        JSON_LIT(b, "\"NaN\"");
    else if (isinf(d))
        json_cstr(b, d > 0 ? "Infinity" : "-Infinity");
    else {
        int n = snprintf(num, sizeof num, "%.*g", digits, d);
        json_raw(b, num, (size_t)n);
    }
}

static void json_message(struct json_buf *b, const ProtobufCMessage *msg, int depth);

static void json_value(struct json_buf *b, const ProtobufCFieldDescriptor *f, const void *p,
                       int depth)
{
    char num[32];
    int n;
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        json_cstr(b, *(char *const *)p);
        return;
    case PROTOBUF_C_TYPE_BYTES:
        json_base64(b, p);
        return;
    case PROTOBUF_C_TYPE_BOOL:
        if (*(const protobuf_c_boolean *)p)
            JSON_LIT(b, "true");
        else
            JSON_LIT(b, "false");
        return;
    case PROTOBUF_C_TYPE_DOUBLE:
        json_double(b, *(const double *)p, 17);
        return;
    case PROTOBUF_C_TYPE_FLOAT:
        json_double(b, *(const float *)p, 9);
        return;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        n = snprintf(num, sizeof num, "\"%lld\"", (long long)*(const int64_t *)p);
        json_raw(b, num, (size_t)n);
        return;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        n = snprintf(num, sizeof num, "\"%llu\"", (unsigned long long)*(const uint64_t *)p);
        json_raw(b, num, (size_t)n);
        return;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        json_num(b, (long long)*(const uint32_t *)p);
        return;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)p);
        if (v)
            json_cstr(b, v->name);
        else
            json_num(b, *(const int *)p);
        return;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        if (strcmp(m->descriptor->name, "google.protobuf.Timestamp") == 0) {
            const Google__Protobuf__Timestamp *t = (const Google__Protobuf__Timestamp *)m;
            struct tm tm;
            time_t secs = (time_t)t->seconds;
            char when[64];
            if (gmtime_r(&secs, &tm) && t->nanos >= 0 && t->nanos < 1000000000) {
                size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
                if (t->nanos)
                    w += (size_t)snprintf(when + w, sizeof when - w, ".%09d", (int)t->nanos);
                snprintf(when + w, sizeof when - w, "Z");
                json_cstr(b, when);
                return;
            }
        }
        if (depth >= JSON_NESTING_MAX) {
            JSON_LIT(b, "null");
            return;
        }
        json_message(b, m, depth + 1);
        return;
    }
    default: /* INT32, SINT32, SFIXED32 */
        json_num(b, *(const int32_t *)p);
        return;
    }
}

static void json_message(struct json_buf *b, const ProtobufCMessage *msg, int depth)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    const char *m = (const char *)msg;
    bool first = true;
    char key[128];
    JSON_LIT(b, "{");
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!codec_field_present(msg, f))
            continue;
        if (!first)
            JSON_LIT(b, ",");
        first = false;
        json_name(f->name, key, sizeof key);
        json_cstr(b, key);
        JSON_LIT(b, ":");
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            json_value(b, f, m + f->offset, depth);
            continue;
        }
        size_t n = *(const size_t *)(m + f->quantifier_offset);
        const char *items = *(const char *const *)(m + f->offset);
        JSON_LIT(b, "[");
        for (size_t k = 0; k < n; k++) {
            if (k)
                JSON_LIT(b, ",");
            json_value(b, f, items + k * codec_field_value_size(f), depth);
        }
        JSON_LIT(b, "]");
    }
    JSON_LIT(b, "}");
}

void cli_json_message(struct json_buf *b, const ProtobufCMessage *msg)
{
    json_message(b, msg, 0);
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
    cli_json_message(&b, &book->base);
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
