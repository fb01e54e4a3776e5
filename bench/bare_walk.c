/* The physical limit of a metadata walk, for the benchmarks: one thread, getdents64 and
 * statx (the fields the agent asks for) relative to each directory's descriptor, nothing
 * kept or printed but the count of entries. Symlinks are not followed.
 * Usage: bare_walk ROOT */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct dirent64 {
    uint64_t ino;
    int64_t off;
    unsigned short reclen;
    unsigned char type;
    char name[];
};

static unsigned long long entries;

static void walk(int dirfd)
{
    char buf[32768];
    long got;
    while ((got = syscall(SYS_getdents64, dirfd, buf, sizeof(buf))) > 0) {
        for (long off = 0; off < got;) {
            const struct dirent64 *d = (const struct dirent64 *)(buf + off);
            off += d->reclen;
            const char *n = d->name;
            if (n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2])))
                continue;
            struct statx sx;
            if (statx(dirfd, n, AT_SYMLINK_NOFOLLOW,
                      STATX_TYPE | STATX_SIZE | STATX_MTIME | STATX_CTIME, &sx) < 0)
                continue;
            entries++;
            if (!S_ISDIR(sx.stx_mode))
                continue;
            int fd = openat(dirfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd >= 0) {
                walk(fd);
                close(fd);
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bare_walk ROOT\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "bare_walk: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    walk(fd);
    close(fd);
    printf("%llu\n", entries);
    return 0;
}
