/* Realtime watching with inotify; see watch_inotify.h. */
#include "agent/source_fs/watch_inotify.h"

#include "agent/source_fs/scan.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/probe.h"
#include "common/sets.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define MASK                                                                                       \
    (IN_CREATE | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_DELETE | IN_MOVED_FROM |              \
     IN_MOVED_TO | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)

struct wdent {
    int wd; /* 0 = empty slot */
    char *path;
};

struct fu_watch {
    int fd;
    char *root;
    struct fu_strv exclude;
    double throttle;
    struct wdent *wds; /* open addressing by wd, load <= 1/2 */
    size_t cap, n;
    size_t failed;
    bool told_limit;
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

/* ------------------------------------------------------------ wd -> path */

static struct wdent *wd_slot(struct wdent *v, size_t cap, int wd)
{
    for (size_t i = (size_t)wd * 2654435761u & (cap - 1);; i = (i + 1) & (cap - 1))
        if (!v[i].wd || v[i].wd == wd)
            return &v[i];
}

static const char *wd_path(const struct fu_watch *w, int wd)
{
    if (!w->cap)
        return NULL;
    struct wdent *e = wd_slot(w->wds, w->cap, wd);
    return e->wd ? e->path : NULL;
}

static int wd_set(struct fu_watch *w, int wd, const char *path)
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
    char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    struct wdent *e = wd_slot(w->wds, w->cap, wd);
    if (e->wd) {
        free(e->path);
    } else {
        e->wd = wd;
        w->n++;
    }
    e->path = p;
    return 0;
}

static void wd_drop(struct fu_watch *w, int wd)
{
    if (!w->cap)
        return;
    struct wdent *e = wd_slot(w->wds, w->cap, wd);
    if (!e->wd)
        return;
    free(e->path);
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
    w->wds[i].path = NULL;
    w->n--;
}

/* A directory renamed inside the tree: its watches and those below it follow. */
static void wd_rename(struct fu_watch *w, const char *from, const char *to)
{
    size_t fl = strlen(from);
    for (size_t i = 0; i < w->cap; i++) {
        char *p = w->wds[i].path;
        if (!w->wds[i].wd || strncmp(p, from, fl) || (p[fl] && p[fl] != '/'))
            continue;
        struct fu_buf b = FU_BUF_INIT;
        fu_buf_puts(&b, to);
        fu_buf_puts(&b, p + fl);
        if (!b.oom) {
            free(p);
            w->wds[i].path = fu_buf_detach(&b);
        }
        fu_buf_free(&b);
    }
}

/* ------------------------------------------------------------ watching */

static void add_watch(struct fu_watch *w, const char *rel)
{
    struct fu_buf full = FU_BUF_INIT;
    fu_buf_puts(&full, w->root);
    if (rel[1])
        fu_buf_puts(&full, rel);
    int wd = inotify_add_watch(w->fd, fu_buf_str(&full), MASK);
    if (wd < 0) {
        w->failed++;
        if (errno == ENOSPC && !w->told_limit) {
            w->told_limit = true;
            fu_warn("watch %s: the kernel's inotify watch limit is reached after %zu "
                    "directories; raise it (sysctl fs.inotify.max_user_watches=N, e.g. in "
                    "/etc/sysctl.d/) or changes in unwatched directories wait for the audit",
                    w->root, w->n);
        } else if (errno != ENOSPC && errno != ENOENT && w->failed <= 20) {
            fu_warn("watch %s: cannot watch %s: %s", w->root, rel, strerror(errno));
        }
    } else if (wd_set(w, wd, rel) < 0) {
        inotify_rm_watch(w->fd, wd);
        w->failed++;
    }
    fu_buf_free(&full);
}

struct initial {
    struct fu_watch *w;
    pthread_mutex_t mu; /* the walk's workers call in concurrently */
};

static int watch_dirs(void *ctx, const struct fu_scan_entry *v, size_t n)
{
    struct initial *in = ctx;
    pthread_mutex_lock(&in->mu);
    for (size_t i = 0; i < n; i++)
        if (v[i].is_dir)
            add_watch(in->w, v[i].path);
    pthread_mutex_unlock(&in->mu);
    return 0;
}

int fu_watch_open(struct fu_watch **out, const char *root, const struct fu_strv *exclude,
                  double throttle_sec)
{
    struct fu_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    /* No descriptor of the root is kept open: it would delay the root's IN_DELETE_SELF and
     * IN_IGNORED until it is closed, and keep an unmounted filesystem busy. */
    int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd >= 0)
        close(rootfd);
    w->root = strdup(root);
    w->throttle = throttle_sec;
    for (size_t i = 0; exclude && i < exclude->n; i++)
        fu_strv_push(&w->exclude, exclude->v[i]);
    if (w->fd < 0 || rootfd < 0 || !w->root) {
        int err = errno ? -errno : -ENOMEM;
        fu_watch_close(w);
        return err;
    }
    struct fu_scan_opts o = {
        .root = root, .exclude = &w->exclude, .recursive = true, .dirs_only = true};
    struct initial in = {.w = w};
    pthread_mutex_init(&in.mu, NULL);
    int rc = fu_scan(&o, watch_dirs, &in, NULL);
    pthread_mutex_destroy(&in.mu);
    if (rc < 0) {
        fu_watch_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

void fu_watch_close(struct fu_watch *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    for (size_t i = 0; i < w->cap; i++)
        free(w->wds[i].path);
    free(w->wds);
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
    return w->failed;
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
        struct fu_watch_row r = {
            .op = FU_WATCH_UPSERT,
            .atomic = true,
            .is_dir = v[i].is_dir,
            .path = v[i].path,
            .path_len = v[i].path_len,
            .size = v[i].size,
            .mtime = v[i].mtime,
            .ctime = v[i].ctime,
        };
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
                             .workers = 1,
                             .chunk = 1};
    int rc = fu_scan(&o, new_dir_entries, w, NULL);
    return rc == -ENOENT || rc == -ENOTDIR ? 0 : rc;
}

static int flush_moved_from(struct fu_watch *w)
{
    if (!w->moved_from)
        return 0;
    /* moved out of the tree: gone */
    int rc = emit_delete(w, w->moved_from, w->moved_dir);
    free(w->moved_from);
    w->moved_from = NULL;
    return rc;
}

static int on_event(struct fu_watch *w, const struct inotify_event *ev, double now)
{
    if (ev->mask & IN_IGNORED) {
        const char *gone = wd_path(w, ev->wd);
        bool root = gone && !strcmp(gone, "/");
        wd_drop(w, ev->wd);
        /* The root itself was removed or unmounted: nothing below can be watched any more;
         * the caller must open the watcher again (and rescan). */
        return root ? -ESTALE : 0;
    }
    const char *dir = wd_path(w, ev->wd);
    if (dir && !ev->len && !strcmp(dir, "/") &&
        (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT)))
        return -ESTALE; /* the root itself went away (its IN_IGNORED waits for our fds) */
    if (!dir || !ev->len)
        return 0; /* events on a watched directory itself: its parent reports them */
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
                wd_rename(w, w->moved_from, path);
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
