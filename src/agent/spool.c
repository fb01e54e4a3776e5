/* The on-disk spool of a pipe's realtime rows; see spool.h. Layout:
 *
 *   segment header (32 bytes): "FUSPOOL1", the signature (16 bytes, NUL-padded), le32
 *                              CRC-32C of the 24 bytes before it, 4 zero bytes
 *   record:  le32 payload length, le32 CRC-32C of (length, payload), payload
 *   payload: u8 op, u8 flags (1: atomic, 2: directory), 2 zero bytes, le64 size,
 *            le64 mtime and ctime (IEEE-754 bits), the path (the rest)
 *   head:    le64 segment, le64 offset, le32 CRC-32C of the 16 bytes before it
 *
 * The head is rewritten in place after each acknowledged batch, without a sync: a torn or
 * stale one only makes a reopened spool send rows again. */
#include "agent/spool.h"

#include "common/buf.h"
#include "common/crc32c.h"
#include "common/fsutil.h"
#include "common/le.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "FUSPOOL1"
#define HDR 32          /* segment header */
#define REC_HDR 8       /* length and CRC */
#define FIXED 28        /* payload before the path */
#define MAX_PATH 65536  /* longer is damage */
#define CHUNK (1 << 20) /* reads */

struct seg {
    uint64_t id, size;
};

/* A window of one segment file, for reading records in order. */
struct reader {
    int fd;
    uint64_t id; /* the segment open in fd */
    unsigned char *buf;
    size_t cap, len;
    uint64_t off; /* of buf[0] in the file */
};

struct fu_spool {
    char *dir;
    char sig[16];
    uint64_t max_bytes, seg_bytes;
    struct seg *segs; /* oldest first; rows are appended to the last */
    size_t nsegs, cap;
    int wfd; /* the last segment, open for appending; -1 */
    int hfd; /* the head file; -1 */
    struct fu_buf wbuf;
    uint64_t file_bytes; /* of the segment files */
    uint64_t rseg, roff; /* the read position: segs[0].id and an offset in it */
    uint64_t rows;       /* not yet delivered, wbuf's included */
    struct reader rd;
    struct fu_buf path; /* the path of the row given to a peek's callback, NUL-terminated */
};

static void seg_path(const struct fu_spool *s, uint64_t id, char *out, size_t len)
{
    snprintf(out, len, "%s/%016" PRIx64 ".seg", s->dir, id);
}

static void head_path(const struct fu_spool *s, char *out, size_t len)
{
    snprintf(out, len, "%s/head", s->dir);
}

static void rd_close(struct reader *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    r->len = 0;
}

/* Points *p at `len` bytes at `off` of the file open in r, no further than `size`. */
static int rd_get(struct reader *r, uint64_t size, uint64_t off, size_t len,
                  const unsigned char **p)
{
    if (off + len > size)
        return -EBADMSG;
    if (off >= r->off && off + len <= r->off + r->len) {
        *p = r->buf + (off - r->off);
        return 0;
    }
    size_t want = len > CHUNK ? len : CHUNK;
    if (want > size - off)
        want = (size_t)(size - off);
    if (r->cap < want) {
        unsigned char *b = realloc(r->buf, want);
        if (!b)
            return -ENOMEM;
        r->buf = b;
        r->cap = want;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(r->fd, r->buf + got, want - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    r->off = off;
    r->len = got;
    if (got < len)
        return -EBADMSG; /* shorter than it was */
    *p = r->buf;
    return 0;
}

static int rd_open(struct fu_spool *s, uint64_t id)
{
    if (s->rd.fd >= 0 && s->rd.id == id)
        return 0;
    rd_close(&s->rd);
    char path[4200];
    seg_path(s, id, path, sizeof(path));
    s->rd.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->rd.fd < 0)
        return -errno;
    s->rd.id = id;
    s->rd.len = 0;
    return 0;
}

/* Reads the record at `off` of the open segment: 0 with the row (its path in the reader's
 * buffer) and the record's size, or -EBADMSG with why. */
static int read_record(struct reader *r, uint64_t size, uint64_t off, struct fu_watch_row *row,
                       uint64_t *reclen, const char **why)
{
    const unsigned char *h, *p;
    if (rd_get(r, size, off, REC_HDR, &h) < 0) {
        *why = "a torn record";
        return -EBADMSG;
    }
    uint32_t len = fu_get_le32(h), crc = fu_get_le32(h + 4);
    if (len <= FIXED || len > FIXED + MAX_PATH) {
        *why = "a bad record length";
        return -EBADMSG;
    }
    int rc = rd_get(r, size, off + REC_HDR, len, &p);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0) {
        *why = "a torn record";
        return -EBADMSG;
    }
    if (fu_crc32c(fu_crc32c(0, h, 4), p, len) != crc || p[0] > FU_WATCH_DELETE) {
        *why = "a record whose CRC does not match";
        return -EBADMSG;
    }
    uint64_t mt = fu_get_le64(p + 12), ct = fu_get_le64(p + 20);
    *row = (struct fu_watch_row){
        .op = (enum fu_watch_op)p[0],
        .atomic = p[1] & 1,
        .is_dir = (p[1] & 2) != 0,
        .path = (const char *)p + FIXED,
        .path_len = len - FIXED,
        .size = fu_get_le64(p + 4),
    };
    memcpy(&row->mtime, &mt, sizeof(mt));
    memcpy(&row->ctime, &ct, sizeof(ct));
    *reclen = REC_HDR + len;
    return 0;
}

static void make_header(const struct fu_spool *s, unsigned char h[HDR])
{
    memset(h, 0, HDR);
    memcpy(h, MAGIC, 8);
    memcpy(h + 8, s->sig, 16);
    fu_put_le32(h + 24, fu_crc32c(0, h, 24));
}

static int add_seg(struct fu_spool *s, uint64_t id, uint64_t size)
{
    if (s->nsegs == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct seg *v = realloc(s->segs, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        s->segs = v;
        s->cap = cap;
    }
    s->segs[s->nsegs++] = (struct seg){id, size};
    return 0;
}

static void unlink_seg(struct fu_spool *s, uint64_t id)
{
    char path[4200];
    seg_path(s, id, path, sizeof(path));
    unlink(path);
    if (s->rd.fd >= 0 && s->rd.id == id)
        rd_close(&s->rd);
}

/* Removes every file; the spool is empty. */
static void remove_all(struct fu_spool *s)
{
    if (s->wfd >= 0)
        close(s->wfd);
    if (s->hfd >= 0)
        close(s->hfd);
    s->wfd = s->hfd = -1;
    rd_close(&s->rd);
    for (size_t i = 0; i < s->nsegs; i++)
        unlink_seg(s, s->segs[i].id);
    char path[4200];
    head_path(s, path, sizeof(path));
    unlink(path);
    rmdir(s->dir); /* fails, harmlessly, if something else lives there */
    s->nsegs = 0;
    s->file_bytes = 0;
    s->rseg = s->roff = 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The segment numbers in the directory, sorted. */
static int list_segs(const char *dir, uint64_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    size_t cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        char *end;
        if (strlen(e->d_name) != 20 || strcmp(e->d_name + 16, ".seg"))
            continue;
        uint64_t id = strtoull(e->d_name, &end, 16);
        if (end != e->d_name + 16)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *v = realloc(*ids, cap * sizeof(*v));
            if (!v) {
                rc = -ENOMEM;
                break;
            }
            *ids = v;
        }
        (*ids)[(*n)++] = id;
    }
    closedir(d);
    if (*n)
        qsort(*ids, *n, sizeof(**ids), cmp_u64);
    return rc;
}

/* The head file: where reading resumed. False when missing or damaged. */
static bool read_head(struct fu_spool *s, uint64_t *seg, uint64_t *off)
{
    char path[4200];
    head_path(s, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    unsigned char b[20];
    bool ok = pread(fd, b, sizeof(b), 0) == (ssize_t)sizeof(b) &&
              fu_crc32c(0, b, 16) == fu_get_le32(b + 16);
    close(fd);
    if (ok) {
        *seg = fu_get_le64(b);
        *off = fu_get_le64(b + 8);
    }
    return ok;
}

static void write_head(struct fu_spool *s)
{
    if (s->hfd < 0) {
        char path[4200];
        head_path(s, path, sizeof(path));
        s->hfd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
        if (s->hfd < 0)
            return; /* a reopen then reads from the oldest segment: rows go twice */
    }
    unsigned char b[20];
    fu_put_le64(b, s->rseg);
    fu_put_le64(b + 8, s->roff);
    fu_put_le32(b + 16, fu_crc32c(0, b, 16));
    if (pwrite(s->hfd, b, sizeof(b), 0) != (ssize_t)sizeof(b)) {
        close(s->hfd);
        s->hfd = -1;
    }
}

/* Checks segment `id` at open: its header and every record. Returns the offset where its
 * good records end (its size when all are good) and counts them; *rows_from counts those at
 * or after `from` (0: none), *at_from says whether `from` is a record boundary. A bad header
 * returns 0; a foreign signature sets *foreign. */
static uint64_t check_seg(struct fu_spool *s, uint64_t id, uint64_t *size, uint64_t from,
                          uint64_t *rows, uint64_t *rows_from, bool *at_from, bool *foreign,
                          const char **why)
{
    *rows = *rows_from = 0;
    *at_from = *foreign = false;
    if (rd_open(s, id) < 0) {
        *why = "a segment that cannot be read";
        return 0;
    }
    struct stat st;
    if (fstat(s->rd.fd, &st) < 0) {
        *why = "a segment that cannot be read";
        return 0;
    }
    *size = (uint64_t)st.st_size;
    if (*size < HDR)
        return 0; /* created, its header not (all) written: no row was in it */
    const unsigned char *h;
    unsigned char want[HDR];
    make_header(s, want);
    if (rd_get(&s->rd, *size, 0, HDR, &h) < 0 || memcmp(h, MAGIC, 8) ||
        fu_get_le32(h + 24) != fu_crc32c(0, h, 24)) {
        *why = "a segment with a bad header";
        return 0;
    }
    if (memcmp(h + 8, want + 8, 16)) {
        *foreign = true;
        return 0;
    }
    uint64_t off = HDR;
    while (off < *size) {
        if (off == from)
            *at_from = true;
        struct fu_watch_row row;
        uint64_t len;
        if (read_record(&s->rd, *size, off, &row, &len, why) < 0)
            return off;
        (*rows)++;
        *rows_from += from && off >= from;
        off += len;
    }
    if (off == from)
        *at_from = true;
    *why = NULL;
    return off;
}

int fu_spool_open(struct fu_spool **out, const char *dir, const char *sig, uint64_t max_bytes,
                  uint64_t seg_bytes, struct fu_spool_info *info)
{
    memset(info, 0, sizeof(*info));
    struct fu_spool *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->dir = strdup(dir);
    s->wfd = s->hfd = s->rd.fd = -1;
    s->wbuf = (struct fu_buf)FU_BUF_INIT;
    s->max_bytes = max_bytes;
    if (!seg_bytes) {
        seg_bytes = max_bytes / 8;
        seg_bytes = seg_bytes < 4096 ? 4096 : seg_bytes > (16 << 20) ? (16 << 20) : seg_bytes;
    }
    s->seg_bytes = seg_bytes;
    if (sig) /* NUL-padded, not terminated */
        memcpy(s->sig, sig, strnlen(sig, sizeof(s->sig)));
    uint64_t *ids = NULL;
    size_t n = 0;
    int rc = s->dir ? list_segs(dir, &ids, &n) : -ENOMEM;
    if (rc < 0) {
        free(ids);
        free(s->dir);
        free(s);
        return rc;
    }
    uint64_t hseg = 0, hoff = 0;
    bool head = n && read_head(s, &hseg, &hoff);
    if (head && (hseg < ids[0] || hseg > ids[n - 1]))
        head = false; /* names no segment of these: read them all */
    uint64_t total = 0, from_head = 0;
    bool head_ok = false;
    for (size_t i = 0; i < n; i++) {
        if (head && ids[i] < hseg) { /* delivered; its deletion was cut short */
            unlink_seg(s, ids[i]);
            continue;
        }
        uint64_t size = 0, rows, rows_from;
        bool at_from, foreign;
        const char *why = NULL;
        uint64_t from = head && ids[i] == hseg ? hoff : 0;
        uint64_t end =
            check_seg(s, ids[i], &size, from, &rows, &rows_from, &at_from, &foreign, &why);
        rd_close(&s->rd);
        if (foreign) {
            info->foreign = true;
            snprintf(info->detail, sizeof(info->detail),
                     "segment %016" PRIx64 " was written for other source settings", ids[i]);
            break;
        }
        bool keep = end >= HDR;
        if (!keep && !why)
            unlink_seg(s, ids[i]);
        if (why) { /* cut here: this segment's tail and every later segment */
            info->damaged = true;
            snprintf(info->detail, sizeof(info->detail),
                     "%s in segment %016" PRIx64 " at byte %" PRIu64 ": cut there (%" PRIu64
                     " bytes, and %zu later segments, dropped)",
                     why, ids[i], end, size - end, n - i - 1);
            char path[4200];
            seg_path(s, ids[i], path, sizeof(path));
            if (keep && truncate(path, (off_t)end) < 0)
                keep = false;
            if (!keep)
                unlink(path);
        }
        if (keep) {
            rc = add_seg(s, ids[i], end);
            if (rc < 0)
                break;
            total += rows;
            if (from) {
                head_ok = at_from;
                from_head = rows_from;
            } else if (head_ok) {
                from_head += rows;
            }
        }
        if (why) {
            for (size_t k = i + 1; k < n; k++)
                unlink_seg(s, ids[k]);
            break;
        }
    }
    if (info->foreign && rc == 0) { /* every segment goes, checked or not */
        s->nsegs = 0;
        for (size_t i = 0; i < n; i++)
            add_seg(s, ids[i], 0);
        remove_all(s);
    }
    free(ids);
    if (rc < 0) { /* out of memory: the files stay as they are */
        rd_close(&s->rd);
        free(s->rd.buf);
        free(s->segs);
        free(s->dir);
        free(s);
        return rc;
    }
    for (size_t i = 0; i < s->nsegs; i++)
        s->file_bytes += s->segs[i].size;
    if (s->nsegs) {
        bool resume = head_ok && s->segs[0].id == hseg;
        s->rseg = s->segs[0].id;
        s->roff = resume ? hoff : HDR;
        s->rows = resume ? from_head : total;
    }
    if (!s->rows)
        remove_all(s); /* everything was delivered (or nothing is left) */
    info->rows = s->rows;
    info->bytes = s->file_bytes;
    *out = s;
    return 0;
}

void fu_spool_close(struct fu_spool *s)
{
    if (!s)
        return;
    fu_spool_flush(s);
    if (s->wfd >= 0) {
        fdatasync(s->wfd);
        close(s->wfd);
    }
    if (s->rows && s->nsegs)
        write_head(s);
    if (s->hfd >= 0)
        close(s->hfd);
    if (s->nsegs)
        fu_fsync_dir(s->dir);
    rd_close(&s->rd);
    free(s->rd.buf);
    fu_buf_free(&s->wbuf);
    fu_buf_free(&s->path);
    free(s->segs);
    free(s->dir);
    free(s);
}

int fu_spool_append(struct fu_spool *s, const struct fu_watch_row *r)
{
    if (!r->path_len || r->path_len > MAX_PATH)
        return -EINVAL;
    uint64_t rec = REC_HDR + FIXED + r->path_len;
    bool new_seg = !s->nsegs || s->segs[s->nsegs - 1].size >= s->seg_bytes;
    if (s->file_bytes + s->wbuf.len + rec + (new_seg ? HDR : 0) > s->max_bytes)
        return -ENOSPC;
    unsigned char h[REC_HDR + FIXED];
    uint32_t len = (uint32_t)(FIXED + r->path_len);
    fu_put_le32(h, len);
    h[8] = (unsigned char)r->op;
    h[9] = (unsigned char)((r->atomic ? 1 : 0) | (r->is_dir ? 2 : 0));
    h[10] = h[11] = 0;
    uint64_t mt, ct;
    memcpy(&mt, &r->mtime, sizeof(mt));
    memcpy(&ct, &r->ctime, sizeof(ct));
    fu_put_le64(h + 12, r->size);
    fu_put_le64(h + 20, mt);
    fu_put_le64(h + 28, ct);
    uint32_t crc = fu_crc32c(fu_crc32c(0, h, 4), h + REC_HDR, FIXED);
    fu_put_le32(h + 4, fu_crc32c(crc, r->path, r->path_len));
    size_t before = s->wbuf.len;
    fu_buf_append(&s->wbuf, h, sizeof(h));
    fu_buf_append(&s->wbuf, r->path, r->path_len);
    if (s->wbuf.oom) {
        s->wbuf.oom = false;
        s->wbuf.len = before;
        return -ENOMEM;
    }
    s->rows++;
    return 0;
}

/* Writes all of p, or returns -errno. */
static int write_all(int fd, const void *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
    return 0;
}

/* Starts a new segment, the one appended to from now on. */
static int new_segment(struct fu_spool *s)
{
    if (s->wfd >= 0) { /* the full one is done: on disk before the next begins */
        fdatasync(s->wfd);
        close(s->wfd);
        s->wfd = -1;
    }
    int rc = fu_mkdirs(s->dir, 0750);
    if (rc < 0)
        return rc;
    uint64_t id = s->nsegs ? s->segs[s->nsegs - 1].id + 1 : 1;
    char path[4200];
    seg_path(s, id, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    unsigned char h[HDR];
    make_header(s, h);
    rc = write_all(fd, h, HDR);
    if (!rc)
        rc = add_seg(s, id, HDR);
    if (rc < 0) {
        close(fd);
        unlink(path);
        return rc;
    }
    if (s->nsegs == 1) { /* reading starts here */
        s->rseg = id;
        s->roff = HDR;
    }
    s->wfd = fd;
    s->file_bytes += HDR;
    return 0;
}

int fu_spool_flush(struct fu_spool *s)
{
    if (!s->wbuf.len)
        return 0;
    int rc = 0;
    if (!s->nsegs || s->segs[s->nsegs - 1].size >= s->seg_bytes)
        rc = new_segment(s);
    else if (s->wfd < 0) { /* the last segment of a previous run: appended to */
        char path[4200];
        seg_path(s, s->segs[s->nsegs - 1].id, path, sizeof(path));
        s->wfd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        rc = s->wfd < 0 ? -errno : 0;
    }
    if (!rc)
        rc = write_all(s->wfd, s->wbuf.data, s->wbuf.len);
    if (rc < 0)
        return rc; /* a partial record may be on disk: the caller drops the spool */
    s->segs[s->nsegs - 1].size += s->wbuf.len;
    s->file_bytes += s->wbuf.len;
    fu_buf_reset(&s->wbuf);
    return 0;
}

long fu_spool_peek(struct fu_spool *s, size_t max,
                   void (*fn)(void *ctx, const struct fu_watch_row *r), void *ctx,
                   struct fu_spool_pos *upto)
{
    int rc = fu_spool_flush(s);
    if (rc < 0)
        return rc;
    *upto = (struct fu_spool_pos){s->rseg, s->roff, 0};
    size_t i = 0, n = 0;
    uint64_t off = s->roff;
    while (n < max && i < s->nsegs) {
        const struct seg *g = &s->segs[i];
        if (off >= g->size) {
            if (i + 1 == s->nsegs)
                break;
            i++;
            off = HDR;
            continue;
        }
        rc = rd_open(s, g->id);
        if (rc < 0)
            return rc;
        struct fu_watch_row row;
        uint64_t len;
        const char *why;
        rc = read_record(&s->rd, g->size, off, &row, &len, &why);
        if (rc < 0)
            return rc;
        fu_buf_reset(&s->path); /* as the bus gives them: with a NUL after the path */
        fu_buf_append(&s->path, row.path, row.path_len);
        if (s->path.oom) {
            s->path.oom = false;
            return -ENOMEM;
        }
        row.path = s->path.data;
        fn(ctx, &row);
        n++;
        off += len;
    }
    if (s->nsegs)
        *upto = (struct fu_spool_pos){s->segs[i].id, off, n};
    return (long)n;
}

int fu_spool_commit(struct fu_spool *s, const struct fu_spool_pos *upto)
{
    if (!s->nsegs || upto->seg < s->rseg || upto->rows > s->rows)
        return -EINVAL;
    s->rows -= upto->rows;
    s->rseg = upto->seg;
    s->roff = upto->off;
    size_t k = 0; /* segments read to their end go */
    while (k < s->nsegs && s->segs[k].id < s->rseg) {
        unlink_seg(s, s->segs[k].id);
        s->file_bytes -= s->segs[k].size;
        k++;
    }
    if (k) {
        memmove(s->segs, s->segs + k, (s->nsegs - k) * sizeof(*s->segs));
        s->nsegs -= k;
    }
    if (!s->rows && !s->wbuf.len)
        remove_all(s);
    else
        write_head(s);
    return 0;
}

void fu_spool_drop(struct fu_spool *s)
{
    fu_buf_reset(&s->wbuf);
    s->rows = 0;
    remove_all(s);
}

uint64_t fu_spool_rows(const struct fu_spool *s)
{
    return s->rows;
}

uint64_t fu_spool_bytes(const struct fu_spool *s)
{
    return s->file_bytes + s->wbuf.len;
}

const char *fu_spool_dir(const struct fu_spool *s)
{
    return s->dir;
}
