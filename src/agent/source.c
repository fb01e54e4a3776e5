/* A running source; see source.h. The thread blocks in poll() on the watcher's descriptor
 * and an eventfd that a stop writes to: no timer runs while the tree is quiet. */
#include "agent/source.h"

#include "agent/sender_http.h"
#include "agent/source_fs/watch_fanotify.h"
#include "agent/source_fs/watch_inotify.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/sets.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct fu_source {
    char *id, *root;
    struct fu_strv exclude;
    double throttle;
    bool cross, want_fanotify;
    double min_window;
    _Atomic bool fanotify; /* the backend in use */
    struct fu_bus *bus;
    pthread_t thread;
    int wakefd;
    _Atomic bool stop, ready;
    _Atomic size_t watches, failed, unwatched;
    /* While inotify's initial walk is under way (`walking`), a snapshot may already list the
     * directories watched so far (`watched`); it waits in fu_source_gate for the others. */
    _Atomic bool walking;
    pthread_mutex_t gmu;
    pthread_cond_t gcv;
    struct fu_pathmap watched;
    bool gate_oom; /* a directory could not be recorded: every walker waits for the end */
};

static double wall(void)
{
    return fu_wall_clock();
}

static void set_ready(struct fu_source *s, bool ready)
{
    atomic_store(&s->ready, ready);
    fu_bus_wake_all(s->bus);
}

/* inotify's initial walk begins: from now on a snapshot may start, each directory passing
 * the gate once it is watched. */
static void walk_begins(void *ctx)
{
    struct fu_source *s = ctx;
    pthread_mutex_lock(&s->gmu);
    atomic_store(&s->walking, true);
    pthread_mutex_unlock(&s->gmu);
    set_ready(s, true);
}

static void dir_watched(void *ctx, const char *path)
{
    struct fu_source *s = ctx;
    pthread_mutex_lock(&s->gmu);
    bool created;
    if (fu_pathmap_put(&s->watched, path, strlen(path), &created) == FU_SET_NONE)
        s->gate_oom = true;
    pthread_cond_broadcast(&s->gcv);
    pthread_mutex_unlock(&s->gmu);
}

/* The walk is over, the watcher open or not: every directory passes. */
static void walk_ends(struct fu_source *s)
{
    pthread_mutex_lock(&s->gmu);
    atomic_store(&s->walking, false);
    fu_pathmap_free(&s->watched);
    s->gate_oom = false;
    pthread_cond_broadcast(&s->gcv);
    pthread_mutex_unlock(&s->gmu);
}

/* The watcher in use: a fanotify mark, or inotify watches. */
struct watcher {
    struct fu_fanwatch *fan;
    struct fu_watch *ino;
};

/* Opens fanotify when asked and possible, else inotify; says which, and why not fanotify. */
static int watcher_open(struct fu_source *s, struct watcher *w)
{
    if (s->want_fanotify) {
        int rc = fu_fanwatch_open(&w->fan, s->root, &s->exclude, s->throttle, s->cross);
        if (rc == 0) {
            atomic_store(&s->fanotify, true);
            fu_info("source %s: watching %s with fanotify (%zu filesystem mark%s, %zu "
                    "filesystem%s below it not markable)",
                    s->id, s->root, fu_fanwatch_count(w->fan),
                    fu_fanwatch_count(w->fan) == 1 ? "" : "s", fu_fanwatch_failed(w->fan),
                    fu_fanwatch_failed(w->fan) == 1 ? "" : "s");
            return 0;
        }
        w->fan = NULL;
        if (rc == -ENOENT || rc == -ENOTDIR)
            return rc; /* the root itself: inotify could not do better */
        fu_warn("source %s: fanotify is not available for %s (%s%s); falling back to inotify",
                s->id, s->root, strerror(-rc),
                rc == -EPERM ? ": it needs CAP_SYS_ADMIN"
                : rc == -ENODEV || rc == -EXDEV || rc == -EOPNOTSUPP
                    ? ": the filesystem cannot be marked (FUSE, some network filesystems)"
                    : ": the kernel needs FAN_REPORT_DFID_NAME, Linux 5.9 or later");
    }
    atomic_store(&s->fanotify, false);
    struct fu_watch_opts o = {.root = s->root,
                              .exclude = &s->exclude,
                              .throttle_sec = s->throttle,
                              .cross_filesystems = s->cross,
                              .min_window_sec = s->min_window,
                              .walking = walk_begins,
                              .watched = dir_watched,
                              .progress_ctx = s};
    int rc = fu_watch_open_opts(&w->ino, &o);
    walk_ends(s);
    if (rc < 0) {
        w->ino = NULL;
        return rc;
    }
    fu_info("source %s: watching %zu directories of %s (%zu could not be watched)", s->id,
            fu_watch_count(w->ino), s->root, fu_watch_failed(w->ino));
    return 0;
}

static bool watcher_open_p(const struct watcher *w)
{
    return w->fan || w->ino;
}

static void watcher_close(struct watcher *w)
{
    fu_fanwatch_close(w->fan);
    fu_watch_close(w->ino);
    w->fan = NULL;
    w->ino = NULL;
}

static int watcher_fd(const struct watcher *w)
{
    return w->fan ? fu_fanwatch_fd(w->fan) : fu_watch_fd(w->ino);
}

static void watcher_counts(struct fu_source *s, const struct watcher *w)
{
    atomic_store(&s->watches, w->fan ? fu_fanwatch_count(w->fan) : fu_watch_count(w->ino));
    atomic_store(&s->failed, w->fan ? fu_fanwatch_failed(w->fan) : fu_watch_failed(w->ino));
    atomic_store(&s->unwatched, w->fan ? 0 : fu_watch_unwatched(w->ino));
}

/* Waits up to `sec`, or until a stop. */
static void rest(struct fu_source *s, double sec)
{
    struct pollfd wake = {.fd = s->wakefd, .events = POLLIN};
    if (poll(&wake, 1, (int)(sec * 1000)) > 0) {
        eventfd_t v;
        eventfd_read(s->wakefd, &v);
    }
}

static int on_row(void *ctx, const struct fu_watch_row *r)
{
    struct fu_source *s = ctx;
    fu_bus_put(s->bus, r); /* on OOM the bus tells the subscribers to resync */
    return 0;
}

static void *source_main(void *arg)
{
    struct fu_source *s = arg;
    struct watcher w = {0};
    struct fu_backoff bo = {.base = 1, .cap = 60, .seed = (uint64_t)(uintptr_t)s};
    bool reopened = false;
    while (!atomic_load(&s->stop)) {
        if (!watcher_open_p(&w)) {
            int rc = watcher_open(s, &w);
            if (rc < 0) {
                fu_error("source %s: cannot watch %s: %s (retrying)", s->id, s->root,
                         strerror(-rc));
                if (atomic_load(&s->ready)) { /* a snapshot may have begun meanwhile */
                    reopened = true;
                    set_ready(s, false);
                }
                rest(s, fu_backoff_next(&bo));
                continue;
            }
            watcher_counts(s, &w);
            if (reopened)
                fu_bus_lost(s->bus); /* events were lost while nothing watched */
            reopened = false;
            if (!atomic_load(&s->ready))
                set_ready(s, true); /* now a snapshot may start: nothing can slip between */
        }
        struct pollfd fds[2] = {{.fd = watcher_fd(&w), .events = POLLIN},
                                {.fd = s->wakefd, .events = POLLIN}};
        int n = poll(fds, 2, -1);
        if (n < 0 && errno != EINTR)
            break;
        if (fds[1].revents & POLLIN) {
            eventfd_t v;
            eventfd_read(s->wakefd, &v);
        }
        if (!(fds[0].revents & POLLIN))
            continue;
        int rc = w.fan ? fu_fanwatch_read(w.fan, wall(), on_row, s)
                       : fu_watch_read(w.ino, wall(), on_row, s);
        fu_bus_publish(s->bus);
        watcher_counts(s, &w);
        if (rc == -EOVERFLOW) {
            fu_warn("source %s: the kernel's event queue overflowed; the pipes resync", s->id);
            fu_bus_lost(s->bus);
        } else if (rc < 0) {
            const char *why = rc == -ESTALE ? "the root went away" : strerror(-rc);
            fu_error("source %s: watching failed: %s; watching again, and the pipes resync", s->id,
                     why);
            watcher_close(&w);
            reopened = true; /* the resync waits until the new watches are in place */
            set_ready(s, false);
            rest(s, fu_backoff_next(&bo)); /* a stop ends it */
        }
    }
    watcher_close(&w);
    return NULL;
}

static void source_free(struct fu_source *s)
{
    free(s->id);
    free(s->root);
    fu_strv_free(&s->exclude);
    fu_bus_free(s->bus);
    if (s->wakefd >= 0)
        close(s->wakefd);
    fu_pathmap_free(&s->watched);
    pthread_cond_destroy(&s->gcv);
    pthread_mutex_destroy(&s->gmu);
    free(s);
}

int fu_source_start(struct fu_source **out, const struct fu_source_opts *o)
{
    struct fu_source *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_init(&s->gmu, NULL);
    fu_cond_init_monotonic(&s->gcv);
    s->id = strdup(o->id);
    s->root = strdup(o->root);
    s->throttle = o->throttle_sec;
    s->cross = o->cross_filesystems;
    s->min_window = o->min_window_sec;
    s->want_fanotify = o->fanotify;
    s->bus = fu_bus_new(o->bus_capacity);
    for (size_t i = 0; o->exclude && i < o->exclude->n; i++)
        fu_strv_push(&s->exclude, o->exclude->v[i]);
    if (s->wakefd < 0 || !s->id || !s->root || !s->bus ||
        (o->exclude && s->exclude.n != o->exclude->n)) {
        source_free(s);
        return -ENOMEM;
    }
    if (pthread_create(&s->thread, NULL, source_main, s) != 0) {
        source_free(s);
        return -EAGAIN;
    }
    *out = s;
    return 0;
}

void fu_source_stop(struct fu_source *s)
{
    if (!s)
        return;
    atomic_store(&s->stop, true);
    eventfd_write(s->wakefd, 1);
    pthread_join(s->thread, NULL);
    source_free(s);
}

struct fu_bus *fu_source_bus(struct fu_source *s)
{
    return s->bus;
}

bool fu_source_ready(struct fu_source *s)
{
    return atomic_load(&s->ready);
}

bool fu_source_gate(struct fu_source *s, const char *path, double sec)
{
    if (!atomic_load(&s->walking))
        return true;
    struct timespec until = fu_mono_deadline(sec);
    size_t len = strlen(path);
    pthread_mutex_lock(&s->gmu);
    bool pass; /* a stopping source has no walk to wait for */
    while (!(pass = !atomic_load(&s->walking) || atomic_load(&s->stop) ||
                    (!s->gate_oom && fu_pathmap_find(&s->watched, path, len) != FU_SET_NONE)))
        if (pthread_cond_timedwait(&s->gcv, &s->gmu, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&s->gmu);
    return pass;
}

void fu_source_status(struct fu_source *s, struct fu_source_status *out)
{
    out->watcher = atomic_load(&s->fanotify) ? "fanotify" : "inotify";
    out->watches = atomic_load(&s->watches);
    out->failed = atomic_load(&s->failed);
    out->unwatched = atomic_load(&s->unwatched);
    fu_bus_stats(s->bus, &out->bus);
}
