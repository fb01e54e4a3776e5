/* Realtime watching with inotify; see watch_inotify.h.
 *
 * The watched directories form a tree (struct wdir) named by (parent, name) rather than by
 * full path: a rename moves a subtree in O(1), and an event's path is built from the chain.
 * Three indexes point into it: wd -> directory, (parent, name) -> directory, and the LRU, a
 * min-heap of (heat, directory, seq) with lazy deletion (an entry whose seq is not the
 * directory's current one is stale and skipped; the heap is rebuilt when stale entries
 * outnumber live ones). A directory is never colder than a subdirectory (activity touches the
 * ancestors too), so the coldest directory, or a subdirectory of it as cold, is a leaf of the
 * watched tree: evicting it keeps every watched directory's parent watched, which is what
 * lets a rename anywhere in the watched tree be seen. */
#include "agent/source_fs/watch_inotify.h"

#include "agent/source_fs/scan.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/probe.h"
#include "common/sets.h"

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MASK                                                                                       \
    (IN_CREATE | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_DELETE | IN_MOVED_FROM |              \
     IN_MOVED_TO | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)

#define NONE UINT32_MAX
#define DEFAULT_MIN_WINDOW (30 * 86400.0) /* v1's min_monitoring_window_days */
#define YOUNG_WARN_EVERY 60.0             /* seconds between warnings about young evictions */
#define MAX_LOGGED_ERRORS 20              /* per watcher; the rest are only counted */

/* A watched directory. A free slot has wd 0 and chains the free list through `next`. */
struct wdir {
    int wd;
    uint32_t parent;            /* NONE for the root */
    uint32_t child, next, prev; /* its first watched subdirectory; its siblings */
    uint32_t name;              /* its key in `names`; NONE for the root */
    uint32_t seq;               /* of its live LRU entry */
    double heat;                /* when it, or something below it, was last active */
};

struct wdent {
    int wd; /* 0 = empty slot */
    uint32_t dir;
};

struct fu_watch {
    int fd;
    char *root;
    struct fu_strv exclude;
    double throttle;
    bool cross; /* watch other filesystems mounted below the root too */
    /* the watched tree and its indexes (see the top); n counts the watched directories */
    struct wdir *dirs;
    uint32_t ndirs, dcap; /* slots used so far, allocated */
    uint32_t dfree;       /* the first free slot, NONE: none */
    uint32_t rootdir;     /* NONE when the root has no watch */
    struct wdent *wds;    /* open addressing by wd, load <= 1/2 */
    size_t cap, n;
    struct fu_pathmap names; /* key: parent (4 bytes) + name; a: the directory */
    struct fu_heap lru;
    uint32_t gen;       /* the last seq handed out */
    struct fu_buf path; /* dir_path's result */
    /* the limit */
    size_t limit;      /* SIZE_MAX until one is known */
    bool kernel_limit; /* the kernel's (ENOSPC) rather than max_watches */
    double min_window;
    double clock; /* whole seconds of wall time, never going back: the heat of "now" */
    size_t failed, unwatched, warned;
    bool told_limit;
    size_t young;      /* directories active within min_window evicted since the last warning */
    double young_told; /* when that warning went out; 0: never */
    struct fu_pathmap modified; /* path -> a: when its last IN_MODIFY row went out */
    /* a rename's first half, waiting for its IN_MOVED_TO */
    uint32_t cookie;
    char *moved_from;
    bool moved_dir;
    /* while a new directory is walked */
    fu_watch_emit emit;
    void *ctx;
    int rc;
    size_t emitted;
};

static void tick(struct fu_watch *w)
{
    double now = floor(fu_wall_clock());
    if (now > w->clock)
        w->clock = now;
}

/* ------------------------------------------------------------ wd -> directory */

static struct wdent *wd_slot(struct wdent *v, size_t cap, int wd)
{
    for (size_t i = (size_t)wd * 2654435761u & (cap - 1);; i = (i + 1) & (cap - 1))
        if (!v[i].wd || v[i].wd == wd)
            return &v[i];
}

static uint32_t wd_dir(const struct fu_watch *w, int wd)
{
    if (!w->cap)
        return NONE;
    struct wdent *e = wd_slot(w->wds, w->cap, wd);
    return e->wd ? e->dir : NONE;
}

static int wd_set(struct fu_watch *w, int wd, uint32_t dir)
{
    if ((w->n + 1) * 2 > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 1024;
        struct wdent *v = calloc(cap, sizeof(*v));
        if (!v)
            return -ENOMEM;
        for (size_t i = 0; i < w->cap; i++)
            if (w->wds[i].wd)
                *wd_slot(v, cap, w->wds[i].wd) = w->wds[i];
        free(w->wds);
        w->wds = v;
        w->cap = cap;
    }
    struct wdent *e = wd_slot(w->wds, w->cap, wd);
    if (!e->wd) {
        e->wd = wd;
        w->n++;
    }
    e->dir = dir;
    return 0;
}

static void wd_drop(struct fu_watch *w, int wd)
{
    if (!w->cap)
        return;
    struct wdent *e = wd_slot(w->wds, w->cap, wd);
    if (!e->wd)
        return;
    /* backward-shift deletion */
    size_t i = (size_t)(e - w->wds), mask = w->cap - 1;
    for (size_t j = i;;) {
        j = (j + 1) & mask;
        if (!w->wds[j].wd)
            break;
        size_t h = (size_t)w->wds[j].wd * 2654435761u & mask;
        bool stays = fu_probe_stays(i, j, h);
        if (!stays) {
            w->wds[i] = w->wds[j];
            i = j;
        }
    }
    w->wds[i].wd = 0;
    w->n--;
}

/* ------------------------------------------------------------ the watched tree */

static size_t name_key(char *key, uint32_t parent, const char *name, size_t len)
{
    memcpy(key, &parent, sizeof(parent));
    memcpy(key + sizeof(parent), name, len);
    return sizeof(parent) + len;
}

static uint32_t dir_find(const struct fu_watch *w, uint32_t parent, const char *name, size_t len)
{
    char key[sizeof(uint32_t) + NAME_MAX];
    if (len > NAME_MAX)
        return NONE;
    uint32_t i = fu_pathmap_find(&w->names, key, name_key(key, parent, name, len));
    return i == FU_SET_NONE ? NONE : (uint32_t)w->names.ents[i].a;
}

/* The watched directory at the first `len` bytes of a relative path, or NONE. */
static uint32_t dir_lookup(const struct fu_watch *w, const char *path, size_t len)
{
    uint32_t d = w->rootdir;
    for (size_t i = 0; d != NONE && i < len;) {
        if (path[i] == '/') {
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        d = dir_find(w, d, path + i, j - i);
        i = j;
    }
    return d;
}

/* The relative path of a watched directory, valid until the next call; NULL on OOM. */
static const char *dir_path(struct fu_watch *w, uint32_t d)
{
    size_t len = 0;
    for (uint32_t x = d; w->dirs[x].parent != NONE; x = w->dirs[x].parent)
        len += 1 + w->names.ents[w->dirs[x].name].len - sizeof(uint32_t);
    fu_buf_reset(&w->path);
    if (fu_buf_grow(&w->path, len ? len : 1) < 0)
        return NULL;
    char *p = w->path.data;
    if (!len) {
        p[len++] = '/';
    } else {
        size_t at = len;
        for (uint32_t x = d; w->dirs[x].parent != NONE; x = w->dirs[x].parent) {
            const struct fu_pathent *e = &w->names.ents[w->dirs[x].name];
            size_t nl = e->len - sizeof(uint32_t);
            at -= nl;
            memcpy(p + at, e->path + sizeof(uint32_t), nl);
            p[--at] = '/';
        }
    }
    p[len] = '\0';
    w->path.len = len;
    return p;
}

/* Gives `d` its place below `parent` (NONE: it is the root) under `name`; the name must be
 * free. On failure, `d` is placed nowhere. */
static int dir_link(struct fu_watch *w, uint32_t d, uint32_t parent, const char *name, size_t len)
{
    struct wdir *x = &w->dirs[d];
    x->parent = x->next = x->prev = x->name = NONE;
    if (parent == NONE)
        return 0;
    char key[sizeof(uint32_t) + NAME_MAX];
    if (len > NAME_MAX)
        return -ENAMETOOLONG;
    bool created;
    uint32_t i = fu_pathmap_put(&w->names, key, name_key(key, parent, name, len), &created);
    if (i == FU_SET_NONE)
        return -ENOMEM;
    if (!created)
        return -EEXIST;
    w->names.ents[i].a = d;
    x->name = i;
    x->parent = parent;
    x->next = w->dirs[parent].child;
    if (x->next != NONE)
        w->dirs[x->next].prev = d;
    w->dirs[parent].child = d;
    return 0;
}

static void dir_unlink(struct fu_watch *w, uint32_t d)
{
    struct wdir *x = &w->dirs[d];
    if (x->name != NONE)
        fu_pathmap_del(&w->names, x->name);
    if (x->prev != NONE)
        w->dirs[x->prev].next = x->next;
    else if (x->parent != NONE)
        w->dirs[x->parent].child = x->next;
    if (x->next != NONE)
        w->dirs[x->next].prev = x->prev;
    x->parent = x->next = x->prev = x->name = NONE;
}

static void lru_rebuild(struct fu_watch *w)
{
    fu_heap_free(&w->lru);
    for (uint32_t d = 0; d < w->ndirs; d++)
        if (w->dirs[d].wd)
            fu_heap_push(&w->lru, w->dirs[d].heat, d, w->dirs[d].seq);
}

static void heat_set(struct fu_watch *w, uint32_t d, double heat)
{
    if (w->lru.n >= 2 * w->n + 1024)
        lru_rebuild(w); /* mostly stale entries: amortised over the pushes that made them */
    w->dirs[d].heat = heat;
    w->dirs[d].seq = ++w->gen;
    /* Out of memory, it only loses its place in the LRU: it keeps its watch. */
    fu_heap_push(&w->lru, heat, d, w->dirs[d].seq);
}

/* Activity in `d` at `t`: it and its ancestors are at least that hot. The walk up stops at the
 * first one that is, as those above it are too; repeated events cost O(1). */
static void touch(struct fu_watch *w, uint32_t d, double t)
{
    for (; d != NONE && w->dirs[d].heat < t; d = w->dirs[d].parent)
        heat_set(w, d, t);
}

/* A new watched directory (placed below `parent`, or the root), or NONE on OOM. */
static uint32_t dir_new(struct fu_watch *w, int wd, uint32_t parent, const char *name, size_t len,
                        double heat)
{
    uint32_t d = w->dfree;
    if (d != NONE) {
        w->dfree = w->dirs[d].next;
    } else {
        if (w->ndirs == w->dcap) {
            uint32_t cap = w->dcap ? w->dcap * 2 : 256;
            struct wdir *v = cap > w->dcap ? realloc(w->dirs, cap * sizeof(*v)) : NULL;
            if (!v)
                return NONE;
            w->dirs = v;
            w->dcap = cap;
        }
        d = w->ndirs++;
    }
    w->dirs[d] = (struct wdir){.wd = wd, .child = NONE};
    if (dir_link(w, d, parent, name, len) < 0 || wd_set(w, wd, d) < 0) {
        dir_unlink(w, d);
        w->dirs[d].wd = 0;
        w->dirs[d].next = w->dfree;
        w->dfree = d;
        return NONE;
    }
    if (parent == NONE)
        w->rootdir = d;
    heat_set(w, d, heat);
    return d;
}

/* Forgets a directory without subdirectories (its watch is gone or removed by the caller). */
static void dir_free(struct fu_watch *w, uint32_t d)
{
    wd_drop(w, w->dirs[d].wd);
    dir_unlink(w, d);
    if (d == w->rootdir)
        w->rootdir = NONE;
    w->dirs[d].wd = 0; /* its LRU entries are stale from now on */
    w->dirs[d].next = w->dfree;
    w->dfree = d;
}

/* Forgets a directory and everything watched below it, deepest first, removing their watches
 * (and its own, if `rm_top`). An IN_IGNORED for a removed watch then finds no directory. */
static void drop_subtree(struct fu_watch *w, uint32_t top, bool rm_top)
{
    for (uint32_t d = top;;) {
        while (w->dirs[d].child != NONE)
            d = w->dirs[d].child;
        uint32_t up = w->dirs[d].parent;
        if (d != top || rm_top)
            inotify_rm_watch(w->fd, w->dirs[d].wd);
        dir_free(w, d);
        if (d == top)
            return;
        d = up;
    }
}

static bool is_ancestor(const struct fu_watch *w, uint32_t a, uint32_t d)
{
    for (; d != NONE; d = w->dirs[d].parent)
        if (d == a)
            return true;
    return false;
}

/* A directory renamed inside the tree: its watches, and those below it, follow. */
static void dir_rename(struct fu_watch *w, const char *from, uint32_t to_parent, const char *name)
{
    uint32_t m = dir_lookup(w, from, strlen(from));
    if (m == NONE || m == w->rootdir)
        return; /* it had no watch: the walk of its new place decides */
    size_t len = strlen(name);
    uint32_t x = dir_find(w, to_parent, name, len);
    if (x == m)
        return;
    if (x != NONE)
        drop_subtree(w, x, true); /* the empty directory it replaced */
    if (!w->dirs[m].wd || is_ancestor(w, m, to_parent)) {
        if (w->dirs[m].wd)
            drop_subtree(w, m, true); /* a tree out of step: start over from the walk */
        return;
    }
    dir_unlink(w, m);
    if (dir_link(w, m, to_parent, name, len) < 0)
        drop_subtree(w, m, true);
}

/* ------------------------------------------------------------ the limit */

static const char *limit_hint(const struct fu_watch *w)
{
    return w->kernel_limit
               ? "sysctl fs.inotify.max_user_watches=N, e.g. in /etc/sysctl.d/"
               : "max_watches (and, past the kernel's limit, sysctl fs.inotify.max_user_watches)";
}

/* Once per watcher: what the limit costs and which setting to raise. */
static void tell_limit(struct fu_watch *w)
{
    if (w->told_limit)
        return;
    w->told_limit = true;
    if (w->kernel_limit)
        fu_warn("watch %s: the kernel's inotify watch limit is reached after %zu directories; "
                "the most recently active keep their watches, changes in unwatched directories "
                "(%zu so far) wait for the audit: raise it (%s)",
                w->root, w->n, w->unwatched, limit_hint(w));
    else
        fu_warn("watch %s: the watch limit (max_watches %zu) is reached; the most recently "
                "active directories keep their watches, changes in unwatched directories (%zu "
                "so far) wait for the audit: raise %s",
                w->root, w->limit, w->unwatched, limit_hint(w));
}

static void evict(struct fu_watch *w, uint32_t d)
{
    double age = w->clock - w->dirs[d].heat;
    if (age < w->min_window) {
        w->young++;
        if (!w->young_told || w->clock - w->young_told >= YOUNG_WARN_EVERY) {
            const char *p = dir_path(w, d);
            fu_warn("watch %s: the watch limit (%zu) is too small for this tree: %zu "
                    "directories active within the last %g days lost their watch since the "
                    "last warning (%s, active %.0f s ago); changes in them wait for the audit: "
                    "raise %s",
                    w->root, w->limit, w->young, w->min_window / 86400, p ? p : "?", age,
                    limit_hint(w));
            w->young = 0;
            w->young_told = w->clock;
        }
    }
    inotify_rm_watch(w->fd, w->dirs[d].wd);
    dir_free(w, d);
    w->unwatched++;
}

/* Frees a watch for a new directory of heat `t` by evicting the coldest watched directory, if
 * one is colder (never the root). */
static bool make_room(struct fu_watch *w, double t)
{
    for (const struct fu_deadline *top; (top = fu_heap_top(&w->lru));) {
        uint32_t d = top->id;
        if (!w->dirs[d].wd || w->dirs[d].seq != top->seq) {
            fu_heap_pop(&w->lru);
            continue;
        }
        /* Its watched subdirectories are exactly as cold (no colder than the coldest, no
         * warmer than their parent): the deepest goes, so no watched directory loses its
         * parent's watch. */
        while (w->dirs[d].child != NONE)
            d = w->dirs[d].child;
        if (d == w->rootdir || !(w->dirs[d].heat < t))
            return false;
        evict(w, d);
        return true;
    }
    return false;
}

/* ------------------------------------------------------------ watching */

/* inotify_add_watch alone: the wd or -errno. Touches nothing of w but its descriptor (the
 * initial walk's workers call it concurrently). */
static int raw_watch(const struct fu_watch *w, const char *rel)
{
    struct fu_buf full = FU_BUF_INIT;
    fu_buf_puts(&full, w->root);
    if (rel[1])
        fu_buf_puts(&full, rel);
    int wd = full.oom ? -1 : inotify_add_watch(w->fd, full.data, MASK);
    int err = full.oom ? ENOMEM : errno;
    fu_buf_free(&full);
    return wd > 0 ? wd : -err;
}

/* After a failed inotify_add_watch: the limit, or the log. Returns -err. */
static int raw_failed(struct fu_watch *w, const char *rel, int err, size_t watched)
{
    if (err == ENOSPC) {
        w->kernel_limit = true;
        if (watched < w->limit)
            w->limit = watched;
    } else if (err != ENOENT && w->warned++ < MAX_LOGGED_ERRORS) {
        fu_warn("watch %s: cannot watch %s: %s", w->root, rel, strerror(err));
    }
    return -err;
}

/* inotify_add_watch on a relative path: the wd, or -errno (the first errors are logged).
 * ENOSPC is the kernel's limit: ours becomes the `watched` directories that fit. */
static int add_raw(struct fu_watch *w, const char *rel, size_t watched)
{
    int wd = raw_watch(w, rel);
    return wd > 0 ? wd : raw_failed(w, rel, -wd, watched);
}

/* A directory found at run time (created, moved in, or below one): watched, with the
 * coldest directory's watch when at the limit, unless none is colder than now. */
static void add_watch(struct fu_watch *w, const char *rel)
{
    const char *slash = strrchr(rel, '/');
    if (!slash || !slash[1])
        return; /* the root: watched from the start */
    const char *name = slash + 1;
    size_t len = strlen(name), plen = (size_t)(slash - rel);
    double t = w->clock;
    uint32_t p = dir_lookup(w, rel, plen);
    if (p == NONE) { /* below an unwatched directory: a rename there would go unseen */
        w->unwatched++;
        return;
    }
    touch(w, p, t); /* first: the victim must not be one of its ancestors */
    uint32_t d = dir_find(w, p, name, len);
    if (d == NONE && w->n >= w->limit) {
        bool room = make_room(w, t);
        w->unwatched += !room;
        tell_limit(w);
        if (!room)
            return;
    }
    int wd = add_raw(w, rel, w->n);
    if (wd == -ENOSPC && d == NONE && make_room(w, t)) {
        tell_limit(w);
        wd = add_raw(w, rel, w->n);
    }
    uint32_t e = wd > 0 ? wd_dir(w, wd) : NONE;
    if (e != NONE && e == d) {
        touch(w, d, t); /* watched already: renamed inside the tree, or listed twice */
        return;
    }
    /* The tree is out of step with the disk: another directory had this name (it was
     * replaced, or is gone), or this one is known under another name (moved without both
     * halves seen). Both go, with what is below them (the walk this call is part of watches
     * it again); the watch of the second is its own, so it is taken anew. */
    if (d != NONE)
        drop_subtree(w, d, true);
    if (e != NONE) {
        if (wd_dir(w, wd) == e)
            drop_subtree(w, e, true);
        p = dir_lookup(w, rel, plen);
        wd = p == NONE ? 0 : add_raw(w, rel, w->n);
    }
    if (wd <= 0) {
        if (wd == 0 || wd == -ENOSPC) {
            w->unwatched++;
            tell_limit(w);
        } else {
            w->failed++;
        }
        return;
    }
    if (dir_new(w, wd, p, name, len, t) == NONE) {
        inotify_rm_watch(w->fd, wd);
        w->failed++;
    }
}

/* ------------------------------------------------------------ opening */

/* A directory found by the initial walk. */
struct rec {
    size_t off;       /* of its path in the walk's arena */
    const char *path; /* once the walk is over */
    uint32_t len;
    uint32_t parent; /* its parent's record, NONE for the root */
    uint32_t depth;
    uint32_t dir; /* its watched directory, NONE: none */
    int wd;       /* > 0: watched; 0: not (yet); < 0: -errno of the attempt */
    bool keep;
    double heat; /* its mtime, then the newest mtime at or below it (v1's recursive mtime) */
};

struct initial {
    struct fu_watch *w;
    const struct fu_watch_opts *o;
    pthread_mutex_t mu; /* the walk's workers call in concurrently; it guards the rest */
    struct rec *v;
    size_t n, cap;
    struct fu_buf paths; /* NUL-terminated, found by offset (the arena moves as it grows) */
    size_t watched;
    size_t trying; /* watches being added outside the lock */
};

static int collect_dirs(void *ctx, const struct fu_scan_entry *v, size_t n)
{
    struct initial *in = ctx;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (!v[i].is_dir)
            continue;
        /* Watched as soon as found while the limit allows, as when there is none (nothing
         * created meanwhile is missed); past it, the ranking after the walk decides. The
         * kernel call is made outside the lock: the workers only wait for each other in it. */
        pthread_mutex_lock(&in->mu);
        bool try = in->watched + in->trying < in->w->limit;
        in->trying += try;
        pthread_mutex_unlock(&in->mu);
        int wd = try ? raw_watch(in->w, v[i].path) : 0;
        pthread_mutex_lock(&in->mu);
        in->trying -= try;
        if (wd < 0)
            wd = raw_failed(in->w, v[i].path, -wd, in->watched);
        in->watched += wd > 0;
        if (in->n == in->cap) {
            size_t cap = in->cap ? in->cap * 2 : 1024;
            struct rec *r = cap < NONE ? realloc(in->v, cap * sizeof(*r)) : NULL;
            if (!r) {
                if (wd > 0)
                    inotify_rm_watch(in->w->fd, wd);
                pthread_mutex_unlock(&in->mu);
                return -ENOMEM;
            }
            in->v = r;
            in->cap = cap;
        }
        struct rec *r = &in->v[in->n++];
        *r = (struct rec){.off = in->paths.len, .len = (uint32_t)v[i].path_len, .wd = wd};
        r->heat = v[i].mtime;
        fu_buf_append(&in->paths, v[i].path, v[i].path_len + 1);
        if (in->paths.oom)
            rc = -ENOMEM;
        pthread_mutex_unlock(&in->mu);
        if (wd > 0 && in->o->watched)
            in->o->watched(in->o->progress_ctx, v[i].path);
    }
    return rc;
}

/* '/' sorts before any other byte, so each directory is followed by everything below it
 * before its next sibling: "/a", "/a/b", "/a-b" (a pre-order). */
static int rec_preorder(const void *a, const void *b)
{
    const unsigned char *x = (const unsigned char *)((const struct rec *)a)->path;
    const unsigned char *y = (const unsigned char *)((const struct rec *)b)->path;
    for (;; x++, y++) {
        int cx = *x == '/' ? 1 : *x ? *x + 1 : 0;
        int cy = *y == '/' ? 1 : *y ? *y + 1 : 0;
        if (cx != cy)
            return cx - cy;
        if (!cx)
            return 0;
    }
}

static bool rec_below(const struct rec *a, const struct rec *b)
{
    if (a->len == 1)
        return b->len > 1;
    return b->len > a->len && b->path[a->len] == '/' && !memcmp(a->path, b->path, a->len);
}

static bool rec_child(const struct rec *a, const struct rec *b)
{
    return rec_below(a, b) && !strchr(b->path + (a->len == 1 ? 1 : a->len + 1), '/');
}

struct rank {
    double heat;
    uint32_t depth, rec;
};

/* Hottest first; on a tie, shallower first: a parent always comes before its children. */
static int rank_cmp(const void *a, const void *b)
{
    const struct rank *x = a, *y = b;
    if (x->heat != y->heat)
        return x->heat > y->heat ? -1 : 1;
    if (x->depth != y->depth)
        return x->depth < y->depth ? -1 : 1;
    return x->rec < y->rec ? -1 : x->rec > y->rec;
}

/* Past the limit, v1's pre-scan: the hottest directories keep or get the watches (parents
 * first), the others give theirs back first so that the kernel has room for the new ones. */
static int choose(struct fu_watch *w, struct rec *r, size_t n)
{
    struct rank *k = malloc(n * sizeof(*k));
    if (!k)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        k[i] = (struct rank){r[i].heat, r[i].depth, (uint32_t)i};
    qsort(k, n, sizeof(*k), rank_cmp);
    size_t kept = 0;
    for (size_t j = 0; j < n; j++) {
        struct rec *x = &r[k[j].rec];
        bool placed =
            x->parent == NONE ? x->len == 1 : r[x->parent].keep && rec_child(&r[x->parent], x);
        x->keep = placed && (x->wd >= 0 || x->wd == -ENOSPC) && kept < w->limit;
        kept += x->keep;
    }
    size_t watched = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].wd > 0 && !r[i].keep) {
            inotify_rm_watch(w->fd, r[i].wd);
            r[i].wd = 0;
        }
        watched += r[i].wd > 0;
    }
    for (size_t j = 0; j < n; j++) {
        struct rec *x = &r[k[j].rec];
        if (!x->keep || x->wd > 0 || (x->parent != NONE && r[x->parent].wd <= 0) ||
            watched >= w->limit) /* lowered by an ENOSPC */
            continue;
        x->wd = add_raw(w, x->path, watched);
        watched += x->wd > 0;
    }
    free(k);
    return 0;
}

/* After the walk: the heats, the choice when not every directory could be watched, and the
 * watched tree. */
static int settle(struct fu_watch *w, struct initial *in)
{
    struct rec *r = in->v;
    size_t n = in->n;
    for (size_t i = 0; i < n; i++)
        r[i].path = in->paths.data + r[i].off;
    qsort(r, n, sizeof(*r), rec_preorder);
    bool all = true;
    for (size_t i = 0; i < n; i++) {
        uint32_t p = i ? (uint32_t)i - 1 : NONE;
        while (p != NONE && !rec_below(&r[p], &r[i]))
            p = r[p].parent;
        r[i].parent = p;
        r[i].depth = p == NONE ? 0 : r[p].depth + 1;
        r[i].dir = NONE;
        if (r[i].heat > w->clock)
            r[i].heat = w->clock; /* ahead of our clock (another host's, drifting): now */
        all = all && r[i].wd != 0 && r[i].wd != -ENOSPC;
    }
    for (size_t i = n; i-- > 1;) {
        uint32_t p = r[i].parent;
        if (p != NONE && r[p].heat < r[i].heat)
            r[p].heat = r[i].heat;
    }
    if (!all && choose(w, r, n) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        struct rec *x = &r[i];
        uint32_t p = x->parent == NONE ? NONE : r[x->parent].dir;
        bool placed = x->parent == NONE ? x->len == 1 : p != NONE && rec_child(&r[x->parent], x);
        if (x->wd > 0 && wd_dir(w, x->wd) != NONE) {
            x->wd = 0; /* the same directory under two names (moved during the walk) */
        } else if (x->wd > 0) {
            const char *name = strrchr(x->path, '/') + 1;
            if (placed)
                x->dir = dir_new(w, x->wd, p, name, strlen(name), x->heat);
            if (x->dir != NONE)
                continue;
            inotify_rm_watch(w->fd, x->wd);
            x->wd = placed ? -ENOMEM : 0;
        }
        /* below a directory that could not be watched (not for want of watches): the same */
        if (x->parent != NONE && r[x->parent].wd < 0 && r[x->parent].wd != -ENOSPC)
            x->wd = r[x->parent].wd;
        if (x->wd < 0 && x->wd != -ENOSPC)
            w->failed++;
        else
            w->unwatched++;
    }
    if (w->unwatched && (w->kernel_limit || w->n >= w->limit))
        tell_limit(w);
    return 0;
}

int fu_watch_open_opts(struct fu_watch **out, const struct fu_watch_opts *o)
{
    struct fu_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->dfree = w->rootdir = NONE;
    w->limit = o->max_watches ? o->max_watches : SIZE_MAX;
    w->min_window = o->min_window_sec;
    tick(w);
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    /* No descriptor of the root is kept open: it would delay the root's IN_DELETE_SELF and
     * IN_IGNORED until it is closed, and keep an unmounted filesystem busy. */
    int rootfd = open(o->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd >= 0)
        close(rootfd);
    w->root = strdup(o->root);
    w->throttle = o->throttle_sec;
    w->cross = o->cross_filesystems;
    for (size_t i = 0; o->exclude && i < o->exclude->n; i++)
        fu_strv_push(&w->exclude, o->exclude->v[i]);
    if (w->fd < 0 || rootfd < 0 || !w->root) {
        int err = errno ? -errno : -ENOMEM;
        fu_watch_close(w);
        return err;
    }
    struct fu_scan_opts so = {.root = o->root,
                              .exclude = &w->exclude,
                              .recursive = true,
                              .dirs_only = true,
                              .cross_filesystems = w->cross};
    struct initial in = {.w = w, .o = o, .paths = FU_BUF_INIT};
    pthread_mutex_init(&in.mu, NULL);
    if (o->walking)
        o->walking(o->progress_ctx);
    int rc = fu_scan(&so, collect_dirs, &in, NULL);
    pthread_mutex_destroy(&in.mu);
    if (rc >= 0)
        rc = settle(w, &in);
    free(in.v);
    fu_buf_free(&in.paths);
    if (rc < 0) {
        fu_watch_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

int fu_watch_open(struct fu_watch **out, const char *root, const struct fu_strv *exclude,
                  double throttle_sec)
{
    struct fu_watch_opts o = {.root = root,
                              .exclude = exclude,
                              .throttle_sec = throttle_sec,
                              .min_window_sec = DEFAULT_MIN_WINDOW};
    return fu_watch_open_opts(out, &o);
}

void fu_watch_close(struct fu_watch *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    free(w->dirs);
    free(w->wds);
    fu_pathmap_free(&w->names);
    fu_heap_free(&w->lru);
    fu_buf_free(&w->path);
    free(w->root);
    free(w->moved_from);
    fu_strv_free(&w->exclude);
    fu_pathmap_free(&w->modified);
    free(w);
}

int fu_watch_fd(const struct fu_watch *w)
{
    return w->fd;
}

size_t fu_watch_count(const struct fu_watch *w)
{
    return w->n;
}

size_t fu_watch_failed(const struct fu_watch *w)
{
    return w->failed + w->unwatched;
}

size_t fu_watch_unwatched(const struct fu_watch *w)
{
    return w->unwatched;
}

/* ------------------------------------------------------------ events */

static int emit_row(struct fu_watch *w, const struct fu_watch_row *r)
{
    if (w->rc < 0)
        return w->rc;
    int rc = w->emit(w->ctx, r);
    if (rc < 0)
        w->rc = rc;
    else
        w->emitted++;
    return rc;
}

static int emit_delete(struct fu_watch *w, const char *path, bool is_dir)
{
    struct fu_watch_row r = {
        .op = FU_WATCH_DELETE, .is_dir = is_dir, .path = path, .path_len = strlen(path)};
    return emit_row(w, &r);
}

/* An upsert with the entry's current attributes; nothing if it is gone already or is not a
 * file or directory. */
static int emit_upsert(struct fu_watch *w, const char *path, bool atomic)
{
    struct stat st;
    struct fu_buf full = FU_BUF_INIT;
    fu_buf_puts(&full, w->root);
    if (path[1])
        fu_buf_puts(&full, path);
    int rc = full.oom ? -1 : fstatat(AT_FDCWD, full.data, &st, AT_SYMLINK_NOFOLLOW);
    fu_buf_free(&full);
    if (rc < 0)
        return 0; /* gone in between: its delete event follows */
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
        return 0;
    struct fu_watch_row r = {
        .op = FU_WATCH_UPSERT,
        .atomic = atomic,
        .is_dir = S_ISDIR(st.st_mode),
        .path = path,
        .path_len = strlen(path),
        .size = (uint64_t)st.st_size,
        .mtime = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9,
        .ctime = (double)st.st_ctim.tv_sec + st.st_ctim.tv_nsec / 1e9,
    };
    return emit_row(w, &r);
}

/* A new directory: watch it and what is below it first, then report it all (one worker and
 * one entry per chunk, so each directory is watched before it is listed). */
static int new_dir_entries(void *ctx, const struct fu_scan_entry *v, size_t n)
{
    struct fu_watch *w = ctx;
    for (size_t i = 0; i < n; i++) {
        if (v[i].is_dir)
            add_watch(w, v[i].path);
        struct fu_watch_row r = fu_watch_row_of(&v[i]);
        if (emit_row(w, &r) < 0)
            return w->rc;
    }
    return 0;
}

static int new_dir(struct fu_watch *w, const char *path)
{
    struct fu_scan_opts o = {.root = w->root,
                             .subpath = path,
                             .exclude = &w->exclude,
                             .recursive = true,
                             .cross_filesystems = w->cross,
                             .workers = 1,
                             .chunk = 1};
    int rc = fu_scan(&o, new_dir_entries, w, NULL);
    return rc == -ENOENT || rc == -ENOTDIR ? 0 : rc;
}

static int flush_moved_from(struct fu_watch *w)
{
    if (!w->moved_from)
        return 0;
    /* moved out of the tree: gone, and the watches in it are given back */
    if (w->moved_dir) {
        uint32_t m = dir_lookup(w, w->moved_from, strlen(w->moved_from));
        if (m != NONE && m != w->rootdir)
            drop_subtree(w, m, true);
    }
    int rc = emit_delete(w, w->moved_from, w->moved_dir);
    free(w->moved_from);
    w->moved_from = NULL;
    return rc;
}

static int on_event(struct fu_watch *w, const struct inotify_event *ev, double now)
{
    uint32_t d = wd_dir(w, ev->wd);
    if (ev->mask & IN_IGNORED) {
        if (d == NONE)
            return 0; /* a watch we removed (evicted, moved out, replaced) */
        /* Gone (deleted, or its filesystem unmounted), and so is what is still watched below
         * it. The root itself: nothing below can be watched any more; the caller must open
         * the watcher again (and rescan). */
        bool root = d == w->rootdir;
        drop_subtree(w, d, false);
        return root ? -ESTALE : 0;
    }
    if (d != NONE && !ev->len && d == w->rootdir &&
        (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)))
        return -ESTALE; /* the root itself went away (its IN_IGNORED waits for our fds) */
    if (d == NONE || !ev->len)
        return 0; /* events on a watched directory itself: its parent reports them */
    const char *dir = dir_path(w, d);
    if (!dir)
        return -ENOMEM;
    struct fu_buf b = FU_BUF_INIT;
    fu_buf_puts(&b, dir);
    if (dir[1])
        fu_buf_putc(&b, '/');
    fu_buf_puts(&b, ev->name);
    if (b.oom) {
        fu_buf_free(&b);
        return -ENOMEM;
    }
    const char *path = b.data;
    bool is_dir = ev->mask & IN_ISDIR;
    int rc = 0;
    if (fu_scan_excluded(&w->exclude, ev->name, path))
        goto out;
    touch(w, d, w->clock);
    if (!(ev->mask & IN_MOVED_TO) || ev->cookie != w->cookie)
        rc = flush_moved_from(w);
    if (rc < 0)
        goto out;
    if (ev->mask & IN_MOVED_FROM) {
        w->moved_from = fu_buf_detach(&b);
        w->moved_dir = is_dir;
        w->cookie = ev->cookie;
        return 0;
    }
    if (ev->mask & IN_MOVED_TO) {
        if (w->moved_from) { /* a rename inside the tree */
            rc = emit_delete(w, w->moved_from, w->moved_dir);
            if (is_dir)
                dir_rename(w, w->moved_from, d, ev->name);
            free(w->moved_from);
            w->moved_from = NULL;
        }
        if (rc >= 0)
            rc = is_dir ? new_dir(w, path) : emit_upsert(w, path, true);
    } else if (ev->mask & IN_CREATE) {
        rc = is_dir ? new_dir(w, path) : emit_upsert(w, path, true);
    } else if (ev->mask & (IN_CLOSE_WRITE | IN_ATTRIB)) {
        uint32_t i = fu_pathmap_find(&w->modified, path, b.len);
        if (i != FU_SET_NONE)
            fu_pathmap_del(&w->modified, i); /* the next write starts a new throttle period */
        rc = emit_upsert(w, path, true);
    } else if (ev->mask & IN_MODIFY) {
        bool created;
        uint32_t i = fu_pathmap_put(&w->modified, path, b.len, &created);
        if (i == FU_SET_NONE || created || now - w->modified.ents[i].a >= w->throttle) {
            if (i != FU_SET_NONE)
                w->modified.ents[i].a = now;
            rc = emit_upsert(w, path, false);
        }
    } else if (ev->mask & IN_DELETE) {
        uint32_t i = fu_pathmap_find(&w->modified, path, b.len);
        if (i != FU_SET_NONE)
            fu_pathmap_del(&w->modified, i);
        rc = emit_delete(w, path, is_dir);
    }
out:
    fu_buf_free(&b);
    return rc;
}

int fu_watch_read(struct fu_watch *w, double now, fu_watch_emit emit, void *ctx)
{
    char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
    w->emit = emit;
    w->ctx = ctx;
    w->rc = 0;
    w->emitted = 0;
    tick(w);
    bool overflow = false;
    for (;;) {
        ssize_t got = read(w->fd, buf, sizeof(buf));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break; /* EAGAIN: all read */
        for (char *p = buf; p < buf + got;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            p += sizeof(*ev) + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                overflow = true;
                continue;
            }
            int rc = on_event(w, ev, now);
            if (rc < 0 && !w->rc)
                w->rc = rc;
            if (w->rc < 0)
                return w->rc;
        }
    }
    int rc = flush_moved_from(w); /* no IN_MOVED_TO followed: moved out */
    if (rc < 0)
        return rc;
    if (overflow) {
        fu_warn("watch %s: the kernel's event queue overflowed (raise "
                "fs.inotify.max_queued_events): events were lost, a rescan follows",
                w->root);
        return -EOVERFLOW;
    }
    return (int)(w->emitted > INT_MAX ? INT_MAX : w->emitted);
}
