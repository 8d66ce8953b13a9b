/* retry.c: the firestore: store's one retry policy (fs.h): which statuses of which method go
 * again, and how long to wait before the next attempt. Every call the store makes (reads,
 * writes, start-up) asks here; none decides for itself.
 *
 * The codes follow Google's client libraries for the same API (google-cloud-go firestore/apiv1:
 * GetDocument and RunQuery retry UNAVAILABLE, INTERNAL, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED;
 * Commit UNAVAILABLE and RESOURCE_EXHAUSTED; BatchWrite those and ABORTED). The store's writes go
 * again on more than that (ABORTED, INTERNAL and UNKNOWN for Commit too, and DEADLINE_EXCEEDED),
 * because every write it sends is idempotent by construction: each has the precondition
 * exists: false and a random write_id, so a second attempt of a write that was applied is refused
 * and then recognised as the create's own (writes.c). Google's libraries cannot assume that of an
 * arbitrary Commit; this store can.
 *
 * The backoff is theirs too: 100 ms first, times 1.3 per attempt, at most 60 s; each delay is
 * drawn uniformly from its upper half (jitter, so that instances throttled together do not come
 * back together). The caller's deadline bounds every wait: fs_retry_fits() says whether another
 * attempt can still end inside it. */
#include "fs.h"

#include <sys/random.h>

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 60000
/* An attempt needs at least this long before the deadline to be worth starting. */
#define ATTEMPT_MIN_NS (20ull * 1000000u)
/* An attempt ends this long before the caller's deadline, so that its failure is answered while
 * the caller still waits (a status sent after it has given up is lost). */
#define ANSWER_MARGIN_NS (50ull * 1000000u)

bool fs_retry_code(enum fs_method m, grpc_status_code code)
{
    switch (code) {
    case GRPC_STATUS_UNAVAILABLE:
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
    case GRPC_STATUS_INTERNAL:
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return true;
    case GRPC_STATUS_ABORTED:
    case GRPC_STATUS_UNKNOWN:
        return m == FS_COMMIT || m == FS_BATCH_WRITE;
    default:
        return false;
    }
}

void fs_backoff_init(struct fs_backoff *b) { b->next_ms = BACKOFF_FIRST_MS; }

uint64_t fs_backoff_next_ns(struct fs_backoff *b)
{
    uint32_t r = 0, d = b->next_ms ? b->next_ms : BACKOFF_FIRST_MS;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
        r = (uint32_t)fs_now_ns(); /* no entropy yet: any spread will do */
    uint64_t ms = d / 2 + (d - d / 2) * (uint64_t)r / UINT32_MAX;
    uint64_t grown = (uint64_t)d * 13 / 10;
    b->next_ms = grown > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : (uint32_t)grown;
    return ms * 1000000u;
}

bool fs_retry_fits(uint64_t now_ns, uint64_t delay_ns, uint64_t deadline_ns)
{
    return deadline_ns > now_ns && deadline_ns - now_ns > delay_ns + ATTEMPT_MIN_NS;
}

uint64_t fs_attempt_deadline(uint64_t now_ns, uint64_t deadline_ns, int timeout_ms)
{
    uint64_t cap = now_ns + (uint64_t)timeout_ms * 1000000u;
    if (deadline_ns > now_ns + 2 * ANSWER_MARGIN_NS)
        deadline_ns -= ANSWER_MARGIN_NS; /* the answer still reaches the caller in time */
    return deadline_ns && deadline_ns < cap ? deadline_ns : cap;
}
