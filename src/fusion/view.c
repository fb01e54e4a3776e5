/* View state and batch apply. Apply is deterministic: it uses the batch's receive stamp, never
 * the clock. This issue applies rows as they come (realtime flags suspects from
 * is_atomic_write; scans mark agent_missing); the arbitration issue adds tombstones, mtime
 * comparisons, blind spots and audit end on top of these same entry points. */
#include "fusion/view.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

int fu_view_init(struct fu_view *v, const char *id)
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
        pthread_rwlock_destroy(&v->lock);
        return -1;
    }
    return 0;
}

void fu_view_free(struct fu_view *v)
{
    if (!v->id)
        return;
    fu_tree_free(&v->tree);
    pthread_rwlock_destroy(&v->lock);
    fu_strv_free(&v->read_keys);
    free(v->driver);
    free(v->id);
    memset(v, 0, sizeof(*v));
}

void fu_view_audit_start(struct fu_view *v, double when, bool restart)
{
    pthread_rwlock_wrlock(&v->lock);
    if (restart || !v->is_auditing) {
        v->is_auditing = true;
        v->last_audit_start = when;
    }
    pthread_rwlock_unlock(&v->lock);
}

void fu_view_audit_end(struct fu_view *v, double when)
{
    pthread_rwlock_wrlock(&v->lock);
    if (v->is_auditing) { /* idempotent, as in v1 */
        v->is_auditing = false;
        v->last_audit_finished_at = when;
        v->audit_cycle_count++;
    }
    pthread_rwlock_unlock(&v->lock);
}

static void apply_row(struct fu_view *v, const struct fu_row *r, const char *path, double recv_time,
                      uint16_t lineage)
{
    if (r->op == FU_ROW_DELETE) {
        fu_tree_delete(&v->tree, path, r->path_len);
        return;
    }
    struct fu_attr a = {
        .size = r->size,
        .mtime = r->mtime,
        .ctime = r->ctime,
        .updated = r->src == FU_SRC_REALTIME ? recv_time : 0,
        .lineage = lineage,
    };
    fu_nid id;
    if (fu_tree_upsert(&v->tree, path, r->path_len, r->is_dir, &a, &id) < 0)
        return;
    uint16_t set = 0, clear = 0;
    if (r->src == FU_SRC_REALTIME) {
        clear |= FU_N_AGENT_MISSING;
        if (r->atomic)
            clear |= FU_N_SUSPECT;
        else if (!r->is_dir)
            set |= FU_N_SUSPECT;
    } else if (r->src == FU_SRC_AUDIT || r->src == FU_SRC_ON_DEMAND) {
        if (r->is_dir && r->audit_skipped)
            set |= FU_N_AUDIT_SKIPPED;
        else if (r->is_dir)
            clear |= FU_N_AUDIT_SKIPPED;
    }
    fu_tree_set_flags(&v->tree, id, set, clear);
    if (r->src == FU_SRC_REALTIME && r->mtime > 0)
        v->last_event_latency_ms = (recv_time - r->mtime) * 1000.0;
}

long fu_view_apply(struct fu_view *v, const struct fu_row *rows, size_t n, const char *paths,
                   double recv_time, const char *agent_id, const char *source_uri,
                   const _Atomic uint64_t *fence, uint64_t epoch)
{
    pthread_rwlock_wrlock(&v->lock);
    if (fence && atomic_load(fence) != epoch) {
        pthread_rwlock_unlock(&v->lock);
        return -1;
    }
    uint16_t lineage = fu_tree_lineage(&v->tree, agent_id, source_uri);
    for (size_t i = 0; i < n; i++)
        apply_row(v, &rows[i], paths + rows[i].path_off, recv_time, lineage);
    v->rows_applied += n;
    fu_tree_maybe_compact(&v->tree);
    pthread_rwlock_unlock(&v->lock);
    return (long)n;
}
