/* What the watcher tests collect: the rows a watcher emitted, up to 64 of them (the count
 * goes on past that). Shared by the inotify and fanotify watcher tests. */
#ifndef FU_TEST_WATCH_ROWS_H
#define FU_TEST_WATCH_ROWS_H

#include "agent/source_fs/watch_inotify.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct rows {
    struct {
        char path[256];
        int op;
        bool atomic, dir;
        uint64_t size;
    } v[64];
    size_t n;
};

static inline int collect(void *ctx, const struct fu_watch_row *r)
{
    struct rows *s = ctx;
    if (s->n < 64) {
        snprintf(s->v[s->n].path, sizeof(s->v[0].path), "%s", r->path);
        s->v[s->n].op = r->op;
        s->v[s->n].atomic = r->atomic;
        s->v[s->n].dir = r->is_dir;
        s->v[s->n].size = r->size;
    }
    s->n++;
    return 0;
}

#endif
