/* codec.h: the one module that reads or builds the bytes of a grpc_byte_buffer, and that packs and
 * unpacks the messages that travel (requests, responses, Firestore's, stored Books). Decodes byte
 * buffers into messages, encodes messages into byte buffers, and builds the one google.rpc.Status
 * detail blob (AIP-193) sent in the grpc-status-details-bin trailer. Other modules hold, pass and
 * destroy byte buffers (rpc/'s call objects, the Firestore client) without looking inside them;
 * reflection unpacks the descriptors it serves.
 *
 * Threads: the codec keeps no state of its own, so every function may be called from any thread,
 * at the same time as any other; what a call is given (a byte buffer, an arena, an error) must not
 * be used by another thread during it. The server calls it on its workers and, for replies given
 * later, on the thread that answers; the client on the thread making the call. */
#ifndef BOOKS_CODEC_H
#define BOOKS_CODEC_H

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "books/arena.h"
#include "books/error.h"
#include "books/rpc.h"

/* Most field occurrences (known, repeated entries and unknown alike) one message may carry.
 * protobuf-c spends about 32 bytes of scratch per occurrence while unpacking; this cap keeps a
 * request's decode memory within a small multiple of its size. No message of this API comes near
 * it (a CreateBookRequest has at most 106). */
#define CODEC_MAX_FIELDS_PER_MESSAGE 1024
/* Deepest message nesting accepted (the requests of this API nest 2 deep). */
#define CODEC_MAX_DEPTH 16

/* What a request may be, beyond its type. */
struct codec_limits {
    size_t max_message_bytes;             /* largest message accepted, in bytes, after inflating */
    const struct rpc_field_limit *fields; /* the API's caps on repeated fields; may be NULL */
    size_t n_fields;
};

/* Decodes a request message of type `desc` from `bb` (owned by the caller), allocating from
 * `arena`. A compressed message (gzip, RFC 1952, or deflate = zlib, RFC 1950: gRPC's
 * doc/compression.md) is inflated here, into a buffer that never grows past
 * limits->max_message_bytes; the server has gRPC core's own decompression turned off, because core
 * inflates a message whole before it checks its size. Before protobuf-c sees the bytes, one walk
 * checks them: framing, at most CODEC_MAX_FIELDS_PER_MESSAGE fields per message, the caps in
 * limits->fields, and every string field, at any depth, against proto3's rule (valid UTF-8, RFC
 * 3629) and ours (no U+0000: strings are C strings from here on). Returns 0 with *out set (pair it
 * with codec_free_request()), or fills `err` and returns:
 *   BOOKS_EBADMSG  the bytes are not a valid message of that type, or `bb` is NULL, or the
 *                  compressed stream is broken (reason MALFORMED_REQUEST);
 *   BOOKS_EINVAL   a string field is not UTF-8 or holds a NUL, or a repeated field has more entries
 *                  than its cap: one BadRequest violation per field, named by its path, e.g.
 *                  "book.authors[2]" (reason FIELD_VIOLATION); or a message holds more than
 *                  CODEC_MAX_FIELDS_PER_MESSAGE fields (reason MALFORMED_REQUEST);
 *   BOOKS_E2BIG    the message inflates past limits->max_message_bytes (MESSAGE_TOO_LARGE);
 *   BOOKS_EUNIMPL  compressed with an algorithm other than gzip or deflate;
 *   BOOKS_ENOMEM   out of memory (OUT_OF_MEMORY).
 * `limits` may be NULL: no caps (tests, trusted input). Any thread (no shared state). */
int codec_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
                 const struct codec_limits *limits, struct arena *arena, ProtobufCMessage **out,
                 struct books_error *err);

/* The same for `len` bytes at `data` (the caller's; not compressed). For callers and fuzz targets
 * that have the bytes in one piece. Same return values, except never BOOKS_EUNIMPL. Any thread. */
int codec_decode_bytes(const uint8_t *data, size_t len, const ProtobufCMessageDescriptor *desc,
                       const struct codec_limits *limits, struct arena *arena,
                       ProtobufCMessage **out, struct books_error *err);

/* Releases a message from codec_decode() (protobuf_c_message_free_unpacked through the arena's
 * allocator). NULL is a no-op. Any thread: the one that owns `arena` at the time. */
void codec_free_request(ProtobufCMessage *msg, struct arena *arena);

/* Packs `msg` into one freshly allocated slice and wraps it in a byte buffer that the caller owns
 * (grpc_byte_buffer_destroy). Cannot fail: like all of gRPC core, the slice allocator aborts the
 * process when malloc does. Any thread. */
void codec_encode(const ProtobufCMessage *msg, grpc_byte_buffer **out);

/* Bytes of an already-encoded message (e.g. a book record's wire form, store.h). */
struct codec_bytes {
    const uint8_t *data;
    size_t len;
};

/* Packs `msg` (protobuf binary encoding) into out, which holds codec_pack(msg, NULL) bytes; with
 * out NULL only returns that size. Returns the bytes written (or needed). Any thread. */
size_t codec_pack(const ProtobufCMessage *msg, uint8_t *out);

/* The encoding of a response given partly as already-encoded messages, so that records encoded
 * once are not packed again for every call:
 *   field == 0: the message is parts[0..n) one after another (`msg` is not read; NULL allowed);
 *   field != 0: each part is one occurrence of msg's repeated message field number `field`, in
 *               order, followed by msg's other fields (msg's own entries of `field` are skipped).
 * When the parts are the encodings of msg's entries, the output is byte for byte what packing msg
 * gives (protobuf-c writes fields in field-number order; `field` must then be msg's lowest-
 * numbered field, as ListBooksResponse.books is). A `field` that is not a repeated message field
 * of msg's descriptor, or a descriptor too large to copy, falls back to packing msg whole.
 * codec_embedded_write writes into out (codec_embedded_write(..., NULL) bytes; out NULL: size
 * only) and returns the size; codec_encode_embedded wraps the same bytes in a new byte buffer the
 * caller owns (aborts on allocation failure, like codec_encode). Any thread. */
size_t codec_embedded_write(const ProtobufCMessage *msg, unsigned field,
                            const struct codec_bytes *parts, size_t n, uint8_t *out);
void codec_encode_embedded(const ProtobufCMessage *msg, unsigned field,
                           const struct codec_bytes *parts, size_t n, grpc_byte_buffer **out);

/* The FileDescriptorSet of every proto this binary hosts, with their imports (books.proto, health,
 * reflection, google.rpc's details), generated at build time (cmake/embed.cmake) into books_proto:
 * reflection serves it, and codec_field_required() reads field behaviors from it. */
extern const unsigned char books_descriptor_set[];
extern const size_t books_descriptor_set_len;

/* Whether field `f` of message `desc` is marked `(google.api.field_behavior) = REQUIRED` (AIP-203)
 * in the protos of books_descriptor_set: read from each field's FieldOptions (extension 1052) the
 * first time any thread asks, then kept for the life of the process. False for a field the set
 * does not describe, or when the set cannot be read (out of memory). Any thread. */
bool codec_field_required(const ProtobufCMessageDescriptor *desc,
                          const ProtobufCFieldDescriptor *f);

/* For code that walks a message by its descriptor (the Firestore mapping, the CLI's JSON): the bytes
 * one value of field f's type takes in a protobuf-c message struct, which is also the stride of a
 * repeated field's array. Pure; any thread. */
size_t codec_field_value_size(const ProtobufCFieldDescriptor *f);

/* Whether field f of msg holds a value: always for implicit presence (proto3) and for a repeated
 * field (maybe none of them); for explicit presence, the has_ flag, the oneof's case, or a set
 * pointer (a message; a string not at its default). Pure; any thread. */
bool codec_field_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f);

/* Serializes `e` as a google.rpc.Status (code, message, details: ErrorInfo{reason, domain
 * BOOKS_ERROR_DOMAIN, metadata}, BadRequest{field_violations} when there are any, ResourceInfo when
 * a resource is named, RetryInfo{retry_delay} when e->retry_delay_ms is set). *out is a new slice the caller unrefs. Returns 0 or BOOKS_ENOMEM. Any
 * thread. */
int codec_encode_status_details(const struct books_error *e, grpc_slice *out);

/* The client side of codec_encode_status_details(): reads the google.rpc.Status in `bin` (the
 * bytes of a grpc-status-details-bin trailer) into `out`, which the caller prepared with
 * books_error_init() and an arena (the decoded strings are copied there). Fills:
 *   reason, meta_key/meta_value  from the ErrorInfo of domain BOOKS_ERROR_DOMAIN (its first
 *                                metadata entry; an ErrorInfo of another domain is skipped);
 *   violations                   from every BadRequest, one per field violation (appended; past
 *                                what the arena holds they are counted in n_dropped);
 *   resource_type/resource_name  from ResourceInfo.
 * Detail types other than these are skipped. out->code and out->message are left alone: they
 * come from the call's own status and grpc-message. Returns 0; BOOKS_EINVAL when out has no
 * arena; BOOKS_EBADMSG when the bytes are not a Status or a known detail does not parse (out is
 * then untouched); BOOKS_ENOMEM. `bin` stays the caller's. Any thread. */
int codec_decode_status_details(const grpc_slice *bin, struct books_error *out);

#endif
