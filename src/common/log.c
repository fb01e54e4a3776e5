/* The log sink. The only process-wide state besides signal flags (STYLE.md): a mutex guards
 * the fd and settings; the level is read without the lock (an int, set rarely). */
#include "common/log.h"

#include "common/buf.h"
#include "common/json.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static struct {
    pthread_mutex_t mu; /* guards fd, path, json, proc */
    int fd;             /* 2 = stderr */
    char *path;         /* NULL for stderr */
    bool json;
    char proc[16];
    volatile int level;
} g = {PTHREAD_MUTEX_INITIALIZER, 2, NULL, false, "fustor", FU_LOG_INFO};

static const char *const names[] = {"DEBUG", "INFO", "WARNING", "ERROR"};

int fu_log_level_parse(const char *s, enum fu_log_level *out)
{
    for (int i = 0; i < 4; i++)
        if (!strcasecmp(s, names[i])) {
            *out = (enum fu_log_level)i;
            return 0;
        }
    if (!strcasecmp(s, "WARN")) {
        *out = FU_LOG_WARNING;
        return 0;
    }
    if (!strcasecmp(s, "CRITICAL")) {
        *out = FU_LOG_ERROR;
        return 0;
    }
    return -EINVAL;
}

const char *fu_log_level_name(enum fu_log_level l)
{
    return (unsigned)l < 4 ? names[l] : "?";
}

static int open_log(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

int fu_log_setup(const char *proc, enum fu_log_level level, bool json, const char *file)
{
    int fd = 2;
    char *path = NULL;
    if (file) {
        fd = open_log(file);
        if (fd < 0)
            return -errno;
        path = strdup(file);
        if (!path) {
            close(fd);
            return -ENOMEM;
        }
    }
    pthread_mutex_lock(&g.mu);
    if (g.fd > 2)
        close(g.fd);
    free(g.path);
    g.fd = fd;
    g.path = path;
    g.json = json;
    snprintf(g.proc, sizeof(g.proc), "%s", proc);
    g.level = level;
    pthread_mutex_unlock(&g.mu);
    return 0;
}

void fu_log_set_level(enum fu_log_level level)
{
    g.level = level;
}

enum fu_log_level fu_log_get_level(void)
{
    return (enum fu_log_level)g.level;
}

int fu_log_reopen(void)
{
    int rc = 0;
    pthread_mutex_lock(&g.mu);
    if (g.path) {
        int fd = open_log(g.path);
        if (fd < 0) {
            rc = -errno;
        } else {
            close(g.fd);
            g.fd = fd;
        }
    }
    pthread_mutex_unlock(&g.mu);
    return rc;
}

void fu_log_close(void)
{
    pthread_mutex_lock(&g.mu);
    if (g.fd > 2)
        close(g.fd);
    free(g.path);
    g.path = NULL;
    g.fd = 2;
    pthread_mutex_unlock(&g.mu);
}

static void timestamp(char *out, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t l = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + l, n - l, ".%03ldZ", ts.tv_nsec / 1000000);
}

void fu_log(enum fu_log_level level, const char *fmt, ...)
{
    if ((int)level < g.level)
        return;
    char ts[40];
    timestamp(ts, sizeof(ts));
    struct fu_buf msg = FU_BUF_INIT, line = FU_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    fu_buf_vprintf(&msg, fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&g.mu);
    if (g.json) {
        fu_buf_printf(&line,
                      "{\"ts\":\"%s\",\"level\":\"%s\",\"proc\":\"%s\",\"pid\":%ld,\"msg\":", ts,
                      names[level], g.proc, (long)getpid());
        fu_json_escape(&line, fu_buf_str(&msg), msg.len);
        fu_buf_puts(&line, "}\n");
    } else {
        fu_buf_printf(&line, "%s %-7s %s[%ld] %s\n", ts, names[level], g.proc, (long)getpid(),
                      fu_buf_str(&msg));
    }
    const char *p = fu_buf_str(&line);
    size_t left = line.len;
    while (left) {
        ssize_t w = write(g.fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* a full disk must not stop the process; the line is lost */
        p += w;
        left -= (size_t)w;
    }
    pthread_mutex_unlock(&g.mu);
    fu_buf_free(&msg);
    fu_buf_free(&line);
}
