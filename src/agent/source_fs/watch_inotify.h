/* Realtime watching of an fs source with inotify (Fustor v1 §3.11, issue 5): one watch per
 * directory, added as directories appear; a new directory is watched first and listed
 * second, so nothing created in between is missed. Events become rows:
 *   IN_CLOSE_WRITE, IN_CREATE, IN_MOVED_TO   -> upsert, atomic
 *   IN_MODIFY (at most once per file per throttle interval) -> upsert, not atomic
 *   IN_DELETE, IN_MOVED_FROM                 -> delete
 * A rename inside the tree (IN_MOVED_FROM + IN_MOVED_TO with one cookie) is a delete of the old
 * path and an upsert of the new one; a directory's watches follow it, and its contents are
 * reported again under the new path. IN_Q_OVERFLOW means events were lost: the caller is told
 * to rescan. Not thread-safe: one thread reads a watcher.
 *
 * Watches are finite (fs.inotify.max_user_watches, or max_watches). When they run short, the
 * most recently active directories keep them (Fustor v1's LRU policy): at open, the newest by
 * recursive mtime; later, a new directory takes the watch of the coldest one. A directory is
 * only watched if its parent is, and the root is never evicted. Changes in unwatched
 * directories are only seen by the audit. */
#ifndef FU_AGENT_WATCH_INOTIFY_H
#define FU_AGENT_WATCH_INOTIFY_H

#include "agent/source_fs/scan.h"
#include "common/strv.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fu_watch_op { FU_WATCH_UPSERT, FU_WATCH_DELETE };

struct fu_watch_row {
    enum fu_watch_op op;
    bool atomic; /* upserts: a complete write (close, create, move in) */
    bool is_dir;
    const char *path; /* relative to the root, leading '/' */
    size_t path_len;
    uint64_t size;
    double mtime, ctime;
};

/* A walked entry (a new directory's contents) as an atomic upsert row; the path is
 * borrowed from the entry. */
static inline struct fu_watch_row fu_watch_row_of(const struct fu_scan_entry *e)
{
    return (struct fu_watch_row){
        .op = FU_WATCH_UPSERT,
        .atomic = true,
        .is_dir = e->is_dir,
        .path = e->path,
        .path_len = e->path_len,
        .size = e->size,
        .mtime = e->mtime,
        .ctime = e->ctime,
    };
}

/* Receives rows; return < 0 to stop reading. */
typedef int (*fu_watch_emit)(void *ctx, const struct fu_watch_row *r);

struct fu_watch;

struct fu_watch_opts {
    const char *root;              /* absolute path of the source */
    const struct fu_strv *exclude; /* globs, as for fu_scan (copied) */
    double throttle_sec;           /* IN_MODIFY: at most one row per file per interval */
    size_t max_watches;            /* 0: as many as the kernel gives (until ENOSPC) */
    bool cross_filesystems;        /* also directories of other filesystems mounted below */
    /* Evicting a directory active more recently than this still happens, but logs a warning
     * (the limit is too small for the tree); 0: never. v1: 30 days (min_monitoring_window_days,
     * times 86400). */
    double min_window_sec;
    /* The initial walk's progress, for a snapshot that lists each directory as soon as it is
     * watched rather than after the whole walk: walking(ctx) once inotify and the root are
     * there and the walk begins, watched(ctx, path) for each directory (relative path) whose
     * watch is in place, from the walk's workers, concurrently. Optional. */
    void (*walking)(void *ctx);
    void (*watched)(void *ctx, const char *path);
    void *progress_ctx;
};

/* Watches the directories below `root` (not following symlinks, skipping `exclude`), all of
 * them or, past the limit, the newest by recursive mtime. Returns 0 or -errno. Directories that
 * cannot be watched are counted and logged; when the limit is reached, the log says once which
 * setting to raise (fs.inotify.max_user_watches, or max_watches). */
int fu_watch_open_opts(struct fu_watch **out, const struct fu_watch_opts *o);
/* fu_watch_open_opts without a limit of its own, and v1's 30-day window. */
int fu_watch_open(struct fu_watch **out, const char *root, const struct fu_strv *exclude,
                  double throttle_sec);
void fu_watch_close(struct fu_watch *w);
/* The descriptor to poll for POLLIN. */
int fu_watch_fd(const struct fu_watch *w);
/* Reads what is pending (non-blocking) and emits rows. `now` (seconds) drives the IN_MODIFY
 * throttle. Returns the number of rows emitted, -EOVERFLOW when the kernel dropped events (the
 * caller must rescan), -ESTALE when the root itself went away (removed, or unmounted: the
 * caller must reopen the watcher and rescan), or the first negative value `emit` returned. */
int fu_watch_read(struct fu_watch *w, double now, fu_watch_emit emit, void *ctx);
/* Directories watched now. */
size_t fu_watch_count(const struct fu_watch *w);
/* Directories without a watch: those that could not be watched (permissions, gone meanwhile)
 * plus fu_watch_unwatched(). */
size_t fu_watch_failed(const struct fu_watch *w);
/* Directories left without a watch by the limit: at open, and refused or evicted since (one
 * deleted while unwatched is still counted: nothing tells the watcher). */
size_t fu_watch_unwatched(const struct fu_watch *w);

#endif
