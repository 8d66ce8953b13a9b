/* store_firestore.h: the `firestore:` backend (src/firestore/): books kept in Cloud Firestore
 * (native mode), which any number of instances share, with nothing billed by the hour. It is a
 * client of Firestore's gRPC API (google.firestore.v1.Firestore, firestore.googleapis.com:443)
 * through gRPC core's C client, with messages from protoc-c over the project's own subset of the
 * API's protos (proto/google/firestore/v1/firestore.proto). Callers use it through store.h like
 * any backend; it lives in a layer above the store layer (it speaks gRPC and protobuf) and joins
 * store_open()'s table with store_firestore_register().
 *
 * What it keeps (collection C, `collection` below, default "books"):
 *   C/{book}              a book: the Book's fields by their proto names and types (docs.c,
 *                         from books.proto's descriptor), and write_id (random, 32 hex digits:
 *                         tells this store's own write from another's when a reply was lost)
 *   C_requests/{id}       an AIP-155 request_id: book (the resource name it made),
 *                         request_fingerprint, request_hash (the previous version's fingerprint),
 *                         write_id, expire_at (a timestamp, request_ttl_s after the create: a
 *                         Firestore TTL policy on it deletes the document after that; terraform/)
 *   C_meta/dataset        the data set's page-token key (bytes), created once with exists: false
 *
 * Methods (AIP-131/132/133 over Firestore's): GetBook is GetDocument behind the record cache;
 * ListBooks is RunQuery ordered by __name__, starting after the last name of the previous page
 * (keyset), at most `limit` documents, stopped at the page's byte bound (store_ops.list); creates
 * go through the commit pipeline: the creates of a batch without request ids go in BatchWrites
 * (one write per create with the precondition exists: false, a status per write, so a taken name
 * fails only its own create), those with a request id in shared Commits of their books and
 * request documents (atomic: a book and its request id both or neither; when a taken name fails
 * one, each of its creates goes again in a Commit of its own); every request within 500 writes and
 * max_request_bytes. Every call carries the caller's deadline (or timeout_ms), and goes again
 * under one retry policy (src/firestore/retry.c: per method, jittered backoff inside the
 * deadline). A create that may have been written is answered OK or BOOKS_EUNKNOWN only.
 * No thread of the caller's waits on Firestore: one thread of the store's drives every call from
 * its own completion queue.
 *
 * Thread safety: as store.h. */
#ifndef BOOKS_STORE_FIRESTORE_H
#define BOOKS_STORE_FIRESTORE_H

#include "books/store.h"

/* Opens the store from everything after "firestore:":
 *   //PROJECT                    database "(default)" of PROJECT
 *   //PROJECT/DATABASE_ID        a named database
 *   "" (firestore: alone)        the project from $GOOGLE_CLOUD_PROJECT, else, on Google Cloud
 *                                (Cloud Run), from the metadata server; database "(default)"
 * then optionally ?param=value&...:
 *   collection=ID        the books' collection id (1..100 of [A-Za-z0-9_-], default "books")
 *   cache_mb=N           memory for the cache of book records (0..65536, default 16)
 *   group_commit=on|off  on (default): creates queued meanwhile go in one BatchWrite; off: one
 *                        call per create (for comparison)
 *   timeout_ms=N         the longest one attempt of a call to Firestore may take (a hung one is
 *                        tried again within the caller's deadline); a read without a deadline,
 *                        and any create, is given up after this long in all (1..600000, default
 *                        10000)
 *   startup_timeout_s=N  how long to keep trying to reach Firestore at start-up, and to wait out
 *                        PERMISSION_DENIED/UNAUTHENTICATED while IAM propagates (0..3600, default
 *                        600)
 *   max_request_bytes=N  the most bytes of one BatchWrite or Commit request, each write's
 *                        encoded size counted (65536..10485760; default 9437184, or 4128768 with
 *                        $FIRESTORE_EMULATOR_HOST set: the emulator refuses messages over 4 MiB)
 * Credentials: with $FIRESTORE_EMULATOR_HOST (host:port) set, as Google's client libraries do, an
 * insecure channel to that emulator, each call sending "authorization: Bearer owner"; otherwise
 * TLS to firestore.googleapis.com:443 with Application Default Credentials
 * (grpc_google_default_credentials_create: $GOOGLE_APPLICATION_CREDENTIALS, gcloud's user
 * credentials, or the metadata server's service account on Cloud Run).
 * Start-up (blocking, in the caller's thread): reads or creates the page-token key document,
 * trying again for startup_timeout_s while Firestore is unreachable, throttles, or refuses the
 * credentials (one WARNING line per attempt naming roles/datastore.user). Returns 0; BOOKS_EINVAL
 * (a malformed URI or parameter, no project, no credentials); BOOKS_EUNAVAIL (Firestore not
 * reached in time); BOOKS_EREFUSED (PERMISSION_DENIED or UNAUTHENTICATED for all of
 * startup_timeout_s: the credentials lack roles/datastore.user);
 * BOOKS_ECORRUPT (the key document is not this store's); BOOKS_ENOMEM. The message in err says
 * which and what to do. */
int store_firestore_open(const char *rest, const struct store_limits *limits, struct store **out,
                         char *err, size_t errlen);

/* Adds "firestore" to store_open()'s table (store_register_backend()). Start-up, before any
 * store_open(); one thread; idempotent. Returns 0 or BOOKS_EINVAL (the table is full). */
int store_firestore_register(void);

#endif
