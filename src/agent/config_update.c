/* Config files changed from Fusion; see config_update.h. The new text is validated from a
 * hidden temporary file (`.<name>.new`, which the dir scan skips) and renamed into place
 * only when the whole config loads without errors. */
#include "agent/config_update.h"

#include "common/config.h"
#include "common/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool fu_cfgupd_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (!n || n > 200 || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_'))
            return false;
    }
    return (n > 5 && !strcmp(name + n - 5, ".yaml")) || (n > 4 && !strcmp(name + n - 4, ".yml"));
}

int fu_cfgupd_read(const char *dir, const char *name, struct fu_buf *out)
{
    char *path = fu_path_join(dir, name);
    if (!path)
        return -ENOMEM;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0)
        return -errno;
    char chunk[65536];
    ssize_t r;
    while ((r = read(fd, chunk, sizeof(chunk))) > 0 && out->len < (64u << 20))
        fu_buf_append(out, chunk, (size_t)r);
    int rc = r < 0 ? -errno : out->oom ? -ENOMEM : 0;
    close(fd);
    return rc;
}

/* Writes len bytes to path (created or truncated, mode 0600) and syncs them. */
static int write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    int rc = 0;
    for (size_t off = 0; off < len && !rc;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno != EINTR)
            rc = -errno;
        else if (w > 0)
            off += (size_t)w;
    }
    if (!rc && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && !rc)
        rc = -errno;
    return rc;
}

/* Makes the renames durable. */
static void sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int fu_cfgupd_apply(const char *dir, const struct fu_strv *files, const char *active_file,
                    const char *name, const char *yaml, size_t len, struct fu_diags *d)
{
    if (!fu_cfgupd_name_ok(name)) {
        fu_diags_add(d, FU_SEV_ERROR, NULL, 0, 0,
                     "'%s' is not a config file name (a plain name ending in .yaml or .yml)",
                     name);
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
    const char **list = calloc(files->n + 1, sizeof(*list));
    int rc = target && tmp && bak && list ? write_file(tmp, yaml, len) : -ENOMEM;
    if (!rc) {
        size_t n = 0;
        bool replaced = false;
        for (size_t i = 0; i < files->n; i++) {
            bool same = !strcmp(files->v[i], target);
            list[n++] = same ? tmp : files->v[i];
            replaced |= same;
        }
        if (!replaced)
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
            rc = write_file(bak, old.data ? old.data : "", old.len);
        else if (r != -ENOENT)
            rc = r;
        fu_buf_free(&old);
    }
    if (!rc && rename(tmp, target) < 0)
        rc = -errno;
    if (rc && tmp)
        unlink(tmp);
    if (!rc)
        sync_dir(dir);
    free(list);
    free(target);
    free(tmpname);
    free(tmp);
    free(bak);
    return rc;
}
