/* Small indexes, first written for the fs view's consistency state (Fustor v1 §3.4):
 * - fu_pathmap: paths (bytes) with two doubles: tombstones and blind-spot deletions, whose
 *   nodes no longer exist, and the agent's per-file event throttle;
 * - fu_idmap: node ids with two doubles, for suspects and blind-spot additions, whose nodes
 *   exist (the tree tells the view when one is freed);
 * - fu_heap: a min-heap of (time, id, seq) deadlines with lazy deletion: an entry whose seq no
 *   longer matches its map entry is stale and skipped.
 * Entries of a map stay at the same index while they live (the heap refers to them by it).
 * Not thread-safe. */
#ifndef FU_COMMON_SETS_H
#define FU_COMMON_SETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FU_SET_NONE UINT32_MAX

struct fu_pathent {
    char *path; /* NULL when the entry is free */
    uint32_t len;
    uint32_t seq;
    uint64_t hash;
    double a, b;
};

struct fu_pathmap {
    struct fu_pathent *ents;
    uint32_t nents, cap, count;
    uint32_t free_head; /* index + 1 of the first free entry, 0 = none */
    uint32_t *slots;    /* entry index + 1; 0 = empty */
    size_t nslots;
};

uint32_t fu_pathmap_find(const struct fu_pathmap *m, const char *path, size_t len);
/* The entry for path, created (a = b = 0, seq = 0) when absent; FU_SET_NONE on OOM. */
uint32_t fu_pathmap_put(struct fu_pathmap *m, const char *path, size_t len, bool *created);
void fu_pathmap_del(struct fu_pathmap *m, uint32_t idx);
void fu_pathmap_clear(struct fu_pathmap *m);
void fu_pathmap_free(struct fu_pathmap *m);
/* Finishes a map whose fields a snapshot loader filled from bytes (every field but the
 * hashes, which it computes): checks what the map relies on, so that no later call reads out
 * of bounds or probes forever (sizes, the free list once over every free entry, every live
 * entry once in the slots where a lookup finds it). Returns 0 or -EINVAL. */
int fu_pathmap_restore(struct fu_pathmap *m);

struct fu_ident {
    uint32_t id; /* FU_SET_NONE when the slot is empty */
    uint32_t seq;
    double a, b;
};

struct fu_idmap {
    struct fu_ident *slots;
    size_t nslots, count;
};

struct fu_ident *fu_idmap_find(const struct fu_idmap *m, uint32_t id);
/* The entry for id, created zeroed when absent; NULL on OOM. Pointers die at the next put or
 * del. */
struct fu_ident *fu_idmap_put(struct fu_idmap *m, uint32_t id, bool *created);
bool fu_idmap_del(struct fu_idmap *m, uint32_t id);
void fu_idmap_clear(struct fu_idmap *m);
void fu_idmap_free(struct fu_idmap *m);
/* The same check for an id map filled from a snapshot: 0 or -EINVAL. */
int fu_idmap_check(const struct fu_idmap *m);

struct fu_deadline {
    double at;
    uint32_t id, seq;
};

struct fu_heap {
    struct fu_deadline *v;
    size_t n, cap;
};

int fu_heap_push(struct fu_heap *h, double at, uint32_t id, uint32_t seq);
/* The earliest deadline, or NULL. */
static inline const struct fu_deadline *fu_heap_top(const struct fu_heap *h)
{
    return h->n ? &h->v[0] : NULL;
}
void fu_heap_pop(struct fu_heap *h);
void fu_heap_free(struct fu_heap *h);

#endif
