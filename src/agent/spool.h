/* The on-disk spool of a pipe's realtime rows: where they go while Fusion cannot take them,
 * to be delivered oldest first once it can, and kept across restarts of the agent.
 *
 * A directory ($FUSTOR_HOME/data/agent/<pipe>.spool/) of segment files, <16 hex
 * digits>.seg, numbered in the order they were written. Each starts with a header (magic,
 * the pipe's walk signature, CRC-32C) and holds records: the payload's length, a CRC-32C of
 * length and payload, and the row. Rows are appended to the newest segment (a new one once
 * it holds seg_bytes) and read from the oldest; a segment read to its end is deleted once
 * its rows are acknowledged (fu_spool_commit), and the whole directory goes once every row
 * is. `head` records where reading resumes; without it a reopened spool is read from its
 * oldest segment: rows sent twice, in order, leave Fusion in the same state.
 *
 * Bounded: an append that would take the files past max_bytes fails with -ENOSPC and
 * appends nothing; the caller then drops the spool and resyncs. Opening checks every
 * record: the spool is cut at the first torn or damaged one (its later segments go too) and
 * the open says so, since rows were lost.
 *
 * Not thread-safe: one thread (the pipe's realtime thread) owns it. Appends only encode
 * into memory (so they may run under the bus's lock); fu_spool_flush writes. */
#ifndef FU_AGENT_SPOOL_H
#define FU_AGENT_SPOOL_H

#include "agent/source_fs/watch_inotify.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fu_spool;

/* What an open found on disk. */
struct fu_spool_info {
    uint64_t rows, bytes; /* rows not yet delivered; bytes of the files kept */
    bool damaged;         /* records were cut (a torn tail, a bad CRC): rows were lost */
    bool foreign;         /* written for another walk signature: dropped, rows were lost */
    char detail[256];     /* what was cut, and where */
};

/* Where reading got to: a segment's number and the offset of the next record, and how many
 * rows lie between the read position and it. */
struct fu_spool_pos {
    uint64_t seg, off, rows;
};

/* Opens the spool in `dir` (created at the first write), checking what a previous run left
 * there. `sig` (up to 16 characters) names what the rows are relative to: a spool written
 * for another one is dropped. `seg_bytes` 0 picks a size from max_bytes. Returns 0 (with
 * `info` filled) or -errno (-ENOMEM, or the directory cannot be read). */
int fu_spool_open(struct fu_spool **out, const char *dir, const char *sig, uint64_t max_bytes,
                  uint64_t seg_bytes, struct fu_spool_info *info);
/* Writes out what was appended, syncs it, and frees; the files stay for the next open. */
void fu_spool_close(struct fu_spool *s);

/* Appends a row (to memory until the next flush). 0, or -ENOSPC over max_bytes. */
int fu_spool_append(struct fu_spool *s, const struct fu_watch_row *r);
/* Writes the appended rows to the files. 0 or -errno (the caller drops the spool). */
int fu_spool_flush(struct fu_spool *s);

/* Calls fn on up to `max` rows from the read position, oldest first (flushing first), and
 * sets *upto past the last; a row's path is NUL-terminated and lives until fn returns. Returns how
 * many, or -errno: -EBADMSG when a record read back is damaged (the caller drops the spool and
 * resyncs). The read position does not move. */
long fu_spool_peek(struct fu_spool *s, size_t max,
                   void (*fn)(void *ctx, const struct fu_watch_row *r), void *ctx,
                   struct fu_spool_pos *upto);
/* The rows up to `upto` were delivered: the read position moves there, segments read to
 * their end are deleted, and the whole directory once nothing is left. 0 or -errno. */
int fu_spool_commit(struct fu_spool *s, const struct fu_spool_pos *upto);
/* Deletes every row and file (an overflow, damage, or the pipe was removed). */
void fu_spool_drop(struct fu_spool *s);

/* Rows not yet delivered (appended ones included), and bytes held (files and memory). */
uint64_t fu_spool_rows(const struct fu_spool *s);
uint64_t fu_spool_bytes(const struct fu_spool *s);
const char *fu_spool_dir(const struct fu_spool *s);

#endif
