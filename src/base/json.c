/* json.c: JSON string escaping (RFC 8259 section 7) for everything this project writes as JSON: the
 * log lines and the CLI's --json output. Input may be any bytes: invalid UTF-8 becomes U+FFFD, so
 * the output is always valid JSON. */
#include "books/json.h"

#include <string.h>

#include "books/utf8.h"

bool json_escape_append(char *dst, size_t *lenp, size_t limit, const char *text, size_t n)
{
    const unsigned char *s = (const unsigned char *)text;
    static const char hex[] = "0123456789abcdef";
    size_t len = *lenp, i = 0;
    bool complete = true;
    while (i < n) {
        /* Printable ASCII is nearly all of what we log; copy runs of it in one go. */
        size_t j = i;
        while (j < n && s[j] >= 0x20 && s[j] < 0x80 && s[j] != '"' && s[j] != '\\')
            j++;
        if (j > i) {
            size_t run = j - i;
            if (run > limit - len) {
                run = limit - len;
                complete = false;
            }
            memcpy(dst + len, s + i, run);
            len += run;
            if (!complete)
                break;
            i = j;
            continue;
        }

        char esc[6];
        const char *out = esc;
        size_t out_len = 2, used = 1;
        unsigned char c = s[i];
        esc[0] = '\\';
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
        } else if (c == '\n') {
            esc[1] = 'n';
        } else if (c == '\r') {
            esc[1] = 'r';
        } else if (c == '\t') {
            esc[1] = 't';
        } else if (c < 0x20) {
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xF];
            out_len = 6;
        } else {
            size_t seq = utf8_sequence_len(s + i, n - i);
            if (seq > 0) {
                out = (const char *)s + i; /* valid UTF-8 is JSON as it is */
                out_len = used = seq;
            } else {
                /* One U+FFFD per byte that does not start a well-formed sequence: the next
                 * byte gets its own chance, so a valid character right after a broken one
                 * survives. */
                out = "\\ufffd";
                out_len = 6;
            }
        }
        if (out_len > limit - len) {
            complete = false;
            break;
        }
        memcpy(dst + len, out, out_len);
        len += out_len;
        i += used;
    }
    *lenp = len;
    return complete;
}
