/* print.h (private to src/cli/): the output pieces cli.c's commands share with cli_print_book()
 * and cli_print_error() (print.c). Output for people escapes what could break a line or drive the
 * terminal; JSON goes through json.h's builder. Any thread, each with its own FILE and buffer. */
#ifndef BOOKS_CLI_PRINT_H
#define BOOKS_CLI_PRINT_H

#include <stdbool.h>
#include <stdio.h>

#include "books/cli.h"
#include "books/json.h"

/* Text for a terminal: backslash, control characters (C0, DEL, and C1 as UTF-8) and, when
 * `quoted`, '"' are escaped, so a value stays on its line and cannot drive the terminal. */
void cli_put_text(FILE *f, const char *s, bool quoted);

/* One book for people: NAME  "TITLE"  by A, B  (PUBLISHER), and a newline. */
void cli_print_book_line(FILE *f, const Books__V1__Book *book);

/* The proto3 JSON object of `msg` (a Book, or any message), appended to b: every field its
 * descriptor has, by name (print.c says how each type is written). */
void cli_json_message(struct json_buf *b, const ProtobufCMessage *msg);

#endif
