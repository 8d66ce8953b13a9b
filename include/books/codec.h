/* codec.h: the only module that touches grpc_byte_buffer and protobuf-c pack/unpack. Decodes request
 * byte buffers into messages, encodes responses into byte buffers, and builds the one
 * google.rpc.Status detail blob (AIP-193) sent in the grpc-status-details-bin trailer. */
#ifndef BOOKS_CODEC_H
#define BOOKS_CODEC_H

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <protobuf-c/protobuf-c.h>

#include "books/arena.h"
#include "books/error.h"

/* Unpacks `bb` (which may be compressed; core decompresses) as a message of type `desc`, allocating
 * from `arena`, then checks every string field, at any depth, against proto3's rule (valid UTF-8,
 * RFC 3629) and ours (no U+0000: strings are C strings from here on, and a NUL would silently cut
 * them). `bb` stays owned by the caller. Returns 0 with *out set, or fills `err` and returns:
 *   BOOKS_EBADMSG  the bytes are not a valid message of that type, or `bb` is NULL
 *                  (reason MALFORMED_REQUEST);
 *   BOOKS_EINVAL   a string field is not UTF-8 or holds a NUL: one BadRequest violation per field,
 *                  named by its path, e.g. "book.authors[2]" (reason FIELD_VIOLATION).
 * Every successful decode is paired with codec_free_request(). */
int codec_decode(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc, struct arena *arena,
                 ProtobufCMessage **out, struct books_error *err);

/* Releases a message from codec_decode() (protobuf_c_message_free_unpacked through the arena's
 * allocator). NULL is a no-op. */
void codec_free_request(ProtobufCMessage *msg, struct arena *arena);

/* Packs `msg` into one freshly allocated slice and wraps it in a byte buffer that the caller owns
 * (grpc_byte_buffer_destroy). Returns 0 or BOOKS_ENOMEM. */
int codec_encode(const ProtobufCMessage *msg, grpc_byte_buffer **out);

/* Serializes `e` as a google.rpc.Status (code, message, details: ErrorInfo{reason, domain
 * BOOKS_ERROR_DOMAIN, metadata}, BadRequest{field_violations} when there are any, ResourceInfo when
 * a resource is named). *out is a new slice the caller unrefs. Returns 0 or BOOKS_ENOMEM. */
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
 * then untouched); BOOKS_ENOMEM. `bin` stays the caller's. */
int codec_decode_status_details(const grpc_slice *bin, struct books_error *out);

#endif
