/* Filesystem helpers; see fsutil.h. */
#include "common/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fu_read_file(const char *path, size_t max, struct fu_buf *out)
{
    /* O_NONBLOCK so that a FIFO cannot hang us before the type check below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
    }
    fcntl(fd, F_SETFL, 0);
    int rc = 0;
    for (;;) {
        if (fu_buf_grow(out, 4096) < 0) {
            rc = -ENOMEM;
            break;
        }
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
        if (out->len > max) {
            rc = -EFBIG;
            break;
        }
    }
    close(fd);
    return rc;
}

int fu_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 32);
    if (!tmp)
        return -ENOMEM;
    snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        int e = -errno;
        free(tmp);
        return e;
    }
    const char *p = data;
    size_t left = len;
    int rc = 0;
    while (left) {
        ssize_t n = write(fd, p, left);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        p += n;
        left -= (size_t)n;
    }
    if (!rc && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && !rc)
        rc = -errno;
    if (!rc && rename(tmp, path) < 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    free(tmp);
    return rc;
}

int fu_copy_file_atomic(const char *src, const char *dst, mode_t mode, uint64_t *bytes)
{
    int in = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (in < 0)
        return -errno;
    struct stat st;
    int e = fstat(in, &st) < 0     ? -errno
            : S_ISDIR(st.st_mode)  ? -EISDIR
            : !S_ISREG(st.st_mode) ? -EINVAL
                                   : 0;
    if (e) {
        close(in);
        return e;
    }
    fcntl(in, F_SETFL, 0);
    size_t dl = strlen(dst);
    char *tmp = malloc(dl + 32);
    char *buf = malloc(1 << 20);
    int out = -1, rc = 0;
    if (!tmp || !buf) {
        rc = -ENOMEM;
        goto out;
    }
    snprintf(tmp, dl + 32, "%s.tmp.%ld", dst, (long)getpid());
    out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (out < 0) {
        rc = -errno;
        goto out;
    }
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(in, buf, 1 << 20);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n && !rc;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                rc = w < 0 ? -errno : -EIO;
            else
                off += w;
        }
        if (rc)
            break;
        total += (uint64_t)n;
    }
    if (!rc && fsync(out) < 0)
        rc = -errno;
    if (close(out) < 0 && !rc)
        rc = -errno;
    if (!rc && rename(tmp, dst) < 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    else if (bytes)
        *bytes = total;
out:
    close(in);
    free(buf);
    free(tmp);
    return rc;
}

int fu_dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = 0;
    closedir(d);
    return empty;
}

int fu_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int fu_mkdirs(const char *path, mode_t mode)
{
    if (!*path)
        return -ENOENT;
    char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, mode) < 0 && errno != EEXIST) {
                rc = -errno;
                break;
            }
            *s = c;
            if (!c)
                break;
        }
    }
    free(p);
    return rc;
}

char *fu_path_join(const char *a, const char *b)
{
    size_t la = strlen(a);
    while (la > 1 && a[la - 1] == '/')
        la--;
    size_t lb = strlen(b);
    char *s = malloc(la + lb + 2);
    if (!s)
        return NULL;
    memcpy(s, a, la);
    s[la] = '/';
    memcpy(s + la + 1, b, lb + 1);
    return s;
}

bool fu_config_file_name_ok(const char *name)
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
