/* A view's state as bytes and back (see state_io.h). The arrays go out as they are, so node
 * ids, map entry indexes and heap entries (which refer to those by index and seq) survive
 * unchanged; what is not state (a lookup cache, pointers, capacities beyond what an index
 * needs, bytes of free records that nothing reads) is left out, so that writing the state
 * read back gives the same bytes. Loading checks every index before anything addresses
 * memory with it, and every count against the bytes left before allocating for it.
 *
 * Layout, format 2. Integers are little-endian, u8/u16/u32/u64 (i64 two's complement),
 * doubles IEEE-754 binary64 little-endian, nothing aligned or padded.
 *
 *   state    = magic u32 ("FUST"), format u32 (FU_STATE_FORMAT),
 *              section "TREE", section "CONS", section "CLCK", and nothing after
 *   section  = tag u32, length u64, body[length]; the body is read to its exact end
 *
 * TREE (tree.c, fu_tree_dump):
 *   nnodes u32, free_head u32, live u32, released_nodes u32, released_names u64
 *   nnodes node records of 56 bytes, ids 0..nnodes-1 (free records included, as they are;
 *   their next links the free list):
 *     parent u32, name_off u32, next u32, prev u32, agg u32, flags u16, lineage u16,
 *     size u64, mtime f64, ctime f64, updated f64
 *   names:  nchunks u32, bytes u64, per chunk: used u32, the chunk's bytes[used]
 *           (offsets are chunk * 2^20 + position); nslots u64, nused u64, slots u32[nslots]
 *   index:  nslots u64, used u64, slots u32[nslots] (node ids; UINT32_MAX empty; the slots'
 *           hash tags are not saved, the load computes them)
 *   aggs:   naggs u32, agg_free u32, per record: first_child u32, files u64, dirs u64,
 *           bytes u64, suspects u64, newest_mtime f64, oldest_dir_mtime f64, oldest_dir u32
 *           (a spare record's files links the spare ones)
 *   lineages: n u32 (strings, three per lineage: agent id, source uri, pipe id), per
 *           string: len u32, bytes[len]. Format 1 had two per lineage (no pipe id); it is
 *           still read, every pipe then unknown ("")
 *
 * CONS (struct fu_fs but its configuration, tree and clock):
 *   seq u32, tombs pathmap, tomb_heap heap, suspects idmap, suspect_heap heap,
 *   additions idmap, deletions pathmap,
 *   blind_epochs: n u64, per pipe: len u32, pipe_id[len], epoch u64
 *   auditing u8, audit_start f64, audit_finished_at f64, audit_cycles u64, seen_lost u8,
 *   latency_ms f64, nseen u64, seen u32[nseen]
 *   pathmap = cap u32, nents u32, count u32, free_head u32, nslots u64, slots u32[nslots],
 *             nents entries: len u32, then a live entry: seq u32, a f64, b f64, path[len];
 *             a free one has len UINT32_MAX and then its free-list link (seq) u32
 *   idmap   = nslots u64, count u64, ids u32[nslots], then per occupied slot in slot order:
 *             seq u32, a f64, b f64
 *   heap    = n u64, n entries: at f64, id u32, seq u32 (in heap order)
 *
 * CLCK (struct fu_clock, without the bytes of unused records):
 *   ring_len u32, ring_head u32, ring i64[ring_len] (ring[0..ring_len))
 *   nvals u32, per value in use by index: index u32, skew i64, count u32, prev u32, next u32
 *   the free list of values in order, as runs of consecutive indexes: nruns u32,
 *   per run: first u32, length u32
 *   ntable u32, per occupied table slot by slot: slot u32, value u32
 *   max_count u32, mode u32, seeded u8, seed_skew f64 */
#include "fusion/view_fs/state_io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC 0x54535546u     /* "FUST" */
#define SEC_TREE 0x45455254u  /* "TREE" */
#define SEC_CONS 0x534E4F43u  /* "CONS" */
#define SEC_CLOCK 0x4B434C43u /* "CLCK" */
#define FREE_ENT UINT32_MAX   /* a free path map entry */
#define IDENT_BYTES 20u       /* an id map entry after its id: seq, a, b */

_Static_assert(sizeof(struct fu_deadline) == 16 && offsetof(struct fu_deadline, id) == 8 &&
                   offsetof(struct fu_deadline, seq) == 12,
               "heap entries are copied as they lie in memory");
_Static_assert(sizeof(fu_nid) == 4, "seen ids are copied as they lie in memory");

/* ------------------------------------------------------------ writing */

static size_t section_begin(struct fu_buf *b, uint32_t tag)
{
    fu_state_put_u32(b, tag);
    size_t at = b->len;
    fu_state_put_u64(b, 0);
    return at;
}

static void section_end(struct fu_buf *b, size_t at)
{
    uint64_t n = b->len - at - 8;
    if (!b->oom)
        memcpy(b->data + at, &n, 8);
}

static void put_bytes(struct fu_buf *b, const char *s, size_t len)
{
    fu_state_put_u32(b, (uint32_t)len);
    fu_buf_append(b, s, len);
}

static void put_pathmap(struct fu_buf *b, const struct fu_pathmap *m)
{
    fu_state_put_u32(b, m->cap);
    fu_state_put_u32(b, m->nents);
    fu_state_put_u32(b, m->count);
    fu_state_put_u32(b, m->free_head);
    fu_state_put_u64(b, m->nslots);
    fu_buf_append(b, m->slots, m->nslots * sizeof(*m->slots));
    for (uint32_t i = 0; i < m->nents; i++) {
        const struct fu_pathent *e = &m->ents[i];
        if (!e->path) {
            fu_state_put_u32(b, FREE_ENT);
            fu_state_put_u32(b, e->seq);
            continue;
        }
        fu_state_put_u32(b, e->len);
        fu_state_put_u32(b, e->seq);
        fu_state_put_f64(b, e->a);
        fu_state_put_f64(b, e->b);
        fu_buf_append(b, e->path, e->len);
    }
}

/* Empty slots' other fields were never written: only the ids, then the occupied entries. */
static void put_idmap(struct fu_buf *b, const struct fu_idmap *m)
{
    fu_state_put_u64(b, m->nslots);
    fu_state_put_u64(b, m->count);
    unsigned char *p = fu_state_reserve(b, m->nslots * 4);
    for (size_t i = 0; p && i < m->nslots; i++)
        memcpy(p + 4 * i, &m->slots[i].id, 4);
    p = fu_state_reserve(b, m->count * IDENT_BYTES);
    for (size_t i = 0; p && i < m->nslots; i++) {
        const struct fu_ident *e = &m->slots[i];
        if (e->id == FU_SET_NONE)
            continue;
        memcpy(p, &e->seq, 4);
        memcpy(p + 4, &e->a, 8);
        memcpy(p + 12, &e->b, 8);
        p += IDENT_BYTES;
    }
}

static void put_heap(struct fu_buf *b, const struct fu_heap *h)
{
    fu_state_put_u64(b, h->n);
    fu_buf_append(b, h->v, h->n * sizeof(*h->v));
}

static void put_fs(struct fu_buf *b, const struct fu_fs *s)
{
    fu_state_put_u32(b, s->seq);
    put_pathmap(b, &s->tombs);
    put_heap(b, &s->tomb_heap);
    put_idmap(b, &s->suspects);
    put_heap(b, &s->suspect_heap);
    put_idmap(b, &s->additions);
    put_pathmap(b, &s->deletions);
    fu_state_put_u64(b, s->nblind_epochs);
    for (size_t i = 0; i < s->nblind_epochs; i++) {
        put_bytes(b, s->blind_epochs[i].pipe_id, strlen(s->blind_epochs[i].pipe_id));
        fu_state_put_u64(b, s->blind_epochs[i].epoch);
    }
    fu_state_put_u8(b, s->auditing);
    fu_state_put_f64(b, s->audit_start);
    fu_state_put_f64(b, s->audit_finished_at);
    fu_state_put_u64(b, s->audit_cycles);
    fu_state_put_u8(b, s->seen_lost);
    fu_state_put_f64(b, s->latency_ms);
    fu_state_put_u64(b, s->nseen);
    fu_buf_append(b, s->seen, s->nseen * sizeof(*s->seen));
}

static void put_clock(struct fu_buf *b, const struct fu_clock *c)
{
    fu_state_put_u32(b, c->ring_len);
    fu_state_put_u32(b, c->ring_head);
    fu_buf_append(b, c->ring, c->ring_len * sizeof(*c->ring));
    fu_state_put_u32(b, c->nvals);
    for (uint32_t v = 1; v <= FU_CLOCK_WINDOW; v++) {
        const struct fu_clock_val *x = &c->vals[v];
        if (!x->count)
            continue; /* free: its count went to 0 */
        fu_state_put_u32(b, v);
        fu_state_put_u64(b, (uint64_t)x->skew);
        fu_state_put_u32(b, x->count);
        fu_state_put_u32(b, x->prev);
        fu_state_put_u32(b, x->next);
    }
    /* The free list decides which record the next new value takes: its order is state. After
     * fu_clock_init it is one run, 1..FU_CLOCK_WINDOW. */
    size_t at = b->len;
    uint32_t nruns = 0, first = 0, len = 0, steps = 0;
    fu_state_put_u32(b, 0);
    for (uint32_t f = c->free_head; f && steps++ < FU_CLOCK_WINDOW; f = c->vals[f].next) {
        if (len && f == first + len) {
            len++;
            continue;
        }
        if (len) {
            fu_state_put_u32(b, first);
            fu_state_put_u32(b, len);
            nruns++;
        }
        first = f;
        len = 1;
    }
    if (len) {
        fu_state_put_u32(b, first);
        fu_state_put_u32(b, len);
        nruns++;
    }
    if (!b->oom)
        memcpy(b->data + at, &nruns, 4);
    fu_state_put_u32(b, c->nvals);
    for (uint32_t i = 0; i < 4 * FU_CLOCK_WINDOW; i++) {
        if (!c->table[i])
            continue;
        fu_state_put_u32(b, i);
        fu_state_put_u32(b, c->table[i]);
    }
    fu_state_put_u32(b, c->max_count);
    fu_state_put_u32(b, c->mode);
    fu_state_put_u8(b, c->seeded);
    fu_state_put_f64(b, c->seed_skew);
}

int fu_state_write(const struct fu_tree *t, const struct fu_fs *s, struct fu_buf *out)
{
    /* One allocation for the bulk of it: the node records and the indexes. */
    size_t estimate = (size_t)t->nnodes * sizeof(struct fu_node) + t->nslots * 4 + t->names.bytes +
                      t->names.nslots * 4 + (size_t)t->naggs * 64 + s->tombs.nslots * 4 +
                      s->suspects.nslots * 4 + s->nseen * 4 + 4096;
    if (fu_buf_grow(out, estimate) < 0)
        return -ENOMEM;
    fu_state_put_u32(out, MAGIC);
    fu_state_put_u32(out, FU_STATE_FORMAT);
    size_t at = section_begin(out, SEC_TREE);
    fu_tree_dump(t, out);
    section_end(out, at);
    at = section_begin(out, SEC_CONS);
    put_fs(out, s);
    section_end(out, at);
    at = section_begin(out, SEC_CLOCK);
    put_clock(out, s->clock);
    section_end(out, at);
    return out->oom ? -ENOMEM : 0;
}

/* ------------------------------------------------------------ reading */

/* The body of the next section, which must carry `tag`. */
static bool section(struct fu_state_rd *r, uint32_t tag, struct fu_state_rd *body)
{
    uint32_t got = fu_state_u32(r);
    uint64_t len = fu_state_u64(r);
    if (r->bad || got != tag || len > (uint64_t)(r->end - r->p))
        return false;
    *body = (struct fu_state_rd){r->p, r->p + len, false, r->format};
    r->p += len;
    return true;
}

/* Whether a section body was read whole, and no further. */
static bool read_whole(const struct fu_state_rd *body)
{
    return !body->bad && body->p == body->end;
}

static int read_pathmap(struct fu_state_rd *r, struct fu_pathmap *m)
{
    uint32_t cap = fu_state_u32(r), nents = fu_state_u32(r), count = fu_state_u32(r);
    uint32_t free_head = fu_state_u32(r);
    uint64_t nslots = fu_state_u64(r);
    /* The map grows its slots before its entries: cap <= nslots. */
    if (r->bad || (nslots & (nslots - 1)) || cap > nslots || nents > cap ||
        !fu_state_room(r, nslots, 4))
        return -EINVAL;
    if (nslots && !(m->slots = malloc(nslots * sizeof(*m->slots))))
        return -ENOMEM;
    m->nslots = nslots;
    fu_state_get(r, m->slots, nslots * 4);
    if (!fu_state_room(r, nents, 8)) /* a free entry is 8 bytes, a live one more */
        return -EINVAL;
    if (cap && !(m->ents = calloc(cap, sizeof(*m->ents))))
        return -ENOMEM;
    m->cap = cap;
    m->nents = nents; /* zeroed entries: free-safe while filling */
    for (uint32_t i = 0; i < nents; i++) {
        struct fu_pathent *e = &m->ents[i];
        uint32_t len = fu_state_u32(r);
        e->seq = fu_state_u32(r);
        if (len == FREE_ENT)
            continue;
        e->a = fu_state_f64(r);
        e->b = fu_state_f64(r);
        const unsigned char *p = fu_state_take(r, len);
        if (!p)
            return -EINVAL;
        if (!(e->path = malloc((size_t)len + 1)))
            return -ENOMEM;
        memcpy(e->path, p, len);
        e->path[len] = '\0';
        e->len = len;
    }
    m->count = count;
    m->free_head = free_head;
    return r->bad ? -EINVAL : fu_pathmap_restore(m);
}

static int read_idmap(struct fu_state_rd *r, struct fu_idmap *m)
{
    uint64_t nslots = fu_state_u64(r), count = fu_state_u64(r);
    if (r->bad || (nslots & (nslots - 1)) || count > nslots / 2 || !fu_state_room(r, nslots, 4))
        return -EINVAL;
    if (nslots && !(m->slots = malloc(nslots * sizeof(*m->slots))))
        return -ENOMEM;
    m->nslots = nslots;
    const unsigned char *ids = fu_state_take(r, nslots * 4);
    size_t used = 0;
    for (size_t i = 0; i < nslots; i++) {
        uint32_t id;
        memcpy(&id, ids + 4 * i, 4);
        m->slots[i] = (struct fu_ident){.id = id};
        used += id != FU_SET_NONE;
    }
    if (used != count || !fu_state_room(r, count, IDENT_BYTES))
        return -EINVAL;
    m->count = count;
    for (size_t i = 0; i < nslots; i++) {
        struct fu_ident *e = &m->slots[i];
        if (e->id == FU_SET_NONE)
            continue;
        e->seq = fu_state_u32(r);
        e->a = fu_state_f64(r);
        e->b = fu_state_f64(r);
    }
    return r->bad ? -EINVAL : fu_idmap_check(m);
}

/* Entries may be stale (lazy deletion) but always name an index below `bound`. */
static int read_heap(struct fu_state_rd *r, struct fu_heap *h, uint32_t bound)
{
    uint64_t n = fu_state_u64(r);
    if (r->bad || !fu_state_room(r, n, sizeof(*h->v)))
        return -EINVAL;
    if (n && !(h->v = malloc(n * sizeof(*h->v))))
        return -ENOMEM;
    h->n = h->cap = n;
    fu_state_get(r, h->v, n * sizeof(*h->v));
    for (size_t i = 0; i < n; i++)
        if (h->v[i].id >= bound)
            return -EINVAL;
    return 0;
}

/* A string with no NUL in it, copied. */
static int read_string(struct fu_state_rd *r, char **out)
{
    uint32_t len = fu_state_u32(r);
    const unsigned char *p = fu_state_take(r, len);
    if (!p || memchr(p, '\0', len))
        return -EINVAL;
    if (!(*out = malloc((size_t)len + 1)))
        return -ENOMEM;
    memcpy(*out, p, len);
    (*out)[len] = '\0';
    return 0;
}

/* The nodes of an id map: live, carrying `flag`, and all the live nodes that carry it (the
 * tree's release hook keeps the two in step; an id left behind would outlive its node). */
static bool ids_match_flag(const struct fu_idmap *m, const struct fu_tree *t, uint16_t flag)
{
    for (size_t i = 0; i < m->nslots; i++) {
        fu_nid id = m->slots[i].id;
        if (id == FU_SET_NONE)
            continue;
        if (id >= t->nnodes || (fu_tree_node(t, id)->flags & (FU_N_FREE | flag)) != flag)
            return false;
    }
    size_t flagged = 0;
    for (fu_nid id = 0; id < t->nnodes; id++)
        flagged += (fu_tree_node(t, id)->flags & (FU_N_FREE | flag)) == flag;
    return flagged == m->count;
}

static int read_fs(struct fu_state_rd *r, const struct fu_tree *t, struct fu_fs *s)
{
    s->seq = fu_state_u32(r);
    int rc = read_pathmap(r, &s->tombs);
    /* Tombstone heap entries name map entries, maybe freed since: below the map's capacity. */
    if (!rc)
        rc = read_heap(r, &s->tomb_heap, s->tombs.cap);
    if (!rc)
        rc = read_idmap(r, &s->suspects);
    if (!rc)
        rc = read_heap(r, &s->suspect_heap, t->nnodes);
    if (!rc)
        rc = read_idmap(r, &s->additions);
    if (!rc)
        rc = read_pathmap(r, &s->deletions);
    if (rc < 0)
        return rc;
    if (!ids_match_flag(&s->suspects, t, FU_N_SUSPECT) ||
        !ids_match_flag(&s->additions, t, FU_N_BLIND_ADD))
        return -EINVAL;

    uint64_t n = fu_state_u64(r);
    if (r->bad || !fu_state_room(r, n, 12))
        return -EINVAL;
    if (n && !(s->blind_epochs = calloc(n, sizeof(*s->blind_epochs))))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if ((rc = read_string(r, &s->blind_epochs[i].pipe_id)) < 0)
            return rc;
        s->nblind_epochs++;
        s->blind_epochs[i].epoch = fu_state_u64(r);
    }

    uint8_t auditing = fu_state_u8(r);
    s->audit_start = fu_state_f64(r);
    s->audit_finished_at = fu_state_f64(r);
    s->audit_cycles = fu_state_u64(r);
    uint8_t seen_lost = fu_state_u8(r);
    s->latency_ms = fu_state_f64(r);
    n = fu_state_u64(r);
    if (r->bad || auditing > 1 || seen_lost > 1 || !fu_state_room(r, n, sizeof(*s->seen)))
        return -EINVAL;
    s->auditing = auditing;
    s->seen_lost = seen_lost;
    if (n && !(s->seen = malloc(n * sizeof(*s->seen))))
        return -ENOMEM;
    s->nseen = s->seen_cap = n;
    fu_state_get(r, s->seen, n * sizeof(*s->seen));
    /* Stale or repeated ids are fine (the audit checks the flags), beyond the arena not. */
    for (size_t i = 0; i < n; i++)
        if (s->seen[i] >= t->nnodes)
            return -EINVAL;
    return 0;
}

#define CLOCK_SLOTS (sizeof(((struct fu_clock *)0)->table) / sizeof(uint32_t)) /* its table */

/* Marks in the scratch array of read_clock. */
enum { M_FREE = 1, M_TABLE = 2, M_LEVEL = 4 };

static bool read_clock_arrays(struct fu_state_rd *r, struct fu_clock *c, uint8_t *mark)
{
    const uint32_t W = FU_CLOCK_WINDOW;
    c->ring_len = fu_state_u32(r);
    c->ring_head = fu_state_u32(r);
    /* The head moves only once the ring is full. */
    if (r->bad || c->ring_len > W || c->ring_head >= W || (c->ring_len < W && c->ring_head) ||
        !fu_state_room(r, c->ring_len, 8))
        return false;
    fu_state_get(r, c->ring, c->ring_len * 8);

    c->nvals = fu_state_u32(r);
    if (r->bad || c->nvals > W || !fu_state_room(r, c->nvals, 24))
        return false;
    for (uint32_t k = 0, last = 0; k < c->nvals; k++) {
        uint32_t v = fu_state_u32(r);
        struct fu_clock_val x;
        x.skew = (int64_t)fu_state_u64(r);
        x.count = fu_state_u32(r);
        x.prev = fu_state_u32(r);
        x.next = fu_state_u32(r);
        if (v <= last || v > W || !x.count || x.count > c->ring_len || x.prev > W || x.next > W)
            return false;
        c->vals[v] = x;
        last = v;
    }

    /* The free list: every record not in use, once, in the order written. */
    uint32_t nruns = fu_state_u32(r), nfree = 0, *link = &c->free_head;
    if (r->bad || !fu_state_room(r, nruns, 8))
        return false;
    for (uint32_t k = 0; k < nruns; k++) {
        uint32_t first = fu_state_u32(r), len = fu_state_u32(r);
        if (!first || !len || len > W || first > W - len + 1)
            return false;
        for (uint32_t v = first; v < first + len; v++) {
            if (c->vals[v].count || (mark[v] & M_FREE))
                return false;
            mark[v] |= M_FREE;
            *link = v;
            link = &c->vals[v].next;
            nfree++;
        }
    }
    *link = 0;
    if (nfree != W - c->nvals)
        return false;

    uint32_t ntable = fu_state_u32(r);
    if (r->bad || ntable != c->nvals || !fu_state_room(r, ntable, 8))
        return false;
    for (uint32_t k = 0, next_slot = 0; k < ntable; k++) {
        uint32_t slot = fu_state_u32(r), v = fu_state_u32(r);
        if (slot < next_slot || slot >= CLOCK_SLOTS || !v || v > W || !c->vals[v].count ||
            (mark[v] & M_TABLE))
            return false;
        mark[v] |= M_TABLE;
        c->table[slot] = v;
        next_slot = slot + 1;
    }
    c->max_count = fu_state_u32(r);
    c->mode = fu_state_u32(r);
    uint8_t seeded = fu_state_u8(r);
    c->seed_skew = fu_state_f64(r);
    if (r->bad || seeded > 1)
        return false;
    c->seeded = seeded;
    return true;
}

/* The clock's invariants, which its updates rely on to stay in bounds: the values in use
 * count exactly the samples in the ring, each found from its hash; the lists by count hold
 * exactly the values of that count; the mode is a value of the highest count. */
static bool check_clock(struct fu_clock *c, uint8_t *mark, uint32_t *left)
{
    const uint32_t W = FU_CLOCK_WINDOW;
    uint32_t max = 0;
    for (uint32_t v = 1; v <= W; v++) {
        left[v] = c->vals[v].count;
        if (c->vals[v].count > max)
            max = c->vals[v].count;
    }
    for (uint32_t i = 0; i < c->ring_len; i++) {
        uint32_t v = fu_clock_lookup(c, c->ring[i]);
        if (!v || !left[v])
            return false;
        left[v]--;
    }
    for (uint32_t v = 1; v <= W; v++)
        if (left[v])
            return false;

    for (uint32_t v = 1; v <= W; v++) {
        const struct fu_clock_val *x = &c->vals[v];
        if (!x->count || x->prev)
            continue;
        if (c->level_head[x->count])
            return false; /* two lists of one count */
        c->level_head[x->count] = v;
    }
    uint32_t listed = 0;
    for (uint32_t n = 1; n <= max; n++) {
        uint32_t prev = 0;
        for (uint32_t v = c->level_head[n]; v; v = c->vals[v].next) {
            const struct fu_clock_val *x = &c->vals[v];
            if (x->count != n || x->prev != prev || (mark[v] & M_LEVEL))
                return false;
            mark[v] |= M_LEVEL;
            listed++;
            prev = v;
        }
        c->level_tail[n] = prev;
    }
    if (listed != c->nvals || c->max_count != max)
        return false;
    if (!c->nvals)
        return c->mode == 0;
    return c->mode && c->mode <= W && c->vals[c->mode].count == max;
}

static int read_clock(struct fu_state_rd *r, struct fu_clock *c)
{
    uint8_t *mark = calloc(FU_CLOCK_WINDOW + 1, 1);
    uint32_t *left = malloc((FU_CLOCK_WINDOW + 1) * sizeof(*left));
    int rc = -ENOMEM;
    if (mark && left) {
        memset(c, 0, sizeof(*c));
        rc = read_clock_arrays(r, c, mark) && check_clock(c, mark, left) ? 0 : -EINVAL;
    }
    free(mark);
    free(left);
    return rc;
}

/* Reads the whole buffer into nt (built here), ns (zeroed by the caller) and clock; on failure
 * nt holds nothing and ns what the caller frees. */
static int read_state(const void *buf, size_t len, struct fu_tree *nt, struct fu_fs *ns,
                      struct fu_clock *clock)
{
    struct fu_state_rd r = {buf, (const unsigned char *)buf + len, false, 0}, body;
    if (fu_state_u32(&r) != MAGIC)
        return -EINVAL;
    r.format = fu_state_u32(&r);
    if (r.format < 1 || r.format > FU_STATE_FORMAT || !section(&r, SEC_TREE, &body))
        return -EINVAL;
    int rc = fu_tree_load(nt, &body);
    if (rc < 0)
        return rc;
    if (!read_whole(&body))
        rc = -EINVAL;
    if (!rc)
        rc = section(&r, SEC_CONS, &body) ? read_fs(&body, nt, ns) : -EINVAL;
    if (!rc && !read_whole(&body))
        rc = -EINVAL;
    if (!rc)
        rc = section(&r, SEC_CLOCK, &body) ? read_clock(&body, clock) : -EINVAL;
    if (!rc && (!read_whole(&body) || r.p != r.end))
        rc = -EINVAL;
    if (rc < 0)
        fu_tree_free(nt);
    return rc;
}

int fu_state_read(struct fu_tree *t, struct fu_fs *s, const void *buf, size_t len)
{
    struct fu_tree nt;
    struct fu_fs ns = {0};
    struct fu_clock *clock = malloc(sizeof(*clock));
    int rc = clock ? read_state(buf, len, &nt, &ns, clock) : -ENOMEM;
    /* The old consistency state goes whatever happens; s stays attached to t. */
    fu_fs_clear(s, t);
    if (rc < 0) {
        free(clock);
        fu_fs_free(&ns);
        fu_tree_reset(t);
        return rc;
    }
    /* The new tree takes the place of the old; the hook stays as fu_fs set it. */
    void (*hook)(void *, fu_nid, uint16_t) = t->release_hook;
    void *ctx = t->hook_ctx;
    uint16_t mask = t->hook_mask;
    fu_tree_free(t);
    *t = nt;
    t->release_hook = hook;
    t->hook_ctx = ctx;
    t->hook_mask = mask;
    /* s is empty: it takes the loaded state and keeps its tree, clock and configuration. */
    struct fu_fs keep = *s;
    *s = ns;
    s->tree = keep.tree;
    s->clock = keep.clock;
    s->hot = keep.hot;
    s->tomb_ttl = keep.tomb_ttl;
    memcpy(s->clock, clock, sizeof(*clock));
    free(clock);
    return 0;
}
