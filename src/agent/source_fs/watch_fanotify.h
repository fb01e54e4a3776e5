/* Realtime watching of an fs source with fanotify (Linux 5.9+, CAP_SYS_ADMIN): the second
 * backend beside watch_inotify.h, with the same rows, the same mapping of events to rows and
 * the same return contract. One filesystem mark (FAN_MARK_FILESYSTEM) covers the whole tree,
 * however large: no per-directory watches, no fs.inotify.max_user_watches. The price is that
 * the kernel reports every change on that filesystem; each event names a directory by file
 * handle plus an entry name, the handle is resolved to a path (cached), and events outside the
 * root or below an excluded directory are dropped.
 *   FAN_CREATE, FAN_CLOSE_WRITE, FAN_MOVED_TO, FAN_ATTRIB -> upsert, atomic
 *   FAN_MODIFY (at most once per file per throttle interval) -> upsert, not atomic
 *   FAN_DELETE, FAN_MOVED_FROM                           -> delete
 *   FAN_RENAME (old and new entry in one event)          -> delete old, upsert new
 * A directory created or moved into the tree is listed (fu_scan), one moved out is a delete.
 * The kernel merges one process's queued events on one entry, losing their order: the entry's
 * state when the event is read then decides between delete, upsert, or both.
 * Not thread-safe: one thread reads a watcher. */
#ifndef FU_AGENT_WATCH_FANOTIFY_H
#define FU_AGENT_WATCH_FANOTIFY_H

#include "agent/source_fs/watch_inotify.h" /* struct fu_watch_row, fu_watch_emit */
#include "common/strv.h"

#include <stdbool.h>
#include <stddef.h>

struct fu_fanwatch;

/* Marks the filesystem holding `root` (an existing directory); `exclude` as for fu_scan.
 * With `cross_filesystems`, every other filesystem mounted below the root when the watcher
 * opens is marked too (one mark each); those that cannot be are counted in
 * fu_fanwatch_failed() and logged, and their changes wait for the audit. Mounts made later are
 * not marked. Returns 0 or -errno; the errors that mean "use inotify instead" are:
 *   -EPERM                   no CAP_SYS_ADMIN;
 *   -ENOSYS, -EINVAL         a kernel without fanotify or without FAN_REPORT_DFID_NAME (< 5.9);
 *   -ENODEV, -EXDEV,
 *   -EOPNOTSUPP              the root's filesystem cannot be marked (FUSE, no fsid, a btrfs
 *                            subvolume) or its file handles cannot be opened again.
 * -ENOENT and -ENOTDIR are about the root itself. The caller logs why it fell back. */
int fu_fanwatch_open(struct fu_fanwatch **out, const char *root, const struct fu_strv *exclude,
                     double throttle_sec, bool cross_filesystems);
void fu_fanwatch_close(struct fu_fanwatch *w);
/* The descriptor to poll for POLLIN. */
int fu_fanwatch_fd(const struct fu_fanwatch *w);
/* Reads what is pending (non-blocking; a few thousand events at most, the rest stays readable)
 * and emits rows. `now` (seconds) drives the FAN_MODIFY throttle. Returns the number of rows
 * emitted, -EOVERFLOW when the kernel dropped events (the caller must rescan; the queue,
 * fs.fanotify.max_queued_events, is shared by every change on the marked filesystems), -ESTALE
 * when the root itself went away (removed, moved, replaced: the caller must reopen the watcher
 * and rescan), or the first negative value `emit` returned. An unmount of the root's
 * filesystem is reported by no event: the watcher just falls silent, until the audit. */
int fu_fanwatch_read(struct fu_fanwatch *w, double now, fu_watch_emit emit, void *ctx);
/* Filesystems marked (1 without cross_filesystems), and those below the root that could not
 * be. */
size_t fu_fanwatch_count(const struct fu_fanwatch *w);
size_t fu_fanwatch_failed(const struct fu_fanwatch *w);

#endif
