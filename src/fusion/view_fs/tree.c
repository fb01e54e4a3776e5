/* The fs view's tree; see tree.h for the layout and budget. Everything is iterative: paths
 * may be 10,000 levels deep and a recursive walk would overflow the stack. */
#include "fusion/view_fs/tree.h"

#include "common/bigmem.h"
#include "common/probe.h"
#include "fusion/view_fs/state_io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define NODE_CHUNK 65536u     /* nodes per arena chunk (4 MiB) */
#define NODE_BYTES (NODE_CHUNK * sizeof(struct fu_node))
#define HEAP_CHUNK (1u << 20) /* bytes per name heap chunk */
#define MAX_NAME 32767u       /* the longest name a 2-byte length prefix holds */
#define LINEAGE_MAX 65535u
#define LINEAGE_STRS 3 /* agent id, source uri, pipe id (state format 1: the first two) */

_Static_assert(sizeof(struct fu_node) == 56, "the node record is 56 bytes (DESIGN budget)");

/* ------------------------------------------------------------ node arena */

static fu_nid node_alloc(struct fu_tree *t)
{
    if (t->free_head != FU_NID_NONE) {
        fu_nid id = t->free_head;
        t->free_head = fu_tree_node(t, id)->next;
        return id;
    }
    if (t->nnodes == UINT32_MAX - 1)
        return FU_NID_NONE;
    if (t->nnodes / NODE_CHUNK == t->nchunks) {
        struct fu_node **c = realloc(t->chunks, (t->nchunks + 1) * sizeof(*c));
        if (!c)
            return FU_NID_NONE;
        t->chunks = c;
        c[t->nchunks] = malloc(NODE_BYTES);
        if (!c[t->nchunks])
            return FU_NID_NONE;
        t->nchunks++;
    }
    return t->nnodes++;
}

/* ------------------------------------------------------------ interned names */

static inline const unsigned char *name_at(const struct fu_names *h, uint32_t off, size_t *len)
{
    const unsigned char *p = (const unsigned char *)h->chunks[off / HEAP_CHUNK] + off % HEAP_CHUNK;
    if (p[0] < 0x80) {
        *len = p[0];
        return p + 1;
    }
    *len = (size_t)(p[0] & 0x7F) | (size_t)p[1] << 7;
    return p + 2;
}

static int names_append(struct fu_names *h, const char *name, size_t len, uint32_t *off)
{
    size_t need = len + (len < 0x80 ? 1 : 2);
    if (!h->nchunks || h->used + need > HEAP_CHUNK) {
        if (h->nchunks >= UINT32_MAX / HEAP_CHUNK)
            return -ENOMEM; /* 4 GiB of distinct names */
        char **c = realloc(h->chunks, (h->nchunks + 1) * sizeof(*c));
        if (!c)
            return -ENOMEM;
        h->chunks = c;
        c[h->nchunks] = malloc(HEAP_CHUNK);
        if (!c[h->nchunks])
            return -ENOMEM;
        h->nchunks++;
        h->used = 0;
    }
    *off = (uint32_t)(h->nchunks - 1) * HEAP_CHUNK + h->used;
    unsigned char *p = (unsigned char *)h->chunks[h->nchunks - 1] + h->used;
    if (len < 0x80) {
        *p++ = (unsigned char)len;
    } else {
        *p++ = (unsigned char)(0x80 | (len & 0x7F));
        *p++ = (unsigned char)(len >> 7);
    }
    if (len)
        memcpy(p, name, len);
    h->used += (uint32_t)need;
    h->bytes += need;
    return 0;
}

static void names_slot_insert(struct fu_names *h, uint32_t off)
{
    size_t len, mask = h->nslots - 1;
    const unsigned char *name = name_at(h, off, &len);
    size_t i = (size_t)XXH3_64bits(name, len) & mask;
    while (h->slots[i] != UINT32_MAX)
        i = (i + 1) & mask;
    h->slots[i] = off;
    h->nused++;
}

static int names_grow(struct fu_names *h)
{
    size_t n = h->nslots ? h->nslots * 2 : 1024;
    uint32_t *s = fu_big_alloc(n * sizeof(*s));
    if (!s)
        return -ENOMEM;
    memset(s, 0xFF, n * sizeof(*s));
    uint32_t *old = h->slots;
    size_t oldn = h->nslots;
    h->slots = s;
    h->nslots = n;
    h->nused = 0;
    for (size_t i = 0; i < oldn; i++)
        if (old[i] != UINT32_MAX)
            names_slot_insert(h, old[i]);
    fu_big_free(old, oldn * sizeof(*old));
    return 0;
}

/* The offset of `name` in the heap, appending it when it is not there yet. */
static int names_intern(struct fu_names *h, const char *name, size_t len, uint32_t *off)
{
    if ((h->nused + 1) * 4 > h->nslots * 3 && names_grow(h) < 0)
        return -ENOMEM;
    size_t mask = h->nslots - 1;
    size_t i = (size_t)XXH3_64bits(name, len) & mask;
    for (; h->slots[i] != UINT32_MAX; i = (i + 1) & mask) {
        size_t l;
        const unsigned char *p = name_at(h, h->slots[i], &l);
        if (l == len && !memcmp(p, name, len)) {
            *off = h->slots[i];
            return 0;
        }
    }
    if (names_append(h, name, len, off) < 0)
        return -ENOMEM;
    h->slots[i] = *off;
    h->nused++;
    return 0;
}

static void names_free(struct fu_names *h)
{
    for (size_t i = 0; i < h->nchunks; i++)
        free(h->chunks[i]);
    free(h->chunks);
    fu_big_free(h->slots, h->nslots * sizeof(*h->slots));
    memset(h, 0, sizeof(*h));
}

const char *fu_tree_name(const struct fu_tree *t, fu_nid id, size_t *len)
{
    return (const char *)name_at(&t->names, fu_tree_node(t, id)->name_off, len);
}

int fu_tree_compact(struct fu_tree *t)
{
    struct fu_names fresh = {0};
    uint32_t *offs = malloc((t->nnodes ? t->nnodes : 1) * sizeof(*offs));
    if (!offs)
        return -ENOMEM;
    /* Intern every live name into a new heap first, so a failure changes nothing. */
    for (fu_nid id = 0; id < t->nnodes; id++) {
        if (fu_tree_node(t, id)->flags & FU_N_FREE)
            continue;
        size_t len;
        const char *name = fu_tree_name(t, id, &len);
        if (names_intern(&fresh, name, len, &offs[id]) < 0) {
            names_free(&fresh);
            free(offs);
            return -ENOMEM;
        }
    }
    for (fu_nid id = 0; id < t->nnodes; id++) {
        struct fu_node *n = fu_tree_node(t, id);
        if (!(n->flags & FU_N_FREE))
            n->name_off = offs[id];
    }
    free(offs);
    names_free(&t->names);
    t->names = fresh;
    t->released_names = 0;
    t->released_nodes = 0;
    return 0;
}

bool fu_tree_maybe_compact(struct fu_tree *t)
{
    if ((uint64_t)t->released_nodes * 4 < t->live || t->released_names * 2 < t->names.bytes ||
        t->released_names < (1u << 20))
        return false;
    return fu_tree_compact(t) == 0;
}

/* ------------------------------------------------------------ aggregates */

static uint32_t agg_alloc(struct fu_tree *t)
{
    uint32_t i;
    if (t->agg_free != UINT32_MAX) {
        i = t->agg_free;
        t->agg_free = (uint32_t)t->aggs[i].files;
    } else {
        if (t->naggs == t->aggs_cap) {
            uint32_t cap = t->aggs_cap ? t->aggs_cap * 2 : 64;
            struct fu_agg *a = realloc(t->aggs, cap * sizeof(*a));
            if (!a)
                return UINT32_MAX;
            t->aggs = a;
            t->aggs_cap = cap;
        }
        i = t->naggs++;
    }
    memset(&t->aggs[i], 0, sizeof(t->aggs[i]));
    t->aggs[i].oldest_dir = FU_NID_NONE;
    t->aggs[i].first_child = FU_NID_NONE;
    return i;
}

static void agg_release(struct fu_tree *t, uint32_t i)
{
    t->aggs[i].files = t->agg_free;
    t->agg_free = i;
}

struct delta {
    int64_t files, dirs, bytes, suspects;
};

/* Adds `d` to the aggregates of `dir` and all its ancestors. */
static void propagate(struct fu_tree *t, fu_nid dir, const struct delta *d)
{
    for (fu_nid a = dir; a != FU_NID_NONE; a = fu_tree_node(t, a)->parent) {
        struct fu_agg *g = &t->aggs[fu_tree_node(t, a)->agg];
        g->files += (uint64_t)d->files;
        g->dirs += (uint64_t)d->dirs;
        g->bytes += (uint64_t)d->bytes;
        g->suspects += (uint64_t)d->suspects;
    }
}

/* An entry below `dir` now has mtime `m`: raise the newest mtime up the chain. */
static void raise_newest(struct fu_tree *t, fu_nid dir, double m)
{
    for (fu_nid a = dir; a != FU_NID_NONE; a = fu_tree_node(t, a)->parent) {
        struct fu_agg *g = &t->aggs[fu_tree_node(t, a)->agg];
        if (!(m > g->newest_mtime))
            return;
        g->newest_mtime = m;
    }
}

static double subtree_newest(const struct fu_tree *t, fu_nid dir)
{
    double m = 0;
    for (fu_nid c = fu_tree_first_child(t, dir); c != FU_NID_NONE; c = fu_tree_node(t, c)->next) {
        const struct fu_node *n = fu_tree_node(t, c);
        if (n->mtime > m)
            m = n->mtime;
        if ((n->flags & FU_N_DIR) && t->aggs[n->agg].newest_mtime > m)
            m = t->aggs[n->agg].newest_mtime;
    }
    return m;
}

/* Something below `dir` whose mtime was `old` went away or got older: recompute the newest
 * mtime where `old` was the maximum, from each directory's children, up the chain. */
static void lower_newest(struct fu_tree *t, fu_nid dir, double old)
{
    for (fu_nid a = dir; a != FU_NID_NONE; a = fu_tree_node(t, a)->parent) {
        struct fu_agg *g = &t->aggs[fu_tree_node(t, a)->agg];
        if (g->newest_mtime > old)
            return; /* something else is newer here, and so above */
        double m = subtree_newest(t, a);
        if (m == g->newest_mtime)
            return;
        g->newest_mtime = m;
    }
}

/* Directory `d`, with mtime `m`, is now below `dir` (new, or its mtime fell): lower the
 * oldest directory up the chain. */
static void lower_oldest(struct fu_tree *t, fu_nid dir, double m, fu_nid d)
{
    for (fu_nid a = dir; a != FU_NID_NONE; a = fu_tree_node(t, a)->parent) {
        struct fu_agg *g = &t->aggs[fu_tree_node(t, a)->agg];
        if (g->oldest_dir != FU_NID_NONE && !(m < g->oldest_dir_mtime))
            return;
        g->oldest_dir_mtime = m;
        g->oldest_dir = d;
    }
}

static void subtree_oldest(const struct fu_tree *t, fu_nid dir, double *m, fu_nid *id)
{
    *id = FU_NID_NONE;
    *m = 0;
    for (fu_nid c = fu_tree_first_child(t, dir); c != FU_NID_NONE; c = fu_tree_node(t, c)->next) {
        const struct fu_node *n = fu_tree_node(t, c);
        if (!(n->flags & FU_N_DIR))
            continue;
        if (*id == FU_NID_NONE || n->mtime < *m) {
            *m = n->mtime;
            *id = c;
        }
        const struct fu_agg *g = &t->aggs[n->agg];
        if (g->oldest_dir != FU_NID_NONE && g->oldest_dir_mtime < *m) {
            *m = g->oldest_dir_mtime;
            *id = g->oldest_dir;
        }
    }
}

/* A directory below `dir` whose mtime (or subtree minimum) was `old` went away or got newer:
 * recompute the oldest where `old` was the minimum, up the chain. */
static void raise_oldest(struct fu_tree *t, fu_nid dir, double old)
{
    for (fu_nid a = dir; a != FU_NID_NONE; a = fu_tree_node(t, a)->parent) {
        struct fu_agg *g = &t->aggs[fu_tree_node(t, a)->agg];
        if (g->oldest_dir != FU_NID_NONE && g->oldest_dir_mtime < old)
            return; /* something older remains here, and so above */
        double m;
        fu_nid id;
        subtree_oldest(t, a, &m, &id);
        if (id == g->oldest_dir && m == g->oldest_dir_mtime)
            return;
        g->oldest_dir_mtime = m;
        g->oldest_dir = id;
    }
}

/* ------------------------------------------------------------ hash index */

static uint64_t hash_of(fu_nid parent, const char *name, size_t len)
{
    return XXH3_64bits_withSeed(name, len, parent);
}

/* A slot's tag: the hash's low 32 bits. The home is the tag's low bits (the table never has more
 * than 2^32 slots), so a growing table re-homes every slot from its tag alone, without reading
 * a node or a name; the tag's bits above the home filter probes. */
static uint32_t tag_of(uint64_t h)
{
    return (uint32_t)h;
}

static bool node_is(const struct fu_tree *t, fu_nid id, fu_nid parent, const char *name, size_t len)
{
    if (fu_tree_node(t, id)->parent != parent)
        return false;
    size_t l;
    const char *n = fu_tree_name(t, id, &l);
    return l == len && !memcmp(n, name, len);
}

fu_nid fu_tree_child(const struct fu_tree *t, fu_nid dir, const char *name, size_t len)
{
    size_t mask = t->nslots - 1;
    uint64_t h = hash_of(dir, name, len);
    uint32_t tag = tag_of(h);
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        fu_nid id = t->slots[i].id;
        if (id == FU_NID_NONE)
            return FU_NID_NONE;
        if (t->slots[i].tag == tag && node_is(t, id, dir, name, len))
            return id;
    }
}

/* The hash of node id's (parent, name). */
static uint64_t node_hash(const struct fu_tree *t, fu_nid id)
{
    size_t len;
    const char *name = fu_tree_name(t, id, &len);
    return hash_of(fu_tree_node(t, id)->parent, name, len);
}

static void slot_put(struct fu_tree *t, fu_nid id, uint32_t tag)
{
    size_t mask = t->nslots - 1;
    size_t i = tag & mask;
    while (t->slots[i].id != FU_NID_NONE)
        i = (i + 1) & mask;
    t->slots[i] = (struct fu_slot){id, tag};
    t->used_slots++;
}

static int grow_slots(struct fu_tree *t)
{
    size_t n = t->nslots ? t->nslots * 2 : 1024;
    if (n > (size_t)UINT32_MAX + 1)
        return -ENOMEM; /* the tags hold 32 bits of home */
    struct fu_slot *s = fu_big_alloc(n * sizeof(*s));
    if (!s)
        return -ENOMEM;
    memset(s, 0xFF, n * sizeof(*s));
    struct fu_slot *old = t->slots;
    size_t oldn = t->nslots;
    t->slots = s;
    t->nslots = n;
    t->used_slots = 0;
    for (size_t i = 0; i < oldn; i++)
        if (old[i].id != FU_NID_NONE)
            slot_put(t, old[i].id, old[i].tag);
    fu_big_free(old, oldn * sizeof(*old));
    return 0;
}

/* Linear probing with backward-shift deletion: no tombstones, probes stay short. */
static void slot_remove(struct fu_tree *t, fu_nid id)
{
    size_t mask = t->nslots - 1;
    size_t i = node_hash(t, id) & mask;
    while (t->slots[i].id != id)
        i = (i + 1) & mask;
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        struct fu_slot o = t->slots[j];
        if (o.id == FU_NID_NONE)
            break;
        /* Move o back to i unless its home lies cyclically in (i, j]. */
        if (!fu_probe_stays(i, j, o.tag & mask)) {
            t->slots[i] = o;
            i = j;
        }
    }
    t->slots[i].id = FU_NID_NONE;
    t->used_slots--;
}

/* ------------------------------------------------------------ nodes */

static int node_new(struct fu_tree *t, fu_nid parent, const char *name, size_t len, bool is_dir,
                    fu_nid *out)
{
    if (len > MAX_NAME)
        return -ENAMETOOLONG;
    if ((t->used_slots + 1) * 4 > t->nslots * 3 && grow_slots(t) < 0)
        return -ENOMEM;
    fu_nid id = node_alloc(t);
    if (id == FU_NID_NONE)
        return -ENOMEM;
    struct fu_node *n = fu_tree_node(t, id);
    memset(n, 0, sizeof(*n));
    n->parent = parent;
    n->next = n->prev = FU_NID_NONE;
    n->agg = UINT32_MAX;
    if (names_intern(&t->names, name, len, &n->name_off) < 0 ||
        (is_dir && (n->agg = agg_alloc(t)) == UINT32_MAX)) {
        n->flags = FU_N_FREE;
        n->next = t->free_head;
        t->free_head = id;
        return -ENOMEM;
    }
    n->flags = (uint16_t)((is_dir ? FU_N_DIR : 0) | FU_N_AGENT_MISSING);
    if (parent != FU_NID_NONE) {
        /* After agg_alloc: it may have moved the aggregate records. */
        struct fu_agg *p = &t->aggs[fu_tree_node(t, parent)->agg];
        n->next = p->first_child;
        if (p->first_child != FU_NID_NONE)
            fu_tree_node(t, p->first_child)->prev = id;
        p->first_child = id;
        slot_put(t, id, tag_of(hash_of(parent, name, len)));
        struct delta d = {is_dir ? 0 : 1, is_dir ? 1 : 0, 0, 0};
        propagate(t, parent, &d);
        if (is_dir)
            lower_oldest(t, parent, 0, id);
    }
    t->live++;
    *out = id;
    return 0;
}

/* Frees one node that has no children and is already out of its parent's list. */
static void node_release(struct fu_tree *t, fu_nid id)
{
    struct fu_node *n = fu_tree_node(t, id);
    if (n->parent != FU_NID_NONE)
        slot_remove(t, id);
    size_t len;
    fu_tree_name(t, id, &len);
    t->released_names += len + (len < 0x80 ? 1 : 2);
    t->released_nodes++;
    if (n->flags & FU_N_DIR)
        agg_release(t, n->agg);
    if (n->flags & t->hook_mask)
        t->release_hook(t->hook_ctx, id, n->flags);
    t->dc_id = FU_NID_NONE;
    n->flags = FU_N_FREE;
    n->next = t->free_head;
    t->free_head = id;
    t->live--;
}

static void unlink_child(struct fu_tree *t, fu_nid id)
{
    struct fu_node *n = fu_tree_node(t, id);
    if (n->prev != FU_NID_NONE)
        fu_tree_node(t, n->prev)->next = n->next;
    else
        t->aggs[fu_tree_node(t, n->parent)->agg].first_child = n->next;
    if (n->next != FU_NID_NONE)
        fu_tree_node(t, n->next)->prev = n->prev;
    n->prev = n->next = FU_NID_NONE;
}

void fu_tree_remove(struct fu_tree *t, fu_nid id)
{
    struct fu_node *n = fu_tree_node(t, id);
    if (id == FU_NID_ROOT) {
        while (fu_tree_first_child(t, id) != FU_NID_NONE)
            fu_tree_remove(t, fu_tree_first_child(t, id));
        return;
    }
    fu_nid parent = n->parent;
    bool dir = n->flags & FU_N_DIR;
    const struct fu_agg *g = dir ? &t->aggs[n->agg] : NULL;
    struct delta d = {
        -(int64_t)(dir ? g->files : 1),
        -(int64_t)(dir ? g->dirs + 1 : 0),
        -(int64_t)(dir ? g->bytes : n->size),
        -(int64_t)(dir ? g->suspects : (n->flags & FU_N_SUSPECT) != 0),
    };
    double old = n->mtime;
    if (dir && g->newest_mtime > old)
        old = g->newest_mtime;
    double old_dir = n->mtime; /* the oldest directory this subtree held */
    if (dir && g->oldest_dir != FU_NID_NONE && g->oldest_dir_mtime < old_dir)
        old_dir = g->oldest_dir_mtime;
    unlink_child(t, id);
    propagate(t, parent, &d);
    lower_newest(t, parent, old);
    if (dir)
        raise_oldest(t, parent, old_dir);

    /* Free the subtree leaves-first, without recursion. */
    fu_nid cur = id;
    for (;;) {
        while (fu_tree_first_child(t, cur) != FU_NID_NONE)
            cur = fu_tree_first_child(t, cur);
        if (cur == id) {
            node_release(t, cur);
            return;
        }
        struct fu_node *c = fu_tree_node(t, cur);
        fu_nid p = c->parent;
        fu_nid next = c->next;
        t->aggs[fu_tree_node(t, p)->agg].first_child = next;
        if (next != FU_NID_NONE)
            fu_tree_node(t, next)->prev = FU_NID_NONE;
        node_release(t, cur);
        cur = p;
    }
}

/* ------------------------------------------------------------ public */

int fu_tree_init(struct fu_tree *t)
{
    memset(t, 0, sizeof(*t));
    t->free_head = FU_NID_NONE;
    t->agg_free = UINT32_MAX;
    t->dc_id = FU_NID_NONE;
    /* Lineage 0 is the empty one: "unknown". */
    for (int k = 0; k < LINEAGE_STRS; k++)
        if (fu_strv_push(&t->lineages, "") < 0)
            return -ENOMEM;
    if (grow_slots(t) < 0)
        return -ENOMEM;
    fu_nid root;
    return node_new(t, FU_NID_NONE, "", 0, true, &root);
}

void fu_tree_free(struct fu_tree *t)
{
    for (size_t i = 0; i < t->nchunks; i++)
        free(t->chunks[i]);
    free(t->chunks);
    names_free(&t->names);
    fu_big_free(t->slots, t->nslots * sizeof(*t->slots));
    free(t->aggs);
    fu_strv_free(&t->lineages);
    free(t->dc_path);
    memset(t, 0, sizeof(*t));
}

/* Where a walk down to `path` may start: the remembered directory when it is the path's
 * parent (then *i is the length of the parent's path), else the root (*i = 0). */
static fu_nid walk_start(const struct fu_tree *t, const char *path, size_t len, size_t *i)
{
    *i = 0;
    if (t->dc_id == FU_NID_NONE || len <= t->dc_len || path[t->dc_len] != '/' ||
        memcmp(path, t->dc_path, t->dc_len) != 0 ||
        memchr(path + t->dc_len + 1, '/', len - t->dc_len - 1))
        return FU_NID_ROOT;
    *i = t->dc_len;
    return t->dc_id;
}

void fu_tree_prefetch(const struct fu_tree *t, const char *path, size_t len)
{
    size_t i;
    fu_nid dir = walk_start(t, path, len, &i);
    if (dir == FU_NID_ROOT || i + 1 >= len)
        return;
    uint64_t h = hash_of(dir, path + i + 1, len - i - 1);
    __builtin_prefetch(&t->slots[h & (t->nslots - 1)]);
}

/* Remembers directory `dir` as the one at path[0..len). */
static void remember_dir(struct fu_tree *t, const char *path, size_t len, fu_nid dir)
{
    if (len + 1 > t->dc_cap) {
        size_t cap = len + 64;
        char *p = realloc(t->dc_path, cap);
        if (!p) {
            t->dc_id = FU_NID_NONE;
            return;
        }
        t->dc_path = p;
        t->dc_cap = cap;
    }
    memcpy(t->dc_path, path, len);
    t->dc_len = len;
    t->dc_id = dir;
}

fu_nid fu_tree_lookup(const struct fu_tree *t, const char *path, size_t len)
{
    size_t i;
    fu_nid cur = walk_start(t, path, len, &i);
    while (i < len && cur != FU_NID_NONE) {
        while (i < len && path[i] == '/')
            i++;
        size_t s = i;
        while (i < len && path[i] != '/')
            i++;
        if (i > s) {
            if (!(fu_tree_node(t, cur)->flags & FU_N_DIR))
                return FU_NID_NONE;
            cur = fu_tree_child(t, cur, path + s, i - s);
        }
    }
    return cur;
}

static void set_attrs(struct fu_tree *t, fu_nid id, const struct fu_attr *a)
{
    struct fu_node *n = fu_tree_node(t, id);
    fu_nid parent = n->parent;
    if (!(n->flags & FU_N_DIR) && parent != FU_NID_NONE && a->size != n->size) {
        struct delta d = {0, 0, (int64_t)a->size - (int64_t)n->size, 0};
        propagate(t, parent, &d);
    }
    double old = n->mtime;
    n->size = a->size;
    n->mtime = a->mtime;
    n->ctime = a->ctime;
    if (a->updated > 0)
        n->updated = a->updated;
    if (a->lineage)
        n->lineage = a->lineage;
    if (parent == FU_NID_NONE)
        return;
    if (a->mtime > old)
        raise_newest(t, parent, a->mtime);
    else if (a->mtime < old)
        lower_newest(t, parent, old);
    if ((n->flags & FU_N_DIR) && a->mtime < old)
        lower_oldest(t, parent, a->mtime, id);
    else if ((n->flags & FU_N_DIR) && a->mtime > old)
        raise_oldest(t, parent, old);
}

int fu_tree_upsert(struct fu_tree *t, const char *path, size_t len, bool is_dir,
                   const struct fu_attr *a, fu_nid *out)
{
    size_t i;
    fu_nid cur = walk_start(t, path, len, &i);
    for (;;) {
        while (i < len && path[i] == '/')
            i++;
        size_t s = i;
        while (i < len && path[i] != '/')
            i++;
        size_t e = i;
        while (i < len && path[i] == '/')
            i++;
        bool last = i >= len;
        if (e == s) { /* the root itself */
            if (!is_dir)
                return -EINVAL;
            set_attrs(t, FU_NID_ROOT, a);
            *out = FU_NID_ROOT;
            return 0;
        }
        bool want_dir = last ? is_dir : true;
        fu_nid c = fu_tree_child(t, cur, path + s, e - s);
        if (c != FU_NID_NONE && !(fu_tree_node(t, c)->flags & FU_N_DIR) != !want_dir) {
            fu_tree_remove(t, c); /* a type switch replaces the entry */
            c = FU_NID_NONE;
        }
        if (c == FU_NID_NONE) {
            int rc = node_new(t, cur, path + s, e - s, want_dir, &c);
            if (rc < 0)
                return rc;
        }
        if (last) {
            set_attrs(t, c, a);
            if (cur != FU_NID_ROOT && s > 1 && path[s - 1] == '/' && path[s - 2] != '/')
                remember_dir(t, path, s - 1, cur);
            *out = c;
            return 0;
        }
        cur = c;
    }
}

int fu_tree_upsert_known(struct fu_tree *t, const char *path, size_t len, bool is_dir, fu_nid known,
                         const struct fu_attr *a, fu_nid *out)
{
    if (known != FU_NID_NONE && known != FU_NID_ROOT &&
        !(fu_tree_node(t, known)->flags & FU_N_DIR) == !is_dir) {
        set_attrs(t, known, a);
        const char *slash = memrchr(path, '/', len);
        size_t plen = slash ? (size_t)(slash - path) : 0;
        if (plen > 0 && path[plen - 1] != '/' && plen + 1 < len)
            remember_dir(t, path, plen, fu_tree_node(t, known)->parent);
        *out = known;
        return 0;
    }
    size_t i;
    fu_nid dir = walk_start(t, path, len, &i);
    if (known == FU_NID_NONE && i > 0 && len > i + 1) {
        /* The remembered directory is the parent, and it holds no such name. */
        int rc = node_new(t, dir, path + i + 1, len - i - 1, is_dir, out);
        if (rc < 0)
            return rc;
        set_attrs(t, *out, a);
        return 0;
    }
    return fu_tree_upsert(t, path, len, is_dir, a, out);
}

size_t fu_tree_delete(struct fu_tree *t, const char *path, size_t len)
{
    fu_nid id = fu_tree_lookup(t, path, len);
    if (id == FU_NID_NONE)
        return 0;
    const struct fu_node *n = fu_tree_node(t, id);
    size_t count = 1;
    if (n->flags & FU_N_DIR) {
        const struct fu_agg *g = fu_tree_agg(t, id);
        count = (size_t)(g->files + g->dirs) + (id != FU_NID_ROOT);
    }
    fu_tree_remove(t, id);
    return count;
}

void fu_tree_set_flags(struct fu_tree *t, fu_nid id, uint16_t set, uint16_t clear)
{
    struct fu_node *n = fu_tree_node(t, id);
    uint16_t allowed =
        FU_N_SUSPECT | FU_N_AGENT_MISSING | FU_N_AUDIT_SKIPPED | FU_N_BLIND_ADD | FU_N_AUDIT_SEEN;
    uint16_t f = (uint16_t)((n->flags | (set & allowed)) & ~(clear & allowed));
    bool was = n->flags & FU_N_SUSPECT, now = f & FU_N_SUSPECT;
    n->flags = f;
    if (was != now && !(f & FU_N_DIR) && n->parent != FU_NID_NONE) {
        struct delta d = {0, 0, 0, now ? 1 : -1};
        propagate(t, n->parent, &d);
    }
}

void fu_tree_path(const struct fu_tree *t, fu_nid id, struct fu_buf *out)
{
    fu_buf_reset(out);
    if (id == FU_NID_ROOT) {
        fu_buf_putc(out, '/');
        return;
    }
    size_t total = 0;
    for (fu_nid a = id; a != FU_NID_ROOT; a = fu_tree_node(t, a)->parent) {
        size_t l;
        fu_tree_name(t, a, &l);
        total += 1 + l;
    }
    if (fu_buf_grow(out, total) < 0)
        return;
    char *end = out->data + total;
    for (fu_nid a = id; a != FU_NID_ROOT; a = fu_tree_node(t, a)->parent) {
        size_t l;
        const char *name = fu_tree_name(t, a, &l);
        end -= l;
        memcpy(end, name, l);
        *--end = '/';
    }
    out->len = total;
    out->data[total] = '\0';
}

/* A child with its name resolved once, so sorting compares bytes, not heap lookups. */
struct named {
    const char *name;
    size_t len;
    fu_nid id;
};

static int cmp_named(const void *a, const void *b)
{
    const struct named *x = a, *y = b;
    return fu_bytes_cmp(x->name, x->len, y->name, y->len);
}

size_t fu_tree_children_sorted(const struct fu_tree *t, fu_nid dir, fu_nid **out)
{
    size_t n = 0;
    for (fu_nid c = fu_tree_first_child(t, dir); c != FU_NID_NONE; c = fu_tree_node(t, c)->next)
        n++;
    fu_nid *v = malloc((n ? n : 1) * sizeof(*v));
    struct named *s = malloc((n ? n : 1) * sizeof(*s));
    if (!v || !s) {
        free(v);
        free(s);
        return (size_t)-1;
    }
    size_t i = 0;
    for (fu_nid c = fu_tree_first_child(t, dir); c != FU_NID_NONE; c = fu_tree_node(t, c)->next) {
        s[i].id = c;
        s[i].name = fu_tree_name(t, c, &s[i].len);
        i++;
    }
    qsort(s, n, sizeof(*s), cmp_named);
    for (i = 0; i < n; i++)
        v[i] = s[i].id;
    free(s);
    *out = v;
    return n;
}

/* Lineages live in one string vector, LINEAGE_STRS slots per index: agent id, source uri,
 * pipe id. */
uint16_t fu_tree_lineage(struct fu_tree *t, const char *agent_id, const char *source_uri,
                         const char *pipe_id)
{
    const char *v[LINEAGE_STRS] = {agent_id ? agent_id : "", source_uri ? source_uri : "",
                                   pipe_id ? pipe_id : ""};
    if (!*v[0] && !*v[1] && !*v[2])
        return 0;
    size_t n = t->lineages.n / LINEAGE_STRS;
    for (size_t i = 1; i < n; i++) {
        char **e = &t->lineages.v[LINEAGE_STRS * i];
        if (!strcmp(e[0], v[0]) && !strcmp(e[1], v[1]) && !strcmp(e[2], v[2]))
            return (uint16_t)i;
    }
    if (n >= LINEAGE_MAX)
        return 0;
    for (int k = 0; k < LINEAGE_STRS; k++) {
        if (fu_strv_push(&t->lineages, v[k]) < 0) {
            while (k-- > 0)
                free(t->lineages.v[--t->lineages.n]);
            return 0;
        }
    }
    return (uint16_t)n;
}

void fu_tree_lineage_get(const struct fu_tree *t, uint16_t idx, const char **agent_id,
                         const char **source_uri)
{
    if (!idx || ((size_t)idx + 1) * LINEAGE_STRS > t->lineages.n) {
        *agent_id = *source_uri = NULL;
        return;
    }
    *agent_id = t->lineages.v[LINEAGE_STRS * idx];
    *source_uri = t->lineages.v[LINEAGE_STRS * idx + 1];
}

const char *fu_tree_lineage_pipe(const struct fu_tree *t, uint16_t idx)
{
    if (!idx || ((size_t)idx + 1) * LINEAGE_STRS > t->lineages.n)
        return "";
    return t->lineages.v[LINEAGE_STRS * idx + 2];
}

bool fu_tree_has_pipe(const struct fu_tree *t, const char *pipe_id)
{
    for (size_t i = 1; (i + 1) * LINEAGE_STRS <= t->lineages.n; i++) {
        const char *owner = t->lineages.v[LINEAGE_STRS * i + 2];
        if (!*owner || !strcmp(owner, pipe_id))
            return true;
    }
    return false;
}

size_t fu_tree_memory(const struct fu_tree *t)
{
    size_t m = t->nchunks * (size_t)NODE_CHUNK * sizeof(struct fu_node);
    m += t->names.nchunks * (size_t)HEAP_CHUNK + t->names.nslots * sizeof(uint32_t);
    m += t->nslots * sizeof(*t->slots); /* node ids and tags */
    m += t->aggs_cap * sizeof(struct fu_agg);
    return m;
}

/* ------------------------------------------------------------ snapshots */

/* Node records go out as they lie in memory, so the layout is the struct's, with no padding. */
_Static_assert(offsetof(struct fu_node, name_off) == 4 && offsetof(struct fu_node, next) == 8 &&
                   offsetof(struct fu_node, prev) == 12 && offsetof(struct fu_node, agg) == 16 &&
                   offsetof(struct fu_node, flags) == 20 &&
                   offsetof(struct fu_node, lineage) == 22 &&
                   offsetof(struct fu_node, size) == 24 && offsetof(struct fu_node, mtime) == 32 &&
                   offsetof(struct fu_node, ctime) == 40 && offsetof(struct fu_node, updated) == 48,
               "the node record is state_io.c's node layout");

#define AGG_BYTES 56u /* an aggregate record in the bytes: its fields, without padding */
#define LIVE_FLAGS                                                                                 \
    (FU_N_DIR | FU_N_SUSPECT | FU_N_AGENT_MISSING | FU_N_AUDIT_SKIPPED | FU_N_BLIND_ADD |          \
     FU_N_AUDIT_SEEN)

static size_t entry_size(size_t len)
{
    return len + (len < 0x80 ? 1 : 2);
}

void fu_tree_dump(const struct fu_tree *t, struct fu_buf *out)
{
    /* A full name chunk's tail past its last entry was never written: send each chunk up to
     * the end of its last entry, found from the intern index, which holds every entry. */
    const struct fu_names *h = &t->names;
    uint32_t *used = calloc(h->nchunks ? h->nchunks : 1, sizeof(*used));
    if (!used) {
        out->oom = true;
        return;
    }
    for (size_t i = 0; i < h->nslots; i++) {
        uint32_t off = h->slots[i];
        if (off == UINT32_MAX)
            continue;
        size_t len;
        name_at(h, off, &len);
        uint32_t end = off % HEAP_CHUNK + (uint32_t)entry_size(len);
        if (end > used[off / HEAP_CHUNK])
            used[off / HEAP_CHUNK] = end;
    }
    if (h->nchunks)
        used[h->nchunks - 1] = h->used;

    fu_state_put_u32(out, t->nnodes);
    fu_state_put_u32(out, t->free_head);
    fu_state_put_u32(out, t->live);
    fu_state_put_u32(out, t->released_nodes);
    fu_state_put_u64(out, t->released_names);
    for (size_t base = 0; base < t->nnodes; base += NODE_CHUNK) {
        size_t n = t->nnodes - base < NODE_CHUNK ? t->nnodes - base : NODE_CHUNK;
        fu_buf_append(out, t->chunks[base / NODE_CHUNK], n * sizeof(struct fu_node));
    }

    fu_state_put_u32(out, (uint32_t)h->nchunks);
    fu_state_put_u64(out, h->bytes);
    for (size_t c = 0; c < h->nchunks; c++) {
        fu_state_put_u32(out, used[c]);
        fu_buf_append(out, h->chunks[c], used[c]);
    }
    free(used);
    fu_state_put_u64(out, h->nslots);
    fu_state_put_u64(out, h->nused);
    fu_buf_append(out, h->slots, h->nslots * sizeof(*h->slots));

    fu_state_put_u64(out, t->nslots);
    fu_state_put_u64(out, t->used_slots);
    unsigned char *ids = fu_state_reserve(out, t->nslots * 4);
    for (size_t i = 0; ids && i < t->nslots; i++)
        memcpy(ids + i * 4, &t->slots[i].id, 4);

    fu_state_put_u32(out, t->naggs);
    fu_state_put_u32(out, t->agg_free);
    unsigned char *p = fu_state_reserve(out, (size_t)t->naggs * AGG_BYTES);
    for (uint32_t i = 0; p && i < t->naggs; i++, p += AGG_BYTES) {
        const struct fu_agg *g = &t->aggs[i];
        memcpy(p, &g->first_child, 4);
        memcpy(p + 4, &g->files, 8);
        memcpy(p + 12, &g->dirs, 8);
        memcpy(p + 20, &g->bytes, 8);
        memcpy(p + 28, &g->suspects, 8);
        memcpy(p + 36, &g->newest_mtime, 8);
        memcpy(p + 44, &g->oldest_dir_mtime, 8);
        memcpy(p + 52, &g->oldest_dir, 4);
    }

    fu_state_put_u32(out, (uint32_t)t->lineages.n);
    for (size_t i = 0; i < t->lineages.n; i++) {
        size_t len = strlen(t->lineages.v[i]);
        fu_state_put_u32(out, (uint32_t)len);
        fu_buf_append(out, t->lineages.v[i], len);
    }
}

/* A power of two no smaller than the first size the code allocates, and no larger than 2^32
 * (the most a 32-bit tag homes). */
static bool slots_size_ok(uint64_t n)
{
    return n >= 1024 && n <= (uint64_t)UINT32_MAX + 1 && !(n & (n - 1));
}

/* One chunk of the name heap: entries back to back from 0 to `used`. Marks where each starts
 * in `starts` (a bit per byte of the chunk), counts them, and gives the size of the first. */
static bool names_parse_chunk(const unsigned char *p, uint32_t used, unsigned char *starts,
                              uint64_t *count, size_t *first)
{
    *first = 0;
    for (uint32_t off = 0; off < used;) {
        size_t len, hdr = 1;
        if (p[off] < 0x80) {
            len = p[off];
        } else {
            if (used - off < 2)
                return false;
            len = (size_t)(p[off] & 0x7F) | (size_t)p[off + 1] << 7;
            hdr = 2;
        }
        if (hdr + len > used - off)
            return false;
        if (!off)
            *first = hdr + len;
        starts[off / 8] |= (unsigned char)(1u << (off % 8));
        (*count)++;
        off += (uint32_t)(hdr + len);
    }
    return true;
}

static bool is_start(const unsigned char *starts, size_t nchunks, uint32_t off)
{
    return off / HEAP_CHUNK < nchunks && (starts[off / 8] >> (off % 8) & 1);
}

/* The interned name's offset, UINT32_MAX when absent. */
static uint32_t names_find(const struct fu_names *h, const unsigned char *name, size_t len)
{
    size_t mask = h->nslots - 1;
    for (size_t i = (size_t)XXH3_64bits(name, len) & mask; h->slots[i] != UINT32_MAX;
         i = (i + 1) & mask) {
        size_t l;
        const unsigned char *p = name_at(h, h->slots[i], &l);
        if (l == len && !memcmp(p, name, len))
            return h->slots[i];
    }
    return UINT32_MAX;
}

/* The name heap and its index; `starts` receives the entry starts of the whole heap. */
static int load_names(struct fu_names *h, struct fu_state_rd *r, unsigned char **starts)
{
    uint32_t nchunks = fu_state_u32(r);
    uint64_t bytes = fu_state_u64(r), total = 0, entries = 0;
    /* A chunk is a length and at least one entry. */
    if (r->bad || !nchunks || nchunks > UINT32_MAX / HEAP_CHUNK || !fu_state_room(r, nchunks, 5))
        return -EINVAL;
    h->chunks = calloc(nchunks, sizeof(*h->chunks));
    if (!h->chunks)
        return -ENOMEM;
    size_t prev_used = 0;
    for (uint32_t c = 0; c < nchunks; c++) {
        uint32_t used = fu_state_u32(r);
        /* A chunk was closed when the next entry did not fit: all but the last are nearly
         * full, so each chunk allocated stands for nearly as many bytes read. */
        if (r->bad || !used || used > HEAP_CHUNK ||
            (c + 1 < nchunks && used <= HEAP_CHUNK - entry_size(MAX_NAME)))
            return -EINVAL;
        const unsigned char *p = fu_state_take(r, used);
        if (!p)
            return -EINVAL;
        unsigned char *s = realloc(*starts, (size_t)(c + 1) * (HEAP_CHUNK / 8));
        if (!s)
            return -ENOMEM;
        *starts = s;
        memset(s + (size_t)c * (HEAP_CHUNK / 8), 0, HEAP_CHUNK / 8);
        if (!(h->chunks[c] = malloc(HEAP_CHUNK)))
            return -ENOMEM;
        h->nchunks++;
        memcpy(h->chunks[c], p, used);
        size_t first;
        if (!names_parse_chunk(p, used, s + (size_t)c * (HEAP_CHUNK / 8), &entries, &first))
            return -EINVAL;
        if (c && prev_used + first <= HEAP_CHUNK)
            return -EINVAL; /* that entry would have gone into the previous chunk */
        prev_used = used;
        total += used;
    }
    h->used = (uint32_t)prev_used;
    h->bytes = bytes;
    uint64_t nslots = fu_state_u64(r), nused = fu_state_u64(r);
    if (r->bad || total != bytes || !slots_size_ok(nslots) || nused > nslots ||
        nused * 4 > nslots * 3 || nused != entries || !fu_state_room(r, nslots, 4))
        return -EINVAL;
    if (!(h->slots = fu_big_alloc(nslots * sizeof(*h->slots))))
        return -ENOMEM;
    h->nslots = nslots;
    h->nused = nused;
    fu_state_get(r, h->slots, nslots * 4);
    /* Every entry once in the index, where an intern looks for it. */
    uint64_t n = 0;
    for (size_t i = 0; i < h->nslots; i++) {
        if (h->slots[i] == UINT32_MAX)
            continue;
        if (!is_start(*starts, h->nchunks, h->slots[i]))
            return -EINVAL;
        n++;
    }
    if (n != nused)
        return -EINVAL;
    for (size_t i = 0; i < h->nslots; i++) {
        if (i + 8 < h->nslots && h->slots[i + 8] != UINT32_MAX) /* on its way meanwhile */
            __builtin_prefetch(h->chunks[h->slots[i + 8] / HEAP_CHUNK] +
                               h->slots[i + 8] % HEAP_CHUNK);
        if (h->slots[i] == UINT32_MAX)
            continue;
        size_t len;
        const unsigned char *name = name_at(h, h->slots[i], &len);
        if (names_find(h, name, len) != h->slots[i])
            return -EINVAL;
    }
    return 0;
}

static int load_arrays(struct fu_tree *t, struct fu_state_rd *r, unsigned char **starts)
{
    t->nnodes = fu_state_u32(r);
    t->free_head = fu_state_u32(r);
    t->live = fu_state_u32(r);
    t->released_nodes = fu_state_u32(r);
    t->released_names = fu_state_u64(r);
    if (r->bad || !t->nnodes || t->nnodes == UINT32_MAX || !t->live || t->live > t->nnodes ||
        !fu_state_room(r, t->nnodes, sizeof(struct fu_node)))
        return -EINVAL;
    size_t nchunks = ((size_t)t->nnodes + NODE_CHUNK - 1) / NODE_CHUNK;
    if (!(t->chunks = calloc(nchunks, sizeof(*t->chunks))))
        return -ENOMEM;
    for (size_t c = 0; c < nchunks; c++) {
        size_t n =
            t->nnodes - c * NODE_CHUNK < NODE_CHUNK ? t->nnodes - c * NODE_CHUNK : NODE_CHUNK;
        if (!(t->chunks[c] = malloc(NODE_BYTES)))
            return -ENOMEM;
        t->nchunks++;
        fu_state_get(r, t->chunks[c], n * sizeof(struct fu_node));
    }

    int rc = load_names(&t->names, r, starts);
    if (rc < 0)
        return rc;

    uint64_t nslots = fu_state_u64(r), used = fu_state_u64(r);
    if (r->bad || !slots_size_ok(nslots) || used > nslots || used * 4 > nslots * 3 ||
        !fu_state_room(r, nslots, 4))
        return -EINVAL;
    if (!(t->slots = fu_big_alloc(nslots * sizeof(*t->slots))))
        return -ENOMEM;
    t->nslots = nslots;
    t->used_slots = used;
    const unsigned char *ids = fu_state_take(r, nslots * 4);
    if (!ids)
        memset(t->slots, 0xFF, nslots * sizeof(*t->slots));
    for (size_t i = 0; ids && i < nslots; i++)
        memcpy(&t->slots[i].id, ids + i * 4, 4); /* the tags: computed by the check */

    t->naggs = fu_state_u32(r);
    t->agg_free = fu_state_u32(r);
    if (r->bad || !t->naggs || !fu_state_room(r, t->naggs, AGG_BYTES))
        return -EINVAL;
    if (!(t->aggs = calloc(t->naggs, sizeof(*t->aggs))))
        return -ENOMEM;
    t->aggs_cap = t->naggs;
    const unsigned char *p = fu_state_take(r, (size_t)t->naggs * AGG_BYTES);
    for (uint32_t i = 0; i < t->naggs; i++, p += AGG_BYTES) {
        struct fu_agg *g = &t->aggs[i];
        memcpy(&g->first_child, p, 4);
        memcpy(&g->files, p + 4, 8);
        memcpy(&g->dirs, p + 12, 8);
        memcpy(&g->bytes, p + 20, 8);
        memcpy(&g->suspects, p + 28, 8);
        memcpy(&g->newest_mtime, p + 36, 8);
        memcpy(&g->oldest_dir_mtime, p + 44, 8);
        memcpy(&g->oldest_dir, p + 52, 4);
    }

    /* Lineages: at most LINEAGE_MAX, the first the empty one; format 1 had no pipe id, which
     * reads as "" (unknown). */
    uint32_t per = r->format == 1 ? 2 : LINEAGE_STRS;
    uint32_t n = fu_state_u32(r);
    if (r->bad || n < per || n % per || n / per > LINEAGE_MAX || !fu_state_room(r, n, 4))
        return -EINVAL;
    if (!(t->lineages.v = calloc((size_t)n / per * LINEAGE_STRS, sizeof(char *))))
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = fu_state_u32(r);
        const unsigned char *s = fu_state_take(r, len);
        if (!s || memchr(s, '\0', len) || (i < per && len))
            return -EINVAL;
        char *copy = malloc((size_t)len + 1);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, s, len);
        copy[len] = '\0';
        t->lineages.v[t->lineages.n++] = copy;
        if (per < LINEAGE_STRS && i % per == per - 1 &&
            !(t->lineages.v[t->lineages.n++] = strdup("")))
            return -ENOMEM;
    }
    return 0;
}

#define AGG_FREE (UINT32_MAX - 1) /* owner of an aggregate record on the free list */

static bool bit_test_set(uint64_t *bits, uint32_t i)
{
    bool was = bits[i / 64] >> (i % 64) & 1;
    bits[i / 64] |= 1ull << (i % 64);
    return was;
}

/* In a pass over the index slots at slot i: the node of a slot ahead, and the name of one
 * nearer, are on their way meanwhile (every slot was checked: below nnodes, or empty). */
static void prefetch_ahead(const struct fu_tree *t, size_t i)
{
    if (i + 16 < t->nslots && t->slots[i + 16].id != FU_NID_NONE)
        __builtin_prefetch(fu_tree_node(t, t->slots[i + 16].id));
    if (i + 8 < t->nslots && t->slots[i + 8].id != FU_NID_NONE) {
        uint32_t off = fu_tree_node(t, t->slots[i + 8].id)->name_off;
        __builtin_prefetch(t->names.chunks[off / HEAP_CHUNK] + off % HEAP_CHUNK);
    }
}

/* Everything tree.c relies on, over the loaded arrays. `owner` and `queue` (an entry per
 * aggregate record) and `visited` (a bit per node, zeroed) are scratch. */
static bool check_structure(const struct fu_tree *t, const unsigned char *starts, uint32_t *owner,
                            uint32_t *queue, uint64_t *visited)
{
    /* Each node alone: flags, parent, lineage, name, aggregate record (one per directory). */
    uint32_t live = 0, dirs = 0, pairs = (uint32_t)(t->lineages.n / LINEAGE_STRS);
    for (uint32_t i = 0; i < t->naggs; i++)
        owner[i] = UINT32_MAX;
    if (fu_tree_node(t, FU_NID_ROOT)->flags & FU_N_FREE)
        return false;
    for (fu_nid id = 0; id < t->nnodes; id++) {
        const struct fu_node *n = fu_tree_node(t, id);
        if (n->flags & FU_N_FREE)
            continue;
        live++;
        if ((n->flags & ~LIVE_FLAGS) || n->lineage >= pairs ||
            !is_start(starts, t->names.nchunks, n->name_off))
            return false;
        if (id == FU_NID_ROOT) {
            if (n->parent != FU_NID_NONE || !(n->flags & FU_N_DIR) || n->next != FU_NID_NONE ||
                n->prev != FU_NID_NONE)
                return false;
        } else if (n->parent >= t->nnodes ||
                   (fu_tree_node(t, n->parent)->flags & (FU_N_FREE | FU_N_DIR)) != FU_N_DIR) {
            return false;
        }
        if (n->flags & FU_N_DIR) {
            if (n->agg >= t->naggs || owner[n->agg] != UINT32_MAX)
                return false;
            owner[n->agg] = id;
            dirs++;
        }
    }
    if (live != t->live)
        return false;

    /* The free lists: every free node and every spare aggregate record, each once. */
    uint32_t nfree = 0;
    for (fu_nid id = t->free_head; id != FU_NID_NONE; id = fu_tree_node(t, id)->next) {
        if (id >= t->nnodes || !(fu_tree_node(t, id)->flags & FU_N_FREE) ||
            bit_test_set(visited, id))
            return false;
        nfree++;
    }
    if (nfree != t->nnodes - t->live)
        return false;
    memset(visited, 0, ((size_t)t->nnodes + 63) / 64 * 8);
    uint32_t spare = 0;
    for (uint32_t i = t->agg_free; i != UINT32_MAX; i = (uint32_t)t->aggs[i].files) {
        if (i >= t->naggs || owner[i] != UINT32_MAX)
            return false;
        owner[i] = AGG_FREE;
        spare++;
    }
    if (dirs + spare != t->naggs)
        return false;

    /* From the root down, breadth first: every live node in its parent's sibling list, once,
     * linked both ways, so parent chains end at the root and no list loops. Each directory's
     * counts are those of its children (theirs, for directories), hence of its subtree. */
    uint32_t head = 0, tail = 0, reached = 0;
    queue[tail++] = FU_NID_ROOT;
    bit_test_set(visited, FU_NID_ROOT);
    while (head < tail) {
        fu_nid d = queue[head++];
        const struct fu_agg *g = &t->aggs[fu_tree_node(t, d)->agg];
        uint64_t files = 0, ndirs = 0, bytes = 0, suspects = 0;
        fu_nid prev = FU_NID_NONE;
        for (fu_nid c = g->first_child; c != FU_NID_NONE; c = fu_tree_node(t, c)->next) {
            if (c >= t->nnodes || bit_test_set(visited, c))
                return false;
            const struct fu_node *n = fu_tree_node(t, c);
            if ((n->flags & FU_N_FREE) || n->parent != d || n->prev != prev)
                return false;
            if (n->flags & FU_N_DIR) {
                const struct fu_agg *cg = &t->aggs[n->agg];
                queue[tail++] = c;
                files += cg->files;
                ndirs += cg->dirs + 1;
                bytes += cg->bytes;
                suspects += cg->suspects;
            } else {
                files++;
                bytes += n->size;
                suspects += (n->flags & FU_N_SUSPECT) != 0;
            }
            reached++;
            prev = c;
        }
        if (files != g->files || ndirs != g->dirs || bytes != g->bytes || suspects != g->suspects)
            return false;
        if (g->oldest_dir != FU_NID_NONE &&
            (g->oldest_dir >= t->nnodes ||
             (fu_tree_node(t, g->oldest_dir)->flags & (FU_N_FREE | FU_N_DIR)) != FU_N_DIR))
            return false;
    }
    if (reached != t->live - 1)
        return false;

    /* The (parent, name) index: each live node but the root once, where a lookup finds it
     * (not behind another node of the same parent and name). In slot order, the probes go
     * over slots and nodes just seen: one cache miss a node. */
    memset(visited, 0, ((size_t)t->nnodes + 63) / 64 * 8);
    size_t n = 0;
    for (size_t i = 0; i < t->nslots; i++) {
        fu_nid id = t->slots[i].id;
        if (id == FU_NID_NONE)
            continue;
        if (id >= t->nnodes || id == FU_NID_ROOT || (fu_tree_node(t, id)->flags & FU_N_FREE) ||
            bit_test_set(visited, id))
            return false;
        n++;
    }
    if (n != t->used_slots || n != (size_t)t->live - 1)
        return false;
    /* The tags are not saved: each occupied slot's hash, from its node. */
    for (size_t i = 0; i < t->nslots; i++) {
        prefetch_ahead(t, i);
        if (t->slots[i].id != FU_NID_NONE)
            t->slots[i].tag = tag_of(node_hash(t, t->slots[i].id));
    }
    for (size_t i = 0; i < t->nslots; i++) {
        prefetch_ahead(t, i);
        fu_nid id = t->slots[i].id;
        if (id == FU_NID_NONE)
            continue;
        size_t len;
        const char *name = fu_tree_name(t, id, &len);
        if (fu_tree_child(t, fu_tree_node(t, id)->parent, name, len) != id)
            return false;
    }
    return true;
}

int fu_tree_load(struct fu_tree *t, struct fu_state_rd *r)
{
    memset(t, 0, sizeof(*t));
    t->dc_id = FU_NID_NONE;
    unsigned char *starts = NULL;
    uint32_t *owner = NULL, *queue = NULL;
    uint64_t *visited = NULL;
    int rc = load_arrays(t, r, &starts);
    if (rc == 0) {
        owner = malloc((size_t)t->naggs * sizeof(*owner));
        queue = malloc((size_t)t->naggs * sizeof(*queue));
        visited = calloc(((size_t)t->nnodes + 63) / 64, sizeof(*visited));
        rc = owner && queue && visited ? 0 : -ENOMEM;
    }
    if (rc == 0 && !check_structure(t, starts, owner, queue, visited))
        rc = -EINVAL;
    free(starts);
    free(owner);
    free(visited);
    free(queue);
    if (rc < 0) {
        fu_tree_free(t);
        return rc;
    }
    return 0;
}

void fu_tree_reset(struct fu_tree *t)
{
    for (size_t i = 1; i < t->nchunks; i++)
        free(t->chunks[i]);
    t->nchunks = t->nchunks ? 1 : 0;
    t->nnodes = 0;
    t->free_head = FU_NID_NONE;
    t->live = 0;
    struct fu_names *h = &t->names;
    for (size_t i = 1; i < h->nchunks; i++)
        free(h->chunks[i]);
    h->nchunks = h->nchunks ? 1 : 0;
    h->used = 0;
    h->bytes = 0;
    if (h->slots)
        memset(h->slots, 0xFF, h->nslots * sizeof(*h->slots));
    h->nused = 0;
    t->released_names = 0;
    t->released_nodes = 0;
    if (t->slots)
        memset(t->slots, 0xFF, t->nslots * sizeof(*t->slots));
    t->used_slots = 0;
    t->naggs = 0;
    t->agg_free = UINT32_MAX;
    for (size_t i = LINEAGE_STRS; i < t->lineages.n; i++)
        free(t->lineages.v[i]);
    if (t->lineages.n > LINEAGE_STRS)
        t->lineages.n = LINEAGE_STRS;
    t->dc_id = FU_NID_NONE;
    /* Every array is there, so the root needs no allocation. */
    fu_nid root;
    node_new(t, FU_NID_NONE, "", 0, true, &root);
}
