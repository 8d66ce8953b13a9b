/* utf8.c: a table-free UTF-8 validator following RFC 3629's byte-sequence grammar (section 4), so
 * overlong encodings, UTF-16 surrogates and code points above U+10FFFF are all rejected. */
#include "books/utf8.h"

static bool cont(unsigned char c) { return (c & 0xC0) == 0x80; }

size_t utf8_sequence_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && cont(s[1]) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || !cont(s[1]) || !cont(s[2]))
            return 0;
        if (c == 0xE0 && s[1] < 0xA0) /* overlong */
            return 0;
        if (c == 0xED && s[1] > 0x9F) /* surrogates U+D800..U+DFFF */
            return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || !cont(s[1]) || !cont(s[2]) || !cont(s[3]))
            return 0;
        if (c == 0xF0 && s[1] < 0x90) /* overlong */
            return 0;
        if (c == 0xF4 && s[1] > 0x8F) /* above U+10FFFF */
            return 0;
        return 4;
    }
    return 0; /* 0x80..0xC1 (continuation or overlong lead) and 0xF5..0xFF */
}

bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, k;
    while (i < n) {
        /* ASCII fast path: most text in this API is ASCII. */
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        k = utf8_sequence_len(p + i, n - i);
        if (!k)
            return false;
        i += k;
    }
    return true;
}
