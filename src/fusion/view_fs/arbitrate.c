/* Consistency arbitration; see arbitrate.h. The rules follow Fustor v1 §3.5-§3.9 row by row;
 * where this file departs from v1 the comment says so. */
#include "fusion/view_fs/arbitrate.h"

#include "fusion/view_fs/query.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ suspects and blind spots */

static void suspect_set(struct fu_fs *s, fu_nid id, double expiry, double mtime)
{
    bool created;
    struct fu_ident *e = fu_idmap_put(&s->suspects, id, &created);
    if (!e)
        return; /* out of memory: the flag alone would have no deadline */
    e->a = expiry;
    e->b = mtime;
    e->seq = ++s->seq;
    if (fu_heap_push(&s->suspect_heap, expiry, id, e->seq) < 0) {
        /* out of memory: no deadline, so not a suspect at all (never one stuck forever) */
        fu_idmap_del(&s->suspects, id);
        fu_tree_set_flags(s->tree, id, 0, FU_N_SUSPECT);
        return;
    }
    fu_tree_set_flags(s->tree, id, FU_N_SUSPECT, 0);
}

static void suspect_clear(struct fu_fs *s, fu_nid id)
{
    fu_idmap_del(&s->suspects, id);
    fu_tree_set_flags(s->tree, id, 0, FU_N_SUSPECT);
}

static void addition_set(struct fu_fs *s, fu_nid id)
{
    bool created;
    if (fu_idmap_put(&s->additions, id, &created))
        fu_tree_set_flags(s->tree, id, FU_N_BLIND_ADD, 0);
}

static void addition_clear(struct fu_fs *s, fu_nid id)
{
    fu_idmap_del(&s->additions, id);
    fu_tree_set_flags(s->tree, id, 0, FU_N_BLIND_ADD);
}

static void deletion_forget(struct fu_fs *s, const char *path, size_t len)
{
    uint32_t i = fu_pathmap_find(&s->deletions, path, len);
    if (i != FU_SET_NONE)
        fu_pathmap_del(&s->deletions, i);
}

static void deletion_add(struct fu_fs *s, const char *path, size_t len)
{
    bool created;
    fu_pathmap_put(&s->deletions, path, len, &created);
}

/* The tree frees a node that is a suspect or an addition: forget it (v1's delete_node pops
 * both for the whole subtree). */
static void on_release(void *ctx, fu_nid id, uint16_t flags)
{
    struct fu_fs *s = ctx;
    if (flags & FU_N_SUSPECT)
        fu_idmap_del(&s->suspects, id);
    if (flags & FU_N_BLIND_ADD)
        fu_idmap_del(&s->additions, id);
}

/* Works on tree `t`, which tells it when it frees a suspect or an addition. */
static void attach(struct fu_fs *s, struct fu_tree *t)
{
    s->tree = t;
    t->release_hook = on_release;
    t->hook_ctx = s;
    t->hook_mask = FU_N_SUSPECT | FU_N_BLIND_ADD;
}

/* ------------------------------------------------------------ tombstones */

static void tomb_put(struct fu_fs *s, const char *path, size_t len, double logical, double now)
{
    bool created;
    uint32_t i = fu_pathmap_put(&s->tombs, path, len, &created);
    if (i == FU_SET_NONE)
        return;
    struct fu_pathent *e = &s->tombs.ents[i];
    e->a = logical;
    e->b = now;
    e->seq = ++s->seq;
    if (fu_heap_push(&s->tomb_heap, now, i, e->seq) < 0)
        fu_pathmap_del(&s->tombs, i);
}

/* Tombstones whose physical time is older than now - ttl go (v1 keeps p_ts >= cutoff). */
static bool tomb_purge(struct fu_fs *s, double now)
{
    bool any = false;
    double cutoff = now - s->tomb_ttl;
    const struct fu_deadline *d;
    while ((d = fu_heap_top(&s->tomb_heap)) && d->at < cutoff) {
        uint32_t i = d->id, seq = d->seq;
        fu_heap_pop(&s->tomb_heap);
        if (i < s->tombs.nents && s->tombs.ents[i].path && s->tombs.ents[i].seq == seq) {
            fu_pathmap_del(&s->tombs, i);
            any = true;
        }
    }
    return any;
}

/* ------------------------------------------------------------ life cycle */

int fu_fs_init(struct fu_fs *s, struct fu_tree *t, double hot_file_threshold, double tombstone_ttl)
{
    memset(s, 0, sizeof(*s));
    s->clock = malloc(sizeof(*s->clock));
    if (!s->clock)
        return -ENOMEM;
    fu_clock_init(s->clock);
    s->hot = hot_file_threshold;
    s->tomb_ttl = tombstone_ttl;
    attach(s, t);
    return 0;
}

void fu_fs_free(struct fu_fs *s)
{
    if (s->tree) {
        s->tree->hook_mask = 0;
        s->tree->release_hook = NULL;
    }
    free(s->clock);
    fu_pathmap_free(&s->tombs);
    fu_heap_free(&s->tomb_heap);
    fu_idmap_free(&s->suspects);
    fu_heap_free(&s->suspect_heap);
    fu_idmap_free(&s->additions);
    fu_pathmap_free(&s->deletions);
    for (size_t i = 0; i < s->nblind_epochs; i++)
        free(s->blind_epochs[i].pipe_id);
    free(s->blind_epochs);
    free(s->seen);
    memset(s, 0, sizeof(*s));
}

void fu_fs_clear(struct fu_fs *s, struct fu_tree *t)
{
    struct fu_clock *clock = s->clock;
    double hot = s->hot, ttl = s->tomb_ttl;
    s->tree = NULL; /* the old tree is gone or going: do not touch its hook */
    s->clock = NULL;
    fu_fs_free(s);
    s->clock = clock;
    fu_clock_init(clock);
    s->hot = hot;
    s->tomb_ttl = ttl;
    attach(s, t);
}

double fu_fs_logical_now(const struct fu_fs *s, double now)
{
    return fu_clock_watermark(s->clock, now);
}

/* ------------------------------------------------------------ rows */

static void mark_seen(struct fu_fs *s, fu_nid id)
{
    if (fu_tree_node(s->tree, id)->flags & FU_N_AUDIT_SEEN)
        return;
    if (s->nseen == s->seen_cap) {
        size_t cap = s->seen_cap ? s->seen_cap * 2 : 1024;
        fu_nid *v = realloc(s->seen, cap * sizeof(*v));
        if (!v) {
            s->seen_lost = true; /* this audit deletes nothing: it could not remember */
            return;
        }
        s->seen = v;
        s->seen_cap = cap;
    }
    s->seen[s->nseen++] = id;
    fu_tree_set_flags(s->tree, id, FU_N_AUDIT_SEEN, 0);
}

static void apply_delete(struct fu_fs *s, const struct fu_row *r, const char *path, double now,
                         double watermark)
{
    size_t len = r->path_len;
    if (r->src == FU_SRC_REALTIME) {
        fu_tree_delete(s->tree, path, len);
        tomb_put(s, path, len, watermark, now);
        deletion_forget(s, path, len);
        return;
    }
    /* Compensation deletes (sources do not send them today; v1 supports them). */
    if (fu_pathmap_find(&s->tombs, path, len) != FU_SET_NONE)
        return;
    fu_nid id = fu_tree_lookup(s->tree, path, len);
    if (id != FU_NID_NONE && r->has_mtime && fu_tree_node(s->tree, id)->mtime > r->mtime)
        return;
    fu_tree_delete(s->tree, path, len);
    deletion_add(s, path, len);
}

/* Whether an audit row for an absent node is older than the parent directory in memory. */
static bool stale_listing(const struct fu_fs *s, const struct fu_row *r, const char *path)
{
    size_t plen = r->path_len;
    while (plen > 0 && path[plen - 1] != '/')
        plen--;
    if (plen > 1)
        plen--; /* drop the separator, but keep "/" for the root */
    fu_nid p = fu_tree_lookup(s->tree, path, plen);
    if (p == FU_NID_NONE)
        return false;
    const struct fu_node *pn = fu_tree_node(s->tree, p);
    return (pn->flags & FU_N_DIR) && pn->mtime > r->parent_mtime;
}

/* Marks every ancestor of `id` (the root aside) confirmed at `now`: a realtime event inside
 * a directory proves the directory exists, so an audit running meanwhile must not delete it
 * (v1 left parents created on the way at 0). */
static void confirm_ancestors(struct fu_fs *s, fu_nid id, double now)
{
    for (fu_nid a = fu_tree_node(s->tree, id)->parent; a != FU_NID_ROOT && a != FU_NID_NONE;
         a = fu_tree_node(s->tree, a)->parent) {
        struct fu_node *n = fu_tree_node(s->tree, a);
        if (n->updated >= now)
            break;
        n->updated = now;
    }
}

static void apply_upsert(struct fu_fs *s, const struct fu_row *r, const char *path, double now,
                         double watermark, uint16_t lineage, bool skipped)
{
    size_t len = r->path_len;
    bool realtime = r->src == FU_SRC_REALTIME, snapshot = r->src == FU_SRC_SNAPSHOT;
    double mtime = r->mtime;

    /* 1. Tombstones: a deleted path comes back only with a newer logical mtime. */
    uint32_t tomb = fu_pathmap_find(&s->tombs, path, len);
    if (tomb != FU_SET_NONE) {
        if (!(mtime > s->tombs.ents[tomb].a + FU_FS_TOMB_EPSILON))
            return; /* a zombie */
        fu_pathmap_del(&s->tombs, tomb);
    }

    fu_nid old = fu_tree_lookup(s->tree, path, len);
    const struct fu_node *on = old != FU_NID_NONE ? fu_tree_node(s->tree, old) : NULL;
    if (!realtime) {
        /* 2. Scans never overwrite what memory holds as new or newer. */
        if (on && !skipped && on->mtime >= mtime)
            return;
        /* 3. Parent-mtime check: the listing is older than the directory we know. */
        if (r->src == FU_SRC_AUDIT && !on && r->has_parent && stale_listing(s, r, path))
            return;
    }
    double old_mtime = on ? on->mtime : 0, old_updated = on ? on->updated : 0;

    /* 4. Upsert. Only realtime confirms (last_updated_at); scans keep the old stamp. */
    struct fu_attr a = {
        .size = r->size,
        .mtime = mtime,
        .ctime = r->ctime,
        .updated = realtime ? now : old_updated,
        .lineage = lineage,
    };
    fu_nid id;
    if (fu_tree_upsert_known(s->tree, path, len, r->is_dir, old, &a, &id) < 0)
        return;

    /* 5. Suspects and blind spots, by the authority of the source. */
    if (realtime) {
        if (r->atomic)
            suspect_clear(s, id);
        else
            suspect_set(s, id, now + s->hot, mtime);
        deletion_forget(s, path, len);
        addition_clear(s, id);
        fu_tree_set_flags(s->tree, id, 0, FU_N_AGENT_MISSING);
        confirm_ancestors(s, id, now);
        return;
    }
    double age = watermark - mtime;
    bool changed = !on || fabs(old_mtime - mtime) > FU_FS_EPSILON;
    if (snapshot) {
        fu_tree_set_flags(s->tree, id, 0, FU_N_AGENT_MISSING);
        addition_clear(s, id);
    } else if (changed) { /* audit or on-demand discovery: a blind spot */
        addition_set(s, id);
        fu_tree_set_flags(s->tree, id, FU_N_AGENT_MISSING, 0);
    }
    if (changed && age < s->hot) {
        if (!fu_idmap_find(&s->suspects, id)) {
            /* Remaining life, capped so a future mtime is still checked in time. */
            double life = fmin(s->hot, s->hot - age);
            suspect_set(s, id, now + fmax(0.0, life), mtime);
        }
    } else if (age >= s->hot) {
        suspect_clear(s, id);
    }
}

void fu_fs_apply(struct fu_fs *s, const struct fu_row *r, const char *path, double now,
                 uint16_t lineage)
{
    if (r->src == FU_SRC_REALTIME && r->has_mtime)
        fu_clock_sample(s->clock, now, r->mtime);
    double watermark = fu_clock_watermark(s->clock, now);
    double lag = r->has_mtime ? (watermark - r->mtime) * 1000.0 : 0;
    s->latency_ms = lag > 0 ? lag : 0;
    if (r->src == FU_SRC_AUDIT && !s->auditing) { /* the first audit row starts one (v1) */
        s->auditing = true;
        s->audit_start = now;
    }
    if (r->src == FU_SRC_AUDIT && r->op != FU_ROW_DELETE)
        deletion_forget(s, path, r->path_len); /* the audit sees it again */
    if (r->op == FU_ROW_DELETE) {
        apply_delete(s, r, path, now, watermark);
        return;
    }
    /* Only an audit says whether it listed a directory's files (v1 let any directory row
     * reset the flag: a touch of a directory during an audit made the audit delete its
     * children). */
    bool skipped = r->src == FU_SRC_AUDIT && r->is_dir && r->audit_skipped;
    apply_upsert(s, r, path, now, watermark, lineage, skipped);
    if (r->src == FU_SRC_AUDIT && s->auditing) {
        fu_nid id = fu_tree_lookup(s->tree, path, r->path_len);
        if (id == FU_NID_NONE)
            return;
        /* What this audit reported, even when the row changed nothing else. */
        if (r->is_dir && (fu_tree_node(s->tree, id)->flags & FU_N_DIR))
            fu_tree_set_flags(s->tree, id, skipped ? FU_N_AUDIT_SKIPPED : 0,
                              skipped ? 0 : FU_N_AUDIT_SKIPPED);
        mark_seen(s, id);
    }
}

/* ------------------------------------------------------------ audits */

static void seen_clear(struct fu_fs *s)
{
    for (size_t i = 0; i < s->nseen; i++) {
        fu_nid id = s->seen[i];
        if (id < s->tree->nnodes && !(fu_tree_node(s->tree, id)->flags & FU_N_FREE))
            fu_tree_set_flags(s->tree, id, 0, FU_N_AUDIT_SEEN);
    }
    s->nseen = 0;
}

static void blind_reset(struct fu_fs *s)
{
    for (size_t i = 0; i < s->additions.nslots; i++) {
        uint32_t id = s->additions.slots[i].id;
        if (id != FU_SET_NONE)
            fu_tree_set_flags(s->tree, id, 0, FU_N_BLIND_ADD);
    }
    fu_idmap_clear(&s->additions);
    fu_pathmap_clear(&s->deletions);
}

/* Records (pipe, epoch); true when the pipe's leader changed since its last audit. */
static bool new_leader_audits(struct fu_fs *s, const char *pipe_id, uint64_t epoch)
{
    if (!pipe_id)
        return false;
    for (size_t i = 0; i < s->nblind_epochs; i++) {
        if (strcmp(s->blind_epochs[i].pipe_id, pipe_id))
            continue;
        if (s->blind_epochs[i].epoch == epoch)
            return false;
        s->blind_epochs[i].epoch = epoch;
        return true;
    }
    struct fu_fs_pipe_epoch *v =
        realloc(s->blind_epochs, (s->nblind_epochs + 1) * sizeof(*s->blind_epochs));
    char *id = strdup(pipe_id);
    if (!v || !id) {
        free(id);
        if (v)
            s->blind_epochs = v;
        return false;
    }
    s->blind_epochs = v;
    v[s->nblind_epochs++] = (struct fu_fs_pipe_epoch){id, epoch};
    return true;
}

bool fu_fs_audit_start(struct fu_fs *s, double now, bool explicit_, const char *pipe_id,
                       uint64_t epoch)
{
    bool reset = new_leader_audits(s, pipe_id, epoch);
    if (reset)
        blind_reset(s);
    if (!explicit_ && s->auditing && !reset)
        return false;
    bool late = explicit_ && s->auditing && now - s->audit_start < FU_FS_LATE_START && s->nseen;
    if (reset || (explicit_ && !late)) {
        /* A new leader's audit starts afresh: never the end of a deposed leader's. */
        seen_clear(s);
        s->seen_lost = false;
    }
    s->auditing = true;
    s->audit_start = now;
    return reset;
}

static int cmp_nid(const void *a, const void *b)
{
    fu_nid x = *(const fu_nid *)a, y = *(const fu_nid *)b;
    return (x > y) - (x < y);
}

size_t fu_fs_audit_end(struct fu_fs *s, double now)
{
    return fu_fs_audit_end_pipe(s, now, NULL);
}

/* Whether node n belongs to pipe `pipe_id`'s storage, as far as the view knows. */
static bool owned_by(const struct fu_tree *t, const struct fu_node *n, const char *pipe_id)
{
    if (!pipe_id || !*pipe_id)
        return true;
    const char *owner = fu_tree_lineage_pipe(t, n->lineage);
    return !*owner || !strcmp(owner, pipe_id);
}

size_t fu_fs_audit_end_pipe(struct fu_fs *s, double now, const char *pipe_id)
{
    if (!s->auditing)
        return 0; /* a repeated end is harmless */
    tomb_purge(s, now);

    /* Pass 1: what to delete, with its path (recorded as a blind-spot deletion even when an
     * earlier deletion of this pass already took it, as v1 does: the result does not depend
     * on the order). */
    struct fu_tree *t = s->tree;
    if (s->seen_lost)
        s->nseen = 0; /* out of memory during the audit: delete nothing rather than too much */
    if (s->nseen)
        qsort(s->seen, s->nseen, sizeof(*s->seen), cmp_nid);
    fu_nid *doomed = NULL;
    size_t *offs = NULL, ndoomed = 0, cap = 0;
    struct fu_buf path = FU_BUF_INIT, paths = FU_BUF_INIT;
    fu_nid prev = FU_NID_NONE;
    for (size_t i = 0; i < s->nseen; i++) {
        fu_nid dir = s->seen[i];
        if (dir == prev)
            continue;
        prev = dir;
        const struct fu_node *dn = fu_tree_node(t, dir);
        if ((dn->flags & (FU_N_FREE | FU_N_AUDIT_SEEN | FU_N_DIR | FU_N_AUDIT_SKIPPED)) !=
            (FU_N_AUDIT_SEEN | FU_N_DIR))
            continue; /* not a fully listed directory reported by this audit */
        for (fu_nid c = fu_tree_first_child(t, dir); c != FU_NID_NONE;
             c = fu_tree_node(t, c)->next) {
            const struct fu_node *cn = fu_tree_node(t, c);
            if (cn->flags & FU_N_AUDIT_SEEN)
                continue;
            if (!owned_by(t, cn, pipe_id))
                continue; /* another storage's entry in an aggregated view */
            if (cn->updated > s->audit_start)
                continue; /* stale-evidence protection: realtime touched it since */
            fu_tree_path(t, c, &path);
            if (fu_pathmap_find(&s->tombs, path.data, path.len) != FU_SET_NONE)
                continue;
            if (ndoomed == cap) {
                cap = cap ? cap * 2 : 64;
                fu_nid *v = realloc(doomed, cap * sizeof(*v));
                size_t *o = v ? realloc(offs, cap * sizeof(*o)) : NULL;
                if (v)
                    doomed = v;
                if (!o)
                    goto delete; /* out of memory: delete what was found so far */
                offs = o;
            }
            doomed[ndoomed] = c;
            offs[ndoomed++] = paths.len;
            fu_buf_append(&paths, path.data, path.len + 1);
        }
    }
    delete : seen_clear(s);
    size_t deleted = 0;
    for (size_t i = 0; i < ndoomed && !paths.oom; i++) {
        fu_nid id = doomed[i];
        const char *p = paths.data + offs[i];
        deletion_add(s, p, strlen(p));
        /* Nothing is allocated while deleting, so a node freed with an earlier subtree
         * still reads as free here. */
        const struct fu_node *n = fu_tree_node(t, id);
        if (n->flags & FU_N_FREE)
            continue;
        deleted += (n->flags & FU_N_DIR)
                       ? 1 + (size_t)(fu_tree_agg(t, id)->files + fu_tree_agg(t, id)->dirs)
                       : 1;
        fu_tree_remove(t, id);
    }
    free(doomed);
    free(offs);
    fu_buf_free(&path);
    fu_buf_free(&paths);
    s->audit_finished_at = now;
    s->audit_cycles++;
    s->auditing = false;
    s->audit_start = 0;
    s->seen_lost = false;
    return deleted;
}

/* ------------------------------------------------------------ timers */

bool fu_fs_tick_due(const struct fu_fs *s, double now)
{
    const struct fu_deadline *d = fu_heap_top(&s->suspect_heap);
    if (d && d->at <= now)
        return true;
    d = fu_heap_top(&s->tomb_heap);
    return d && d->at < now - s->tomb_ttl;
}

bool fu_fs_tick(struct fu_fs *s, double now)
{
    bool any = tomb_purge(s, now);
    const struct fu_deadline *d;
    while ((d = fu_heap_top(&s->suspect_heap)) && d->at <= now) {
        fu_nid id = d->id;
        uint32_t seq = d->seq;
        fu_heap_pop(&s->suspect_heap);
        struct fu_ident *e = fu_idmap_find(&s->suspects, id);
        if (!e || e->seq != seq)
            continue; /* renewed or cleared since */
        any = true;
        double mtime = fu_tree_node(s->tree, id)->mtime;
        if (fabs(mtime - e->b) > FU_FS_EPSILON)
            suspect_set(s, id, now + s->hot, mtime); /* still changing: another period */
        else
            suspect_clear(s, id); /* stable for a whole period */
    }
    return any;
}

/* ------------------------------------------------------------ sentinel */

bool fu_fs_sentinel(struct fu_fs *s, const char *path, size_t len, double mtime, bool has_size,
                    uint64_t size, bool missing, double now)
{
    fu_nid id = fu_tree_lookup(s->tree, path, len);
    if (id == FU_NID_NONE || !fu_idmap_find(&s->suspects, id))
        return false;
    const struct fu_node *n = fu_tree_node(s->tree, id);
    if (missing) {
        suspect_set(s, id, now + s->hot, n->mtime);
        return true;
    }
    bool calibrated;
    double skew = fu_clock_skew(s->clock, &calibrated);
    if (!calibrated)
        skew = 0; /* v1's get_skew(): the mode, or 0 */
    bool raw = fabs(n->mtime - mtime) < FU_FS_EPSILON;
    bool skewed = fabs(n->mtime - (mtime + skew)) < FU_FS_EPSILON;
    if (skewed && !raw)
        mtime = n->mtime; /* an agent whose clock is off by the skew: the same mtime */
    bool stable = (raw || skewed) && (!has_size || n->size == size);
    double age = fu_clock_watermark(s->clock, now) - mtime;
    if (stable) {
        if (age >= s->hot)
            suspect_clear(s, id); /* stable and cold */
        return true;              /* stable but hot: keep it until its deadline */
    }
    struct fu_attr a = {
        .size = has_size ? size : n->size,
        .mtime = mtime,
        .ctime = n->ctime,
        .updated = n->updated,
        .lineage = n->lineage,
    };
    fu_nid out;
    if (fu_tree_upsert(s->tree, path, len, (n->flags & FU_N_DIR) != 0, &a, &out) == 0)
        suspect_set(s, out, now + s->hot, mtime);
    return true;
}

/* ------------------------------------------------------------ queries */

struct named {
    const char *path;
    size_t len;
    fu_nid id;
    double at;
};

static int cmp_named(const void *a, const void *b)
{
    const struct named *x = a, *y = b;
    return fu_bytes_cmp(x->path, x->len, y->path, y->len);
}

/* The paths of the nodes of `m` (files only when `files`), sorted; paths live in `store`. */
static struct named *named_nodes(const struct fu_fs *s, const struct fu_idmap *m, bool files,
                                 struct fu_buf *store, size_t *n)
{
    struct named *v = malloc((m->count ? m->count : 1) * sizeof(*v));
    size_t *offs = malloc((m->count ? m->count : 1) * sizeof(*offs));
    struct fu_buf one = FU_BUF_INIT;
    *n = 0;
    if (!v || !offs) {
        free(v);
        free(offs);
        return NULL;
    }
    for (size_t i = 0; i < m->nslots; i++) {
        const struct fu_ident *e = &m->slots[i];
        if (e->id == FU_SET_NONE || (files && (fu_tree_node(s->tree, e->id)->flags & FU_N_DIR)))
            continue;
        fu_tree_path(s->tree, e->id, &one);
        offs[*n] = store->len;
        fu_buf_append(store, one.data, one.len + 1);
        v[*n] = (struct named){NULL, one.len, e->id, e->a};
        (*n)++;
    }
    fu_buf_free(&one);
    for (size_t i = 0; i < *n; i++)
        v[i].path = store->data + offs[i];
    free(offs);
    if (store->oom) {
        free(v);
        return NULL;
    }
    qsort(v, *n, sizeof(*v), cmp_named);
    return v;
}

int fu_fs_write_suspects(const struct fu_fs *s, struct fu_jw *w)
{
    struct fu_buf store = FU_BUF_INIT;
    size_t n;
    struct named *v = named_nodes(s, &s->suspects, false, &store, &n);
    if (!v) {
        fu_buf_free(&store);
        return -ENOMEM;
    }
    fu_jw_arr_begin(w);
    for (size_t i = 0; i < n; i++) {
        fu_jw_obj_begin(w);
        fu_jw_ckey(w, "path");
        fu_jw_str(w, v[i].path, v[i].len);
        fu_jw_ckey(w, "suspect_until");
        fu_jw_double(w, v[i].at);
        fu_jw_obj_end(w);
    }
    fu_jw_arr_end(w);
    free(v);
    fu_buf_free(&store);
    return 0;
}

int fu_fs_write_suspect_paths(const struct fu_fs *s, struct fu_jw *w, size_t *count)
{
    struct fu_buf store = FU_BUF_INIT;
    size_t n;
    struct named *v = named_nodes(s, &s->suspects, true, &store, &n);
    if (!v) {
        fu_buf_free(&store);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        fu_jw_str(w, v[i].path, v[i].len);
    *count += n;
    free(v);
    fu_buf_free(&store);
    return 0;
}

static int cmp_ent(const void *a, const void *b)
{
    const struct fu_pathent *x = *(const struct fu_pathent *const *)a;
    const struct fu_pathent *y = *(const struct fu_pathent *const *)b;
    return fu_bytes_cmp(x->path, x->len, y->path, y->len);
}

int fu_fs_write_blind_spots(const struct fu_fs *s, struct fu_jw *w)
{
    struct fu_buf store = FU_BUF_INIT, scratch = FU_BUF_INIT;
    size_t n;
    struct named *v = named_nodes(s, &s->additions, false, &store, &n);
    const struct fu_pathent **d = malloc((s->deletions.count + 1) * sizeof(*d));
    if (!v || !d) {
        free(v);
        free(d);
        fu_buf_free(&store);
        return -ENOMEM;
    }
    size_t nd = 0;
    for (uint32_t i = 0; i < s->deletions.nents; i++)
        if (s->deletions.ents[i].path)
            d[nd++] = &s->deletions.ents[i];
    qsort(d, nd, sizeof(*d), cmp_ent);
    fu_jw_obj_begin(w);
    fu_jw_ckey(w, "additions_count");
    fu_jw_uint(w, n);
    fu_jw_ckey(w, "additions");
    fu_jw_arr_begin(w);
    for (size_t i = 0; i < n; i++) {
        fu_query_node_begin(s->tree, v[i].id, false, &scratch, w);
        fu_jw_obj_end(w);
    }
    fu_jw_arr_end(w);
    fu_jw_ckey(w, "deletion_count");
    fu_jw_uint(w, nd);
    fu_jw_ckey(w, "deletions");
    fu_jw_arr_begin(w);
    for (size_t i = 0; i < nd; i++)
        fu_jw_str(w, d[i]->path, d[i]->len);
    fu_jw_arr_end(w);
    fu_jw_obj_end(w);
    free(v);
    free(d);
    fu_buf_free(&store);
    fu_buf_free(&scratch);
    return 0;
}
