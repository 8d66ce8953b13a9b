/* trace.c: strict parsers for the two trace headers Cloud Run forwards. Strict, because their output
 * goes into log lines: only validated hex digits are ever copied. */
#include "books/trace.h"

#include <stdint.h>
#include <string.h>

static bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

/* Copies n lowercase hex digits; false when one is not, or when all are zero. */
static bool copy_hex(const char *s, size_t n, char *out)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        if (!is_lower_hex(s[i]))
            return false;
        nonzero |= s[i] != '0';
        out[i] = s[i];
    }
    out[n] = '\0';
    return nonzero;
}

bool trace_parse_traceparent(const char *v, size_t len, struct trace_context *out)
{
    struct trace_context t;
    char version[3], flags[3];
    /* version(2) - trace-id(32) - parent-id(16) - flags(2) = 55 characters */
    if (len < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-')
        return false;
    if (!is_lower_hex(v[0]) || !is_lower_hex(v[1]) || !is_lower_hex(v[53]) ||
        !is_lower_hex(v[54]))
        return false;
    memcpy(version, v, 2);
    version[2] = '\0';
    if (strcmp(version, "ff") == 0)
        return false;
    /* Version 00 is exactly 55 characters; later versions may append "-..." fields. */
    if (strcmp(version, "00") == 0 ? len != 55 : (len > 55 && v[55] != '-'))
        return false;
    if (!copy_hex(v + 3, 32, t.trace_id) || !copy_hex(v + 36, 16, t.span_id))
        return false;
    memcpy(flags, v + 53, 2);
    flags[2] = '\0';
    t.sampled = ((flags[1] >= 'a' ? flags[1] - 'a' + 10 : flags[1] - '0') & 1) != 0;
    *out = t;
    return true;
}

bool trace_parse_cloud(const char *v, size_t len, struct trace_context *out)
{
    static const char hex[] = "0123456789abcdef";
    struct trace_context t;
    size_t i = 0;
    bool nonzero = false;
    if (len < 32)
        return false;
    for (; i < 32; i++) {
        char c = v[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!is_lower_hex(c))
            return false;
        nonzero |= c != '0';
        t.trace_id[i] = c;
    }
    t.trace_id[32] = '\0';
    if (!nonzero)
        return false;
    t.span_id[0] = '\0';
    t.sampled = false;
    if (i < len && v[i] == '/') {
        uint64_t span = 0;
        size_t digits = 0;
        for (i++; i < len && v[i] >= '0' && v[i] <= '9'; i++, digits++) {
            uint64_t d = (uint64_t)(v[i] - '0');
            if (span > (UINT64_MAX - d) / 10)
                return false;
            span = span * 10 + d;
        }
        if (digits == 0)
            return false;
        if (span != 0) {
            for (int k = 15; k >= 0; k--, span >>= 4)
                t.span_id[k] = hex[span & 0xf];
            t.span_id[16] = '\0';
        }
    }
    if (i < len) {
        if (len - i != 4 || memcmp(v + i, ";o=", 3) != 0 || (v[i + 3] != '0' && v[i + 3] != '1'))
            return false;
        t.sampled = v[i + 3] == '1';
    }
    *out = t;
    return true;
}
