/* View snapshot files: header, zstd payload, CRCs, atomic replacement. See snapshot.h. */
#include "fusion/snapshot.h"

#include "common/crc32c.h"
#include "common/fsutil.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define HDR 64
#define MAX_STATE (64ull << 30) /* a larger length in a header is damage, not a state */
static const char MAGIC[8] = "FUSTORS";

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

char *fu_snapshot_path(const char *dir, uint64_t pos)
{
    char name[48];
    snprintf(name, sizeof(name), "snapshot-%016" PRIx64 ".fsnap", pos);
    return fu_path_join(dir, name);
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int fu_snapshot_write(const char *dir, uint64_t pos, uint32_t state_format, const void *state,
                      size_t len, double created_at, int level, struct fu_snapshot_info *info)
{
    size_t cap = ZSTD_compressBound(len);
    unsigned char *buf = malloc(HDR + cap);
    if (!buf)
        return -ENOMEM;
    size_t z = ZSTD_compress(buf + HDR, cap, state, len, level);
    if (ZSTD_isError(z)) {
        fu_error("snapshot: zstd: %s", ZSTD_getErrorName(z));
        free(buf);
        return -EIO;
    }
    unsigned char *h = buf;
    memset(h, 0, HDR);
    memcpy(h, MAGIC, 8);
    put32(h + 8, FU_SNAPSHOT_FORMAT);
    put32(h + 12, state_format);
    put64(h + 16, pos);
    put64(h + 24, len);
    put64(h + 32, z);
    uint64_t t;
    memcpy(&t, &created_at, 8);
    put64(h + 40, t);
    put32(h + 48, fu_crc32c(0, buf + HDR, z));
    put32(h + 60, fu_crc32c(0, h, 60));

    char *path = fu_snapshot_path(dir, pos);
    char *tmp = path ? malloc(strlen(path) + 8) : NULL;
    if (!tmp) {
        free(path);
        free(buf);
        return -ENOMEM;
    }
    sprintf(tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    int rc = fd < 0 ? -errno : write_all(fd, buf, HDR + z);
    if (!rc && fsync(fd) < 0)
        rc = -errno;
    if (fd >= 0 && close(fd) < 0 && !rc)
        rc = -errno;
    if (!rc && rename(tmp, path) < 0)
        rc = -errno;
    if (!rc) {
        int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (d < 0 || fsync(d) < 0)
            rc = -errno;
        if (d >= 0)
            close(d);
    }
    if (rc)
        unlink(tmp);
    else if (info)
        *info = (struct fu_snapshot_info){pos, FU_SNAPSHOT_FORMAT, state_format, len, HDR + z,
                                          created_at};
    free(tmp);
    free(path);
    free(buf);
    return rc;
}

int fu_snapshot_read(const char *path, uint32_t max_state_format, struct fu_buf *out,
                     struct fu_snapshot_info *info, char *err, size_t errlen)
{
    struct fu_buf file = FU_BUF_INIT;
    int rc = fu_read_file(path, SIZE_MAX, &file);
    if (rc < 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(-rc));
        return rc;
    }
    const unsigned char *h = (const unsigned char *)file.data;
    rc = -EBADMSG;
    if (file.len < HDR || memcmp(h, MAGIC, 8)) {
        snprintf(err, errlen, "%s is not a Fustor snapshot (no header)", path);
        goto out;
    }
    if (get32(h + 60) != fu_crc32c(0, h, 60)) {
        snprintf(err, errlen, "%s: damaged header (CRC)", path);
        goto out;
    }
    uint32_t format = get32(h + 8), state_format = get32(h + 12);
    if (format > FU_SNAPSHOT_FORMAT || state_format > max_state_format) {
        snprintf(err, errlen,
                 "%s is of snapshot format %u (state format %u); this Fusion reads format %d "
                 "(state format %u) and older: it was written by a newer Fusion",
                 path, format, state_format, FU_SNAPSHOT_FORMAT, max_state_format);
        rc = -EPROTO;
        goto out;
    }
    uint64_t raw = get64(h + 24), z = get64(h + 32);
    if (z != file.len - HDR || raw > MAX_STATE) {
        snprintf(err, errlen, "%s: truncated or damaged (%zu payload bytes, header says %" PRIu64
                 ")", path, file.len - HDR, z);
        goto out;
    }
    if (get32(h + 48) != fu_crc32c(0, h + HDR, z)) {
        snprintf(err, errlen, "%s: damaged payload (CRC)", path);
        goto out;
    }
    fu_buf_reset(out);
    if (fu_buf_grow(out, raw) < 0) {
        snprintf(err, errlen, "%s: out of memory for %" PRIu64 " bytes", path, raw);
        rc = -ENOMEM;
        goto out;
    }
    size_t got = ZSTD_decompress(out->data, raw + 1, h + HDR, z);
    if (ZSTD_isError(got) || got != raw) {
        snprintf(err, errlen, "%s: the payload does not decompress to its length (%s)", path,
                 ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
        goto out;
    }
    out->len = raw;
    out->data[raw] = '\0';
    uint64_t t = get64(h + 40);
    double created;
    memcpy(&created, &t, 8);
    if (info)
        *info = (struct fu_snapshot_info){get64(h + 16), format, state_format, raw, file.len,
                                          created};
    rc = 0;
out:
    fu_buf_free(&file);
    return rc;
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int fu_snapshot_list(const char *dir, uint64_t **out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    uint64_t *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t pos;
        int end = 0;
        if (sscanf(e->d_name, "snapshot-%16" SCNx64 ".fsnap%n", &pos, &end) != 1 || end != 31)
            continue;
        if (e->d_name[end]) { /* "….fsnap.tmp": an interrupted write */
            if (!strcmp(e->d_name + end, ".tmp")) {
                char *p = fu_path_join(dir, e->d_name);
                if (p)
                    unlink(p);
                free(p);
            }
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            uint64_t *nv = realloc(v, cap * sizeof(*nv));
            if (!nv) {
                free(v);
                closedir(d);
                return -ENOMEM;
            }
            v = nv;
        }
        v[n++] = pos;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof(*v), cmp_desc);
    *out = v;
    return (int)n;
}

uint64_t fu_snapshot_prune(const char *dir, int keep)
{
    uint64_t *v;
    int n = fu_snapshot_list(dir, &v);
    if (n <= 0)
        return UINT64_MAX;
    if (keep < 1)
        keep = 1;
    for (int i = keep; i < n; i++) {
        char *p = fu_snapshot_path(dir, v[i]);
        if (p && unlink(p) < 0)
            fu_warn("snapshot: cannot remove %s: %s", p, strerror(errno));
        free(p);
    }
    uint64_t oldest = v[(n < keep ? n : keep) - 1];
    free(v);
    return oldest;
}
