/* A running source; see source.h. The thread blocks in poll() on the watcher's descriptor
 * and an eventfd that a stop writes to: no timer runs while the tree is quiet. */
#include "agent/source.h"

#include "agent/sender_http.h"
#include "agent/source_fs/watch_inotify.h"
#include "common/log.h"

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
    struct fu_bus *bus;
    pthread_t thread;
    int wakefd;
    _Atomic bool stop, ready;
    _Atomic size_t watches, failed;
};

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
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

static void set_ready(struct fu_source *s, bool ready)
{
    atomic_store(&s->ready, ready);
    fu_bus_wake_all(s->bus);
}

static void *source_main(void *arg)
{
    struct fu_source *s = arg;
    struct fu_watch *w = NULL;
    struct fu_backoff bo = {.base = 1, .cap = 60, .seed = (uint64_t)(uintptr_t)s};
    bool reopened = false;
    while (!atomic_load(&s->stop)) {
        if (!w) {
            int rc = fu_watch_open(&w, s->root, &s->exclude, s->throttle);
            if (rc < 0) {
                w = NULL;
                fu_error("source %s: cannot watch %s: %s (retrying)", s->id, s->root,
                         strerror(-rc));
                rest(s, fu_backoff_next(&bo));
                continue;
            }
            fu_info("source %s: watching %zu directories of %s (%zu could not be watched)",
                    s->id, fu_watch_count(w), s->root, fu_watch_failed(w));
            atomic_store(&s->watches, fu_watch_count(w));
            atomic_store(&s->failed, fu_watch_failed(w));
            if (reopened)
                fu_bus_lost(s->bus); /* events were lost while nothing watched */
            reopened = false;
            set_ready(s, true); /* now a snapshot may start: nothing can slip between */
        }
        struct pollfd fds[2] = {{.fd = fu_watch_fd(w), .events = POLLIN},
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
        int rc = fu_watch_read(w, wall(), on_row, s);
        fu_bus_publish(s->bus);
        atomic_store(&s->watches, fu_watch_count(w));
        atomic_store(&s->failed, fu_watch_failed(w));
        if (rc == -EOVERFLOW) {
            fu_warn("source %s: the kernel's event queue overflowed; the pipes resync", s->id);
            fu_bus_lost(s->bus);
        } else if (rc < 0) {
            const char *why = rc == -ESTALE ? "the root went away" : strerror(-rc);
            fu_error("source %s: watching failed: %s; watching again, and the pipes resync",
                     s->id, why);
            fu_watch_close(w);
            w = NULL;
            reopened = true; /* the resync waits until the new watches are in place */
            set_ready(s, false);
            rest(s, fu_backoff_next(&bo)); /* a stop ends it */
        }
    }
    fu_watch_close(w);
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
    free(s);
}

int fu_source_start(struct fu_source **out, const struct fu_source_opts *o)
{
    struct fu_source *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->id = strdup(o->id);
    s->root = strdup(o->root);
    s->throttle = o->throttle_sec;
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

void fu_source_status(struct fu_source *s, struct fu_source_status *out)
{
    out->watcher = "inotify";
    out->watches = atomic_load(&s->watches);
    out->failed = atomic_load(&s->failed);
    fu_bus_stats(s->bus, &out->bus);
}
