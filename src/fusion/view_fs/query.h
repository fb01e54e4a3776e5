/* Serialising the fs view for the view API (Fustor v1 §4.1): tree, paginated tree, stats and
 * search. Pure functions over a tree: the caller holds the view's read lock. Responses are
 * written into a fu_buf; the return value is the HTTP status (200, 400, 404), and for 400 and
 * 404 `out` holds the JSON error body v1 clients expect. */
#ifndef FU_VIEW_FS_QUERY_H
#define FU_VIEW_FS_QUERY_H

#include "common/buf.h"
#include "common/json.h"
#include "fusion/view_fs/tree.h"

#include <stdbool.h>
#include <stdint.h>

struct fu_tree_query {
    const char *path;    /* normalised, NUL-terminated */
    bool recursive;      /* v1 default true */
    int max_depth;       /* -1 = unlimited; 0 = the node only; 1 = node + children; forces
                            recursive when >= 0, as in v1 */
    bool only_path;      /* name, content_type, path only */
    int64_t max_items;   /* max_tree_items of the view; <= 0 = unlimited */
    const char *view_id; /* for the limit error body */
};

/* GET /tree: the node as v1's nested JSON, children sorted by name. More than max_items
 * entries in the response gives 400 with v1's body:
 * {"detail":{"error":"Metadata retrieval limit exceeded","view":..,"current_count":..,
 *  "limit":..,"suggestion":"Try a more specific path or reduce recursion depth."}}.
 * A missing path gives 404 {"detail":"..."}. */
int fu_query_tree(const struct fu_tree *t, const struct fu_tree_query *q, struct fu_buf *out);

/* GET /tree?entry_page_size=N[&cursor=C]: a flat page of entries of the subtree at q->path in
 * path order (pre-order, children by name), each a node object without "children":
 * {"path": "/p", "entries": [...], "next_cursor": "<opaque>"|null}. The cursor names the last
 * entry sent, so it stays valid while the tree changes: the next page starts after that path
 * whether or not it still exists. page_size is 1..10000. A bad cursor gives 400. */
int fu_query_tree_page(const struct fu_tree *t, const struct fu_tree_query *q, size_t page_size,
                       const char *cursor, struct fu_buf *out);

/* What stats reports that is not in the tree (the consistency state of issue 4). */
struct fu_stats_extra {
    double latency_ms;
    double logical_now;
    double last_audit_finished_at; /* 0 = never */
    uint64_t audit_cycle_count;
    bool is_auditing;
    bool has_blind_spot;
    bool resyncing;
    bool restored;             /* the view's state came from disk at start-up */
    bool journaled;            /* it has a journal: journal_position is meaningful */
    uint64_t journal_position; /* bytes journaled so far */
    bool synced_known;         /* the journal syncs (fsync batch or always) ... */
    uint64_t journal_synced;   /* ... and the bytes of it a sync made durable */
};

/* GET /stats[?path=]: v1's fields, O(1) from the subtree aggregates: item_count,
 * total_files, total_directories, total_size, suspect_file_count, latest_mtime,
 * staleness_seconds (logical_now minus the mtime of the oldest directory below) and
 * oldest_item_path (that directory; both null without one), plus the extra fields and
 * "path". */
int fu_query_stats(const struct fu_tree *t, const char *path, const struct fu_stats_extra *x,
                   struct fu_buf *out);

/* GET /search?pattern=P: a JSON list of file node objects whose path or name matches the
 * glob P (fnmatch without flags, as Python's fnmatchcase), or whose name contains P
 * case-insensitively (v1). At most max_items results, else the 400 limit body. */
int fu_query_search(const struct fu_tree *t, const char *pattern, int64_t max_items,
                    const char *view_id, struct fu_buf *out);

/* Opens node `id`'s JSON object and writes its fields (not "children"), leaving the object
 * open so the caller can add keys and then call fu_jw_obj_end(). Fields, as v1's to_dict:
 * name, content_type ("directory"|"file"), path, and unless only_path: size,
 * modified_time, created_time, integrity_suspect, last_agent_id, source_uri,
 * agent_missing, and for directories audit_skipped. `scratch` is reused for the path. */
void fu_query_node_begin(const struct fu_tree *t, fu_nid id, bool only_path, struct fu_buf *scratch,
                         struct fu_jw *w);

#endif
