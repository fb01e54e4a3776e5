/* Pidfile, signals and daemonizing; see daemon.h. */
#include "common/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t read_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end;
    long v = strtol(buf, &end, 10);
    return v > 0 && v <= INT_MAX && (*end == '\n' || !*end) ? (pid_t)v : 0;
}

/* Open-file-description locks: like flock they belong to the open file (so the lock taken
 * before daemonizing carries over to the daemon), and unlike flock they can be queried with
 * F_OFD_GETLK without taking them, so `status` never makes a concurrent `start` fail. */
static int ofd_lock(int fd, short type, int cmd)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    if (fcntl(fd, cmd, &fl) < 0)
        return -errno;
    return cmd == F_OFD_GETLK ? fl.l_type != F_UNLCK : 0;
}

enum fu_pid_state fu_pidfile_probe(const char *path, pid_t *pid)
{
    *pid = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return FU_PID_NONE;
    *pid = read_pid(fd);
    int held = ofd_lock(fd, F_WRLCK, F_OFD_GETLK);
    close(fd);
    return held > 0 ? FU_PID_RUNNING : FU_PID_STALE;
}

/* True when fd is still the file at path: whoever unlinked or replaced the pidfile between
 * our open and our lock made our lock worthless. */
static bool same_file(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

int fu_pidfile_acquire(struct fu_pidfile *pf, const char *path, pid_t *holder)
{
    pf->fd = -1;
    pf->path = NULL;
    *holder = 0;
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return -errno;
        int rc = ofd_lock(fd, F_WRLCK, F_OFD_SETLK);
        if (rc == -EAGAIN || rc == -EACCES) {
            *holder = read_pid(fd);
            close(fd);
            return -EEXIST;
        }
        if (rc < 0) {
            close(fd);
            return rc;
        }
        if (!same_file(fd, path)) {
            close(fd);
            continue;
        }
        pf->fd = fd;
        pf->path = strdup(path);
        if (!pf->path) {
            close(fd);
            pf->fd = -1;
            return -ENOMEM;
        }
        /* Our pid right away, so nobody reads a dead process's pid from a held lock. */
        return fu_pidfile_write(pf, getpid());
    }
    return -EAGAIN;
}

int fu_pidfile_write(struct fu_pidfile *pf, pid_t pid)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)pid);
    if (ftruncate(pf->fd, 0) < 0)
        return -errno;
    ssize_t w = pwrite(pf->fd, buf, (size_t)n, 0);
    if (w != n)
        return w < 0 ? -errno : -EIO;
    return 0;
}

void fu_pidfile_release(struct fu_pidfile *pf)
{
    if (pf->fd >= 0 && same_file(pf->fd, pf->path))
        unlink(pf->path);
    fu_pidfile_forget(pf);
}

void fu_pidfile_forget(struct fu_pidfile *pf)
{
    if (pf->fd >= 0)
        close(pf->fd);
    free(pf->path);
    pf->fd = -1;
    pf->path = NULL;
}

/* One flag per signal, lock-free atomics: a handler may run on any thread of the process
 * (the runtime's threads do not block signals), and the main loop reads them on its own. */
static atomic_int got_hup, got_usr1, got_usr2, got_term;
static int self_pipe[2] = {-1, -1};

static void wake_loop(void)
{
    if (self_pipe[1] >= 0) {
        char c = 1;
        ssize_t r = write(self_pipe[1], &c, 1);
        (void)r;
    }
}

static void on_signal(int sig)
{
    int saved = errno;
    if (sig == SIGHUP)
        atomic_store(&got_hup, 1);
    else if (sig == SIGUSR1)
        atomic_store(&got_usr1, 1);
    else if (sig == SIGUSR2)
        atomic_store(&got_usr2, 1);
    else
        atomic_store(&got_term, 1);
    wake_loop();
    errno = saved;
}

void fu_signals_raise(unsigned flags)
{
    if (flags & FU_SIG_HUP)
        atomic_store(&got_hup, 1);
    if (flags & FU_SIG_USR1)
        atomic_store(&got_usr1, 1);
    if (flags & FU_SIG_USR2)
        atomic_store(&got_usr2, 1);
    if (flags & FU_SIG_TERM)
        atomic_store(&got_term, 1);
    wake_loop();
}

int fu_signals_install(void)
{
    if (self_pipe[0] < 0 && pipe2(self_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    int sigs[] = {SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGINT};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (sigaction(sigs[i], &sa, NULL) < 0)
            return -errno;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int fu_signals_fd(void)
{
    return self_pipe[0];
}

unsigned fu_signals_take(void)
{
    char buf[64];
    while (self_pipe[0] >= 0 && read(self_pipe[0], buf, sizeof(buf)) > 0)
        ;
    /* Clear before acting: a signal that arrives after the clear is seen next time. */
    unsigned got = 0;
    if (atomic_exchange(&got_hup, 0))
        got |= FU_SIG_HUP;
    if (atomic_exchange(&got_usr1, 0))
        got |= FU_SIG_USR1;
    if (atomic_exchange(&got_usr2, 0))
        got |= FU_SIG_USR2;
    if (atomic_exchange(&got_term, 0))
        got |= FU_SIG_TERM;
    return got;
}

int fu_daemonize(const char *out_path, int *report_fd, int *exit_code)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(p[0]);
        close(p[1]);
        return e;
    }
    if (pid > 0) {
        /* The launching process: relay the daemon's report. */
        close(p[1]);
        char msg[4096];
        size_t len = 0;
        for (;;) {
            ssize_t n = read(p[0], msg + len, sizeof(msg) - 1 - len);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            len += (size_t)n;
            if (len == sizeof(msg) - 1)
                break;
        }
        close(p[0]);
        msg[len] = '\0';
        waitpid(pid, NULL, 0);
        if (len == 0) {
            fprintf(stderr, "error: the daemon exited during start-up; see %s\n", out_path);
            *exit_code = 1;
        } else {
            bool ok = msg[0] == '+';
            fputs(msg + 1, ok ? stdout : stderr);
            *exit_code = ok ? 0 : 1;
        }
        return 1;
    }
    close(p[0]);
    if (setsid() < 0)
        _exit(1);
    pid = fork();
    if (pid < 0)
        _exit(1);
    if (pid > 0)
        _exit(0);
    umask(027);
    int nul = open("/dev/null", O_RDWR);
    int out = open(out_path, O_WRONLY | O_CREAT | O_APPEND, 0640);
    if (nul < 0 || out < 0 || chdir("/") < 0) {
        char m[512];
        int n = snprintf(m, sizeof(m), "-error: cannot open %s: %s\n", out_path, strerror(errno));
        ssize_t r = write(p[1], m, (size_t)n);
        (void)r;
        _exit(1);
    }
    dup2(nul, 0);
    dup2(out, 1);
    dup2(out, 2);
    if (nul > 2)
        close(nul);
    if (out > 2)
        close(out);
    *report_fd = p[1];
    return 0;
}

void fu_daemon_report(int *report_fd, bool ok, const char *msg)
{
    if (*report_fd < 0)
        return;
    size_t len = strlen(msg);
    char *buf = malloc(len + 2);
    if (buf) {
        buf[0] = ok ? '+' : '-';
        memcpy(buf + 1, msg, len);
        buf[len + 1] = '\0';
        ssize_t r = write(*report_fd, buf, len + 1);
        (void)r;
        free(buf);
    }
    close(*report_fd);
    *report_fd = -1;
}
