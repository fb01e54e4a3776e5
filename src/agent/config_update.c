/* Config files changed from Fusion; see config_update.h. The new text is validated from a
 * hidden temporary file (`.<name>.new`, which the dir scan skips) and renamed into place
 * only when the whole config loads without errors. */
#include "agent/config_update.h"

#include "common/config.h"
#include "common/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fu_cfgupd_read(const char *dir, const char *name, struct fu_buf *out)
{
    char *path = fu_path_join(dir, name);
    if (!path)
        return -ENOMEM;
    int rc = fu_read_file(path, 64u << 20, out); /* regular files only: never a FIFO */
    free(path);
    return rc;
}

int fu_cfgupd_apply(const char *dir, const struct fu_strv *files, const char *active_file,
                    const char *name, const char *yaml, size_t len, struct fu_diags *d)
{
    if (!fu_config_file_name_ok(name)) {
        fu_diags_add(d, FU_SEV_ERROR, NULL, 0, 0,
                     "'%s' is not a config file name (a plain name ending in .yaml or .yml)", name);
        return -EINVAL;
    }
    char *target = fu_path_join(dir, name);
    char *tmpname = malloc(strlen(name) + 6), *tmp = NULL, *bak = NULL;
    if (tmpname) {
        sprintf(tmpname, ".%s.new", name);
        tmp = fu_path_join(dir, tmpname);
    }
    if (target) {
        bak = malloc(strlen(target) + 5);
        if (bak)
            sprintf(bak, "%s.bak", target);
    }
    const char **list = calloc(files->n + 2, sizeof(*list));
    int rc = target && tmp && bak && list ? fu_write_file_atomic(tmp, yaml, len, 0600) : -ENOMEM;
    if (!rc) {
        /* The new text takes the place of the file it replaces; a new file goes where the
         * loader will read it: among the dir's files, in name order (a start file outside
         * the dir still loads last). */
        size_t n = 0, dl = strlen(dir);
        bool placed = false;
        for (size_t i = 0; i < files->n; i++) {
            const char *f = files->v[i];
            bool in_dir = !strncmp(f, dir, dl) && f[dl] == '/' && !strchr(f + dl + 1, '/');
            if (!placed && !strcmp(f, target)) {
                list[n++] = tmp;
                placed = true;
                continue;
            }
            if (!placed && (in_dir ? strcmp(f + dl + 1, name) > 0 : true)) {
                list[n++] = tmp;
                placed = true;
            }
            list[n++] = f;
        }
        if (!placed)
            list[n++] = tmp;
        const char *active = active_file && !strcmp(active_file, target) ? tmp : active_file;
        struct fu_config cfg;
        rc = fu_config_load_files(&cfg, FU_CFG_AGENT, list, n, active, d);
        fu_config_free(&cfg);
    }
    if (!rc) { /* the old file, kept as <name>.bak */
        struct fu_buf old = FU_BUF_INIT;
        int r = fu_cfgupd_read(dir, name, &old);
        if (r == 0)
            rc = fu_write_file_atomic(bak, old.data ? old.data : "", old.len, 0600);
        else if (r != -ENOENT)
            rc = r;
        fu_buf_free(&old);
    }
    if (!rc && rename(tmp, target) < 0)
        rc = -errno;
    if (rc && tmp)
        unlink(tmp);
    if (!rc)
        fu_fsync_dir(dir);
    free(list);
    free(target);
    free(tmpname);
    free(tmp);
    free(bak);
    return rc;
}
