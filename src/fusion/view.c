/* View state and batch apply: locking around view_fs/arbitrate.c. Apply is deterministic: it
 * uses the batch's receive stamp, never the clock; timers get their time from the caller. */
#include "fusion/view.h"

#include "common/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

int fu_view_init(struct fu_view *v, const char *id, double hot_file_threshold, double tombstone_ttl)
{
    memset(v, 0, sizeof(*v));
    v->id = strdup(id);
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
    fu_fs_free(&v->fs);
    fu_tree_free(&v->tree);
    pthread_rwlock_destroy(&v->lock);
    fu_strv_free(&v->read_keys);
    free(v->driver);
    free(v->id);
    memset(v, 0, sizeof(*v));
}

void fu_view_audit_start(struct fu_view *v, double when, bool explicit_, const char *pipe_id,
                         uint64_t epoch)
{
    pthread_rwlock_wrlock(&v->lock);
    fu_fs_tick(&v->fs, when);
    if (fu_fs_audit_start(&v->fs, when, explicit_, pipe_id, epoch))
        fu_info("view %s: pipe %s has a new leader (epoch %llu) auditing: blind-spot lists "
                "reset, its audit rebuilds them",
                v->id, pipe_id, (unsigned long long)epoch);
    pthread_rwlock_unlock(&v->lock);
}

void fu_view_audit_end(struct fu_view *v, double when)
{
    pthread_rwlock_wrlock(&v->lock);
    fu_fs_tick(&v->fs, when);
    bool was = v->fs.auditing;
    size_t gone = fu_fs_audit_end(&v->fs, when);
    fu_tree_maybe_compact(&v->tree);
    pthread_rwlock_unlock(&v->lock);
    if (was)
        fu_info("view %s: audit ended, %zu missing entries deleted", v->id, gone);
}

void fu_view_tick(struct fu_view *v, double now)
{
    pthread_rwlock_rdlock(&v->lock);
    bool due = fu_fs_tick_due(&v->fs, now);
    pthread_rwlock_unlock(&v->lock);
    if (!due)
        return;
    pthread_rwlock_wrlock(&v->lock);
    fu_fs_tick(&v->fs, now);
    pthread_rwlock_unlock(&v->lock);
}

long fu_view_apply(struct fu_view *v, const struct fu_row *rows, size_t n, const char *paths,
                   double recv_time, double storage_now, const char *agent_id,
                   const char *source_uri, const _Atomic uint64_t *fence, uint64_t epoch,
                   const char *pipe_id, unsigned flags)
{
    pthread_rwlock_wrlock(&v->lock);
    if (fence && atomic_load(fence) != epoch) {
        pthread_rwlock_unlock(&v->lock);
        return -1;
    }
    fu_fs_tick(&v->fs, recv_time); /* timers advance with the records too */
    bool reset = false, ended = false;
    size_t gone = 0;
    if (flags & FU_APPLY_AUDIT_START) /* the first audit rows start the audit (v1) */
        reset = fu_fs_audit_start(&v->fs, recv_time, false, pipe_id, epoch);
    if (storage_now > 0)
        fu_clock_seed(v->fs.clock, recv_time, storage_now);
    uint16_t lineage = fu_tree_lineage(&v->tree, agent_id, source_uri);
    for (size_t i = 0; i < n; i++)
        fu_fs_apply(&v->fs, &rows[i], paths + rows[i].path_off, recv_time, lineage);
    v->rows_applied += n;
    if ((flags & FU_APPLY_AUDIT_END) && v->fs.auditing) {
        gone = fu_fs_audit_end(&v->fs, recv_time);
        ended = true;
    }
    fu_tree_maybe_compact(&v->tree);
    pthread_rwlock_unlock(&v->lock);
    if (reset)
        fu_info("view %s: pipe %s has a new leader (epoch %llu) auditing: blind-spot lists "
                "reset, its audit rebuilds them",
                v->id, pipe_id, (unsigned long long)epoch);
    if (ended)
        fu_info("view %s: audit ended, %zu missing entries deleted", v->id, gone);
    return (long)n;
}

int fu_view_reset(struct fu_view *v)
{
    /* Everything that can fail first, so a failure leaves the view as it was. */
    struct fu_tree fresh;
    if (fu_tree_init(&fresh) < 0) {
        fu_tree_free(&fresh);
        return -ENOMEM;
    }
    pthread_rwlock_wrlock(&v->lock);
    fu_tree_free(&v->tree);
    v->tree = fresh; /* a tree holds no pointer to itself */
    fu_fs_clear(&v->fs, &v->tree);
    pthread_rwlock_unlock(&v->lock);
    return 0;
}
