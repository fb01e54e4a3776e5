/* Consistency arbitration of the fs view (Fustor v1 §3): which source may change what, per
 * row; tombstones; suspects; blind spots; audits with missing-item detection; the logical
 * clock; sentinel feedback.
 *
 * Everything is a function of its inputs: each call gets the time it happens at (a batch's
 * receive stamp, or a tick's), nothing reads a clock, so replaying the same calls rebuilds
 * the same state. Times are Fusion's ("physical", v1's time.time()); mtimes are the
 * storage's; the two meet only through the logical clock's watermark.
 *
 * Not thread-safe: the view holds its write lock around every call that changes state. */
#ifndef FU_VIEW_FS_ARBITRATE_H
#define FU_VIEW_FS_ARBITRATE_H

#include "common/buf.h"
#include "common/json.h"
#include "fusion/view_fs/clock.h"
#include "common/sets.h"
#include "fusion/view_fs/tree.h"

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
    bool has_mtime;     /* deletes may come without one */
    bool has_parent;    /* audit rows: parent_path was given, so the parent-mtime check runs */
    uint64_t size;
    double mtime, ctime;
    double parent_mtime;       /* audit rows; 0 if absent (as v1's `or 0`) */
    size_t path_off, path_len; /* into the batch's path buffer, normalised */
};

#define FU_FS_EPSILON 1e-6      /* mtime equality (v1 FLOAT_EPSILON) */
#define FU_FS_TOMB_EPSILON 1e-5 /* reincarnation margin over a tombstone */
#define FU_FS_LATE_START 5.0    /* an audit start this soon after the last keeps its rows */

struct fu_fs_pipe_epoch {
    char *pipe_id;
    uint64_t epoch;
};

struct fu_fs {
    struct fu_tree *tree;
    struct fu_clock *clock;
    double hot;      /* hot_file_threshold, s */
    double tomb_ttl; /* consistency.tombstone_ttl_seconds */
    uint32_t seq;    /* stamps heap entries */
    /* tombstones: path -> a = logical time (watermark at the delete), b = physical time */
    struct fu_pathmap tombs;
    struct fu_heap tomb_heap; /* (physical time, entry, seq) */
    /* suspects: node -> a = expiry (physical), b = recorded mtime */
    struct fu_idmap suspects;
    struct fu_heap suspect_heap;
    /* blind spots: additions are nodes (flag FU_N_BLIND_ADD), deletions are paths */
    struct fu_idmap additions;
    struct fu_pathmap deletions;
    struct fu_fs_pipe_epoch *blind_epochs; /* per pipe: the leader epoch of its last audit */
    size_t nblind_epochs;
    /* audit */
    bool auditing;
    double audit_start, audit_finished_at;
    uint64_t audit_cycles;
    fu_nid *seen; /* nodes flagged FU_N_AUDIT_SEEN (may hold stale or repeated ids) */
    size_t nseen, seen_cap;
    bool seen_lost;    /* out of memory while recording: this audit deletes nothing */
    double latency_ms; /* of the last row: watermark - mtime */
};

int fu_fs_init(struct fu_fs *s, struct fu_tree *t, double hot_file_threshold, double tombstone_ttl);
void fu_fs_free(struct fu_fs *s);
/* Forgets everything (clock samples included) and attaches to tree `t`, without allocating. */
void fu_fs_clear(struct fu_fs *s, struct fu_tree *t);

/* One row, at receive time `now`, from an agent and source interned as `lineage`. */
void fu_fs_apply(struct fu_fs *s, const struct fu_row *r, const char *path, double now,
                 uint16_t lineage);

/* An audit starts: `explicit` for POST consistency/audit/start (clears the rows seen so far,
 * unless another start came less than 5 s before: v1's late start), else the first audit
 * rows of a batch (starts one only if none runs). The first audit of a new leader of a pipe
 * (pipe_id, epoch) always starts afresh and resets the view's blind-spot lists: the new
 * leader's audit rebuilds them. Returns true when that reset happened. */
bool fu_fs_audit_start(struct fu_fs *s, double now, bool explicit_, const char *pipe_id,
                       uint64_t epoch);
/* Ends the running audit (nothing when none runs): purges expired tombstones and deletes,
 * below every fully listed directory the audit reported, the children it did not report,
 * unless tombstoned or confirmed in realtime since the audit started. Returns the number of
 * entries deleted. */
size_t fu_fs_audit_end(struct fu_fs *s, double now);
/* The same for the leader of pipe `pipe_id` in a view several pipes may feed (aggregation):
 * a child whose lineage names another pipe belongs to another storage and is left alone.
 * Children of unknown pipe (lineage 0, or state from before pipes were recorded) may go. */
size_t fu_fs_audit_end_pipe(struct fu_fs *s, double now, const char *pipe_id);

/* Timers at `now`: expired suspects are renewed when their file changed, else cleared;
 * tombstones older than the TTL are purged. Returns whether anything changed. */
bool fu_fs_tick(struct fu_fs *s, double now);
/* Whether fu_fs_tick(now) has anything to do (cheap; a read lock is enough). */
bool fu_fs_tick_due(const struct fu_fs *s, double now);

/* Sentinel feedback for one suspect path (v1 update_suspect): stable (same mtime, or the same
 * once the clock's skew is added, and same size) and cold clears it, stable and hot keeps
 * it, changed takes the new mtime/size and renews its deadline. `missing`: the agent no
 * longer finds the file; it stays suspect for another period (v1 would set its mtime to 0).
 * Returns true when the path is a suspect. */
bool fu_fs_sentinel(struct fu_fs *s, const char *path, size_t len, double mtime, bool has_size,
                    uint64_t size, bool missing, double now);

/* The watermark at wall time `now`: v1's logical_now. */
double fu_fs_logical_now(const struct fu_fs *s, double now);
static inline bool fu_fs_has_blind_spot(const struct fu_fs *s)
{
    return s->additions.count || s->deletions.count;
}

/* GET suspect-list: [{"path", "suspect_until"}], by path. */
int fu_fs_write_suspects(const struct fu_fs *s, struct fu_jw *w);
/* GET blind-spots: {"additions_count", "additions": [nodes], "deletion_count",
 * "deletions": [paths]}, each list by path. Directories are listed too (v1 listed files but
 * counted directories in has_blind_spot). */
int fu_fs_write_blind_spots(const struct fu_fs *s, struct fu_jw *w);
/* The paths of suspect files, by path (sentinel tasks). */
int fu_fs_write_suspect_paths(const struct fu_fs *s, struct fu_jw *w, size_t *count);

#endif
