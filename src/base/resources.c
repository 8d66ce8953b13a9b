/* resources.c: reading the cgroup memory limit and raising the open-files limit. The limit files
 * are read with one bounded read(2) into a small buffer and parsed strictly: their contents are
 * the kernel's, but a container runtime or a test may put anything there, and a wrong number here
 * would size the whole process's memory budget. */
#include "books/resources.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "books/error.h"

/* cgroup v1 reports "no limit" as a page-rounded LONG_MAX; anything this large is no limit. */
#define UNLIMITED_FROM ((uint64_t)1 << 62)
/* UINT64_MAX has 20 digits: a longer number cannot fit, and the file never holds one. */
#define MAX_DIGITS 20

int resources_parse_memory_limit(const char *text, size_t len, uint64_t *bytes)
{
    uint64_t v = 0;

    if (len > 0 && text[len - 1] == '\n')
        len--;
    if (len == 3 && memcmp(text, "max", 3) == 0) {
        *bytes = 0;
        return 0;
    }
    if (len == 0 || len > MAX_DIGITS)
        return BOOKS_EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned char)text[i] - '0';
        if (d > 9 || v > (UINT64_MAX - d) / 10)
            return BOOKS_EINVAL;
        v = v * 10 + d;
    }
    *bytes = v >= UNLIMITED_FROM ? 0 : v;
    return 0;
}

/* Reads `root`/`rel` and parses it; false when absent, unreadable or malformed. */
static int read_limit(const char *root, const char *rel, uint64_t *bytes)
{
    char path[512], buf[MAX_DIGITS + 2]; /* digits, a newline, and one byte to see "too long" */
    ssize_t n;
    int fd;

    if (snprintf(path, sizeof path, "%s/%s", root, rel) >= (int)sizeof path)
        return 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    do
        n = read(fd, buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0 || (size_t)n == sizeof buf)
        return 0;
    return resources_parse_memory_limit(buf, (size_t)n, bytes) == 0;
}

uint64_t resources_cgroup_memory_limit(const char *root, enum resources_memory_source *source)
{
    uint64_t bytes = 0;

    if (read_limit(root, "memory.max", &bytes)) {
        *source = bytes ? RESOURCES_MEMORY_CGROUP_V2 : RESOURCES_MEMORY_NONE;
        return bytes;
    }
    if (read_limit(root, "memory/memory.limit_in_bytes", &bytes)) {
        *source = bytes ? RESOURCES_MEMORY_CGROUP_V1 : RESOURCES_MEMORY_NONE;
        return bytes;
    }
    *source = RESOURCES_MEMORY_NONE;
    return 0;
}

int resources_raise_nofile(uint64_t *soft, uint64_t *hard)
{
    struct rlimit rl;

    *soft = *hard = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return BOOKS_EIO;
    *soft = rl.rlim_cur;
    *hard = rl.rlim_max;
    if (rl.rlim_cur == rl.rlim_max)
        return 0;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        return BOOKS_EIO;
    *soft = rl.rlim_cur;
    return 0;
}

uint64_t resources_memory_budget(int configured_mb, const char *cgroup_root,
                                 enum resources_memory_source *source)
{
    uint64_t bytes;

    if (configured_mb > 0) {
        *source = RESOURCES_MEMORY_SETTING;
        return (uint64_t)configured_mb << 20;
    }
    bytes = resources_cgroup_memory_limit(cgroup_root, source);
    if (bytes)
        return bytes;
    *source = RESOURCES_MEMORY_DEFAULT;
    return (uint64_t)RESOURCES_DEFAULT_MEMORY_MB << 20;
}

void resources_split_memory(uint64_t memory, struct memory_split *out)
{
    out->transport_bytes = (size_t)(memory / 2);
    out->store_bytes = (size_t)(memory / 4);
    out->inflight_bytes = (size_t)(memory / 8);
    out->max_queued = out->inflight_bytes / RESOURCES_QUEUED_CALL_BYTES;
    if (out->max_queued < RESOURCES_MIN_QUEUED)
        out->max_queued = RESOURCES_MIN_QUEUED;
}

const char *resources_memory_source_name(enum resources_memory_source source)
{
    switch (source) {
    case RESOURCES_MEMORY_CGROUP_V2:
        return "cgroup v2";
    case RESOURCES_MEMORY_CGROUP_V1:
        return "cgroup v1";
    case RESOURCES_MEMORY_SETTING:
        return "setting";
    case RESOURCES_MEMORY_DEFAULT:
        return "default";
    case RESOURCES_MEMORY_NONE:
        break;
    }
    return "none";
}
