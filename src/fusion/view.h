/* A view: the fs tree plus the state the view API reports, behind one read/write lock.
 * Writers apply whole batches under the write lock; queries take the read lock. */
#ifndef FU_FUSION_VIEW_H
#define FU_FUSION_VIEW_H

#include "common/strv.h"
#include "fusion/view_fs/tree.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* One validated row of an event batch, ready to apply. */
enum fu_row_op { FU_ROW_UPSERT, FU_ROW_DELETE };
enum fu_row_src { FU_SRC_REALTIME, FU_SRC_SNAPSHOT, FU_SRC_AUDIT, FU_SRC_ON_DEMAND };

struct fu_row {
    uint8_t op, src;
    bool is_dir;
    bool atomic;        /* is_atomic_write (default true) */
    bool audit_skipped; /* directories in audits */
    uint64_t size;
    double mtime, ctime;
    double parent_mtime;       /* audit rows; 0 if absent */
    size_t path_off, path_len; /* into the batch's path buffer, normalised */
};

struct fu_view {
    char *id;
    char *driver;
    pthread_rwlock_t lock; /* guards tree and the fields below */
    struct fu_tree tree;
    double hot_file_threshold;
    int64_t max_tree_items;
    struct fu_strv read_keys;
    /* activity */
    uint64_t rows_applied;
    double last_event_latency_ms;
    /* consistency state reported by stats (filled in by the arbitration issue) */
    bool is_auditing;
    double last_audit_start, last_audit_finished_at;
    uint64_t audit_cycle_count;
};

/* Audit state, under the view's write lock. A start from the first audit rows does not
 * restart a running audit; an explicit start does. An end outside an audit does nothing. */
void fu_view_audit_start(struct fu_view *v, double when, bool restart);
void fu_view_audit_end(struct fu_view *v, double when);

int fu_view_init(struct fu_view *v, const char *id);
void fu_view_free(struct fu_view *v);

/* Applies rows (in order) under the write lock. `paths` holds the rows' path bytes;
 * `recv_time` is the batch's receive stamp (apply never reads the clock); `lineage` names the
 * agent and source uri. With a `fence`, nothing is applied unless *fence still equals
 * `epoch` once the lock is held: a leader deposed while its batch waited cannot write.
 * Returns the number of rows applied, or -1 when fenced off. */
long fu_view_apply(struct fu_view *v, const struct fu_row *rows, size_t n, const char *paths,
                   double recv_time, const char *agent_id, const char *source_uri,
                   const _Atomic uint64_t *fence, uint64_t epoch);

#endif
