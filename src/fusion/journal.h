/* A view's journal: an append-only log of the operations that changed it, so that a restart
 * rebuilds exactly what was acknowledged (DESIGN "Durability").
 *
 * On disk, in the view's data directory, segments named journal-<start, 16 hex>.log. A
 * segment is a 32-byte header (magic "FUSTORJ", format version, its start position, CRC)
 * and records: u32 payload length, u32 CRC-32C of (the record's position, type, payload),
 * u8 type, payload. A position counts record bytes from the journal's beginning, across
 * segments (headers excluded); a snapshot names the position its state covers.
 *
 * Durability (`fsync`): `always` syncs each record as it is appended; `batch` (the default)
 * syncs in fu_journal_wait with group commit, one fdatasync covering every record appended
 * before it starts (concurrent requests share it), after an optional gathering window; `off`
 * leaves writing back to the kernel (a crash of Fusion loses nothing, a crash of the machine
 * may lose the last seconds).
 *
 * Appends come from the view's writer (under its write lock: the journal's order is the
 * apply order); waits, rotations and replays may come from any thread. */
#ifndef FU_FUSION_JOURNAL_H
#define FU_FUSION_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FU_JOURNAL_FORMAT 1
#define FU_JOURNAL_MAX_RECORD (1u << 30) /* a longer length is corruption */

enum fu_fsync { FU_FSYNC_BATCH, FU_FSYNC_ALWAYS, FU_FSYNC_OFF };

struct fu_journal;

struct fu_journal_rec {
    uint64_t pos; /* of the record's first byte */
    uint8_t type;
    const unsigned char *data;
    size_t len;
};

/* What a replay found. */
struct fu_journal_replay_info {
    uint64_t records;     /* replayed */
    uint64_t end;         /* the position after the last good record: appends go on here */
    uint64_t torn_bytes;  /* an incomplete last record, truncated away */
    bool corrupt;         /* replay stopped at a damaged record (or a missing segment) */
    uint64_t corrupt_pos; /* ... at this position */
    char why[160];        /* ... for this reason */
};

/* Opens (creating it if needed) the journal in directory `dir`. `window_sec` (batch mode):
 * how long a sync waits to gather more records first (0: none). Returns 0 or -errno. */
int fu_journal_open(struct fu_journal **out, const char *dir, enum fu_fsync mode,
                    double window_sec);
void fu_journal_close(struct fu_journal *j);

/* Calls `fn` for every record at or after position `from` (a snapshot's; 0: all), in order,
 * then opens a new segment at the end for appends; must be called once, before any append.
 * A torn tail (the last record incomplete or failing its CRC at the end of the last segment)
 * is truncated and reported in `info`. A damaged record with more after it, or a gap between
 * segments, stops the replay there: the damaged segment is copied aside (name + ".corrupt"),
 * cut at the damage, later segments are set aside, and appends continue at the cut. `fn`
 * returning < 0 stops the replay with that value. Returns 0 (info says whether it was
 * complete) or < 0. */
int fu_journal_replay(struct fu_journal *j, uint64_t from,
                      int (*fn)(void *ctx, const struct fu_journal_rec *r), void *ctx,
                      struct fu_journal_replay_info *info);

/* Appends one record; *end = the position after it (what fu_journal_wait needs). On a write
 * error (ENOSPC: a full disk) nothing of the record stays and -errno is returned. */
int fu_journal_append(struct fu_journal *j, uint8_t type, const void *data, size_t len,
                      uint64_t *end);
/* Returns once everything before `end` is durable by the fsync policy: 0, or -errno of a
 * failed sync (sticky: a journal that failed to sync takes no more records). */
int fu_journal_wait(struct fu_journal *j, uint64_t end);

/* Records that may wait for a later sync (a walk's batches, acknowledged before a sync at
 * the walk's end): once FU_JOURNAL_KICK_BYTES of them are not synced yet, their write-back
 * starts (sync_file_range), so that the sync that comes finds little left to write. `batch`
 * mode only. */
#define FU_JOURNAL_KICK_BYTES (8u << 20)
void fu_journal_kick(struct fu_journal *j);

/* *pos = the position before which everything is durable; false (and nothing set) with
 * `fsync: off`, which leaves that to the kernel. */
bool fu_journal_synced(struct fu_journal *j, uint64_t *pos);

/* Starts a new segment (the current one synced first); *pos = its start, which is the end
 * of everything appended so far. A snapshot of the state at *pos lets the segments before
 * it go. The caller keeps appends out meanwhile (the view's lock). */
int fu_journal_rotate(struct fu_journal *j, uint64_t *pos);
/* Deletes the segments that hold only records before `pos`. Returns how many. */
int fu_journal_drop_before(struct fu_journal *j, uint64_t pos);

uint64_t fu_journal_end(struct fu_journal *j);

#endif
