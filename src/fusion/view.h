/* A view: the fs tree and its consistency state (view_fs/arbitrate.h), behind one read/write
 * lock. Writers apply whole batches under the write lock; queries take the read lock. */
#ifndef FU_FUSION_VIEW_H
#define FU_FUSION_VIEW_H

#include "common/strv.h"
#include "fusion/view_fs/arbitrate.h"
#include "fusion/view_fs/tree.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct fu_view {
    char *id;
    char *driver;
    pthread_rwlock_t lock; /* guards tree, fs and the fields below */
    struct fu_tree tree;
    struct fu_fs fs;
    int64_t max_tree_items;
    struct fu_strv read_keys;
    uint64_t rows_applied;
};

/* Audits (fu_fs_audit_start/end under the write lock). `explicit_`: the consistency
 * endpoint; else the first audit rows of a batch. (pipe_id, epoch) name the leader. */
void fu_view_audit_start(struct fu_view *v, double when, bool explicit_, const char *pipe_id,
                         uint64_t epoch);
void fu_view_audit_end(struct fu_view *v, double when);
/* Empties the view: tree and consistency state (clock, tombstones, suspects, blind spots,
 * audit). Returns 0, or -ENOMEM with the view left as it was. */
int fu_view_reset(struct fu_view *v);
/* The timers (suspect deadlines, tombstone TTL) at wall time `now`. Every change made at a
 * time (a batch, an audit start or end, sentinel feedback) runs them at that time first. */
void fu_view_tick(struct fu_view *v, double now);

int fu_view_init(struct fu_view *v, const char *id, double hot_file_threshold,
                 double tombstone_ttl);
void fu_view_free(struct fu_view *v);

enum { FU_APPLY_AUDIT_START = 1, FU_APPLY_AUDIT_END = 2 };

/* Applies rows (in order) under the write lock. `paths` holds the rows' path bytes;
 * `recv_time` is the batch's receive stamp (apply never reads the clock); `lineage` names the
 * agent and source uri; `storage_now` (> 0) is the storage's clock as the agent reports it
 * (the v1 events' index), which seeds the logical clock before any realtime sample. With a
 * `fence`, nothing is applied unless *fence still equals `epoch` once the lock is held: a
 * leader deposed while its batch waited cannot write. `flags`: FU_APPLY_AUDIT_START (the
 * batch holds audit rows: an audit starts if none runs, for leader (pipe_id, epoch)) and
 * FU_APPLY_AUDIT_END (an audit end marker, after the rows), both inside the same fenced,
 * locked step. Returns the number of rows applied, or -1 when fenced off. */
long fu_view_apply(struct fu_view *v, const struct fu_row *rows, size_t n, const char *paths,
                   double recv_time, double storage_now, const char *agent_id,
                   const char *source_uri, const _Atomic uint64_t *fence, uint64_t epoch,
                   const char *pipe_id, unsigned flags);

#endif
