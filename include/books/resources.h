/* resources.h: what the operating system lets this process have, read once at start-up: the
 * memory limit of its cgroup (Cloud Run sets one per instance) and the number of open files. Pure
 * reads of /sys and getrlimit/setrlimit; no allocation, no logging. Any thread, but meant for
 * main() before the server starts. */
#ifndef BOOKS_RESOURCES_H
#define BOOKS_RESOURCES_H

#include <stddef.h>
#include <stdint.h>

/* Where the memory limit came from. */
enum resources_memory_source {
    RESOURCES_MEMORY_NONE = 0,   /* no cgroup limit found */
    RESOURCES_MEMORY_CGROUP_V2,  /* /sys/fs/cgroup/memory.max (cgroup v2, Cloud Run's 2nd gen) */
    RESOURCES_MEMORY_CGROUP_V1,  /* /sys/fs/cgroup/memory/memory.limit_in_bytes */
    RESOURCES_MEMORY_SETTING,    /* BOOKS_MEMORY_LIMIT_MB */
    RESOURCES_MEMORY_DEFAULT,    /* RESOURCES_DEFAULT_MEMORY_MB */
};

/* The memory budget when neither the setting nor a cgroup gives one, in MiB. */
#define RESOURCES_DEFAULT_MEMORY_MB 512

/* The cgroup's memory limit in bytes, or 0 when there is none ("max" in cgroup v2; in v1 the
 * kernel's "unlimited" value, any value of 2^62 bytes or more). `root` is the cgroup file system's
 * mount point ("/sys/fs/cgroup"; tests pass a directory of their own). *source says which file
 * answered. A file that exists but does not hold a strict decimal number (or "max") is ignored, as
 * if absent. Never fails. */
uint64_t resources_cgroup_memory_limit(const char *root, enum resources_memory_source *source);

/* The process's memory budget in bytes: `configured_mb` MiB when it is > 0, else the cgroup's limit
 * under `cgroup_root`, else RESOURCES_DEFAULT_MEMORY_MB MiB. *source says which. */
uint64_t resources_memory_budget(int configured_mb, const char *cgroup_root,
                                 enum resources_memory_source *source);

/* How the memory budget is shared out (README "Memory"): half to gRPC core's resource quota
 * (connections, read buffers, calls core holds before the server takes them), a quarter to what
 * the store keeps (the memory: store's books, a durable store's record cache), an eighth to what
 * calls in flight hold (call objects, decoded requests, queued creates, encoded responses); the
 * last eighth is left for the process itself (code, threads' stacks, per-read scratch of the store
 * threads, allocator slack). */
struct memory_split {
    size_t transport_bytes;
    size_t store_bytes;
    size_t inflight_bytes;
    /* The most calls one store queue (commit, reads) may hold: the in-flight share divided by
     * RESOURCES_QUEUED_CALL_BYTES, at least RESOURCES_MIN_QUEUED. */
    size_t max_queued;
};

/* What one queued call costs at least (its call object and request), for max_queued. */
#define RESOURCES_QUEUED_CALL_BYTES 4096
#define RESOURCES_MIN_QUEUED 256

/* Fills `out` from a budget of `memory` bytes. */
void resources_split_memory(uint64_t memory, struct memory_split *out);

/* A short name for a source, for the log: "setting", "cgroup v2", "cgroup v1", "default". */
const char *resources_memory_source_name(enum resources_memory_source source);

/* Parses the contents of a cgroup memory limit file (`len` bytes, not NUL-terminated, a trailing
 * newline allowed): "max" -> 0, a decimal number of bytes -> that number (values of 2^62 and more
 * -> 0: v1's "unlimited"). Returns 0 and sets *bytes, or BOOKS_EINVAL for anything else (signs,
 * blanks, other text, more than 20 digits, overflow). */
int resources_parse_memory_limit(const char *text, size_t len, uint64_t *bytes);

/* Raises the soft RLIMIT_NOFILE of this process to its hard limit (each client connection is a file
 * descriptor; Debian's default soft limit is 1024). Writes the limits in effect afterwards to
 * *soft and *hard. Returns 0, or BOOKS_EIO when getrlimit/setrlimit fail (the limits are then
 * unchanged and *soft and *hard hold what getrlimit said, or 0). */
int resources_raise_nofile(uint64_t *soft, uint64_t *hard);

#endif
