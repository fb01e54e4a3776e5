/* Backups of Fusion's views and their restore: `fustor-fusion backup DIR` (while Fusion runs)
 * and `fustor-fusion restore DIR` (while it is stopped).
 *
 * A backup is a directory: DIR/<view>/snapshot-<position, 16 hex>.fsnap, for every view a copy
 * of a snapshot taken for the backup (so it covers everything acknowledged before it), and
 * DIR/MANIFEST.json, written last: a DIR without it is an incomplete backup. A restore puts
 * each view's snapshot alone in a fresh data directory (no journal, no incarnation file): the
 * journal goes on from the snapshot's position, and the view starts under a new incarnation,
 * so agents reconcile it with a full audit. */
#ifndef FU_FUSION_BACKUP_H
#define FU_FUSION_BACKUP_H

#include "common/buf.h"
#include "common/service.h"
#include "common/strv.h"
#include "fusion/view.h"

#include <stddef.h>
#include <stdint.h>

#define FU_BACKUP_FORMAT 1 /* MANIFEST.json's "fustor_backup" */

/* One view of a manifest. */
struct fu_backup_view {
    char *view_id; /* owned; a valid view id (no '/', never "." or "..") */
    char *file;    /* owned; "<view_id>/snapshot-<position, 16 hex>.fsnap" */
    uint64_t position, entries, bytes;
    double created_at; /* the snapshot's, wall clock */
};

/* MANIFEST.json, parsed and checked for shape (not against the files). */
struct fu_backup_manifest {
    int64_t format;       /* fustor_backup */
    char *fustor_version; /* owned; NULL when absent */
    int64_t snapshot_format, state_format;
    struct fu_backup_view *views; /* owned, nviews of them */
    size_t nviews;
};

/* Backs up `views` into `dir` (absolute; absent, or an empty directory): a snapshot of each,
 * copied into dir/<view>/, then dir/MANIFEST.json; the manifest's text goes to `manifest`
 * too. Each view goes on taking changes meanwhile. Every view must have storage. Returns 0,
 * or -errno with err saying what went wrong; a failed backup removes what it wrote. */
int fu_backup_take(struct fu_view *const *views, size_t n, const char *dir, struct fu_buf *manifest,
                   char *err, size_t errlen);

/* Parses MANIFEST.json's text. 0, or -EINVAL with err saying what is wrong (JSON, a missing
 * field, a wrong type, a bad view id or file name, a view listed twice). */
int fu_backup_manifest_parse(const char *text, size_t len, struct fu_backup_manifest *m, char *err,
                             size_t errlen);
void fu_backup_manifest_free(struct fu_backup_manifest *m);

/* Restores the backup in `dir` into home/data/views, Fusion being stopped. First checks
 * everything, touching nothing: the manifest, and every snapshot (readable, undamaged, not of
 * a newer format, its state loads). Then, view by view: the old data directory is renamed
 * <view>.before-restore-<UTC time> and a fresh one holds the backup's snapshot alone. Views
 * not in the backup are left as they are. `done` gets a line per thing done. 0 or -errno with
 * err (-EPROTO: a newer format). */
int fu_backup_restore(const char *home, const char *dir, struct fu_strv *done, char *err,
                      size_t errlen);

/* `fustor-fusion purge [VIEW...]`: deletes home/data/views/<VIEW> for each name, after
 * checking them all: none may be in `configured` (the views of the config on disk), exist as
 * a directory, nor be open in a running Fusion (its `lock` file is write-locked). A restore's
 * <view>.before-restore-<time> directories go the same way. Without names, `done` gets a line
 * per data directory no configured view uses. 0 or -errno with err. */
int fu_backup_purge(const char *home, const struct fu_strv *configured, const struct fu_strv *names,
                    struct fu_strv *done, char *err, size_t errlen);

/* The hooks fustor-fusion gives the CLI (rt: a struct fu_fusion). */
extern const struct fu_app_backup fu_fusion_backup_hooks;

#endif
