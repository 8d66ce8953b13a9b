/* fuzz_common.h: what the fuzz targets of tests/fuzz share. Each target is one
 * LLVMFuzzerTestOneInput (libFuzzer, or replay_main.c's driver for valgrind); this is the code that
 * drives a handler as the server (src/rpc/) does (decode with the method's limits, handle, encode
 * the response or the error details, release), the deterministic memory: store the service targets
 * read from, and the checks whose failure is a finding (FUZZ_CHECK aborts, so libFuzzer saves the
 * input as a crash).
 *
 * Only the public headers in include/books/ are used (store_uri also includes the postgresql:
 * store's private pg.h for its URI parser). Where the server keeps a value private (its per-call
 * arena size), the value is repeated here and marked as such; tests/fuzz/README.md lists it. */
#ifndef BOOKS_FUZZ_COMMON_H
#define BOOKS_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "books/arena.h"
#include "books/client.h"
#include "books/codec.h"
#include "books/error.h"
#include "books/rpc_paths.h"
#include "books/rpc.h"
#include "books/v1/books.pb-c.h"
#include "books/store.h"

/* libFuzzer's entry points (replay_main.c calls the same ones). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* BOOKS_MAX_RECV_BYTES' default (README, config table): the server's request limit. */
#define FUZZ_SERVER_MAX_MESSAGE_BYTES (4u * 1024u * 1024u)
/* CALL_ARENA_BYTES (private to the rpc layer, src/rpc/call.h): a call's inline arena.
 * Heap-allocated here, exactly this size, so AddressSanitizer sees a write past it. */
#define FUZZ_CALL_ARENA_BYTES 2048
/* What ListBooks binds its page tokens to: src/api/service.c's LIST_TOKEN_PURPOSE is the method
 * path. make_corpus.py signs its seeds with the same string. */
#define FUZZ_LIST_TOKEN_PURPOSE RPC_PATH_LIST_BOOKS
/* The data-set key every fuzz store uses instead of a random one (store.h: dataset_key is a
 * public member), so page tokens are reproducible; make_corpus.py signs its seeds with it. */
extern const uint8_t fuzz_dataset_key[STORE_DATASET_KEY_BYTES];

/* A failed check is a finding: say which, and abort (libFuzzer saves the input). */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond);                                                  \
    } while (0)
void fuzz_fail(const char *file, int line, const char *what) __attribute__((noreturn));

/* The method of `svc` whose :path is `path`; aborts when there is none (a renamed method must
 * not turn a target into a no-op silently). */
const struct rpc_method *fuzz_find_method(const struct rpc_service *svc, const char *path);

/* Opens a memory: store keyed with fuzz_dataset_key, the service over it (*svc: svc_new, which
 * registers the record encoder), then puts in the books of make_corpus.py's BOOKS list (names
 * books/a ... see fuzz_common.c). Returns BooksService's method at `path`. The caller frees both
 * (svc_free, then store_close). Aborts on failure. */
struct svc;
const struct rpc_method *fuzz_open_service(const char *path, struct store **store,
                                           struct svc **svc);

/* How many books fuzz_open_service() puts in. */
size_t fuzz_seeded_book_count(void);

/* A deterministic svc_id_fn: "gen-1", "gen-2", ... counting in *(unsigned *)arg. */
void fuzz_counting_id(void *arg, char *out);

/* Called by fuzz_serve_unary() once the handler has answered, before anything is encoded or
 * released: per-target properties of the request and the reply. */
typedef void (*fuzz_check_fn)(const ProtobufCMessage *request, const struct rpc_reply *reply,
                              void *arg);

struct fuzz_serve_opts {
    size_t max_message_bytes;   /* the request limit (codec_limits.max_message_bytes) */
    size_t response_limit;      /* the limit the client decodes the response with; 0: none */
    fuzz_check_fn check;        /* may be NULL */
    void *check_arg;
};

/* What became of one call. */
struct fuzz_outcome {
    int decode_rc;      /* codec_decode_bytes(); the handler ran only when 0 */
    int error_code;     /* reply.error.code after the handler (or decode_rc) */
    size_t response_len; /* encoded response bytes, when error_code == 0 */
};

/* One unary call as the server (src/rpc/) serves it: codec_decode_bytes() with the method's own
 * rpc_field_limits, the handler (which must call rpc_reply_done() exactly once, before it
 * returns: true of every handler over a memory: store), then codec_encode() of the response or
 * codec_encode_status_details() of the error, the reply's release hook, codec_free_request().
 * On top of what the server does, it checks what a client will see: an encoded response decodes
 * again (codec_decode, response_limit), and an error's details decode (the CLI's
 * codec_decode_status_details) to the same reason, metadata, resource and violations. */
struct fuzz_outcome fuzz_serve_unary(const struct rpc_method *m, void *self, const uint8_t *data,
                                     size_t size, const struct fuzz_serve_opts *opts);

/* True when BOOKS_FUZZ_VERBOSE is set (and not "0"): targets then say on stderr what became of
 * each input (status, reason, message), which is how a seed is checked to reach its path. */
bool fuzz_verbose(void);

/* A heap copy of data[0..size) in a block of exactly size (+1 with nul) bytes. */
char *fuzz_copy(const uint8_t *data, size_t size, bool nul);

/* True when s[0..n) is exactly one JSON value (RFC 8259), optionally surrounded by whitespace:
 * strings with valid escapes and no raw control characters, valid UTF-8 throughout. An oracle for
 * the CLI's --json output and the log lines. */
bool fuzz_json_valid(const char *s, size_t n);

/* argv/envp for the command-line targets (config, cli_args), from one input:
 *   byte 0            how many of the strings are argv[1..]: (byte 0) % 64
 *   bytes 1..         NUL-separated strings (a trailing NUL is optional); the first ones are
 *                     argv[1..], the rest envp. Empty strings are strings ("\0\0" is two).
 * argv[0] is `argv0`. Every string is its own exact-size heap block, so ASan catches a read past
 * its NUL. Free with fuzz_args_free(). */
struct fuzz_args {
    int argc;
    char **argv; /* argc + 1 entries, NULL-terminated */
    char **envp; /* NULL-terminated */
    size_t n_env;
};
void fuzz_args_build(const uint8_t *data, size_t size, const char *argv0, struct fuzz_args *out);
void fuzz_args_free(struct fuzz_args *a);

/* What a reply sends (rpc.h: its embedded parts with the rest, or the response packed), decoded as
 * a message of type `desc` as a client does; free it with protobuf_c_message_free_unpacked(m,
 * NULL). Aborts when it does not decode. fuzz_reply_book: the Book of a GetBook or CreateBook. */
ProtobufCMessage *fuzz_reply_decode(const struct rpc_reply *reply,
                                    const ProtobufCMessageDescriptor *desc);
Books__V1__Book *fuzz_reply_book(const struct rpc_reply *reply);

#endif
