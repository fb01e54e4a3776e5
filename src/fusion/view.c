/* View state and batch apply: locking around view_fs/arbitrate.c. Apply is deterministic: it
 * uses the batch's receive stamp, never the clock; timers get their time from the caller. */
#include "fusion/view.h"

#include "common/fsutil.h"
#include "common/log.h"
#include "fusion/journal.h"
#include "fusion/snapshot.h"
#include "fusion/view_fs/state_io.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int fu_view_init(struct fu_view *v, const char *id, double hot_file_threshold, double tombstone_ttl)
{
    memset(v, 0, sizeof(*v));
    v->id = strdup(id);
    pthread_mutex_init(&v->snap_mu, NULL);
    /* Writers first: a stream of queries must never starve ingest (glibc prefers readers
     * by default, which let 40 searching clients hold a batch back for seconds). */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int rc = v->id ? pthread_rwlock_init(&v->lock, &attr) : -1;
    pthread_rwlockattr_destroy(&attr);
    if (rc != 0)
        return -1;
    if (fu_tree_init(&v->tree) < 0) {
        fu_tree_free(&v->tree);
        pthread_rwlock_destroy(&v->lock);
        return -1;
    }
    if (fu_fs_init(&v->fs, &v->tree, hot_file_threshold, tombstone_ttl) < 0) {
        fu_tree_free(&v->tree);
        pthread_rwlock_destroy(&v->lock);
        return -1;
    }
    return 0;
}

void fu_view_free(struct fu_view *v)
{
    if (!v->id)
        return;
    fu_journal_close(v->journal);
    pthread_mutex_destroy(&v->snap_mu);
    free(v->data_dir);
    fu_fs_free(&v->fs);
    fu_tree_free(&v->tree);
    pthread_rwlock_destroy(&v->lock);
    fu_strv_free(&v->read_keys);
    free(v->driver);
    free(v->id);
    memset(v, 0, sizeof(*v));
}

/* ------------------------------------------------------------ journal records
 * Payloads, little-endian: str = u32 length + bytes.
 * BATCH:        f64 recv_time, f64 storage_now, u32 flags, u64 epoch, str pipe_id,
 *               str agent_id, str source_uri, u32 n, n x row
 *   row:        u8 op, u8 src, u8 bits (1 dir, 2 atomic, 4 audit_skipped, 8 has_mtime,
 *               16 has_parent), u64 size, f64 mtime, f64 ctime, f64 parent_mtime, str path
 * AUDIT_START:  f64 when, u8 explicit, u64 epoch, str pipe_id
 * AUDIT_END:    f64 when
 * TICK:         f64 now
 * SENTINEL:     f64 recv_time, u32 n, n x (str path, f64 mtime, u8 have_size, u64 size,
 *               u8 missing)
 * RESET:        (empty) */
enum { REC_BATCH = 1, REC_AUDIT_START, REC_AUDIT_END, REC_TICK, REC_SENTINEL, REC_RESET };

static void put_u8(struct fu_buf *b, uint8_t v)
{
    fu_buf_append(b, &v, 1);
}

static void put_u32(struct fu_buf *b, uint32_t v)
{
    unsigned char p[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    fu_buf_append(b, p, 4);
}

static void put_u64(struct fu_buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_f64(struct fu_buf *b, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(b, v);
}

static void put_str(struct fu_buf *b, const char *s, size_t n)
{
    put_u32(b, (uint32_t)n);
    fu_buf_append(b, s, n);
}

struct rd {
    const unsigned char *p;
    size_t left;
    bool bad;
};

static const unsigned char *take(struct rd *r, size_t n)
{
    if (r->bad || r->left < n) {
        r->bad = true;
        return NULL;
    }
    const unsigned char *p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

static uint8_t get_u8(struct rd *r)
{
    const unsigned char *p = take(r, 1);
    return p ? *p : 0;
}

static uint32_t get_u32(struct rd *r)
{
    const unsigned char *p = take(r, 4);
    return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                   (uint32_t)p[3] << 24
             : 0;
}

static uint64_t get_u64(struct rd *r)
{
    uint64_t lo = get_u32(r);
    return lo | (uint64_t)get_u32(r) << 32;
}

static double get_f64(struct rd *r)
{
    uint64_t v = get_u64(r);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

/* A string as a NUL-terminated copy in `into` (a record's strings hold no NUL). */
static const char *get_str(struct rd *r, struct fu_buf *into, size_t *len)
{
    uint32_t n = get_u32(r);
    const unsigned char *p = take(r, n);
    if (!p)
        return NULL;
    fu_buf_reset(into);
    fu_buf_append(into, p, n);
    fu_buf_putc(into, '\0');
    if (len)
        *len = n;
    return into->oom ? NULL : into->data;
}

/* Appends a record, or returns 0 for a view without a journal. */
static int journal(struct fu_view *v, uint8_t type, const struct fu_buf *rec, uint64_t *jpos)
{
    if (!v->journal)
        return 0;
    if (rec->oom)
        return -ENOMEM;
    uint64_t end = 0;
    int rc = fu_journal_append(v->journal, type, rec->data ? rec->data : "", rec->len, &end);
    if (rc < 0) {
        fu_error("view %s: cannot journal a change: %s; it is refused", v->id, strerror(-rc));
        return rc;
    }
    if (jpos)
        *jpos = end;
    return 0;
}

int fu_view_durable(struct fu_view *v, uint64_t jpos)
{
    return v->journal && jpos ? fu_journal_wait(v->journal, jpos) : 0;
}

/* ------------------------------------------------------------ changes
 * Each change has a *_locked form, run with the write lock held, by the live path (after
 * journaling) and by the replay alike. */

static bool audit_start_locked(struct fu_view *v, double when, bool explicit_,
                               const char *pipe_id, uint64_t epoch)
{
    fu_fs_tick(&v->fs, when);
    return fu_fs_audit_start(&v->fs, when, explicit_, pipe_id, epoch);
}

static void log_reset(const struct fu_view *v, const char *pipe_id, uint64_t epoch)
{
    fu_info("view %s: pipe %s has a new leader (epoch %llu) auditing: blind-spot lists "
            "reset, its audit rebuilds them",
            v->id, pipe_id, (unsigned long long)epoch);
}

int fu_view_audit_start(struct fu_view *v, double when, bool explicit_, const char *pipe_id,
                        uint64_t epoch, uint64_t *jpos)
{
    struct fu_buf rec = FU_BUF_INIT;
    put_f64(&rec, when);
    put_u8(&rec, explicit_);
    put_u64(&rec, epoch);
    put_str(&rec, pipe_id, strlen(pipe_id));
    pthread_rwlock_wrlock(&v->lock);
    int rc = journal(v, REC_AUDIT_START, &rec, jpos);
    bool reset = !rc && audit_start_locked(v, when, explicit_, pipe_id, epoch);
    pthread_rwlock_unlock(&v->lock);
    fu_buf_free(&rec);
    if (reset)
        log_reset(v, pipe_id, epoch);
    return rc;
}

static size_t audit_end_locked(struct fu_view *v, double when)
{
    fu_fs_tick(&v->fs, when);
    size_t gone = fu_fs_audit_end(&v->fs, when);
    fu_tree_maybe_compact(&v->tree);
    return gone;
}

int fu_view_audit_end(struct fu_view *v, double when, uint64_t *jpos)
{
    struct fu_buf rec = FU_BUF_INIT;
    put_f64(&rec, when);
    pthread_rwlock_wrlock(&v->lock);
    int rc = journal(v, REC_AUDIT_END, &rec, jpos);
    bool was = v->fs.auditing;
    size_t gone = rc ? 0 : audit_end_locked(v, when);
    pthread_rwlock_unlock(&v->lock);
    fu_buf_free(&rec);
    if (!rc && was)
        fu_info("view %s: audit ended, %zu missing entries deleted", v->id, gone);
    return rc;
}

void fu_view_tick(struct fu_view *v, double now)
{
    pthread_rwlock_rdlock(&v->lock);
    bool due = fu_fs_tick_due(&v->fs, now);
    pthread_rwlock_unlock(&v->lock);
    if (!due)
        return;
    struct fu_buf rec = FU_BUF_INIT;
    put_f64(&rec, now);
    pthread_rwlock_wrlock(&v->lock);
    if (journal(v, REC_TICK, &rec, NULL) == 0) /* not journaled: not done, retried later */
        fu_fs_tick(&v->fs, now);
    pthread_rwlock_unlock(&v->lock);
    fu_buf_free(&rec);
}

static size_t sentinel_locked(struct fu_view *v, const struct fu_sentinel_row *rows, size_t n,
                              const char *paths, double recv_time)
{
    size_t hits = 0;
    fu_fs_tick(&v->fs, recv_time);
    for (size_t k = 0; k < n; k++)
        hits += fu_fs_sentinel(&v->fs, paths + rows[k].path_off, rows[k].path_len, rows[k].mtime,
                               rows[k].have_size, rows[k].size, rows[k].missing, recv_time);
    return hits;
}

int fu_view_sentinel(struct fu_view *v, const struct fu_sentinel_row *rows, size_t n,
                     const char *paths, double recv_time, size_t *hits, uint64_t *jpos)
{
    struct fu_buf rec = FU_BUF_INIT;
    if (v->journal) {
        put_f64(&rec, recv_time);
        put_u32(&rec, (uint32_t)n);
        for (size_t k = 0; k < n; k++) {
            put_str(&rec, paths + rows[k].path_off, rows[k].path_len);
            put_f64(&rec, rows[k].mtime);
            put_u8(&rec, rows[k].have_size);
            put_u64(&rec, rows[k].size);
            put_u8(&rec, rows[k].missing);
        }
    }
    pthread_rwlock_wrlock(&v->lock);
    int rc = journal(v, REC_SENTINEL, &rec, jpos);
    *hits = rc ? 0 : sentinel_locked(v, rows, n, paths, recv_time);
    pthread_rwlock_unlock(&v->lock);
    fu_buf_free(&rec);
    return rc;
}

struct applied {
    bool reset, ended;
    size_t gone;
};

static struct applied apply_locked(struct fu_view *v, const struct fu_row *rows, size_t n,
                                   const char *paths, double recv_time, double storage_now,
                                   const char *agent_id, const char *source_uri,
                                   uint64_t epoch, const char *pipe_id, unsigned flags)
{
    struct applied a = {0};
    fu_fs_tick(&v->fs, recv_time); /* timers advance with the records too */
    if (flags & FU_APPLY_AUDIT_START) /* the first audit rows start the audit (v1) */
        a.reset = fu_fs_audit_start(&v->fs, recv_time, false, pipe_id, epoch);
    if (storage_now > 0)
        fu_clock_seed(v->fs.clock, recv_time, storage_now);
    uint16_t lineage = fu_tree_lineage(&v->tree, agent_id, source_uri);
    for (size_t i = 0; i < n; i++)
        fu_fs_apply(&v->fs, &rows[i], paths + rows[i].path_off, recv_time, lineage);
    v->rows_applied += n;
    if ((flags & FU_APPLY_AUDIT_END) && v->fs.auditing) {
        a.gone = fu_fs_audit_end(&v->fs, recv_time);
        a.ended = true;
    }
    fu_tree_maybe_compact(&v->tree);
    return a;
}

static void encode_batch(struct fu_buf *rec, const struct fu_row *rows, size_t n,
                         const char *paths, double recv_time, double storage_now,
                         const char *agent_id, const char *source_uri, uint64_t epoch,
                         const char *pipe_id, unsigned flags)
{
    fu_buf_grow(rec, 64 + n * 48);
    put_f64(rec, recv_time);
    put_f64(rec, storage_now);
    put_u32(rec, flags);
    put_u64(rec, epoch);
    put_str(rec, pipe_id, strlen(pipe_id));
    put_str(rec, agent_id, strlen(agent_id));
    put_str(rec, source_uri, strlen(source_uri));
    put_u32(rec, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        const struct fu_row *r = &rows[i];
        put_u8(rec, r->op);
        put_u8(rec, r->src);
        put_u8(rec, (uint8_t)(r->is_dir | r->atomic << 1 | r->audit_skipped << 2 |
                              r->has_mtime << 3 | r->has_parent << 4));
        put_u64(rec, r->size);
        put_f64(rec, r->mtime);
        put_f64(rec, r->ctime);
        put_f64(rec, r->parent_mtime);
        put_str(rec, paths + r->path_off, r->path_len);
    }
}

long fu_view_apply(struct fu_view *v, const struct fu_row *rows, size_t n, const char *paths,
                   double recv_time, double storage_now, const char *agent_id,
                   const char *source_uri, const _Atomic uint64_t *fence, uint64_t epoch,
                   const char *pipe_id, unsigned flags, uint64_t *jpos)
{
    struct fu_buf rec = FU_BUF_INIT;
    if (v->journal) /* encoded before the lock: it holds only the batch */
        encode_batch(&rec, rows, n, paths, recv_time, storage_now, agent_id, source_uri, epoch,
                     pipe_id, flags);
    pthread_rwlock_wrlock(&v->lock);
    if (fence && atomic_load(fence) != epoch) {
        pthread_rwlock_unlock(&v->lock);
        fu_buf_free(&rec);
        return -ESTALE;
    }
    int rc = journal(v, REC_BATCH, &rec, jpos);
    struct applied a = {0};
    if (!rc)
        a = apply_locked(v, rows, n, paths, recv_time, storage_now, agent_id, source_uri, epoch,
                         pipe_id, flags);
    pthread_rwlock_unlock(&v->lock);
    fu_buf_free(&rec);
    if (rc)
        return rc;
    if (a.reset)
        log_reset(v, pipe_id, epoch);
    if (a.ended)
        fu_info("view %s: audit ended, %zu missing entries deleted", v->id, a.gone);
    return (long)n;
}

static int reset_locked(struct fu_view *v, struct fu_tree *fresh)
{
    fu_tree_free(&v->tree);
    v->tree = *fresh; /* a tree holds no pointer to itself */
    fu_fs_clear(&v->fs, &v->tree);
    return 0;
}

int fu_view_reset(struct fu_view *v, uint64_t *jpos)
{
    /* Everything that can fail first, so a failure leaves the view as it was. */
    struct fu_tree fresh;
    if (fu_tree_init(&fresh) < 0) {
        fu_tree_free(&fresh);
        return -ENOMEM;
    }
    struct fu_buf rec = FU_BUF_INIT;
    pthread_rwlock_wrlock(&v->lock);
    int rc = journal(v, REC_RESET, &rec, jpos);
    if (!rc)
        reset_locked(v, &fresh);
    pthread_rwlock_unlock(&v->lock);
    if (rc)
        fu_tree_free(&fresh);
    return rc;
}

/* ------------------------------------------------------------ replay */

struct replay {
    struct fu_view *v;
    struct fu_row *rows;
    size_t cap;
    struct fu_buf paths, s1, s2, s3;
    struct fu_sentinel_row *srows;
    size_t scap;
};

static int grow(void **v, size_t *cap, size_t n, size_t size)
{
    if (n <= *cap)
        return 0;
    void *p = realloc(*v, n * size);
    if (!p)
        return -ENOMEM;
    *v = p;
    *cap = n;
    return 0;
}

static int replay_batch(struct replay *x, struct rd *r)
{
    double recv = get_f64(r), storage_now = get_f64(r);
    unsigned flags = get_u32(r);
    uint64_t epoch = get_u64(r);
    const char *pipe_id = get_str(r, &x->s1, NULL);
    const char *agent = get_str(r, &x->s2, NULL);
    const char *uri = get_str(r, &x->s3, NULL);
    uint32_t n = get_u32(r);
    if (r->bad || n > r->left / 38)
        return -EINVAL;
    if (grow((void **)&x->rows, &x->cap, n, sizeof(*x->rows)) < 0)
        return -ENOMEM;
    fu_buf_reset(&x->paths);
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        struct fu_row *w = &x->rows[i];
        memset(w, 0, sizeof(*w));
        w->op = get_u8(r);
        w->src = get_u8(r);
        uint8_t bits = get_u8(r);
        w->is_dir = bits & 1;
        w->atomic = bits & 2;
        w->audit_skipped = bits & 4;
        w->has_mtime = bits & 8;
        w->has_parent = bits & 16;
        w->size = get_u64(r);
        w->mtime = get_f64(r);
        w->ctime = get_f64(r);
        w->parent_mtime = get_f64(r);
        uint32_t len = get_u32(r);
        const unsigned char *p = take(r, len);
        if (!p)
            break;
        w->path_off = x->paths.len;
        w->path_len = len;
        fu_buf_append(&x->paths, p, len);
        fu_buf_putc(&x->paths, '\0');
        if (w->op > FU_ROW_DELETE || w->src > FU_SRC_ON_DEMAND || memchr(p, '\0', len) ||
            len == 0 || p[0] != '/')
            r->bad = true;
    }
    if (r->bad || r->left || x->paths.oom)
        return x->paths.oom ? -ENOMEM : -EINVAL;
    apply_locked(x->v, x->rows, n, x->paths.data ? x->paths.data : "", recv, storage_now, agent,
                 uri, epoch, pipe_id, flags);
    return 0;
}

static int replay_sentinel(struct replay *x, struct rd *r)
{
    double recv = get_f64(r);
    uint32_t n = get_u32(r);
    if (r->bad || n > r->left / 22)
        return -EINVAL;
    if (grow((void **)&x->srows, &x->scap, n, sizeof(*x->srows)) < 0)
        return -ENOMEM;
    fu_buf_reset(&x->paths);
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        struct fu_sentinel_row *w = &x->srows[i];
        uint32_t len = get_u32(r);
        const unsigned char *p = take(r, len);
        if (!p)
            break;
        w->path_off = x->paths.len;
        w->path_len = len;
        fu_buf_append(&x->paths, p, len);
        fu_buf_putc(&x->paths, '\0');
        w->mtime = get_f64(r);
        w->have_size = get_u8(r);
        w->size = get_u64(r);
        w->missing = get_u8(r);
    }
    if (r->bad || r->left || x->paths.oom)
        return x->paths.oom ? -ENOMEM : -EINVAL;
    sentinel_locked(x->v, x->srows, n, x->paths.data ? x->paths.data : "", recv);
    return 0;
}

static int replay_one(void *ctx, const struct fu_journal_rec *jr)
{
    struct replay *x = ctx;
    struct fu_view *v = x->v;
    struct rd r = {jr->data, jr->len, false};
    int rc = 0;
    switch (jr->type) {
    case REC_BATCH:
        rc = replay_batch(x, &r);
        break;
    case REC_AUDIT_START: {
        double when = get_f64(&r);
        bool explicit_ = get_u8(&r);
        uint64_t epoch = get_u64(&r);
        const char *pipe_id = get_str(&r, &x->s1, NULL);
        if (r.bad || r.left)
            return -EINVAL;
        audit_start_locked(v, when, explicit_, pipe_id, epoch);
        break;
    }
    case REC_AUDIT_END: {
        double when = get_f64(&r);
        if (r.bad || r.left)
            return -EINVAL;
        audit_end_locked(v, when);
        break;
    }
    case REC_TICK: {
        double now = get_f64(&r);
        if (r.bad || r.left)
            return -EINVAL;
        fu_fs_tick(&v->fs, now);
        break;
    }
    case REC_SENTINEL:
        rc = replay_sentinel(x, &r);
        break;
    case REC_RESET: {
        struct fu_tree fresh;
        if (fu_tree_init(&fresh) < 0) {
            fu_tree_free(&fresh);
            return -ENOMEM;
        }
        reset_locked(v, &fresh);
        break;
    }
    default:
        return -EINVAL;
    }
    if (rc == -EINVAL)
        fu_error("view %s: journal record at %llu (type %u) does not decode", v->id,
                 (unsigned long long)jr->pos, jr->type);
    return rc;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The newest snapshot that loads; *pos = its position (0 and an empty view: none). */
static int load_snapshot(struct fu_view *v, const char *dir, uint64_t *pos)
{
    *pos = 0;
    uint64_t *list;
    int n = fu_snapshot_list(dir, &list);
    if (n < 0)
        return n;
    struct fu_buf state = FU_BUF_INIT;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char *path = fu_snapshot_path(dir, list[i]);
        char err[512];
        struct fu_snapshot_info info;
        rc = path ? fu_snapshot_read(path, FU_STATE_FORMAT, &state, &info, err, sizeof(err))
                  : -ENOMEM;
        if (rc == 0) {
            pthread_rwlock_wrlock(&v->lock);
            rc = fu_state_read(&v->tree, &v->fs, state.data, state.len);
            pthread_rwlock_unlock(&v->lock);
            if (rc < 0)
                snprintf(err, sizeof(err), "%s: the state does not load (%s)", path,
                         strerror(-rc));
        }
        free(path);
        if (rc == 0) {
            *pos = list[i];
            break;
        }
        if (rc == -EPROTO || rc == -ENOMEM) {
            fu_error("view %s: %s", v->id, err);
            break;
        }
        fu_error("view %s: %s; trying an older snapshot", v->id, err);
        rc = 0;
    }
    fu_buf_free(&state);
    free(list);
    return rc;
}

int fu_view_open_storage(struct fu_view *v, const char *dir, int fsync_mode, double window_sec,
                         int keep, bool *damaged)
{
    *damaged = false;
    if (!(v->data_dir = strdup(dir)))
        return -ENOMEM;
    v->snap_keep = keep;
    int rc = fu_mkdirs(dir, 0750);
    if (rc < 0 && rc != -EEXIST)
        return rc;
    uint64_t from;
    rc = load_snapshot(v, dir, &from);
    if (rc < 0)
        return rc;
    struct fu_journal *j;
    rc = fu_journal_open(&j, dir, (enum fu_fsync)fsync_mode, window_sec);
    if (rc < 0)
        return rc;
    struct replay x = {.v = v, .paths = FU_BUF_INIT, .s1 = FU_BUF_INIT, .s2 = FU_BUF_INIT,
                       .s3 = FU_BUF_INIT};
    struct fu_journal_replay_info info;
    pthread_rwlock_wrlock(&v->lock);
    rc = fu_journal_replay(j, from, replay_one, &x, &info);
    pthread_rwlock_unlock(&v->lock);
    free(x.rows);
    free(x.srows);
    fu_buf_free(&x.paths);
    fu_buf_free(&x.s1);
    fu_buf_free(&x.s2);
    fu_buf_free(&x.s3);
    if (rc < 0) {
        fu_journal_close(j);
        return rc;
    }
    v->journal = j;
    v->replayed = info.records;
    v->restored = from > 0 || info.records > 0;
    v->snap_pos = from;
    v->snap_mono = mono_now();
    *damaged = info.corrupt;
    return 0;
}

uint64_t fu_view_unsnapshotted(struct fu_view *v)
{
    if (!v->journal)
        return 0;
    uint64_t end = fu_journal_end(v->journal);
    pthread_mutex_lock(&v->snap_mu);
    uint64_t since = end > v->snap_pos ? end - v->snap_pos : 0;
    pthread_mutex_unlock(&v->snap_mu);
    return since;
}

bool fu_view_snapshot_due(struct fu_view *v, uint64_t bytes, double interval)
{
    uint64_t grown = fu_view_unsnapshotted(v);
    if (!grown)
        return false;
    double now = mono_now();
    pthread_mutex_lock(&v->snap_mu);
    bool due = (grown >= bytes || now - v->snap_mono >= interval) &&
               (!v->snap_failed || now - v->snap_failed >= 60);
    pthread_mutex_unlock(&v->snap_mu);
    return due;
}

int fu_view_snapshot(struct fu_view *v, struct fu_snapshot_info *info)
{
    if (!v->journal)
        return -ENOTSUP;
    struct fu_snapshot_info local;
    if (!info)
        info = &local;
    pthread_mutex_lock(&v->snap_mu);
    struct fu_buf state = FU_BUF_INIT;
    uint64_t pos = 0;
    double t0 = mono_now();
    /* The read lock keeps changes (and so appends) out: the state is the one at `pos`. */
    pthread_rwlock_rdlock(&v->lock);
    int rc = fu_journal_rotate(v->journal, &pos);
    if (!rc)
        rc = fu_state_write(&v->tree, &v->fs, &state);
    pthread_rwlock_unlock(&v->lock);
    double copied = mono_now() - t0;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    if (!rc)
        rc = fu_snapshot_write(v->data_dir, pos, FU_STATE_FORMAT, state.data, state.len,
                               (double)wall.tv_sec + wall.tv_nsec / 1e9, 3, info);
    fu_buf_free(&state);
    v->snap_failed = rc ? mono_now() : 0;
    if (!rc) {
        v->snap_pos = pos;
        v->snap_mono = mono_now();
        uint64_t oldest = fu_snapshot_prune(v->data_dir, v->snap_keep);
        int dropped = oldest == UINT64_MAX ? 0 : fu_journal_drop_before(v->journal, oldest);
        fu_info("view %s: snapshot at journal position %llu: %llu bytes (%llu uncompressed), "
                "state copied in %.3f s, written in %.3f s; %d journal segments dropped",
                v->id, (unsigned long long)pos, (unsigned long long)info->file_bytes,
                (unsigned long long)info->raw_bytes, copied, v->snap_mono - t0 - copied,
                dropped);
    } else {
        fu_error("view %s: snapshot failed: %s", v->id, strerror(-rc));
    }
    pthread_mutex_unlock(&v->snap_mu);
    return rc;
}
