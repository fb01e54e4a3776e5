/* View snapshot files: header, zstd payload, CRCs, atomic replacement. See snapshot.h. */
#include "fusion/snapshot.h"

#include "common/crc32c.h"
#include "common/fsutil.h"
#include "common/le.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
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

char *fu_snapshot_path(const char *dir, uint64_t pos)
{
    char name[48];
    snprintf(name, sizeof(name), "snapshot-%016" PRIx64 ".fsnap", pos);
    return fu_path_join(dir, name);
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
    fu_put_le32(h + 8, FU_SNAPSHOT_FORMAT);
    fu_put_le32(h + 12, state_format);
    fu_put_le64(h + 16, pos);
    fu_put_le64(h + 24, len);
    fu_put_le64(h + 32, z);
    uint64_t t;
    memcpy(&t, &created_at, 8);
    fu_put_le64(h + 40, t);
    fu_put_le32(h + 48, fu_crc32c(0, buf + HDR, z));
    fu_put_le32(h + 60, fu_crc32c(0, h, 60));

    char *path = fu_snapshot_path(dir, pos);
    int rc = path ? fu_write_file_atomic(path, buf, HDR + z, 0640) : -ENOMEM;
    if (!rc)
        rc = fu_fsync_dir(dir); /* the rename, durable */
    if (!rc && info)
        *info = (struct fu_snapshot_info){pos,     FU_SNAPSHOT_FORMAT, state_format, len,
                                          HDR + z, created_at};
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
    if (fu_get_le32(h + 60) != fu_crc32c(0, h, 60)) {
        snprintf(err, errlen, "%s: damaged header (CRC)", path);
        goto out;
    }
    uint32_t format = fu_get_le32(h + 8), state_format = fu_get_le32(h + 12);
    if (format > FU_SNAPSHOT_FORMAT || state_format > max_state_format) {
        snprintf(err, errlen,
                 "%s is of snapshot format %u (state format %u); this Fusion reads format %d "
                 "(state format %u) and older: it was written by a newer Fusion",
                 path, format, state_format, FU_SNAPSHOT_FORMAT, max_state_format);
        rc = -EPROTO;
        goto out;
    }
    uint64_t raw = fu_get_le64(h + 24), z = fu_get_le64(h + 32);
    if (z != file.len - HDR || raw > MAX_STATE) {
        snprintf(err, errlen,
                 "%s: truncated or damaged (%zu payload bytes, header says %" PRIu64 ")", path,
                 file.len - HDR, z);
        goto out;
    }
    if (fu_get_le32(h + 48) != fu_crc32c(0, h + HDR, z)) {
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
    uint64_t t = fu_get_le64(h + 40);
    double created;
    memcpy(&created, &t, 8);
    if (info)
        *info = (struct fu_snapshot_info){
            fu_get_le64(h + 16), format, state_format, raw, file.len, created};
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
        if (e->d_name[end]) { /* "….fsnap.tmp.<pid>": an interrupted write */
            if (!strncmp(e->d_name + end, ".tmp.", 5)) {
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
