/* The event bus of a source; see bus.h. Rows are numbered by a position that only grows; the
 * ring keeps positions [head, tail) in an array whose size is a power of two, grown on demand
 * up to the capacity (an idle agent holds a small ring). A path index points at each path's
 * newest queued row, for merging. */
#include "agent/bus.h"

#include "common/sets.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct brow {
    char *path; /* NULL once merged away */
    uint32_t len;
    uint8_t op, atomic, is_dir;
    uint64_t size;
    double mtime, ctime;
};

struct fu_bus_sub {
    uint64_t cursor; /* the first position not yet sent */
    bool overflow;
    int efd;
};

struct fu_bus {
    pthread_mutex_t mu; /* guards everything below */
    struct brow *ring;
    size_t mask;     /* array size - 1 (0 before the first put) */
    size_t capacity; /* rows kept at most */
    uint64_t head, tail;
    struct fu_pathmap latest; /* path -> a: position of its newest queued row */
    struct fu_bus_sub **subs;
    size_t nsubs;
    struct fu_bus_stats stats;
};

struct fu_bus *fu_bus_new(size_t capacity)
{
    struct fu_bus *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    pthread_mutex_init(&b->mu, NULL);
    b->capacity = capacity ? capacity : 1;
    return b;
}

void fu_bus_free(struct fu_bus *b)
{
    if (!b)
        return;
    for (uint64_t i = b->head; i < b->tail; i++)
        free(b->ring[i & b->mask].path);
    free(b->ring);
    fu_pathmap_free(&b->latest);
    free(b->subs);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

size_t fu_bus_capacity(const struct fu_bus *b)
{
    return b->capacity; /* set once, read without the lock */
}

static void wake(struct fu_bus_sub *s)
{
    eventfd_write(s->efd, 1);
}

/* Drops the oldest row; subscribers that had not sent it lose it. */
static void evict_head(struct fu_bus *b)
{
    struct brow *r = &b->ring[b->head & b->mask];
    if (r->path) {
        uint32_t idx = fu_pathmap_find(&b->latest, r->path, r->len);
        if (idx != FU_SET_NONE && b->latest.ents[idx].a == (double)b->head)
            fu_pathmap_del(&b->latest, idx);
        bool lost = false;
        for (size_t i = 0; i < b->nsubs; i++) {
            struct fu_bus_sub *s = b->subs[i];
            if (s->cursor <= b->head) {
                if (!s->overflow)
                    wake(s);
                s->overflow = lost = true;
            }
        }
        b->stats.evicted_unsent += lost;
        free(r->path);
        r->path = NULL;
    }
    b->head++;
    for (size_t i = 0; i < b->nsubs; i++)
        if (b->subs[i]->cursor < b->head)
            b->subs[i]->cursor = b->head;
}

/* Resizes the array to `size` slots (a power of two holding every kept row). */
static int resize(struct fu_bus *b, size_t size)
{
    struct brow *v = calloc(size, sizeof(*v));
    if (!v)
        return -ENOMEM;
    for (uint64_t i = b->head; i < b->tail; i++)
        v[i & (size - 1)] = b->ring[i & b->mask];
    free(b->ring);
    b->ring = v;
    b->mask = size - 1;
    return 0;
}

/* Makes room for one more row: a bigger array while under the capacity, else the oldest
 * row goes. */
static int make_room(struct fu_bus *b)
{
    size_t used = (size_t)(b->tail - b->head);
    if (used >= b->capacity) {
        evict_head(b);
        return 0;
    }
    if (b->ring && used < b->mask + 1)
        return 0;
    return resize(b, b->ring ? (b->mask + 1) * 2 : 64);
}

/* Drops the rows every subscriber has sent, and gives memory back once the ring is mostly
 * empty: after a burst, an idle source holds little again. */
static void trim(struct fu_bus *b)
{
    uint64_t low = b->tail;
    for (size_t i = 0; i < b->nsubs; i++)
        if (b->subs[i]->cursor < low)
            low = b->subs[i]->cursor;
    while (b->head < low)
        evict_head(b); /* sent by all: nobody overflows */
    size_t used = (size_t)(b->tail - b->head), size = b->mask + 1;
    if (b->ring && size > 1024 && used * 4 < size) {
        size_t want = 64;
        while (want < used * 2)
            want *= 2;
        resize(b, want); /* on failure the bigger array stays */
    }
}

int fu_bus_put(struct fu_bus *b, const struct fu_watch_row *r)
{
    char *path = malloc(r->path_len + 1);
    pthread_mutex_lock(&b->mu);
    b->stats.put++;
    /* Merge first: the row it replaces may be the oldest, and must not count as lost when
     * room is made for its own newer state. */
    uint32_t idx = path ? fu_pathmap_find(&b->latest, r->path, r->path_len) : FU_SET_NONE;
    if (idx != FU_SET_NONE) {
        uint64_t pos = (uint64_t)b->latest.ents[idx].a;
        struct brow *old = &b->ring[pos & b->mask];
        if (pos >= b->head && old->path && old->op == FU_WATCH_UPSERT) {
            free(old->path); /* merged: its newer state goes to the tail */
            old->path = NULL;
            b->stats.merged++;
        }
    }
    int rc = path ? make_room(b) : -ENOMEM;
    bool created = false;
    idx = rc ? FU_SET_NONE : fu_pathmap_put(&b->latest, r->path, r->path_len, &created);
    if (!rc && idx == FU_SET_NONE)
        rc = -ENOMEM;
    if (rc) {
        free(path);
        for (size_t i = 0; i < b->nsubs; i++) { /* the row is lost: say so */
            b->subs[i]->overflow = true;
            wake(b->subs[i]);
        }
        pthread_mutex_unlock(&b->mu);
        return rc;
    }
    memcpy(path, r->path, r->path_len);
    path[r->path_len] = '\0';
    b->ring[b->tail & b->mask] = (struct brow){
        .path = path,
        .len = (uint32_t)r->path_len,
        .op = (uint8_t)r->op,
        .atomic = r->atomic,
        .is_dir = r->is_dir,
        .size = r->size,
        .mtime = r->mtime,
        .ctime = r->ctime,
    };
    b->latest.ents[idx].a = (double)b->tail;
    b->tail++;
    pthread_mutex_unlock(&b->mu);
    return 0;
}

void fu_bus_publish(struct fu_bus *b)
{
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->nsubs; i++)
        if (b->subs[i]->cursor < b->tail)
            wake(b->subs[i]);
    pthread_mutex_unlock(&b->mu);
}

void fu_bus_lost(struct fu_bus *b)
{
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->nsubs; i++) {
        b->subs[i]->overflow = true;
        wake(b->subs[i]);
    }
    pthread_mutex_unlock(&b->mu);
}

void fu_bus_wake_all(struct fu_bus *b)
{
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->nsubs; i++)
        wake(b->subs[i]);
    pthread_mutex_unlock(&b->mu);
}

struct fu_bus_sub *fu_bus_subscribe(struct fu_bus *b)
{
    struct fu_bus_sub *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    pthread_mutex_lock(&b->mu);
    struct fu_bus_sub **v = realloc(b->subs, (b->nsubs + 1) * sizeof(*v));
    if (v) {
        b->subs = v;
        v[b->nsubs++] = s;
        s->cursor = b->tail;
    }
    pthread_mutex_unlock(&b->mu);
    if (!v || s->efd < 0) {
        if (v)
            fu_bus_unsubscribe(b, s);
        else
            free(s);
        return NULL;
    }
    return s;
}

void fu_bus_unsubscribe(struct fu_bus *b, struct fu_bus_sub *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->nsubs; i++)
        if (b->subs[i] == s) {
            b->subs[i] = b->subs[--b->nsubs];
            break;
        }
    trim(b);
    pthread_mutex_unlock(&b->mu);
    if (s->efd >= 0)
        close(s->efd);
    free(s);
}

int fu_bus_sub_fd(const struct fu_bus_sub *s)
{
    return s->efd;
}

size_t fu_bus_peek(struct fu_bus *b, struct fu_bus_sub *s, size_t max,
                   void (*fn)(void *ctx, const struct fu_watch_row *r), void *ctx, uint64_t *upto)
{
    size_t n = 0;
    pthread_mutex_lock(&b->mu);
    uint64_t i = s->cursor;
    for (; i < b->tail && n < max; i++) {
        const struct brow *r = &b->ring[i & b->mask];
        if (!r->path)
            continue;
        struct fu_watch_row row = {
            .op = (enum fu_watch_op)r->op,
            .atomic = r->atomic,
            .is_dir = r->is_dir,
            .path = r->path,
            .path_len = r->len,
            .size = r->size,
            .mtime = r->mtime,
            .ctime = r->ctime,
        };
        fn(ctx, &row);
        n++;
    }
    *upto = i;
    pthread_mutex_unlock(&b->mu);
    return n;
}

void fu_bus_commit(struct fu_bus *b, struct fu_bus_sub *s, uint64_t upto)
{
    pthread_mutex_lock(&b->mu);
    if (upto > s->cursor) /* an overflow may have moved it further already */
        s->cursor = upto;
    trim(b);
    pthread_mutex_unlock(&b->mu);
}

bool fu_bus_take_overflow(struct fu_bus *b, struct fu_bus_sub *s)
{
    pthread_mutex_lock(&b->mu);
    bool o = s->overflow;
    s->overflow = false;
    pthread_mutex_unlock(&b->mu);
    return o;
}

size_t fu_bus_depth(struct fu_bus *b, const struct fu_bus_sub *s)
{
    pthread_mutex_lock(&b->mu);
    size_t n = (size_t)(b->tail - s->cursor);
    pthread_mutex_unlock(&b->mu);
    return n;
}

void fu_bus_stats(struct fu_bus *b, struct fu_bus_stats *out)
{
    pthread_mutex_lock(&b->mu);
    *out = b->stats;
    out->held = b->tail - b->head;
    pthread_mutex_unlock(&b->mu);
}
