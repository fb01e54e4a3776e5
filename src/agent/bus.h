/* The event bus of a source (Fustor v1 §1.3): one bounded ring of realtime rows per source,
 * filled by the source's watcher and read by every pipe of that source, each through its own
 * cursor. A row leaves the ring when it is the oldest and the ring is full.
 *
 * Merging: a row for a path whose latest queued row is an upsert replaces it: the old row is
 * dropped and the new one goes to the tail. A delete is never merged away: an upsert after a
 * delete is queued after it, since the delete of a directory removes its subtree in Fusion
 * and the upsert recreates only the directory. Moving the newest state of a path to the tail
 * keeps every path's final state and the order between a directory's delete and what is
 * created in it again.
 *
 * Overflow: a row pushed out of the ring before a subscriber sent it makes that subscriber
 * "overflowed": its cursor jumps to the oldest row kept, and its pipe must resync (the leader
 * snapshots again). Rows are never dropped silently. Rows every subscriber has sent leave the
 * ring at once, and its memory shrinks back after a burst.
 *
 * Thread-safe: the watcher puts, each pipe's sender peeks and commits. */
#ifndef FU_AGENT_BUS_H
#define FU_AGENT_BUS_H

#include "agent/source_fs/watch_inotify.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fu_bus;
struct fu_bus_sub;

/* A ring of `capacity` rows. NULL on OOM. */
struct fu_bus *fu_bus_new(size_t capacity);
/* Frees the ring; every subscriber must be gone. */
void fu_bus_free(struct fu_bus *b);
/* The most rows it keeps. */
size_t fu_bus_capacity(const struct fu_bus *b);

/* Queues a row (the path is copied), merging it with the queued upsert of the same path.
 * Never blocks. Returns 0 or -ENOMEM (the subscribers are then told to resync). */
int fu_bus_put(struct fu_bus *b, const struct fu_watch_row *r);
/* Wakes the subscribers that have rows to read: called once after a run of puts. */
void fu_bus_publish(struct fu_bus *b);
/* Events were lost upstream (a kernel queue overflow, a watcher restart): every subscriber
 * is marked overflowed and woken. */
void fu_bus_lost(struct fu_bus *b);
/* Wakes every subscriber (e.g. the source's watches are in place). */
void fu_bus_wake_all(struct fu_bus *b);

/* A new subscriber reads from the rows queued after this call. NULL on OOM. */
struct fu_bus_sub *fu_bus_subscribe(struct fu_bus *b);
void fu_bus_unsubscribe(struct fu_bus *b, struct fu_bus_sub *s);
/* An eventfd that becomes readable when the subscriber has something new; the reader
 * drains it with eventfd_read before peeking. */
int fu_bus_sub_fd(const struct fu_bus_sub *s);

/* Calls `fn` on up to `max` live rows after the subscriber's cursor, under the bus lock (fn
 * must not call into the bus), and sets *upto to the position after the last row looked at.
 * Returns the number of rows given to fn. The cursor does not move: fu_bus_commit does,
 * once the rows are safely sent. */
size_t fu_bus_peek(struct fu_bus *b, struct fu_bus_sub *s, size_t max,
                   void (*fn)(void *ctx, const struct fu_watch_row *r), void *ctx, uint64_t *upto);
void fu_bus_commit(struct fu_bus *b, struct fu_bus_sub *s, uint64_t upto);
/* Whether the subscriber overflowed since the last call (clears it). */
bool fu_bus_take_overflow(struct fu_bus *b, struct fu_bus_sub *s);
/* Rows queued for the subscriber (merged-away rows included until they leave the ring). */
size_t fu_bus_depth(struct fu_bus *b, const struct fu_bus_sub *s);

struct fu_bus_stats {
    uint64_t put, merged, evicted_unsent; /* evicted_unsent: rows some subscriber lost */
    uint64_t held;                        /* rows in the ring now (merged-away ones too) */
};
void fu_bus_stats(struct fu_bus *b, struct fu_bus_stats *out);

#endif
