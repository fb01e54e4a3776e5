/* A view's snapshot file: its whole state (view_fs/state_io.h) at a journal position, so a
 * restart loads it and replays only the journal after it, and the journal before it can go.
 *
 * dir/snapshot-<position, 16 hex>.fsnap: a 64-byte header (magic "FUSTORS", this format's
 * version, the state's format, the journal position, the state's length, the payload's
 * length, the creation time, the payload's CRC-32C, the header's CRC-32C), then the state
 * compressed with zstd. Written to a temp file, fsynced, renamed, and the directory fsynced:
 * a crash leaves the old snapshots and at most a stray temp file (removed at the next list). */
#ifndef FU_FUSION_SNAPSHOT_H
#define FU_FUSION_SNAPSHOT_H

#include "common/buf.h"

#include <stddef.h>
#include <stdint.h>

#define FU_SNAPSHOT_FORMAT 1

struct fu_snapshot_info {
    uint64_t position;     /* the journal position the state covers */
    uint32_t format;       /* the file's format */
    uint32_t state_format; /* the state's layout (FU_STATE_FORMAT of its writer) */
    uint64_t raw_bytes;    /* the state, uncompressed */
    uint64_t file_bytes;
    double created_at; /* wall clock */
};

/* Writes `state` (len bytes, at journal position `pos`) as dir's snapshot for `pos`. `level`:
 * zstd's compression level. Returns 0 or -errno (a full disk: -ENOSPC, nothing left behind). */
int fu_snapshot_write(const char *dir, uint64_t pos, uint32_t state_format, const void *state,
                      size_t len, double created_at, int level, struct fu_snapshot_info *info);
/* Reads a snapshot file into `out` (the uncompressed state) after checking it. Returns 0;
 * -EPROTO for a format newer than this build reads (err says which); -EBADMSG for a damaged
 * or truncated file (err says what); other -errno. `max_state_format`: the newest state layout
 * the caller can load. */
int fu_snapshot_read(const char *path, uint32_t max_state_format, struct fu_buf *out,
                     struct fu_snapshot_info *info, char *err, size_t errlen);
/* The positions of dir's snapshots, newest first (*out malloc'd, caller frees). Stray temp
 * files of an interrupted write are removed. Returns the count, or -errno. */
int fu_snapshot_list(const char *dir, uint64_t **out);
/* dir's snapshot file for position `pos` (caller frees). */
char *fu_snapshot_path(const char *dir, uint64_t pos);
/* Deletes all but the `keep` newest snapshots (keep >= 1). Returns the position of the oldest
 * kept one (what the journal must still cover), or UINT64_MAX when there is none. */
uint64_t fu_snapshot_prune(const char *dir, int keep);

#endif
