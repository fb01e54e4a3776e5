/* View state and batch apply: locking around view_fs/arbitrate.c. Apply is deterministic: it
 * uses the batch's receive stamp, never the clock; timers get their time from the caller. */
#include "fusion/view.h"

#include "common/fsutil.h"
#include "common/log.h"
#include "fusion/journal.h"
#include "fusion/snapshot.h"
#include "fusion/view_fs/state_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ incarnation */

static char *incarnation_path(const struct fu_view *v)
{
    return fu_path_join(v->data_dir, "incarnation");
}

/* A fresh incarnation, saved before the change it stands for (a reset) is made: a crash in
 * between leaves a new name on old data, which costs agents a full audit, never the
 * reverse. When it cannot be saved the old file goes, so the next start picks a new one. */
static void new_incarnation(struct fu_view *v)
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof(b)) {
        ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    for (size_t i = got; i < sizeof(b); i++) /* no entropy: still unique enough */
        b[i] = (unsigned char)((uint64_t)ts.tv_nsec >> (i % 8 * 8) ^ (uint64_t)getpid() ^ i);
    for (size_t i = 0; i < sizeof(b); i++)
        snprintf(v->incarnation + 2 * i, 3, "%02x", b[i]);
    if (!v->data_dir)
        return;
    char *path = incarnation_path(v);
    char line[34];
    snprintf(line, sizeof(line), "%s\n", v->incarnation);
    int rc = path ? fu_write_file_atomic(path, line, 33, 0640) : -ENOMEM;
    if (rc < 0) {
        fu_error("view %s: cannot save its incarnation in %s: %s", v->id, path ? path : v->data_dir,
                 strerror(-rc));
        if (path)
            unlink(path);
    }
    free(path);
}

/* The saved incarnation; false when there is none that reads. */
static bool load_incarnation(struct fu_view *v)
{
    char *path = incarnation_path(v);
    struct fu_buf b = FU_BUF_INIT;
    bool ok = path && fu_read_file(path, 64, &b) == 0 && b.len == 33 && b.data[32] == '\n' &&
              strspn(b.data, "0123456789abcdef") == 32;
    if (ok) {
        memcpy(v->incarnation, b.data, 32);
        v->incarnation[32] = '\0';
    }
    fu_buf_free(&b);
    free(path);
    return ok;
}

void fu_view_incarnation(struct fu_view *v, char out[33])
{
    pthread_rwlock_rdlock(&v->lock);
    memcpy(out, v->incarnation, 33);
    pthread_rwlock_unlock(&v->lock);
}

int fu_view_init(struct fu_view *v, const char *id, double hot_file_threshold, double tombstone_ttl)
{
    memset(v, 0, sizeof(*v));
    v->lock_fd = -1;
    v->id = strdup(id);
    pthread_mutex_init(&v->snap_mu, NULL);
    pthread_mutex_init(&v->answers_mu, NULL);
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
    new_incarnation(v); /* memory only, until its storage opens */
    return 0;
}

void fu_view_write_lock(struct fu_view *v)
{
    pthread_rwlock_wrlock(&v->lock);
    v->gen++;
}

bool fu_view_answer_get(struct fu_view *v, const char *key, uint64_t gen, struct fu_buf *out)
{
    bool hit = false;
    pthread_mutex_lock(&v->answers_mu);
    for (int i = 0; i < FU_VIEW_ANSWERS && !hit; i++) {
        struct fu_view_answer *a = &v->answers[i];
        if (a->key && a->gen == gen && !strcmp(a->key, key)) {
            a->used = ++v->answers_clock;
            size_t at = out->len;
            fu_buf_append(out, a->body, a->len);
            hit = !out->oom;
            if (!hit)
                out->len = at;
            break;
        }
    }
    pthread_mutex_unlock(&v->answers_mu);
    return hit;
}

static void answer_drop(struct fu_view *v, struct fu_view_answer *a)
{
    v->answers_bytes -= a->len;
    free(a->key);
    free(a->body);
    *a = (struct fu_view_answer){0};
}

void fu_view_answer_put(struct fu_view *v, const char *key, uint64_t gen, const char *body,
                        size_t len)
{
    if (len > FU_VIEW_ANSWER_MAX)
        return;
    char *k = strdup(key), *b = malloc(len ? len : 1);
    if (!k || !b) {
        free(k);
        free(b);
        return;
    }
    memcpy(b, body, len);
    pthread_mutex_lock(&v->answers_mu);
    for (int i = 0; i < FU_VIEW_ANSWERS; i++) /* the same query, or answers gone stale */
        if (v->answers[i].key && (v->answers[i].gen != gen || !strcmp(v->answers[i].key, key)))
            answer_drop(v, &v->answers[i]);
    struct fu_view_answer *slot = NULL;
    for (;;) {
        struct fu_view_answer *oldest = NULL;
        slot = NULL;
        for (int i = 0; i < FU_VIEW_ANSWERS; i++) {
            struct fu_view_answer *a = &v->answers[i];
            if (!a->key)
                slot = slot ? slot : a;
            else if (!oldest || a->used < oldest->used)
                oldest = a;
        }
        if (slot && v->answers_bytes + len <= FU_VIEW_ANSWERS_MAX)
            break;
        answer_drop(v, oldest); /* not NULL: the slots are not all free */
    }
    *slot = (struct fu_view_answer){
        .key = k, .gen = gen, .used = ++v->answers_clock, .body = b, .len = len};
    v->answers_bytes += len;
    pthread_mutex_unlock(&v->answers_mu);
}

void fu_view_free(struct fu_view *v)
{
    if (!v->id)
        return;
    fu_journal_close(v->journal);
    if (v->lock_fd >= 0)
        close(v->lock_fd);
    pthread_mutex_destroy(&v->snap_mu);
    for (int i = 0; i < FU_VIEW_ANSWERS; i++) {
        free(v->answers[i].key);
        free(v->answers[i].body);
    }
    pthread_mutex_destroy(&v->answers_mu);
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

/* Numbers go through the state codec (view_fs/state_io.h); strings are a u32 length and
 * their bytes. */
static void put_str(struct fu_buf *b, const char *s, size_t n)
{
    fu_state_put_u32(b, (uint32_t)n);
    fu_buf_append(b, s, n);
}

/* A string as a NUL-terminated copy in `into` (a record's strings hold no NUL). */
static const char *get_str(struct fu_state_rd *r, struct fu_buf *into, size_t *len)
{
    uint32_t n = fu_state_u32(r);
    const unsigned char *p = fu_state_take(r, n);
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

int fu_view_sync(struct fu_view *v)
{
    return v->journal ? fu_journal_wait(v->journal, fu_journal_end(v->journal)) : 0;
}

void fu_view_kick(struct fu_view *v)
{
    if (v->journal)
        fu_journal_kick(v->journal);
}

/* ------------------------------------------------------------ changes
 * Each change has a *_locked form, run with the write lock held, by the live path (after
 * journaling) and by the replay alike. */

static bool audit_start_locked(struct fu_view *v, double when, bool explicit_, const char *pipe_id,
                               uint64_t epoch)
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
    fu_state_put_f64(&rec, when);
    fu_state_put_u8(&rec, explicit_);
    fu_state_put_u64(&rec, epoch);
    put_str(&rec, pipe_id, strlen(pipe_id));
    fu_view_write_lock(v);
    int rc = journal(v, REC_AUDIT_START, &rec, jpos);
    bool reset = !rc && audit_start_locked(v, when, explicit_, pipe_id, epoch);
    pthread_rwlock_unlock(&v->lock);
    fu_buf_free(&rec);
    if (reset)
        log_reset(v, pipe_id, epoch);
    return rc;
}

static size_t audit_end_locked(struct fu_view *v, double when, const char *pipe_id)
{
    fu_fs_tick(&v->fs, when);
    size_t gone = fu_fs_audit_end_pipe(&v->fs, when, pipe_id);
    fu_tree_maybe_compact(&v->tree);
    return gone;
}

int fu_view_audit_end(struct fu_view *v, double when, const char *pipe_id, uint64_t *jpos)
{
    struct fu_buf rec = FU_BUF_INIT;
    fu_state_put_f64(&rec, when);
    put_str(&rec, pipe_id, strlen(pipe_id));
    fu_view_write_lock(v);
    int rc = journal(v, REC_AUDIT_END, &rec, jpos);
    bool was = v->fs.auditing;
    size_t gone = rc ? 0 : audit_end_locked(v, when, pipe_id);
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
    fu_state_put_f64(&rec, now);
    fu_view_write_lock(v);
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
        fu_state_put_f64(&rec, recv_time);
        fu_state_put_u32(&rec, (uint32_t)n);
        for (size_t k = 0; k < n; k++) {
            put_str(&rec, paths + rows[k].path_off, rows[k].path_len);
            fu_state_put_f64(&rec, rows[k].mtime);
            fu_state_put_u8(&rec, rows[k].have_size);
            fu_state_put_u64(&rec, rows[k].size);
            fu_state_put_u8(&rec, rows[k].missing);
        }
    }
    fu_view_write_lock(v);
    int rc = journal(v, REC_SENTINEL, &rec, jpos);
    *hits = rc ? 0 : sentinel_locked(v, rows, n, paths, recv_time);
    pthread_rwlock_unlock(&v->lock);
    fu_buf_free(&rec);
    return rc;
}

#define PREFETCH_AHEAD 4 /* rows: the index slot of a row is loaded while those before apply */

struct applied {
    bool reset, ended;
    size_t gone;
};

static struct applied apply_locked(struct fu_view *v, const struct fu_row *rows, size_t n,
                                   const char *paths, double recv_time, double storage_now,
                                   const char *agent_id, const char *source_uri, uint64_t epoch,
                                   const char *pipe_id, unsigned flags)
{
    struct applied a = {0};
    fu_fs_tick(&v->fs, recv_time);    /* timers advance with the records too */
    if (flags & FU_APPLY_AUDIT_START) /* the first audit rows start the audit (v1) */
        a.reset = fu_fs_audit_start(&v->fs, recv_time, false, pipe_id, epoch);
    if (storage_now > 0)
        fu_clock_seed(v->fs.clock, recv_time, storage_now);
    uint16_t lineage = fu_tree_lineage(&v->tree, agent_id, source_uri, pipe_id);
    for (size_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n)
            fu_tree_prefetch(&v->tree, paths + rows[i + PREFETCH_AHEAD].path_off,
                             rows[i + PREFETCH_AHEAD].path_len);
        fu_fs_apply(&v->fs, &rows[i], paths + rows[i].path_off, recv_time, lineage);
    }
    v->rows_applied += n;
    if ((flags & FU_APPLY_AUDIT_END) && v->fs.auditing) {
        a.gone = fu_fs_audit_end_pipe(&v->fs, recv_time, pipe_id);
        a.ended = true;
    }
    fu_tree_maybe_compact(&v->tree);
    return a;
}

static void encode_batch(struct fu_buf *rec, const struct fu_row *rows, size_t n, const char *paths,
                         double recv_time, double storage_now, const char *agent_id,
                         const char *source_uri, uint64_t epoch, const char *pipe_id,
                         unsigned flags)
{
    fu_buf_grow(rec, 64 + n * 48);
    fu_state_put_f64(rec, recv_time);
    fu_state_put_f64(rec, storage_now);
    fu_state_put_u32(rec, flags);
    fu_state_put_u64(rec, epoch);
    put_str(rec, pipe_id, strlen(pipe_id));
    put_str(rec, agent_id, strlen(agent_id));
    put_str(rec, source_uri, strlen(source_uri));
    fu_state_put_u32(rec, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        const struct fu_row *r = &rows[i];
        fu_state_put_u8(rec, r->op);
        fu_state_put_u8(rec, r->src);
        fu_state_put_u8(rec, (uint8_t)(r->is_dir | r->atomic << 1 | r->audit_skipped << 2 |
                                       r->has_mtime << 3 | r->has_parent << 4));
        fu_state_put_u64(rec, r->size);
        fu_state_put_f64(rec, r->mtime);
        fu_state_put_f64(rec, r->ctime);
        fu_state_put_f64(rec, r->parent_mtime);
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
    fu_view_write_lock(v);
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
    fu_view_write_lock(v);
    new_incarnation(v);
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

/* A record's path (u32 length, bytes), copied NUL-terminated into x->paths. */
static const unsigned char *take_path(struct replay *x, struct fu_state_rd *r, size_t *off,
                                      size_t *len)
{
    uint32_t n = fu_state_u32(r);
    const unsigned char *p = fu_state_take(r, n);
    if (!p)
        return NULL;
    *off = x->paths.len;
    *len = n;
    fu_buf_append(&x->paths, p, n);
    fu_buf_putc(&x->paths, '\0');
    return p;
}

static int replay_batch(struct replay *x, struct fu_state_rd *r)
{
    double recv = fu_state_f64(r), storage_now = fu_state_f64(r);
    unsigned flags = fu_state_u32(r);
    uint64_t epoch = fu_state_u64(r);
    const char *pipe_id = get_str(r, &x->s1, NULL);
    const char *agent = get_str(r, &x->s2, NULL);
    const char *uri = get_str(r, &x->s3, NULL);
    uint32_t n = fu_state_u32(r);
    if (!fu_state_room(r, n, 39)) /* a row holds at least 39 bytes */
        return -EINVAL;
    if (grow((void **)&x->rows, &x->cap, n, sizeof(*x->rows)) < 0)
        return -ENOMEM;
    fu_buf_reset(&x->paths);
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        struct fu_row *w = &x->rows[i];
        memset(w, 0, sizeof(*w));
        w->op = fu_state_u8(r);
        w->src = fu_state_u8(r);
        uint8_t bits = fu_state_u8(r);
        w->is_dir = bits & 1;
        w->atomic = bits & 2;
        w->audit_skipped = bits & 4;
        w->has_mtime = bits & 8;
        w->has_parent = bits & 16;
        w->size = fu_state_u64(r);
        w->mtime = fu_state_f64(r);
        w->ctime = fu_state_f64(r);
        w->parent_mtime = fu_state_f64(r);
        const unsigned char *p = take_path(x, r, &w->path_off, &w->path_len);
        if (!p)
            break;
        if (w->op > FU_ROW_DELETE || w->src > FU_SRC_ON_DEMAND || memchr(p, '\0', w->path_len) ||
            w->path_len == 0 || p[0] != '/')
            r->bad = true;
    }
    if (r->bad || r->p != r->end || x->paths.oom)
        return x->paths.oom ? -ENOMEM : -EINVAL;
    apply_locked(x->v, x->rows, n, x->paths.data ? x->paths.data : "", recv, storage_now, agent,
                 uri, epoch, pipe_id, flags);
    return 0;
}

static int replay_sentinel(struct replay *x, struct fu_state_rd *r)
{
    double recv = fu_state_f64(r);
    uint32_t n = fu_state_u32(r);
    if (!fu_state_room(r, n, 22)) /* a feedback row holds at least 22 bytes */
        return -EINVAL;
    if (grow((void **)&x->srows, &x->scap, n, sizeof(*x->srows)) < 0)
        return -ENOMEM;
    fu_buf_reset(&x->paths);
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        struct fu_sentinel_row *w = &x->srows[i];
        if (!take_path(x, r, &w->path_off, &w->path_len))
            break;
        w->mtime = fu_state_f64(r);
        w->have_size = fu_state_u8(r);
        w->size = fu_state_u64(r);
        w->missing = fu_state_u8(r);
    }
    if (r->bad || r->p != r->end || x->paths.oom)
        return x->paths.oom ? -ENOMEM : -EINVAL;
    sentinel_locked(x->v, x->srows, n, x->paths.data ? x->paths.data : "", recv);
    return 0;
}

static int replay_one(void *ctx, const struct fu_journal_rec *jr)
{
    struct replay *x = ctx;
    struct fu_view *v = x->v;
    struct fu_state_rd r = {jr->data, jr->data + jr->len, false, FU_STATE_FORMAT};
    int rc = 0;
    switch (jr->type) {
    case REC_BATCH:
        rc = replay_batch(x, &r);
        break;
    case REC_AUDIT_START: {
        double when = fu_state_f64(&r);
        bool explicit_ = fu_state_u8(&r);
        uint64_t epoch = fu_state_u64(&r);
        const char *pipe_id = get_str(&r, &x->s1, NULL);
        if (r.bad || r.p != r.end)
            return -EINVAL;
        audit_start_locked(v, when, explicit_, pipe_id, epoch);
        break;
    }
    case REC_AUDIT_END: {
        double when = fu_state_f64(&r);
        /* Journals written before audits were scoped by pipe end here: "" (any pipe). */
        const char *pipe_id = r.p == r.end ? "" : get_str(&r, &x->s1, NULL);
        if (r.bad || r.p != r.end)
            return -EINVAL;
        audit_end_locked(v, when, pipe_id);
        break;
    }
    case REC_TICK: {
        double now = fu_state_f64(&r);
        if (r.bad || r.p != r.end)
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
            fu_view_write_lock(v);
            rc = fu_state_read(&v->tree, &v->fs, state.data, state.len);
            pthread_rwlock_unlock(&v->lock);
            if (rc < 0)
                snprintf(err, sizeof(err), "%s: the state does not load (%s)", path, strerror(-rc));
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
    /* Held while the view is open: `purge` never deletes a directory a Fusion uses. */
    char *lock = fu_path_join(dir, "lock");
    v->lock_fd = lock ? open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0640) : -1;
    free(lock);
    if (v->lock_fd < 0)
        return -errno;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(v->lock_fd, F_OFD_SETLK, &fl) < 0)
        return errno == EAGAIN || errno == EACCES ? -EBUSY : -errno;
    uint64_t from;
    rc = load_snapshot(v, dir, &from);
    if (rc < 0)
        return rc;
    struct fu_journal *j;
    rc = fu_journal_open(&j, dir, (enum fu_fsync)fsync_mode, window_sec);
    if (rc < 0)
        return rc;
    struct replay x = {
        .v = v, .paths = FU_BUF_INIT, .s1 = FU_BUF_INIT, .s2 = FU_BUF_INIT, .s3 = FU_BUF_INIT};
    struct fu_journal_replay_info info;
    fu_view_write_lock(v);
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
    /* A torn tail is a write a crash cut short, never acknowledged, unless the fsync
     * policy is off or the disk damaged a record it had synced: agents' caches may count
     * on what went, so they lose them, as with damage in the middle. */
    bool lost = info.corrupt || info.torn_bytes;
    if (lost || !load_incarnation(v))
        new_incarnation(v);
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
    return fu_view_snapshot_then(v, info, NULL, NULL);
}

int fu_view_snapshot_then(struct fu_view *v, struct fu_snapshot_info *info,
                          int (*then)(void *ctx, const char *path,
                                      const struct fu_snapshot_info *info, uint64_t entries),
                          void *ctx)
{
    if (!v->journal)
        return -ENOTSUP;
    struct fu_snapshot_info local;
    if (!info)
        info = &local;
    pthread_mutex_lock(&v->snap_mu);
    struct fu_buf state = FU_BUF_INIT;
    uint64_t pos = 0;
    int then_rc = 0;
    double t0 = mono_now();
    /* The read lock keeps changes (and so appends) out: the state is the one at `pos`. */
    pthread_rwlock_rdlock(&v->lock);
    int rc = fu_journal_rotate(v->journal, &pos);
    if (!rc)
        rc = fu_state_write(&v->tree, &v->fs, &state);
    uint64_t entries = fu_tree_count(&v->tree);
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
        if (then) { /* before the prune below, or a later snapshot's, can remove the file */
            char *path = fu_snapshot_path(v->data_dir, pos);
            then_rc = path ? then(ctx, path, info, entries) : -ENOMEM;
            free(path);
        }
        uint64_t oldest = fu_snapshot_prune(v->data_dir, v->snap_keep);
        int dropped = oldest == UINT64_MAX ? 0 : fu_journal_drop_before(v->journal, oldest);
        fu_info("view %s: snapshot at journal position %llu: %llu bytes (%llu uncompressed), "
                "state copied in %.3f s, written in %.3f s; %d journal segments dropped",
                v->id, (unsigned long long)pos, (unsigned long long)info->file_bytes,
                (unsigned long long)info->raw_bytes, copied, v->snap_mono - t0 - copied, dropped);
    } else {
        fu_error("view %s: snapshot failed: %s", v->id, strerror(-rc));
    }
    pthread_mutex_unlock(&v->snap_mu);
    return rc ? rc : then_rc;
}
