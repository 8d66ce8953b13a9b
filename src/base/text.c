/* text.c: quoting user text into messages, word-wrapping help, strict decimal numbers. Each was
 * written two or three times before (the config, the CLI, the store URIs, the errors sent to
 * clients); they live here once so a fix or a rule reaches every caller. */
#include "books/text.h"

#include "books/error.h"

#include <bsd/stdlib.h>
#include <stdbool.h>
#include <string.h>

const char *text_quote(char *dst, size_t dstlen, const char *src, enum text_quote_style style)
{
    static const char hex[] = "0123456789abcdef";
    static const char dots[] = "...";
    const size_t tail = sizeof dots; /* "..." and the NUL, kept free behind every piece */
    size_t i = 0, o = 0;

    if (dstlen == 0)
        return dst;
    for (; src[i] != '\0' && i < TEXT_QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)src[i];
        char piece[4];
        size_t n = 1;
        piece[0] = (char)c;
        if (style == TEXT_QUOTE_ASCII) {
            if (c < 0x20 || c >= 0x7f)
                piece[0] = '?';
        } else if (c == '"' || c == '\\') {
            piece[0] = '\\';
            piece[1] = (char)c;
            n = 2;
        } else if (c < 0x20 || c == 0x7f) {
            piece[0] = '\\';
            piece[1] = 'x';
            piece[2] = hex[c >> 4];
            piece[3] = hex[c & 0xF];
            n = 4;
        } /* else: UTF-8 and the rest pass; the terminal shows them */
        if (o + n + tail > dstlen)
            break;
        memcpy(dst + o, piece, n);
        o += n;
    }
    if (src[i] != '\0' && o + tail <= dstlen) {
        memcpy(dst + o, dots, sizeof dots - 1);
        o += sizeof dots - 1;
    }
    dst[o] = '\0';
    return dst;
}

void text_wrap(FILE *f, const char *text, int indent, int col, int width)
{
    const char *s = text;
    if (col < indent) {
        fprintf(f, "%*s", indent - col, "");
        col = indent;
    }
    while (*s != '\0') {
        size_t word = 0;
        for (bool quoted = false; s[word] != '\0' && (quoted || s[word] != ' '); word++)
            if (s[word] == '"')
                quoted = !quoted;
        if (col > indent && col + 1 + (int)word > width) {
            fprintf(f, "\n%*s", indent, "");
            col = indent;
        } else if (col > indent) {
            fputc(' ', f);
            col++;
        }
        fwrite(s, 1, word, f);
        col += (int)word;
        s += word;
        while (*s == ' ')
            s++;
    }
    fputc('\n', f);
}

int text_parse_decimal(const char *s, long long min, long long max, long long *out)
{
    const char *errstr = NULL;
    long long v;

    /* strtonum() alone would take blanks, a sign and whatever else strtoll() takes. */
    if (*s == '\0' || s[strspn(s, "0123456789")] != '\0')
        return BOOKS_EINVAL;
    v = strtonum(s, min, max, &errstr);
    if (errstr != NULL)
        return BOOKS_EINVAL;
    *out = v;
    return 0;
}
