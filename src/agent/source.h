/* A running source (Fustor v1 §1.3): the realtime watcher of one `fs` source and the bus it
 * fills, shared by every pipe that reads the source. Its thread watches the tree (inotify,
 * one watch per directory; or fanotify, one mark per filesystem), puts each change on the
 * bus, and reopens the watches when the root goes away; lost events (a kernel queue overflow, a
 * watcher restart) mark every subscriber overflowed, so that their pipes resync. */
#ifndef FU_AGENT_SOURCE_H
#define FU_AGENT_SOURCE_H

#include "agent/bus.h"
#include "common/strv.h"

#include <stdbool.h>
#include <stddef.h>

struct fu_source;

struct fu_source_opts {
    const char *id;   /* the source's config id, for logs */
    const char *root; /* `uri` */
    const struct fu_strv *exclude;
    double throttle_sec; /* IN_MODIFY rows per file at most once per this */
    size_t bus_capacity; /* rows the bus holds */
    bool cross_filesystems;
    double min_window_sec; /* evicting a watch of a directory active more recently than this
                              (at the watch limit) logs a warning; 0: never */
    bool fanotify;         /* one fanotify mark per filesystem instead of inotify watches, where the
                              kernel, the filesystem and the privileges allow; else inotify */
};

/* Starts the watcher thread. Returns 0 or -errno. */
int fu_source_start(struct fu_source **out, const struct fu_source_opts *o);
/* Stops the thread and frees the source; its bus must have no subscriber left. */
void fu_source_stop(struct fu_source *s);
struct fu_bus *fu_source_bus(struct fu_source *s);
/* Whether a snapshot may start: the watches are in place, or inotify's initial walk is under
 * way and the snapshot passes each directory through fu_source_gate before listing it. Then
 * it misses nothing. The bus wakes every subscriber when this changes. */
bool fu_source_ready(struct fu_source *s);
/* Whether the directory `path` (relative, leading '/') may be listed now: it is watched, or
 * no initial walk is under way. Waits up to `sec` seconds for that (false: not yet). */
bool fu_source_gate(struct fu_source *s, const char *path, double sec);

struct fu_source_status {
    const char *watcher;    /* "inotify" or "fanotify" */
    size_t watches, failed; /* failed: errors, and directories left out at the watch limit */
    size_t unwatched;       /* ... of which left out at the limit (inotify) */
    struct fu_bus_stats bus;
};
void fu_source_status(struct fu_source *s, struct fu_source_status *out);

#endif
