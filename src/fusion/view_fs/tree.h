/* The fs view's tree: fixed-size node records in a chunked arena, interned names in a chunked
 * byte heap, one open-addressing hash index keyed by (parent, name), and per-directory
 * aggregates of the whole subtree kept up to date on every change, so stats of any subtree are
 * O(1).
 *
 * Budget (DESIGN.md): <= 100 bytes per entry including indexes. A node is 56 bytes; the
 * (parent, name) index costs 8 bytes a slot (node id and 32-bit hash tag) at a load of at most
 * 3/4 (bench_tree: 73 bytes an entry with v1-shaped names, 104 with a distinct 21-byte name
 * each). A name is stored once per
 * distinct name, however many directories hold it ("file_0001.dat" in 4000 directories costs
 * 14 bytes, not 56,000): a 1-2 byte length prefix, the bytes, and a 4-byte slot in the intern
 * index. Names of deleted nodes are reclaimed by fu_tree_maybe_compact().
 *
 * Not thread-safe: the view wraps it in its read/write lock. Node ids are stable while the
 * node lives; a deleted node's id is reused. */
#ifndef FU_VIEW_FS_TREE_H
#define FU_VIEW_FS_TREE_H

#include "common/buf.h"
#include "common/strv.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint32_t fu_nid;
#define FU_NID_NONE UINT32_MAX
#define FU_NID_ROOT 0u

enum {
    FU_N_DIR = 1 << 0,           /* a directory */
    FU_N_SUSPECT = 1 << 1,       /* integrity_suspect: possibly still being written */
    FU_N_AGENT_MISSING = 1 << 2, /* not (yet) confirmed by an agent: v1's !known_by_agent. New
                                    nodes, auto-created parents included, start with it */
    FU_N_AUDIT_SKIPPED = 1 << 3, /* directory: last audit found it unchanged */
    FU_N_BLIND_ADD = 1 << 4,     /* a blind-spot addition: found by audit or on-demand scan */
    FU_N_AUDIT_SEEN = 1 << 5,    /* reported by the audit in progress */
    FU_N_FREE = 1 << 15,         /* the record is on the free list */
};

struct fu_node {
    fu_nid parent;     /* FU_NID_NONE for the root */
    uint32_t name_off; /* an interned name in the name heap */
    fu_nid next, prev; /* siblings; next also links the free list */
    uint32_t agg;      /* directories: index of their aggregate record */
    uint16_t flags;    /* FU_N_* */
    uint16_t lineage;  /* index into the lineage table (last agent id, source uri) */
    uint64_t size;
    double mtime;   /* modified_time as reported */
    double ctime;   /* created_time (st_ctime in v1) */
    double updated; /* last realtime confirmation (receive time); 0 if only scanned */
};

/* What a directory's subtree holds, excluding the directory itself, and where its children
 * start. Only directories have one, so files do not pay for it. */
struct fu_agg {
    fu_nid first_child; /* first of a doubly linked sibling list */
    uint64_t files, dirs, bytes;
    uint64_t suspects;       /* files flagged FU_N_SUSPECT */
    double newest_mtime;     /* newest mtime of any entry below; 0 for an empty directory */
    double oldest_dir_mtime; /* the oldest directory below (v1's staleness), when any */
    fu_nid oldest_dir;       /* FU_NID_NONE when there is no directory below */
};

/* The attributes of an upsert. */
struct fu_attr {
    uint64_t size;
    double mtime, ctime;
    double updated; /* the batch's receive time for realtime rows, else 0 */
    uint16_t lineage;
};

/* The interned name heap: entries of a length prefix (1 byte below 128, else 2) and the bytes,
 * never spanning a chunk; offsets are global. `slots` indexes the entries by content. */
struct fu_names {
    char **chunks;
    size_t nchunks;
    uint32_t used;   /* bytes used in the last chunk */
    uint64_t bytes;  /* bytes of all entries */
    uint32_t *slots; /* entry offsets, UINT32_MAX when empty */
    size_t nslots;   /* a power of two */
    size_t nused;
};

struct fu_slot {
    uint32_t id, tag;
};

struct fu_tree {
    struct fu_node **chunks; /* node arena: chunks of FU_TREE_CHUNK nodes */
    size_t nchunks;
    uint32_t nnodes;  /* records handed out, live or free */
    fu_nid free_head; /* free list through node.next */
    uint32_t live;    /* live nodes, root included */
    struct fu_names names;
    uint64_t released_names; /* name bytes of nodes freed since the last compaction */
    uint32_t released_nodes; /* nodes freed since the last compaction */
    struct fu_slot *slots;   /* hash index: node ids (FU_NID_NONE when empty), each beside
                                the low 32 bits of its (parent, name) hash, its tag: the home
                                comes from it when the table grows, and a probe reads a node
                                only on a tag match (tags are not saved: computed at load) */
    size_t nslots;           /* a power of two */
    size_t used_slots;
    struct fu_agg *aggs; /* aggregate records of directories */
    uint32_t naggs, aggs_cap;
    uint32_t agg_free;       /* free list of aggregate records (through .files) */
    struct fu_strv lineages; /* "agent_id\0source_uri" pairs; index = node.lineage */
    /* The directory the last upsert went into, by its path: rows come grouped by directory
     * (a walk lists one at a time), so the next row's parent is usually the same and lookups
     * start there instead of at the root. Any node freed forgets it (ids are reused). */
    char *dc_path;
    size_t dc_len, dc_cap;
    fu_nid dc_id; /* FU_NID_NONE: nothing remembered */
    /* Called for every freed node that carries one of `hook_mask`'s flags (the view's
     * consistency state keeps indexes of suspect and blind-spot nodes by id). */
    void (*release_hook)(void *ctx, fu_nid id, uint16_t flags);
    void *hook_ctx;
    uint16_t hook_mask;
};

int fu_tree_init(struct fu_tree *t);
void fu_tree_free(struct fu_tree *t);

static inline struct fu_node *fu_tree_node(const struct fu_tree *t, fu_nid id)
{
    return &t->chunks[id >> 16][id & 0xFFFF];
}
const char *fu_tree_name(const struct fu_tree *t, fu_nid id, size_t *len);
static inline fu_nid fu_tree_first_child(const struct fu_tree *t, fu_nid id)
{
    const struct fu_node *n = fu_tree_node(t, id);
    return (n->flags & FU_N_DIR) ? t->aggs[n->agg].first_child : FU_NID_NONE;
}
static inline const struct fu_agg *fu_tree_agg(const struct fu_tree *t, fu_nid dir)
{
    return &t->aggs[fu_tree_node(t, dir)->agg];
}

/* `path` must be normalised (fu_path_normalize). FU_NID_NONE when absent. */
fu_nid fu_tree_lookup(const struct fu_tree *t, const char *path, size_t len);
fu_nid fu_tree_child(const struct fu_tree *t, fu_nid dir, const char *name, size_t len);
/* A hint: starts loading the index slot where a lookup of `path` (normalised) will begin,
 * when its parent is the directory the last upsert went to (as for a batch of a directory's
 * entries). A random slot of a large index misses the cache; asked a few rows ahead, the
 * miss overlaps the rows between. */
void fu_tree_prefetch(const struct fu_tree *t, const char *path, size_t len);

/* Creates or updates the entry at `path`, creating missing parent directories (mtime 0).
 * A file where a directory is wanted, or the reverse, is replaced (its subtree removed).
 * Returns 0 and the node id, -EINVAL for the root as a file, -ENOMEM. */
int fu_tree_upsert(struct fu_tree *t, const char *path, size_t len, bool is_dir,
                   const struct fu_attr *a, fu_nid *out);
/* The same, given `known`: what fu_tree_lookup returned for `path` with no change to the
 * tree since. It spares the second walk (ingest looks a path up before it decides). */
int fu_tree_upsert_known(struct fu_tree *t, const char *path, size_t len, bool is_dir, fu_nid known,
                         const struct fu_attr *a, fu_nid *out);
/* Removes the entry and, for a directory, everything below. The root is emptied, never
 * removed. Returns the number of entries removed (0 if absent). */
size_t fu_tree_delete(struct fu_tree *t, const char *path, size_t len);
void fu_tree_remove(struct fu_tree *t, fu_nid id);
/* Sets and clears FU_N_SUSPECT, FU_N_AGENT_MISSING, FU_N_AUDIT_SKIPPED, FU_N_BLIND_ADD and
 * FU_N_AUDIT_SEEN, keeping the suspect aggregates right (they count files only). */
void fu_tree_set_flags(struct fu_tree *t, fu_nid id, uint16_t set, uint16_t clear);

/* The full path of a node into `out` (replacing its contents). */
void fu_tree_path(const struct fu_tree *t, fu_nid id, struct fu_buf *out);
/* The children of `dir` sorted by name (bytewise), into a new array (caller frees);
 * returns the count, or (size_t)-1 on OOM. */
size_t fu_tree_children_sorted(const struct fu_tree *t, fu_nid dir, fu_nid **out);
/* The bytewise order of names (and of whole paths sorted as strings) that
 * fu_tree_children_sorted sorts by: a prefix first. */
static inline int fu_bytes_cmp(const char *a, size_t la, const char *b, size_t lb)
{
    int c = memcmp(a, b, la < lb ? la : lb);
    return c ? c : (la > lb) - (la < lb);
}

/* Interns an (agent id, source uri, pipe id) lineage for node.lineage; 0 is "unknown". The
 * pipe is whose audits may delete the node in a view fed by several pipes. */
uint16_t fu_tree_lineage(struct fu_tree *t, const char *agent_id, const char *source_uri,
                         const char *pipe_id);
/* The agent and source behind a lineage index (NULL strings for 0). */
void fu_tree_lineage_get(const struct fu_tree *t, uint16_t idx, const char **agent_id,
                         const char **source_uri);
/* The pipe of a lineage index: "" for 0 and for lineages from state format 1. */
const char *fu_tree_lineage_pipe(const struct fu_tree *t, uint16_t idx);
/* Whether pipe `pipe_id` ever wrote into the tree (since its last reset), as far as the
 * lineages tell: a lineage of that pipe, or of an unknown one (state format 1). */
bool fu_tree_has_pipe(const struct fu_tree *t, const char *pipe_id);

/* Rebuilds the name heap from the live nodes when enough names were released since the last
 * time that it may pay: at least a quarter of the live nodes and half the heap's bytes. The
 * cost is amortised O(1) per deletion. Node ids do not change, but name pointers from
 * fu_tree_name() do: call it between operations, never while holding one. Returns true when it
 * compacted. fu_tree_compact() does it unconditionally; -ENOMEM leaves the tree unchanged. */
bool fu_tree_maybe_compact(struct fu_tree *t);
int fu_tree_compact(struct fu_tree *t);

/* Durable snapshots (view_fs/state_io.c documents the bytes). fu_tree_dump appends everything
 * but the lookup cache (dc_*) and the release hook; an allocation failure sets out->oom.
 * fu_tree_load builds *t (not initialised on entry) from what fu_tree_dump wrote, node ids
 * and all, and checks every index against its bound and the structure (one tree from the
 * root, free lists, both hash indexes, the subtree counts), so that nothing done to the
 * result can read out of bounds or loop; it has no hook. Returns 0, -EINVAL (not such
 * bytes; the cursor's position is then unspecified) or -ENOMEM; on failure *t is zeroed and
 * holds nothing. */
struct fu_state_rd;
void fu_tree_dump(const struct fu_tree *t, struct fu_buf *out);
int fu_tree_load(struct fu_tree *t, struct fu_state_rd *r);
/* Empties the tree as fu_tree_init would, without allocating: the arrays keep their size. The
 * tree must come from fu_tree_init or fu_tree_load. The release hook stays and is not
 * called. */
void fu_tree_reset(struct fu_tree *t);

/* Live entries (the root included), and the bytes the structure holds. */
static inline uint32_t fu_tree_count(const struct fu_tree *t)
{
    return t->live;
}
size_t fu_tree_memory(const struct fu_tree *t);

#endif
