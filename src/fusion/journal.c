/* The view journal: segments of CRC-checked records, group commit, replay with torn-tail
 * repair. See journal.h for the format and the guarantees. */
#include "fusion/journal.h"

#include "common/crc32c.h"
#include "common/fsutil.h"
#include "common/le.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define HDR 32 /* segment header */
#define REC 9  /* record header: length, CRC, type */
static const char MAGIC[8] = "FUSTORJ";

struct fu_journal {
    char *dir;
    enum fu_fsync mode;
    double window;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;
    uint64_t *segs; /* start positions of the segments on disk, ascending */
    size_t nsegs, cap;
    int fd;           /* the last segment, for appends; -1 before the replay */
    uint64_t seg_len; /* its record bytes */
    uint64_t end;     /* the position after the last record */
    uint64_t synced;  /* everything before it is durable */
    uint64_t kicked;  /* everything before it is being written back (fu_journal_kick) */
    bool syncing;     /* a thread is in fdatasync or sync_file_range */
    int err;          /* a failed sync: sticky */
};

static uint32_t rec_crc(uint64_t pos, uint8_t type, const void *data, size_t len)
{
    unsigned char pre[9];
    fu_put_le64(pre, pos);
    pre[8] = type;
    return fu_crc32c(fu_crc32c(0, pre, sizeof(pre)), data, len);
}

static char *seg_path(const struct fu_journal *j, uint64_t start)
{
    char name[48];
    snprintf(name, sizeof(name), "journal-%016" PRIx64 ".log", start);
    return fu_path_join(j->dir, name);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int push_seg(struct fu_journal *j, uint64_t start)
{
    if (j->nsegs == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 16;
        uint64_t *v = realloc(j->segs, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        j->segs = v;
        j->cap = cap;
    }
    j->segs[j->nsegs++] = start;
    return 0;
}

int fu_journal_open(struct fu_journal **out, const char *dir, enum fu_fsync mode, double window_sec)
{
    int rc = fu_mkdirs(dir, 0750);
    if (rc < 0 && rc != -EEXIST)
        return rc;
    struct fu_journal *j = calloc(1, sizeof(*j));
    if (!j || !(j->dir = strdup(dir))) {
        free(j);
        return -ENOMEM;
    }
    j->mode = mode;
    j->window = window_sec;
    j->fd = -1;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    DIR *d = opendir(dir);
    if (!d) {
        rc = -errno;
        fu_journal_close(j);
        return rc;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t start;
        int n = 0;
        if (sscanf(e->d_name, "journal-%16" SCNx64 ".log%n", &start, &n) == 1 &&
            (size_t)n == strlen(e->d_name) && strlen(e->d_name) == 28 && push_seg(j, start) < 0) {
            closedir(d);
            fu_journal_close(j);
            return -ENOMEM;
        }
    }
    closedir(d);
    if (j->nsegs)
        qsort(j->segs, j->nsegs, sizeof(*j->segs), cmp_u64);
    *out = j;
    return 0;
}

void fu_journal_close(struct fu_journal *j)
{
    if (!j)
        return;
    if (j->fd >= 0) {
        if (j->mode != FU_FSYNC_OFF && j->synced < j->end)
            fdatasync(j->fd);
        close(j->fd);
    }
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j->segs);
    free(j->dir);
    free(j);
}

/* Creates the segment starting at `start` and makes it the one appended to. */
static int new_segment(struct fu_journal *j, uint64_t start)
{
    char *path = seg_path(j, start);
    if (!path)
        return -ENOMEM;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    int rc = fd < 0 ? -errno : 0;
    unsigned char h[HDR] = {0};
    memcpy(h, MAGIC, 8);
    fu_put_le32(h + 8, FU_JOURNAL_FORMAT);
    fu_put_le64(h + 16, start);
    fu_put_le32(h + 24, fu_crc32c(0, h, 24));
    if (!rc && pwrite(fd, h, HDR, 0) != HDR)
        rc = errno ? -errno : -EIO;
    if (!rc && j->mode != FU_FSYNC_OFF && fdatasync(fd) < 0)
        rc = -errno;
    if (!rc && j->mode != FU_FSYNC_OFF)
        rc = fu_fsync_dir(j->dir);
    bool listed = j->nsegs && j->segs[j->nsegs - 1] == start;
    if (!rc && !listed)
        rc = push_seg(j, start);
    if (rc) {
        if (fd >= 0)
            close(fd);
        unlink(path);
        free(path);
        return rc;
    }
    free(path);
    if (j->fd >= 0)
        close(j->fd);
    j->fd = fd;
    j->seg_len = 0;
    j->end = j->synced = start;
    return 0;
}

/* Copies a damaged segment aside, for whoever investigates. */
static void keep_aside(const char *path, const unsigned char *data, size_t len)
{
    size_t n = strlen(path) + 16;
    char *dst = malloc(n);
    if (!dst)
        return;
    snprintf(dst, n, "%s.corrupt", path);
    if (fu_write_file_atomic(dst, data, len, 0640) < 0)
        fu_warn("journal: cannot keep a copy of the damaged segment as %s", dst);
    free(dst);
}

static void set_why(struct fu_journal_replay_info *info, uint64_t pos, const char *fmt,
                    const char *a)
{
    info->corrupt = true;
    info->corrupt_pos = pos;
    snprintf(info->why, sizeof(info->why), fmt, a);
}

/* Replays one mapped segment; returns 0, or fn's value. Sets *cut when the segment must end
 * early (torn tail or damage) at record offset *cut_at. */
static int replay_seg(const unsigned char *m, size_t size, uint64_t start, bool last, uint64_t from,
                      int (*fn)(void *, const struct fu_journal_rec *), void *ctx,
                      struct fu_journal_replay_info *info, bool *cut, size_t *cut_at)
{
    size_t off = HDR;
    *cut = false;
    while (off < size) {
        uint64_t pos = start + (off - HDR);
        size_t left = size - off;
        const char *damage = NULL;
        uint32_t len = left >= REC ? fu_get_le32(m + off) : 0;
        if (left < REC)
            damage = "an incomplete record header";
        else if (len > FU_JOURNAL_MAX_RECORD)
            damage = "an impossible record length";
        else if (len > left - REC)
            damage = "a record longer than its segment";
        else if (fu_get_le32(m + off + 4) != rec_crc(pos, m[off + 8], m + off + REC, len))
            damage = "a record failing its CRC";
        if (damage) {
            /* At the very end of the last segment: a write the crash interrupted. */
            bool tail = last && (left < REC || len > left - REC || off + REC + len == size);
            *cut = true;
            *cut_at = off;
            if (tail)
                info->torn_bytes = left;
            else
                set_why(info, pos, "%s", damage);
            return 0;
        }
        if (pos >= from) {
            struct fu_journal_rec r = {pos, m[off + 8], m + off + REC, len};
            int rc = fn(ctx, &r);
            if (rc < 0)
                return rc;
            info->records++;
        }
        off += REC + len;
        if (start + (off - HDR) > info->end)
            info->end = start + (off - HDR);
    }
    return 0;
}

int fu_journal_replay(struct fu_journal *j, uint64_t from,
                      int (*fn)(void *ctx, const struct fu_journal_rec *r), void *ctx,
                      struct fu_journal_replay_info *info)
{
    memset(info, 0, sizeof(*info));
    info->end = from;
    pthread_mutex_lock(&j->mu);
    int rc = 0;
    size_t keep = 0; /* segments still in use */
    bool stop = false;
    for (size_t i = 0; i < j->nsegs && !stop && rc >= 0; i++) {
        uint64_t start = j->segs[i];
        bool last = i + 1 == j->nsegs;
        /* A segment wholly before `from` is history the snapshot covers. */
        if (!last && j->segs[i + 1] <= from) {
            keep = i + 1;
            continue;
        }
        char *path = seg_path(j, start);
        int fd = path ? open(path, O_RDWR | O_CLOEXEC) : -1;
        struct stat st;
        if (!path || fd < 0 || fstat(fd, &st) < 0) {
            rc = path ? -errno : -ENOMEM;
            if (fd >= 0)
                close(fd);
            free(path);
            break;
        }
        size_t size = (size_t)st.st_size;
        void *m = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
        if (size && m == MAP_FAILED) {
            rc = -errno;
            close(fd);
            free(path);
            break;
        }
        const unsigned char *h = m;
        bool cut = false;
        size_t cut_at = 0;
        bool gap = false;
        if (size >= HDR && !memcmp(h, MAGIC, 8) && fu_get_le32(h + 24) == fu_crc32c(0, h, 24) &&
            fu_get_le32(h + 8) > FU_JOURNAL_FORMAT) {
            fu_error("journal %s: segment %s is of format %u; this Fusion reads format %d and "
                     "older (a newer Fusion wrote it)",
                     j->dir, path, fu_get_le32(h + 8), FU_JOURNAL_FORMAT);
            rc = -EPROTO;
        } else if (size < HDR || memcmp(h, MAGIC, 8) ||
                   fu_get_le32(h + 24) != fu_crc32c(0, h, 24) || fu_get_le64(h + 16) != start) {
            if (last && size < HDR) /* created, never written: a crash at rotation */
                info->torn_bytes += size;
            else
                set_why(info, start, "%s", "a damaged segment header");
            stop = cut = true;
            cut_at = 0;
        } else if (start > info->end) {
            set_why(info, info->end, "%s", "a missing segment");
            stop = gap = true;
        } else {
            rc = replay_seg(h, size, start, last, from, fn, ctx, info, &cut, &cut_at);
            stop = cut;
        }
        if (gap) {
            keep = i;
        } else if (rc < 0) {
            keep = i + 1;
        } else if (cut && !info->corrupt && cut_at >= HDR) {
            /* A torn tail: cut it off, the segment goes on from there. */
            if (ftruncate(fd, (off_t)cut_at) < 0 || fsync(fd) < 0)
                rc = -errno;
            else
                fu_warn("journal %s: an incomplete last record (%" PRIu64
                        " bytes) truncated at position %" PRIu64,
                        j->dir, info->torn_bytes, info->end);
            keep = i + 1;
        } else if (info->corrupt && cut && cut_at >= HDR) {
            keep_aside(path, h, size);
            if (ftruncate(fd, (off_t)cut_at) < 0 || fsync(fd) < 0)
                rc = -errno;
            keep = i + 1;
        } else if (cut) {
            if (info->corrupt && size)
                keep_aside(path, h, size);
            unlink(path); /* nothing usable in it */
            keep = i;
        } else {
            keep = i + 1;
        }
        if (size)
            munmap(m, size);
        close(fd);
        free(path);
    }
    if (rc >= 0 && stop) {
        /* Set the segments after the damage aside: they must never be replayed. */
        for (size_t i = keep; i < j->nsegs; i++) {
            char *path = seg_path(j, j->segs[i]);
            if (!path)
                continue;
            if (access(path, F_OK) == 0) {
                size_t n = strlen(path) + 16;
                char *dst = malloc(n);
                if (dst) {
                    snprintf(dst, n, "%s.corrupt", path);
                    rename(path, dst);
                }
                free(dst);
            }
            free(path);
        }
        j->nsegs = keep;
    }
    if (rc >= 0 && info->corrupt)
        fu_error("journal %s: replay stopped at position %" PRIu64 ": %s; the state up to there "
                 "is kept, the rest set aside (*.corrupt)",
                 j->dir, info->corrupt_pos, info->why);
    /* Appends go to a fresh segment at the end (the old ones stay as they are). */
    if (rc >= 0) {
        if (j->nsegs && j->segs[j->nsegs - 1] == info->end) {
            /* The last segment starts where we are and is empty: reuse its name. */
            char *path = seg_path(j, info->end);
            if (path)
                unlink(path);
            free(path);
            j->nsegs--;
        }
        rc = new_segment(j, info->end);
    }
    pthread_mutex_unlock(&j->mu);
    return rc < 0 ? rc : 0;
}

int fu_journal_append(struct fu_journal *j, uint8_t type, const void *data, size_t len,
                      uint64_t *end)
{
    if (len > FU_JOURNAL_MAX_RECORD)
        return -EFBIG;
    pthread_mutex_lock(&j->mu);
    if (j->err || j->fd < 0) {
        int e = j->err ? j->err : -EBADF;
        pthread_mutex_unlock(&j->mu);
        return e;
    }
    unsigned char h[REC];
    fu_put_le32(h, (uint32_t)len);
    fu_put_le32(h + 4, rec_crc(j->end, type, data, len));
    h[8] = type;
    struct iovec iov[2] = {{h, REC}, {(void *)data, len}};
    off_t at = (off_t)(HDR + j->seg_len);
    size_t want = REC + len, done = 0;
    int rc = 0;
    while (done < want) {
        struct iovec v[2];
        int n = 0;
        size_t skip = done;
        for (int i = 0; i < 2; i++) {
            if (skip >= iov[i].iov_len) {
                skip -= iov[i].iov_len;
                continue;
            }
            v[n].iov_base = (char *)iov[i].iov_base + skip;
            v[n++].iov_len = iov[i].iov_len - skip;
            skip = 0;
        }
        ssize_t w = pwritev(j->fd, v, n, at + (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = w < 0 ? -errno : -EIO;
            break;
        }
        done += (size_t)w;
    }
    if (rc) {
        if (done && ftruncate(j->fd, at) < 0)
            j->err = -EIO; /* a partial record we cannot remove: stop taking records */
        pthread_mutex_unlock(&j->mu);
        return rc;
    }
    j->seg_len += want;
    j->end += want;
    if (j->mode == FU_FSYNC_ALWAYS) {
        if (fdatasync(j->fd) < 0)
            j->err = rc = -errno;
        else
            j->synced = j->end;
    }
    *end = j->end;
    pthread_mutex_unlock(&j->mu);
    return rc;
}

int fu_journal_wait(struct fu_journal *j, uint64_t end)
{
    if (j->mode == FU_FSYNC_OFF)
        return 0;
    pthread_mutex_lock(&j->mu);
    while (j->synced < end && !j->err) {
        if (j->syncing) {
            pthread_cond_wait(&j->cv, &j->mu);
            continue;
        }
        /* This thread syncs for everyone who appended so far (group commit). */
        j->syncing = true;
        int fd = j->fd;
        pthread_mutex_unlock(&j->mu);
        if (j->window > 0) {
            struct timespec ts = {(time_t)j->window, (long)((j->window - (time_t)j->window) * 1e9)};
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&j->mu);
        uint64_t target = j->end;
        pthread_mutex_unlock(&j->mu);
        int rc = fdatasync(fd) < 0 ? -errno : 0;
        pthread_mutex_lock(&j->mu);
        j->syncing = false;
        if (rc < 0) {
            j->err = rc;
            fu_error("journal %s: fdatasync failed: %s; no more batches are accepted", j->dir,
                     strerror(-rc));
        } else if (target > j->synced) {
            j->synced = target;
        }
        pthread_cond_broadcast(&j->cv);
    }
    int rc = j->synced >= end ? 0 : j->err;
    pthread_mutex_unlock(&j->mu);
    return rc;
}

void fu_journal_kick(struct fu_journal *j)
{
    pthread_mutex_lock(&j->mu);
    uint64_t from = j->kicked > j->synced ? j->kicked : j->synced;
    if (j->mode == FU_FSYNC_BATCH && !j->syncing && !j->err && j->fd >= 0 &&
        j->end - from >= FU_JOURNAL_KICK_BYTES) {
        j->syncing = true; /* keeps the segment open, and syncs out of the way */
        int fd = j->fd;
        j->kicked = j->end;
        pthread_mutex_unlock(&j->mu);
        /* Starts the write-back of the file's dirty pages, without waiting for it. */
        sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        pthread_mutex_lock(&j->mu);
        j->syncing = false;
        pthread_cond_broadcast(&j->cv);
    }
    pthread_mutex_unlock(&j->mu);
}

int fu_journal_rotate(struct fu_journal *j, uint64_t *pos)
{
    pthread_mutex_lock(&j->mu);
    while (j->syncing)
        pthread_cond_wait(&j->cv, &j->mu);
    int rc = j->fd < 0 ? -EBADF : j->err;
    if (!rc && j->synced < j->end && fdatasync(j->fd) < 0)
        rc = j->err = -errno;
    if (!rc) {
        j->synced = j->end;
        pthread_cond_broadcast(&j->cv);
        rc = j->seg_len ? new_segment(j, j->end) : 0; /* an empty segment serves as it is */
    }
    *pos = j->end;
    pthread_mutex_unlock(&j->mu);
    return rc;
}

int fu_journal_drop_before(struct fu_journal *j, uint64_t pos)
{
    pthread_mutex_lock(&j->mu);
    size_t n = 0;
    while (n + 1 < j->nsegs && j->segs[n + 1] <= pos) {
        char *path = seg_path(j, j->segs[n]);
        if (path)
            unlink(path);
        free(path);
        n++;
    }
    memmove(j->segs, j->segs + n, (j->nsegs - n) * sizeof(*j->segs));
    j->nsegs -= n;
    pthread_mutex_unlock(&j->mu);
    return (int)n;
}

bool fu_journal_synced(struct fu_journal *j, uint64_t *pos)
{
    if (j->mode == FU_FSYNC_OFF)
        return false;
    pthread_mutex_lock(&j->mu);
    *pos = j->synced;
    pthread_mutex_unlock(&j->mu);
    return true;
}

uint64_t fu_journal_end(struct fu_journal *j)
{
    pthread_mutex_lock(&j->mu);
    uint64_t e = j->end;
    pthread_mutex_unlock(&j->mu);
    return e;
}
