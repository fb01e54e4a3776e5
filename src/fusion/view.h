/* A view: the fs tree and its consistency state (view_fs/arbitrate.h), behind one read/write
 * lock. Writers apply whole batches under the write lock; queries take the read lock. */
#ifndef FU_FUSION_VIEW_H
#define FU_FUSION_VIEW_H

#include "common/buf.h"
#include "common/strv.h"
#include "fusion/view_fs/arbitrate.h"
#include "fusion/view_fs/tree.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct fu_journal;

/* Answers of `tree` kept while the view does not change, for the queries that come again and
 * again (the web console's refresh, scripts that poll): at most FU_VIEW_ANSWERS of them,
 * each at most FU_VIEW_ANSWER_MAX bytes, FU_VIEW_ANSWERS_MAX bytes in all. */
#define FU_VIEW_ANSWERS 8
#define FU_VIEW_ANSWER_MAX (1u << 20)
#define FU_VIEW_ANSWERS_MAX (4u << 20)
struct fu_view_answer {
    char *key;     /* the query, canonical; NULL: a free slot */
    uint64_t gen;  /* the view's generation it was made from */
    uint64_t used; /* when it was last served, on the cache's own clock */
    char *body;
    size_t len;
};

struct fu_view {
    char *id;
    char *driver;
    pthread_rwlock_t lock; /* guards tree, fs and the fields below */
    struct fu_tree tree;
    struct fu_fs fs;
    int64_t max_tree_items;
    struct fu_strv read_keys;
    uint64_t rows_applied;
    struct fu_journal *journal; /* NULL: memory only (no data directory) */
    bool restored;              /* its state came from disk at start-up */
    uint64_t replayed;          /* journal records replayed at start-up */
    char *data_dir;             /* of the journal and snapshots */
    int lock_fd; /* data_dir/lock, write-locked (OFD) while the view is open: `purge` checks */
    int snap_keep;
    pthread_mutex_t snap_mu; /* one snapshot at a time */
    uint64_t snap_pos;       /* journal position of the last snapshot (0: none) */
    double snap_mono;        /* when it was taken or loaded (monotonic), 0: never */
    double snap_failed;      /* when the last attempt failed (monotonic), 0: none */
    /* Names the view's history: a new one whenever what Fusion acknowledged may no longer
     * all be there (a new or reset view, a damaged journal, a restore, a memory-only view
     * started again). Agents keep their audit caches only while it stays the same. Under
     * `lock`; in data_dir/incarnation when the view has storage. */
    char incarnation[33];
    uint64_t gen; /* under `lock`: bumped by each write-locked step (fu_view_write_lock) */
    pthread_mutex_t answers_mu;
    struct fu_view_answer answers[FU_VIEW_ANSWERS];
    uint64_t answers_clock;
    size_t answers_bytes;
};

/* Sentinel feedback for one suspect path (fu_fs_sentinel's arguments). */
struct fu_sentinel_row {
    size_t path_off, path_len; /* into the batch's path bytes */
    double mtime;
    uint64_t size;
    bool have_size, missing;
};

/* Every change below is journaled (when the view has a journal) before it is applied, under
 * the write lock, so that the journal's order is the apply order; a change the journal
 * refuses (a full disk) is not applied and its -errno returned. `*jpos` (may be NULL) gets
 * the journal position to pass to fu_view_durable before acknowledging the change. */

/* Audits (fu_fs_audit_start/end under the write lock). `explicit_`: the consistency
 * endpoint; else the first audit rows of a batch. (pipe_id, epoch) name the leader. */
int fu_view_audit_start(struct fu_view *v, double when, bool explicit_, const char *pipe_id,
                        uint64_t epoch, uint64_t *jpos);
int fu_view_audit_end(struct fu_view *v, double when, const char *pipe_id, uint64_t *jpos);
/* Empties the view: tree and consistency state (clock, tombstones, suspects, blind spots,
 * audit). Returns 0, -ENOMEM with the view left as it was, or the journal's -errno. */
int fu_view_reset(struct fu_view *v, uint64_t *jpos);
/* The timers (suspect deadlines, tombstone TTL) at wall time `now`. Every change made at a
 * time (a batch, an audit start or end, sentinel feedback) runs them at that time first. */
void fu_view_tick(struct fu_view *v, double now);
/* Sentinel feedback at `recv_time`; *hits = how many paths were suspects. */
int fu_view_sentinel(struct fu_view *v, const struct fu_sentinel_row *rows, size_t n,
                     const char *paths, double recv_time, size_t *hits, uint64_t *jpos);
/* Waits until the change at `jpos` is durable (the journal's fsync policy): 0 or -errno. */
int fu_view_durable(struct fu_view *v, uint64_t jpos);
/* Waits until everything journaled so far is durable: 0 or -errno. */
int fu_view_sync(struct fu_view *v);
/* For changes acknowledged before their sync: starts writing back the journal once enough
 * of it waits (fu_journal_kick). */
void fu_view_kick(struct fu_view *v);

/* Opens the view's storage in `dir`: loads its newest good snapshot (a damaged one is logged
 * and the next older tried), then replays the journal after it. `fsync` and `window_sec` as
 * fu_journal_open; `keep`: snapshots kept. Returns 0 (see v->restored, v->replayed,
 * v->snap_pos; a damaged journal is logged and replayed up to the damage, *damaged set), or
 * -errno (-EPROTO: a snapshot or journal of a newer format; the view must not start). */
int fu_view_open_storage(struct fu_view *v, const char *dir, int fsync_mode, double window_sec,
                         int keep, bool *damaged);
/* Takes a snapshot now: the state at a fresh journal segment's start, written beside the
 * journal; older snapshots beyond `keep` go, and the journal segments no kept snapshot
 * needs. Queries go on meanwhile; changes wait while the state is copied (not while it is
 * compressed and written). Returns 0 (info filled) or -errno. */
struct fu_snapshot_info;
int fu_view_snapshot(struct fu_view *v, struct fu_snapshot_info *info);
/* fu_view_snapshot, then `then` with the new snapshot file's path, its info and the tree's
 * entries in it, called before any snapshot can prune that file (a backup copies it there;
 * changes go on meanwhile). Returns the snapshot's -errno, else what `then` returned. */
int fu_view_snapshot_then(struct fu_view *v, struct fu_snapshot_info *info,
                          int (*then)(void *ctx, const char *path,
                                      const struct fu_snapshot_info *info, uint64_t entries),
                          void *ctx);
/* Copies the view's incarnation (33 bytes: 32 hex digits and a NUL). */
void fu_view_incarnation(struct fu_view *v, char out[33]);
/* Journal bytes written since the last snapshot (0 without a journal). */
uint64_t fu_view_unsnapshotted(struct fu_view *v);
/* Whether a snapshot is due: the journal grew by `bytes` since the last one, or grew at all
 * and the last one is `interval` seconds old; never within a minute of a failed attempt (a
 * full disk is not retried every second). */
bool fu_view_snapshot_due(struct fu_view *v, uint64_t bytes, double interval);

int fu_view_init(struct fu_view *v, const char *id, double hot_file_threshold,
                 double tombstone_ttl);
void fu_view_free(struct fu_view *v);

/* Takes the write lock for a change: every change of the tree or its state goes through
 * here, so that the generation tells whether a kept answer is still the view's. */
void fu_view_write_lock(struct fu_view *v);
/* Under the read lock: appends the answer kept for `key` at generation `gen` (v->gen) to
 * `out`; false when there is none (or `out` ran out of memory, emptied again). */
bool fu_view_answer_get(struct fu_view *v, const char *key, uint64_t gen, struct fu_buf *out);
/* Under the read lock: keeps `len` bytes as the answer to `key` at generation `gen`, the
 * least recently served answers giving way; too large an answer is not kept. */
void fu_view_answer_put(struct fu_view *v, const char *key, uint64_t gen, const char *body,
                        size_t len);

enum { FU_APPLY_AUDIT_START = 1, FU_APPLY_AUDIT_END = 2 };

/* Applies rows (in order) under the write lock. `paths` holds the rows' path bytes;
 * `recv_time` is the batch's receive stamp (apply never reads the clock); `lineage` names the
 * agent and source uri; `storage_now` (> 0) is the storage's clock as the agent reports it
 * (the v1 events' index), which seeds the logical clock before any realtime sample. With a
 * `fence`, nothing is applied unless *fence still equals `epoch` once the lock is held: a
 * leader deposed while its batch waited cannot write. `flags`: FU_APPLY_AUDIT_START (the
 * batch holds audit rows: an audit starts if none runs, for leader (pipe_id, epoch)) and
 * FU_APPLY_AUDIT_END (an audit end marker, after the rows), both inside the same fenced,
 * locked step. Returns the number of rows applied, -ESTALE when fenced off, or the journal's
 * -errno. */
long fu_view_apply(struct fu_view *v, const struct fu_row *rows, size_t n, const char *paths,
                   double recv_time, double storage_now, const char *agent_id,
                   const char *source_uri, const _Atomic uint64_t *fence, uint64_t epoch,
                   const char *pipe_id, unsigned flags, uint64_t *jpos);

#endif
